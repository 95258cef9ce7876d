/**
 * History by month (issue 15) through the public API, on every dialect: jobs.historyMonths (each
 * UTC month of the finish time with its jobs per state, newest first, capped counts flagged), the
 * list's finishedAfter / finishedBefore filter (history only, keyset pages within a month), and the
 * admin's History view, its JSON and the jobs list's month filter. Finish times are moved through
 * the driver: no database clock can be faked.
 */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { JobValidationError, jobsAdmin, type Jobs } from '../../lib/index.ts';
import { utcMonth } from '../../lib/driver/month.ts';
import path from 'node:path';
import { forEachDialect, MYSQL_HISTORY_PARTITIONED, SQLITE_MONTHLY_FILES, type TestDb } from '../helpers/dialects.ts';

const BASE = '/admin/jobs';

/** Move one finished job's finish time (into another month's partition, where there is one). */
async function finishAt(t: TestDb, id: string, at: Date): Promise<void> {
  const [time, key] = t.dialect === 'sqlite' ? ['?', '?'] : ['$1', '$2'];
  await t.query(`UPDATE ${t.prefix}history SET finished_at = ${time} WHERE id = ${key}`, [t.dialect === 'sqlite' ? at.getTime() : at, id]);
}

/** The 15th, noon UTC, `back` months before this one. */
const midMonth = (back: number) => new Date(utcMonth(new Date(), -back).from.getTime() + 14 * 86_400_000 + 43_200_000);

forEachDialect('history by month', ({ fresh }) => {
  const [now, last, older] = [utcMonth(new Date()), utcMonth(new Date(), -1), utcMonth(new Date(), -3)];

  /**
   * Jobs finished in three months: a and b this month; c, d and the failed one last month; the
   * cancelled one three months back. A live one beside them.
   */
  async function seeded(): Promise<{ t: TestDb; jobs: Jobs; ids: Record<string, string> }> {
    const t = await fresh();
    const jobs = t.jobs({ retentionDays: 400, worker: { pollInterval: 60_000 } });
    const ids: Record<string, string> = {};
    jobs.define('ok', async (n: number) => ({ n }));
    jobs.define('boom', async () => {
      throw new Error('no');
    }, { maxAttempts: 1 });
    for (const name of ['a', 'b', 'c', 'd']) ids[name] = (await jobs.enqueue('ok', 1)).id;
    ids.failed = (await jobs.enqueue('boom', 0)).id;
    ids.cancelled = (await jobs.enqueue('ok', 2, { delay: 3_600_000 })).id;
    ids.live = (await jobs.enqueue('ok', 3, { delay: 3_600_000 })).id;
    await jobs.drain();
    expect(await jobs.cancel(ids.cancelled)).to.equal(true);
    for (const id of [ids.c, ids.failed]) await finishAt(t, id, midMonth(1));
    await finishAt(t, ids.d, new Date(midMonth(1).getTime() + 3_600_000));
    await finishAt(t, ids.cancelled, midMonth(3));
    return { t, jobs, ids };
  }

  it('historyMonths: each month of the finish time, newest first, with its jobs per state; empty months left out', async () => {
    const { t, jobs } = await seeded();
    const overview = await jobs.historyMonths();
    expect(overview.months.map((m) => m.month)).to.deep.equal([now.key, last.key, older.key]);
    const [m0, m1, m3] = overview.months;
    expect(m0.counts).to.deep.equal({ completed: 2 });
    expect(m1.counts).to.deep.equal({ completed: 2, failed: 1 });
    expect(m3.counts).to.deep.equal({ cancelled: 1 });
    for (const m of overview.months) expect(m.estimated, m.month).to.equal(false);
    expect(overview.retentionDays).to.equal(400);
    if (t.dialect === 'postgres') {
      // A fresh installation's first partition is the table migration 014 found (empty, here): it
      // holds every month up to the end of the next, and retention drops it whole after that.
      const legacy = `${t.prefix}history_legacy`;
      const until = utcMonth(new Date(), 1).to;
      for (const m of overview.months) expect([m.storedIn, m.storedUntil?.getTime(), m.bytes], m.month).to.deep.equal([legacy, until.getTime(), null]);
      expect(overview.nextDrop).to.deep.equal({ storedIn: legacy, at: new Date(until.getTime() + 400 * 86_400_000) });
    } else if (t.dialect === 'mysql' && MYSQL_HISTORY_PARTITIONED) {
      // Partitioned when the test began (history-partitions): its first partition, this month's,
      // also holds every earlier month (RANGE: less than next month's start).
      const first = `p${now.key.replace('-', '_')}`;
      for (const m of overview.months) expect([m.storedIn, m.storedUntil?.getTime(), m.bytes], m.month).to.deep.equal([first, now.to.getTime(), null]);
      expect(overview.nextDrop).to.deep.equal({ storedIn: first, at: new Date(now.to.getTime() + 400 * 86_400_000) });
    } else {
      // SQLJOBS_SQLITE_HISTORY=monthly-files: months not moved yet are named by the main file that holds them.
      const table = t.dialect === 'sqlite' && SQLITE_MONTHLY_FILES ? path.basename(t.location) : null;
      expect(overview.months.every((m) => m.storedIn === table && m.bytes === null && m.storedUntil === null)).to.equal(true);
      expect(overview.nextDrop, 'one table: rows go one by one').to.equal(null);
    }
  });

  it('historyMonths: a month holding more than cap is counted only that far and flagged', async () => {
    const { jobs } = await seeded();
    const [m0, m1] = (await jobs.historyMonths({ cap: 2 })).months;
    expect(m0.estimated, 'exactly cap rows: cannot tell whether more follow').to.equal(true);
    expect(m1.estimated).to.equal(true);
    expect(Object.values(m1.counts).reduce((a, b) => a + (b ?? 0), 0)).to.be.at.least(2);
    const [mm0, mm1, mm3] = (await jobs.historyMonths({ cap: 3 })).months;
    expect([mm0.estimated, mm1.estimated, mm3.estimated]).to.deep.equal([false, true, false]);
  });

  it('list: finishedAfter / finishedBefore read history only, in keyset pages within the month', async () => {
    const { jobs, ids } = await seeded();
    const month = { finishedAfter: last.from, finishedBefore: last.to };
    const all = await jobs.list(month);
    expect(all.items.map((j) => j.id).sort()).to.deep.equal([ids.c, ids.d, ids.failed].sort());
    expect(all.items.map((j) => j.id)).to.deep.equal([...all.items.map((j) => j.id)].sort().reverse(), 'newest first');
    const seen: string[] = [];
    for (let cursor: string | undefined, pages = 0; pages < 5; pages++) {
      const page = await jobs.list({ ...month, limit: 1, cursor });
      seen.push(...page.items.map((j) => j.id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(seen).to.deep.equal(all.items.map((j) => j.id));
    expect((await jobs.list({ ...month, state: 'failed' })).items.map((j) => j.id)).to.deep.equal([ids.failed]);
    expect((await jobs.list({ ...month, state: 'pending' })).items, 'no live job has finished').to.deep.equal([]);
    expect((await jobs.list({ finishedAfter: now.from })).items.map((j) => j.id).sort()).to.deep.equal([ids.a, ids.b].sort());
    expect((await jobs.list({ finishedBefore: last.from })).items.map((j) => j.id)).to.deep.equal([ids.cancelled]);
    const refused = await jobs.list({ finishedAfter: 'yesterday' as never }).catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(JobValidationError);
    expect((refused as JobValidationError).message).to.include('finishedAfter');
  });

  it('admin: the History view lists each month linked to its jobs, with the retention; the jobs list filters by month', async () => {
    const { jobs, ids } = await seeded();
    const app = express();
    app.use(BASE, jobsAdmin(jobs));
    const page = (await request(app).get(`${BASE}/history`).expect(200)).text;
    for (const m of [now, last, older]) expect(page).to.include(`href="${BASE}/jobs?month=${m.key}"`);
    expect(page).to.include(`href="${BASE}/jobs?state=failed&amp;month=${last.key}"`);
    expect(page).to.include('Retention: 400 days');
    expect(page).to.include(`href="${BASE}/history" aria-current="page"`);
    const listed = (await request(app).get(`${BASE}/jobs?month=${last.key}`).expect(200)).text;
    for (const id of [ids.c, ids.d, ids.failed]) expect(listed).to.include(id);
    for (const id of [ids.a, ids.b, ids.cancelled, ids.live]) expect(listed).not.to.include(id);
    expect(listed).to.include(`value="${last.key}"`);
    const api = (await request(app).get(`${BASE}/api/jobs?month=${older.key}`).expect(200)).body as { items: { id: string }[] };
    expect(api.items.map((j) => j.id)).to.deep.equal([ids.cancelled]);
    const json = (await request(app).get(`${BASE}/api/history`).expect(200)).body as { months: { month: string; counts: object }[]; retentionDays: number };
    expect(json.months.map((m) => m.month)).to.deep.equal([now.key, last.key, older.key]);
    expect(json.months[1].counts).to.deep.equal({ completed: 2, failed: 1 });
    for (const bad of ['2026-13', '26-01', 'yesterday', '1969-12', '9999-12']) {
      const res = await request(app).get(`${BASE}/api/jobs?month=${bad}`).expect(400);
      expect(res.body.error, bad).to.include('month must be a UTC month as YYYY-MM');
    }
  });
});
