/**
 * The throughput chart's counts on every dialect (issue 15): the leader's per-minute counters give
 * the buckets history gives, a read takes the minutes they hold from them (not from history) and
 * the rest from history, and a started leader writes them.
 */
import { expect } from 'chai';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { THROUGHPUT_EVERY } from '../../lib/maintenance/service.ts';
import type { Jobs } from '../../lib/index.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Finished jobs: `completed` completed and `failed` failed ones, run by a worker; answers their ids. */
async function finish(jobs: Jobs, completed: number, failed: number): Promise<{ ok: string[]; bad: string[] }> {
  const ok = await jobs.enqueueMany(Array.from({ length: completed }, (_, i) => ({ name: 'ok', payload: { i } })));
  const bad = await jobs.enqueueMany(Array.from({ length: failed }, (_, i) => ({ name: 'bad', payload: { i } })));
  await jobs.drain();
  return { ok: ok.map((j) => j.id), bad: bad.map((j) => j.id) };
}

function worker(t: TestDb): Jobs {
  const jobs = t.jobs({ worker: { pollInterval: 50 } });
  jobs.define('ok', async () => 1);
  jobs.define('bad', async () => {
    throw new Error('no');
  }, { maxAttempts: 1 });
  return jobs;
}

/** Move finished jobs' finished_at to `at` (epoch ms). */
async function finishedAt(t: TestDb, ids: string[], at: number): Promise<void> {
  const p = (n: number) => (t.dialect === 'sqlite' ? '?' : `$${n}`);
  for (const id of ids) await t.query(`UPDATE ${t.prefix}history SET finished_at = ${p(1)} WHERE id = ${p(2)}`, [t.dialect === 'sqlite' ? at : new Date(at), id]);
}

async function counters(t: TestDb): Promise<{ start: number; completed: number; failed: number; countedTo: number }[]> {
  const rows = await t.query(`SELECT start_ms, completed, failed, counted_to_ms FROM ${t.prefix}throughput ORDER BY start_ms`);
  return rows.map((r) => ({ start: Number(r.start_ms), completed: Number(r.completed), failed: Number(r.failed), countedTo: Number(r.counted_to_ms) }));
}

/** Until the clock is between 5 and 35 s into a minute: the rounds of the next 20 s see the same open minute. */
async function midMinute(): Promise<void> {
  const into = Date.now() % MINUTE;
  if (into < 5_000 || into > 35_000) await sleep((MINUTE - into + 5_000) % MINUTE);
}

const sum = (buckets: { completed: number; failed: number }[], k: 'completed' | 'failed') => buckets.reduce((n, b) => n + b[k], 0);

forEachDialect('throughput counters', ({ fresh }) => {
  it('a first round counts the last hour per minute (zero minutes too) and the open one so far; reads then sum them and count the rest in history', async () => {
    const t = await fresh();
    const jobs = worker(t);
    const { ok, bad } = await finish(jobs, 6, 2);
    const cancelled = (await jobs.enqueue('ok', {}, { delay: HOUR })).id;
    await jobs.cancel(cancelled);
    await jobs.stop();
    // Mid-minute, well inside the hour and away from its edges, whatever minute the rounds below run in.
    const minute = Math.floor(Date.now() / MINUTE) * MINUTE;
    await finishedAt(t, [ok[0], ok[1], bad[0], cancelled], minute - 30 * MINUTE + 15_000);
    await finishedAt(t, [ok[2], bad[1]], minute - 10 * MINUTE + 15_000);
    await finishedAt(t, [ok[4], ok[5]], minute - 25 * MINUTE + 15_000);
    await finishedAt(t, [ok[3]], minute - 3 * HOUR); // outside the hour

    const fromHistory = await jobs.throughput();
    expect([sum(fromHistory.buckets, 'completed'), sum(fromHistory.buckets, 'failed')]).to.deep.equal([5, 2]);
    await jobs.store.throughputRollup({ keepMs: DAY });
    const rows = await counters(t);
    expect(rows).to.have.length(61);
    expect(rows.every((r, i) => i === 0 || r.start - rows[i - 1].start === MINUTE), 'a row for every minute').to.equal(true);
    const open = rows.at(-1)!;
    expect(open.start).to.be.at.least(minute - MINUTE);
    expect(open.countedTo - open.start, 'the open minute counted until a couple of seconds ago').to.be.within(0, MINUTE - 1);
    expect(rows.slice(0, -1).every((r) => r.countedTo === r.start + MINUTE), 'closed minutes counted to their end').to.equal(true);
    expect(rows.find((r) => r.start === minute - 30 * MINUTE)).to.deep.include({ completed: 2, failed: 1 });
    expect(rows.find((r) => r.start === minute - 10 * MINUTE)).to.deep.include({ completed: 1, failed: 1 });
    expect([sum(rows, 'completed'), sum(rows, 'failed')]).to.deep.equal([5, 2]);

    const fromCounters = await jobs.throughput();
    expect(fromCounters.buckets).to.deep.equal(fromHistory.buckets);
    // A job deleted after its minute was counted stays on the chart: the minute is read from the counters...
    expect(await jobs.delete(ok[0])).to.equal(true);
    const afterDelete = await jobs.throughput();
    expect(afterDelete.buckets.find((b) => b.start === minute - 30 * MINUTE)).to.deep.include({ completed: 2, failed: 1 });
    // ...and this minute from history: a job finished now is on it at once.
    await finish(worker(t), 1, 0);
    expect(sum((await jobs.throughput()).buckets, 'completed')).to.equal(6);
    // Buckets that split minutes are counted in history only (the deleted job is gone there).
    const split = await jobs.throughput({ windowMs: HOUR, bucketMs: 90_000 });
    expect([sum(split.buckets, 'completed'), sum(split.buckets, 'failed')]).to.deep.equal([5, 2]);
    // A window starting mid-counters: its minutes before the first whole one counted come from history.
    const half = await jobs.throughput({ windowMs: 20 * MINUTE, bucketMs: 5 * MINUTE });
    expect([sum(half.buckets, 'completed'), sum(half.buckets, 'failed')]).to.deep.equal([2, 1]);
  });

  it('while a minute is open, each round adds what finished in it since the last: a read takes that from the counters too', async () => {
    const t = await fresh();
    const jobs = worker(t);
    await midMinute();
    const { ok } = await finish(jobs, 2, 1);
    await sleep(2_100); // past the round's settling time
    await jobs.store.throughputRollup({ keepMs: DAY });
    const first = (await counters(t)).at(-1)!;
    expect(first).to.deep.include({ completed: 2, failed: 1 });
    const { ok: more } = await finish(jobs, 1, 0);
    await sleep(2_100);
    await jobs.store.throughputRollup({ keepMs: DAY });
    const added = (await counters(t)).at(-1)!;
    expect(added).to.deep.include({ start: first.start, completed: 3, failed: 1 });
    expect(added.countedTo).to.be.greaterThan(first.countedTo);
    // Deleted since they were counted: still on the chart, so read from the counters, not history.
    for (const id of [...ok, ...more]) expect(await jobs.delete(id)).to.equal(true);
    const now = await jobs.throughput();
    expect([sum(now.buckets, 'completed'), sum(now.buckets, 'failed')]).to.deep.equal([3, 1]);
  });

  it('the next round recounts the minutes just before (a finish committed late), keeps the rest, and forgets counters past keepMs', async () => {
    const t = await fresh();
    const jobs = worker(t);
    const { ok } = await finish(jobs, 3, 0);
    await jobs.stop();
    await midMinute(); // both rounds below in one minute: the second must find none closed since the first
    const minute = Math.floor(Date.now() / MINUTE) * MINUTE;
    await finishedAt(t, ok, minute + 60 * MINUTE); // out of the way for now
    await jobs.store.throughputRollup({ keepMs: DAY });
    expect(sum(await counters(t), 'completed')).to.equal(0);
    // Finishes dated into minutes already counted: three minutes back (recounted), and forty (not).
    await finishedAt(t, [ok[0]], minute - 3 * MINUTE + 15_000);
    await finishedAt(t, [ok[1]], minute - 40 * MINUTE + 15_000);
    await finishedAt(t, [ok[2]], minute - 2 * HOUR);
    await jobs.store.throughputRollup({ keepMs: DAY });
    expect(sum(await counters(t), 'completed'), 'no minute closed since: only what finished since is added').to.equal(0);
    // As if a minute had closed since the last round (the open minute's row not written yet).
    const last = (await counters(t)).at(-1)!.start;
    await t.query(`DELETE FROM ${t.prefix}throughput WHERE start_ms = ${last}`);
    await jobs.store.throughputRollup({ keepMs: 30 * MINUTE });
    const rows = await counters(t);
    expect(rows.find((r) => r.start === minute - 3 * MINUTE)).to.deep.include({ completed: 1 });
    expect(rows[0].start, 'counters older than keepMs forgotten').to.be.at.least(minute - 31 * MINUTE);
    expect(sum(rows, 'completed')).to.equal(1);
    // The forty-minute-old one is now before the counters: history counts it.
    expect(sum((await jobs.throughput()).buckets, 'completed')).to.equal(2);
  });

  it('a started leader counts the closed minutes; a round after a leader-less hour counts afresh', async () => {
    const t = await fresh();
    THROUGHPUT_EVERY.ms = 50; // read when the worker starts
    try {
      const jobs = worker(t);
      const { ok } = await finish(jobs, 2, 0);
      const minute = Math.floor(Date.now() / MINUTE) * MINUTE;
      await finishedAt(t, ok, minute - 5 * MINUTE);
      await t.query(`INSERT INTO ${t.prefix}throughput (start_ms, completed, failed, counted_to_ms) VALUES (${minute - 3 * HOUR}, 7, 7, ${minute - 3 * HOUR + MINUTE})`);
      await jobs.start();
      await until(async () => (await counters(t)).length >= 61, 'the leader to count the last hour');
      const rows = await counters(t);
      expect(rows[0].start, 'the stale counters went').to.be.at.least(minute - 61 * MINUTE);
      expect(rows.find((r) => r.start === minute - 5 * MINUTE)).to.deep.include({ completed: 2, failed: 0 });
    } finally {
      THROUGHPUT_EVERY.ms = 5_000;
    }
  });
});
