/**
 * Store-level conformance: every write on behalf of a running attempt is fenced by (id, token,
 * state = 'running'). A worker whose job was rescued and claimed again by another worker holds a
 * stale token while the row still runs (under the new one): each of its writes must be refused and
 * leave every table as it was. The same writes with the current token apply.
 */
import { expect } from 'chai';
import type { Jobs } from '../../lib/index.ts';
import type { ClaimedJob, Store } from '../../lib/driver/store.ts';
import { forEachDialect, type TestDb } from '../helpers/dialects.ts';
import { claimOne, fenced, insertOnJobTx, liveRow, ph, reclaimed, snapshot, storeOf } from './helpers.ts';

/** A fenced write made on behalf of one attempt; true when the store applied it. */
type Write = (t: TestDb, store: Store, job: ClaimedJob) => Promise<boolean>;

const error = { message: 'stale outcome', name: 'Error' };

/** The writes that end an attempt (each leaves the row no longer running under the token). */
const ENDING: Record<string, Write> = {
  complete: async (_t, store, job) => (await store.jobCompleteMany([{ ...fenced(job), resultJson: '"stale"' }])).has(job.id),
  'fail (retry later)': async (_t, store, job) =>
    (await store.jobFailMany([{ ...fenced(job), attempt: job.attempts, startedAt: job.startedAt, error, retryDelayMs: 100 }])).has(job.id),
  'fail (for good)': async (_t, store, job) =>
    (await store.jobFailMany([{ ...fenced(job), attempt: job.attempts, startedAt: job.startedAt, error, retryDelayMs: null }])).has(job.id),
  'release (refund)': async (_t, store, job) => (await store.jobReleaseMany([{ ...fenced(job), delayMs: 0, refund: true }])).has(job.id),
  'release (snooze)': async (_t, store, job) => (await store.jobReleaseMany([{ ...fenced(job), delayMs: 5000, refund: false }])).has(job.id),
  runTransactional: async (t, store, job) => {
    const out = await store.jobCompleteInTransaction({
      item: fenced(job),
      work: (tx) => insertOnJobTx(t, tx, 'effects', [job.id, job.token]),
      encode: () => '"transactional"',
      beforeComplete: () => undefined,
      takeLogs: () => ({ lines: null, progress: null }),
    });
    return out.applied;
  },
};

/** The writes a running attempt makes along the way. */
const ALONG: Record<string, Write> = {
  saveProgress: async (_t, store, job) => (await store.jobProgressMany([{ ...fenced(job), progress: 99, message: `by ${job.token}` }])).has(job.id),
  appendLogs: async (_t, store, job) =>
    (await store.logAppendMany([{ ...fenced(job), attempt: job.attempts, lines: [{ at: Date.now(), message: `by ${job.token}` }] }])).has(job.id),
  saveCheckpoint: (_t, store, job) => store.jobCheckpoint({ ...fenced(job), stateJson: JSON.stringify({ by: job.token }) }),
};

const ALL: Record<string, Write> = { ...ALONG, ...ENDING };

/** Make every write with `job`'s token and check each is refused and changes nothing about the job or the effects table. */
async function expectAllRefused(t: TestDb, store: Store, job: ClaimedJob, why: string): Promise<void> {
  const before = await snapshot(t, job.id);
  const effectsBefore = await effects(t, job.id);
  for (const [name, write] of Object.entries(ALL)) {
    expect(await write(t, store, job), `${name} with ${why}: refused`).to.equal(false);
    expect(await snapshot(t, job.id), `${name} with ${why}: the job's rows unchanged`).to.deep.equal(before);
    expect(await effects(t, job.id), `${name} with ${why}: the transactional work rolled back`).to.deep.equal(effectsBefore);
  }
}

async function effects(t: TestDb, id: string): Promise<unknown[]> {
  return t.query(`SELECT token FROM ${t.prefix}effects WHERE job_id = ${ph(t, 1)}`, [id]);
}

async function setUp(t: TestDb): Promise<{ jobs: Jobs; store: Store }> {
  const out = await storeOf(t);
  const text = t.dialect === 'mssql' ? 'NVARCHAR(100)' : t.dialect === 'mysql' ? 'VARCHAR(100)' : 'TEXT';
  await t.query(`CREATE TABLE ${t.prefix}effects (job_id ${text} NOT NULL, token ${text} NOT NULL)`);
  return out;
}

forEachDialect('store: fenced writes', ({ fresh }) => {
  it('refuses every write with a stale token while the job runs under a new one, and changes nothing', async () => {
    const t = await fresh();
    const { jobs, store } = await setUp(t);
    const { id, stale, current } = await reclaimed(jobs, 'fenced');
    const running = await liveRow(t, id);
    expect(running).to.include({ state: 'running', worker_id: 'worker-b' });
    await expectAllRefused(t, store, stale, 'the stale token');
    // The row still runs under B's claim; B's writes along the way apply.
    expect(await liveRow(t, id)).to.deep.equal(running);
    for (const [name, write] of Object.entries(ALONG)) expect(await write(t, store, current), `${name} with the current token`).to.equal(true);
    const after = await jobs.get(id);
    expect(after).to.include({ state: 'running', progress: 99, progressMessage: `by ${current.token}`, attempts: 2 });
    expect(after!.checkpoint).to.deep.equal({ by: current.token });
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal([`by ${current.token}`]);
  });

  it('a batch of progress items past one round trip (4 × 3 MB: one statement a round trip, a stale one among them): each answered as applied or not, in its own place', async () => {
    const t = await fresh();
    const { jobs, store } = await setUp(t);
    const { id: staleId, stale } = await reclaimed(jobs, 'fenced');
    const others: ClaimedJob[] = [];
    for (const name of ['p1', 'p2', 'p3']) {
      await jobs.enqueue(name, {});
      others.push(await claimOne(store, name, 'worker-c'));
    }
    const big = (job: ClaimedJob) => ({ ...fenced(job), progress: 10, message: job.id.slice(-1).repeat(3_000_000) });
    const applied = await store.jobProgressMany([...others.map(big), big(stale)]);
    expect([...applied].sort()).to.deep.equal(others.map((j) => j.id).sort());
    for (const job of others) expect((await jobs.get(job.id))?.progressMessage?.length).to.equal(3_000_000);
    expect((await jobs.get(staleId))?.progressMessage ?? null).to.equal(null);
  });

  for (const [name, write] of Object.entries(ENDING)) {
    it(`${name}: refused with the stale token, applied with the current one`, async function () {
      const t = await fresh();
      const { jobs, store } = await setUp(t);
      const { id, stale, current } = await reclaimed(jobs, 'fenced');
      const before = await snapshot(t, id);
      expect(await write(t, store, stale), 'stale token').to.equal(false);
      expect(await snapshot(t, id)).to.deep.equal(before);
      expect(await write(t, store, current), 'current token').to.equal(true);
      const after = await snapshot(t, id);
      const moved = after.jobs.length === 0 ? after.history : after.jobs;
      expect(moved, 'the row changed').to.have.length(1);
      expect(moved[0]).to.include({ state: ENDED[name] });
      if (name === 'runTransactional') expect((await effects(t, id)).map((r) => (r as { token: string }).token)).to.deep.equal([current.token]);
      // Once ended, the current token is stale too.
      await expectAllRefused(t, store, current, 'the token of an ended attempt');
    });
  }

  it('a cancelled running job cannot be written with its token, before or after it is retried', async () => {
    const t = await fresh();
    const { jobs, store } = await setUp(t);
    const { id } = await jobs.enqueue('cancelled', {});
    const job = (await store.jobClaim({ workerId: 'worker-a', names: ['cancelled'], limit: 1 }))[0];
    expect(await jobs.cancel(id)).to.equal(true);
    await expectAllRefused(t, store, job, 'the token of a cancelled job');
    expect(await jobs.get(id)).to.include({ state: 'cancelled' });
    expect(await jobs.retry(id)).to.equal(true);
    expect(await liveRow(t, id)).to.include({ state: 'pending' });
    await expectAllRefused(t, store, job, 'the token of a cancelled job, now pending again');
  });
});

/** Where each ending write leaves the job. */
const ENDED: Record<string, string> = {
  complete: 'completed',
  'fail (retry later)': 'pending',
  'fail (for good)': 'failed',
  'release (refund)': 'pending',
  'release (snooze)': 'pending',
  runTransactional: 'completed',
};
