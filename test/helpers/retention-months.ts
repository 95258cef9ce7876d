/**
 * Retention by whole months, the same scenario on every partitioned history (PostgreSQL's
 * partitions, MySQL/MariaDB's after `sqljobs history-partitions`): a month whose rows a live job
 * still reads must stay, a month nothing refers to goes whole with its trail, and the month that
 * straddles the cutoff is pruned row by row.
 */
import { expect } from 'chai';
import type { Jobs } from '../../lib/index.ts';

const DAY = 86_400_000;

export interface MonthsScenario {
  /** Set a finished job's finished_at through the driver (the row moves to that month's partition). */
  finishAt(id: string, at: Date): Promise<void>;
  /** The first instant of the UTC month `k` months from now. */
  monthStart(k: number): Date;
  /** Give a job a failed attempt (and whatever else the dialect keeps): its trail. */
  addTrail(id: string): Promise<void>;
}

export interface MonthsSeeded {
  batchId: string;
  /** [finished in month -5, still waiting]. */
  batchIds: string[];
  /** Month -4: nothing refers to it. */
  plain: string;
  /** Month -3: a completed parent of `child`, which also waits for `other`. */
  parent: string;
  other: string;
  child: string;
  /** Month -2, before and after its 10th day (the cutoff). */
  early: string;
  late: string;
  /** olderThanMs putting the cutoff on month -2's 10th day. */
  olderThanMs: number;
}

/** Seed the scenario; `jobs` defines 'parent' and runs workers (drain). */
export async function seedMonths(jobs: Jobs, s: MonthsScenario, nowMs: number): Promise<MonthsSeeded> {
  const within = (k: number, days: number) => new Date(s.monthStart(k).getTime() + days * DAY);
  const cancelledAt = async (k: number, days: number) => {
    const { id } = await jobs.enqueue('x', {}, { delay: 3_600_000 });
    await jobs.cancel(id);
    await s.finishAt(id, within(k, days));
    return id;
  };
  // -5: one job of a batch whose other job still waits.
  const { batchId, ids: batchIds } = await jobs.batch([{ name: 'b', payload: 1, delay: 3_600_000 }, { name: 'b', payload: 2, delay: 3_600_000 }], { onComplete: 'after' });
  await jobs.cancel(batchIds[0]);
  await s.finishAt(batchIds[0], within(-5, 3));
  const plain = await cancelledAt(-4, 3);
  await s.addTrail(plain);
  const parent = await jobs.enqueue('parent', {});
  await jobs.drain();
  await s.finishAt(parent.id, within(-3, 3));
  const other = await jobs.enqueue('x', {}, { delay: 3_600_000 });
  const child = await jobs.enqueue('x', {}, { dependsOn: [parent.id, other.id] });
  const early = await cancelledAt(-2, 2);
  const late = await cancelledAt(-2, 20);
  return { batchId, batchIds, plain, parent: parent.id, other: other.id, child: child.id, early, late, olderThanMs: nowMs - within(-2, 10).getTime() };
}

/** After the first prune: the unreferenced month's rows and the straddling month's early row are gone; the referenced ones stay. */
export async function expectFirstPrune(jobs: Jobs, seeded: MonthsSeeded): Promise<void> {
  expect(await jobs.get(seeded.plain)).to.equal(null);
  expect(await jobs.get(seeded.early)).to.equal(null);
  expect(await jobs.get(seeded.late)).to.not.equal(null);
  expect((await jobs.get(seeded.parent))!.state).to.equal('completed');
  expect(await jobs.batchStatus(seeded.batchId)).to.deep.include({ total: 2, cancelled: 1, finished: false });
}

/** The dependent and the batch done: nothing reads months -5 and -3 any more. */
export async function releaseReferences(jobs: Jobs, seeded: MonthsSeeded): Promise<void> {
  await jobs.cancel(seeded.other); // its dependent is cancelled with it
  expect((await jobs.get(seeded.child))!.state).to.equal('cancelled');
  await jobs.cancel(seeded.batchIds[1]);
}
