/**
 * A claim the database rolls back for contention (a deadlock victim, a lock wait timeout) is tried
 * again at once, not at the next poll: with a poll of a minute, a job would otherwise wait that
 * long (seen on MariaDB: a claim chosen as the victim of a deadlock with a completion).
 *
 * Log lines and progress are best effort, but a write rolled back for contention is written
 * again (a MariaDB batch is one transaction: one deadlock dropped every line of a flush).
 */
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { MYSQL_URL, PG_URL, forEachDialect, until, type TestDb } from '../helpers/dialects.ts';
import { createJobs, type JobContext, type Jobs, type JobsOptions } from '../../lib/index.ts';
import { innodbTransactions } from '../helpers/innodb.ts';

/** What each database answers a deadlock victim with (SQLite's busy lock for SQLite). */
function contentionError(dialect: TestDb['dialect']): Error {
  const err = new Error('deadlock: the write was rolled back');
  if (dialect === 'postgres') return Object.assign(err, { code: '40P01' });
  if (dialect === 'mysql') return Object.assign(err, { code: 'ER_LOCK_DEADLOCK', errno: 1213 });
  if (dialect === 'mssql') return Object.assign(err, { number: 1205 });
  return Object.assign(err, { code: 'SQLITE_BUSY' });
}

/** Gates for a handler: `mayGo` opens at `go()`, `released` at `release()`. */
function gates() {
  let go!: () => void;
  let release!: () => void;
  const mayGo = new Promise<void>((r) => (go = r));
  const released = new Promise<void>((r) => (release = r));
  return { go, release, mayGo, released };
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
    const g = gates();
    jobs.define('chatty', async (_p, ctx: JobContext) => {
      for (let i = 0; i < 50; i++) ctx.log(`line ${i}`);
      ctx.progress(40, 'two fifths');
      await g.released;
    });
    const refusals = refuseWrites(t, jobs.store, 2);
    await jobs.start();
    const { id } = await jobs.enqueue('chatty', {});
    await until(async () => (await jobs.get(id))?.progress === 40, 'the progress, after two refusals');
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal(Array.from({ length: 50 }, (_, i) => `line ${i}`));
    g.release();
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

/** Another session holding one job's row locked until the function returned is called. */
async function lockJobRow(t: TestDb, id: string): Promise<() => Promise<void>> {
  if (t.dialect === 'postgres') {
    const c = await (t.db as pg.Pool).connect();
    await c.query('BEGIN');
    await c.query(`SELECT id FROM ${t.prefix}jobs WHERE id = $1 FOR UPDATE`, [id]);
    return async () => {
      await c.query('ROLLBACK');
      c.release();
    };
  }
  const c = await mysql.createConnection({ uri: MYSQL_URL });
  await c.query('START TRANSACTION');
  await c.query(`SELECT id FROM ${t.prefix}jobs WHERE id = ? FOR UPDATE`, [id]);
  return async () => {
    await c.query('ROLLBACK');
    await c.end();
  };
}

/** Whether a statement of the test's tables waits for a row lock now. */
async function waitsForLock(t: TestDb): Promise<boolean> {
  if (t.dialect === 'postgres') {
    return (await t.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0`, [`${t.prefix}jobs`])).length > 0;
  }
  return (await innodbTransactions((text) => t.query(text))).some((trx) => trx.status.includes('LOCK WAIT') && trx.status.includes(`${t.prefix}jobs`));
}

/** Jobs whose connections wait at most 1 s for a lock (PostgreSQL's lock_timeout, MariaDB's innodb_lock_wait_timeout), and how to undo that. */
async function withShortLockWaits(t: TestDb, opts: Omit<JobsOptions, 'db'>): Promise<{ jobs: Jobs; undo(): Promise<void> }> {
  if (t.dialect === 'postgres') {
    const pool = new pg.Pool({ connectionString: PG_URL, options: '-c lock_timeout=1000' });
    pool.on('error', () => undefined);
    const jobs = createJobs({ db: pool, tablePrefix: t.prefix, ...opts });
    return { jobs, undo: async () => (await jobs.close(), await pool.end()) };
  }
  // New connections take the global value: the library's open after this.
  const [{ was }] = await t.query<{ was: number }>('SELECT @@GLOBAL.innodb_lock_wait_timeout AS was');
  await t.query('SET GLOBAL innodb_lock_wait_timeout = 1');
  return { jobs: t.jobs(opts), undo: async () => void (await t.query(`SET GLOBAL innodb_lock_wait_timeout = ${Number(was)}`)) };
}

forEachDialect('faults: another session holding one job\'s row locked', ({ fresh }) => {
  it('costs only that job its progress: the other progress of the same flush is stored while the lock is held', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const { jobs, undo } = await withShortLockWaits(t, { worker: { concurrency: 2, pollInterval: 60_000, logFlushInterval: 100 } });
    try {
      const g = gates();
      jobs.on('error', () => undefined);
      jobs.define('report', async (_p, ctx: JobContext) => {
        await g.mayGo;
        ctx.progress(50, 'half');
        await g.released;
      });
      await jobs.start();
      const [locked, free] = [await jobs.enqueue('report', {}), await jobs.enqueue('report', {})];
      await until(async () => (await jobs.get(locked.id))?.state === 'running' && (await jobs.get(free.id))?.state === 'running', 'both to run');
      const unlock = await lockJobRow(t, locked.id);
      try {
        g.go(); // both report in the same tick: one flush, one statement or transaction for the two
        await until(async () => (await jobs.get(free.id))?.progress === 50, 'the other job\'s progress while the first one\'s row is locked', 8_000);
      } finally {
        await unlock();
      }
      g.release();
      await until(async () => (await jobs.get(free.id))?.state === 'completed' && (await jobs.get(locked.id))?.state === 'completed', 'both to complete');
      expect((await jobs.get(free.id))!.progressMessage).to.equal('half');
    } finally {
      await undo();
    }
  });

  it("does not hold up another job's outcome: a job that logs and returns completes while the first job's progress waits for the lock", async function () {
    this.timeout(30_000);
    const t = await fresh();
    // The server's own lock wait (PostgreSQL: none; MariaDB: 50 s): the progress write waits all along.
    const jobs = t.jobs({ worker: { concurrency: 2, pollInterval: 60_000, logFlushInterval: 50 } });
    const g = gates();
    jobs.define('slow', async (_p, ctx: JobContext) => {
      await g.mayGo;
      ctx.progress(50, 'half');
      await g.released;
    });
    jobs.define('quick', async (_p, ctx: JobContext) => {
      ctx.log('a line of the quick job');
      return 'done';
    });
    await jobs.start();
    const slow = await jobs.enqueue('slow', {});
    await until(async () => (await jobs.get(slow.id))?.state === 'running', 'the slow job to run');
    const unlock = await lockJobRow(t, slow.id);
    try {
      g.go();
      await until(() => waitsForLock(t), 'its progress write to wait for the lock');
      const quick = await jobs.enqueue('quick', {});
      await until(async () => (await jobs.get(quick.id))?.state === 'completed', 'the quick job to complete while the lock is held', 8_000);
      expect((await jobs.logs(quick.id)).map((l) => l.message)).to.deep.equal(['a line of the quick job']);
    } finally {
      await unlock();
    }
    g.release();
    await until(async () => (await jobs.get(slow.id))?.state === 'completed', 'the slow job to complete');
    expect(await jobs.get(slow.id)).to.include({ progress: 50, progressMessage: 'half' });
  });
}, ['postgres', 'mysql']);
