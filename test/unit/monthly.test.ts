/**
 * The month decisions shared by the dialects whose history a script partitions (lib/driver/monthly.ts):
 * which months to make, which may go. MySQL/MariaDB runs them live (test/mysql/partitions.test.ts).
 */
import { expect } from 'chai';
import { deleteTrailInBatches, monthPartition, monthsExpired, planMonths } from '../../lib/driver/monthly.ts';

const NOW = new Date('2026-12-31T23:59:59.999Z');
const utc = (s: string) => new Date(`${s}T00:00:00.000Z`);
const names = (plan: ReturnType<typeof planMonths>) => (plan === null ? null : Object.entries(plan).map(([k, ms]) => [k, ms.map((m: { name: string }) => m.name)]));

describe('history months (script-partitioned dialects)', () => {
  it('names a month by its UTC calendar month, bounded by its first instant and the next month\'s', () => {
    expect(monthPartition(NOW)).to.deep.equal({ name: 'p2026_12', from: utc('2026-12-01'), to: utc('2027-01-01') });
    expect(monthPartition(utc('2026-12-01'), -12).name).to.equal('p2025_12');
  });

  it('an unpartitioned history: a month each from the oldest finish\'s month to next month (only these two when history is empty)', () => {
    expect(names(planMonths([], NOW, new Date('2026-09-30T23:59:59.999Z')))).to.deep.equal([['partition', ['p2026_09', 'p2026_10', 'p2026_11', 'p2026_12', 'p2027_01']]]);
    expect(names(planMonths([], NOW, null))).to.deep.equal([['partition', ['p2026_12', 'p2027_01']]]);
  });

  it('a partitioned one: the months after the last bound up to next month split off the catch-all, also those upkeep fell behind on; nothing when next month exists', () => {
    const upTo = (bound: string) => [{ name: 'p', to: utc(bound) }, { name: 'pfuture', to: null }];
    expect(planMonths(upTo('2027-02-01'), NOW, null)).to.equal(null);
    expect(names(planMonths(upTo('2027-01-01'), NOW, null))).to.deep.equal([['split', ['p2027_01']]]);
    expect(names(planMonths(upTo('2026-10-01'), NOW, null))).to.deep.equal([['split', ['p2026_10', 'p2026_11', 'p2026_12', 'p2027_01']]]);
  });

  it('expired: the partitions whose bound is at or before the cutoff, never the last one', () => {
    const parts = [{ name: 'a', to: utc('2026-10-01') }, { name: 'b', to: utc('2026-11-01') }, { name: 'c', to: utc('2026-12-01') }, { name: 'pfuture', to: null }];
    expect(monthsExpired(parts, utc('2026-11-01')).map((p) => p.name)).to.deep.equal(['a', 'b']);
    expect(monthsExpired(parts, new Date('2026-10-31T23:59:59.999Z')).map((p) => p.name)).to.deep.equal(['a']);
    expect(monthsExpired(parts.slice(0, 1), utc('2027-01-01')), 'a single partition stays').to.deep.equal([]);
  });

  it('deletes the trail page by page until a page comes back short', async () => {
    const all = Array.from({ length: 12 }, (_, i) => `id${String(i).padStart(2, '0')}`);
    const removed: string[][] = [];
    await deleteTrailInBatches(async (after, limit) => all.filter((id) => after === null || id > after).slice(0, limit), async (ids) => void removed.push(ids), 5);
    expect(removed.map((r) => r.length)).to.deep.equal([5, 5, 2]);
    expect(removed.flat()).to.deep.equal(all);
  });
});
