/**
 * A claim the database rolls back for contention (a deadlock victim, a lock wait timeout) is tried
 * again at once, not at the next poll: with a poll of a minute, a job would otherwise wait that
 * long (seen on MariaDB: a claim chosen as the victim of a deadlock with a completion).
 *
 * Log lines and progress are best effort, but a write rolled back for contention is written
 * again (a MariaDB batch is one transaction: one deadlock dropped every line of a flush).
 */
import { expect } from 'chai';
import { forEachDialect, until, type TestDb } from '../helpers/dialects.ts';
import type { JobContext } from '../../lib/index.ts';

/** What each database answers a deadlock victim with (SQLite's busy lock for SQLite). */
function contentionError(dialect: TestDb['dialect']): Error {
  const err = new Error('deadlock: the write was rolled back');
  if (dialect === 'postgres') return Object.assign(err, { code: '40P01' });
  if (dialect === 'mysql') return Object.assign(err, { code: 'ER_LOCK_DEADLOCK', errno: 1213 });
  if (dialect === 'mssql') return Object.assign(err, { number: 1205 });
  return Object.assign(err, { code: 'SQLITE_BUSY' });
}

forEachDialect('faults: a claim rolled back for contention', ({ fresh }) => {
  it('is tried again within milliseconds, not at the next poll (60 s)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const errors: unknown[] = [];
    jobs.on('error', (err) => void errors.push(err));
    let ran = 0;
    jobs.define('x', async () => void ran++);
    await jobs.start();
    const store = jobs.store;
    const claim = store.jobClaim.bind(store);
    let refusals = 1;
    store.jobClaim = async (req) => {
      if (refusals-- > 0) throw Object.assign(new Error('Deadlock found when trying to get lock; try restarting transaction'), { code: 'ER_LOCK_DEADLOCK', errno: 1213 });
      return claim(req);
    };
    await jobs.enqueue('x', {});
    await until(() => ran === 1, 'the job to run after the refused claim', 2_000);
    expect(errors, 'the refusal is reported').to.have.length(1);
    await jobs.stop();
  });
});

forEachDialect('faults: a log or progress write rolled back for contention', ({ fresh }) => {
  /** The store's log and progress writes, each refused `times` times as a deadlock victim before reaching the database. */
  function refuseWrites(t: TestDb, store: { logAppendMany: (...a: never[]) => Promise<Set<string>>; jobProgressMany: (...a: never[]) => Promise<Set<string>> }, times: number): { refused: number } {
    const count = { refused: 0 };
    for (const name of ['logAppendMany', 'jobProgressMany'] as const) {
      const write = store[name].bind(store) as (...a: never[]) => Promise<Set<string>>;
      let left = times;
      store[name] = async (...args: never[]) => {
        if (left-- > 0) {
          count.refused++;
          throw contentionError(t.dialect);
        }
        return write(...args);
      };
    }
    return count;
  }

  it('is written again: every line once and in order, and the progress, while running and in history', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, logFlushInterval: 20 } });
    const errors: unknown[] = [];
    jobs.on('error', (err) => void errors.push(err));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('chatty', async (_p, ctx: JobContext) => {
      for (let i = 0; i < 50; i++) ctx.log(`line ${i}`);
      ctx.progress(40, 'two fifths');
      await gate;
    });
    const refusals = refuseWrites(t, jobs.store, 2);
    await jobs.start();
    const { id } = await jobs.enqueue('chatty', {});
    await until(async () => (await jobs.get(id))?.progress === 40, 'the progress, after two refusals');
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal(Array.from({ length: 50 }, (_, i) => `line ${i}`));
    release();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'completion');
    expect((await jobs.get(id))!.progressMessage).to.equal('two fifths');
    expect((await jobs.logs(id)).map((l) => l.message), 'in history: each line once').to.have.length(50);
    expect(refusals.refused).to.equal(4);
    expect(errors, 'each refusal is reported').to.have.length(4);
    await jobs.stop();
  });

  it('that never ends is dropped after a few tries, and the job still completes', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, logFlushInterval: 20 } });
    const errors: unknown[] = [];
    jobs.on('error', (err) => void errors.push(err));
    jobs.define('chatty', async (_p, ctx: JobContext) => {
      ctx.log('never stored');
    });
    refuseWrites(t, jobs.store, Infinity);
    await jobs.start();
    const { id } = await jobs.enqueue('chatty', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'completion', 10_000);
    expect(await jobs.logs(id)).to.deep.equal([]);
    expect(errors.length, 'tried more than once, a bounded number of times').to.be.within(2, 10);
    await jobs.stop();
  });
});
