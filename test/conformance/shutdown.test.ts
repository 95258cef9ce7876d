/** stop()/close() while a job finishes: every outcome is written before they return, or left for the sweeper; never hung. */
import { expect } from 'chai';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { lockName } from '../../lib/driver/mysql/store.ts';
import type { JobContext } from '../../lib/index.ts';
import { MYSQL_URL, PG_URL, forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';

/** A started worker running one job whose handler waits for `release()`, then logs a line and returns 'done'. */
async function heldJob(t: TestDb) {
  const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  let started = false;
  jobs.define('held', async (_p, ctx) => {
    started = true;
    await hold;
    ctx.log('finishing'); // the outcome is written after this line's flush
    return 'done';
  });
  await jobs.start();
  const { id } = await jobs.enqueue('held', {});
  await until(() => started, 'the handler to start');
  return { jobs, id, release };
}

/** Another session holding a lock on one of the test's tables until commit(). */
async function lockTable(t: TestDb, table: string): Promise<{ commit(): Promise<void> }> {
  const client = await (t.db as pg.Pool).connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${t.prefix}${table} IN SHARE MODE`); // readers pass, writers wait
  return {
    commit: async () => {
      await client.query('COMMIT');
      client.release();
    },
  };
}

/** A statement of this test's that waits for a lock, its text containing `fragment`. */
async function waitingStatement(t: TestDb, fragment: string): Promise<boolean> {
  const rows = await t.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0`, [fragment]);
  return rows.length > 0;
}

function renameTable(t: TestDb, from: string, to: string): string {
  return t.dialect === 'mssql' ? `EXEC sp_rename '${t.prefix}${from}', '${t.prefix}${to}'` : `ALTER TABLE ${t.prefix}${from} RENAME TO ${t.prefix}${to}`;
}

/** Another process's migration under way: its lock held by a session of the test's own until release(). */
async function holdMigrationLock(t: TestDb): Promise<{ release(): Promise<void> }> {
  if (t.dialect === 'mysql') {
    const c = await mysql.createConnection({ uri: MYSQL_URL });
    await c.query('SELECT GET_LOCK(?, 5)', [lockName(`${t.prefix}migrate`)]);
    return { release: () => c.end() };
  }
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query('BEGIN');
  await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${t.prefix}migrate`]);
  return { release: () => c.end() };
}

forEachDialect('shutdown', ({ fresh }) => {
  it('stop() returns only once the outcome of a job whose handler just returned is written (it first waits for its log flush)', async function () {
    const t = await fresh();
    // Written with PostgreSQL's LOCK TABLE and pg_stat_activity, on a pg pool (SQLite: a table lock from another session would block its single thread).
    if (t.driver !== 'pg') return this.skip();
    const { jobs, id, release } = await heldJob(t);
    const logs = await lockTable(t, 'logs');
    const history = await lockTable(t, 'history');
    release();
    // The handler has returned; its outcome waits for its log line, whose INSERT waits for our lock.
    await until(() => waitingStatement(t, `INSERT INTO ${t.prefix}logs`), 'the log flush to wait for the lock');
    let stopped = false;
    const stopping = jobs.stop({ timeout: 10_000 }).then(() => (stopped = true));
    await logs.commit();
    // Now the completion itself waits (for the history lock): stop() must wait for it too.
    await until(() => waitingStatement(t, `INSERT INTO ${t.prefix}history`), 'the completion to wait for the lock');
    await Promise.race([stopping, sleep(300)]); // room for a stop() that does not wait to return
    expect(stopped, 'stop() returned with the outcome unwritten').to.equal(false);
    await history.commit();
    await stopping;
    const job = await jobs.get(id);
    expect(job).to.include({ state: 'completed', result: 'done', attempts: 1 });
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal(['finishing']);
  });

  it('close() returns within its timeout when an outcome cannot be written; the job stays running under its attempt and is rescued', async () => {
    const t = await fresh();
    const { jobs, id, release } = await heldJob(t);
    const errors: string[] = [];
    jobs.on('error', (err) => errors.push(String(err)));
    const before = await t.query<{ token: string }>(`SELECT token FROM ${t.prefix}jobs WHERE id = ${t.dialect === 'sqlite' ? '?' : '$1'}`, [id]);
    // The completion moves the job into history: with that table away, every try fails.
    await t.query(renameTable(t, 'history', 'history_away'));
    release();
    let closed = false;
    const closing = jobs.close({ timeout: 300 }).then(() => (closed = true));
    await until(() => closed, 'close() to return although the outcome cannot be written', 5000);
    await closing;
    expect(errors.some((e) => e.includes(`the complete of job ${id} was not written before the worker stopped`)), errors.join('\n')).to.equal(true);
    await t.query(renameTable(t, 'history_away', 'history'));
    // Nothing lost: still running under the same attempt and token, so a live worker's sweeper rescues it.
    const after = await t.query<{ state: string; token: string; attempts: number }>(
      `SELECT state, token, attempts FROM ${t.prefix}jobs WHERE id = ${t.dialect === 'sqlite' ? '?' : '$1'}`,
      [id],
    );
    expect(after).to.deep.equal([{ state: 'running', token: before[0].token, attempts: 1 }]);
    const next = t.jobs({ worker: { pollInterval: 50, heartbeatInterval: 100, stallTimeout: 500 } });
    next.define('held', async () => 'again');
    await next.start();
    await until(async () => (await next.get(id))?.state === 'completed', 'the stranded job to be rescued and run again', 10_000);
    expect(await next.get(id)).to.include({ state: 'completed', result: 'again', attempts: 2 });
  });

  it('a shutdownTimeout meaning "for ever" (2^31 - 1 ms) waits for the running job: stop() does not give up at once', async () => {
    const t = await fresh();
    const errors: unknown[] = [];
    let started = false;
    let finished = false;
    const jobs = t.jobs({ worker: { pollInterval: 50, shutdownTimeout: 2 ** 31 - 1 } }).define('slow', async () => {
      started = true;
      await sleep(400);
      finished = true;
    });
    jobs.on('error', (err) => void errors.push(err));
    await jobs.start();
    const { id } = await jobs.enqueue('slow', {});
    // The handler, not the row: a row is running from its claim's commit, before the worker has the
    // claim's answer, and a stop() then gives the claimed job back instead of waiting for it.
    await until(() => started, 'the handler to start');
    await jobs.stop();
    expect(finished, 'stop() returned before the job finished').to.equal(true);
    expect(errors).to.deep.equal([]);
    expect((await jobs.get(id))?.state).to.equal('completed');
  });

  it('stop({ timeout }) refuses a timeout that is not a non-negative integer, naming the field, and stops nothing', async () => {
    const t = await fresh();
    let ran = 0;
    const jobs = t.jobs({ worker: { pollInterval: 50 } }).define('after', () => void ran++);
    await jobs.start();
    for (const bad of [-1, 1.5, Number.NaN, '100']) {
      const err = await jobs.stop({ timeout: bad as number }).then(() => null, (e: Error) => e);
      expect(err?.message, `timeout ${String(bad)}`).to.match(/^stop: timeout must be an integer from 0 to \d+; got /);
    }
    await jobs.enqueue('after', {});
    await until(() => ran === 1, 'the worker, still running, to run a job');
  });

  it('close() called again (twice at once, then once more) resolves each time, as the first does', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } }).define('any', () => undefined);
    await jobs.start();
    const both = await Promise.allSettled([jobs.close(), jobs.close()]);
    expect(both.map((r) => r.status)).to.deep.equal(['fulfilled', 'fulfilled']);
    await jobs.close();
  });

  it('after close(), every call either works (on the app\'s own handle) or fails saying the instance is closed, never with a bare driver message', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } }).define('any', () => undefined);
    const { id } = await jobs.enqueue('any', {});
    await jobs.close();
    const calls: [string, () => Promise<unknown>][] = [
      ['get', () => jobs.get(id)],
      ['list', () => jobs.list({})],
      ['status', () => jobs.status()],
      ['attempts', () => jobs.attempts(id)],
      ['cancel', () => jobs.cancel(id)],
      ['queues.pause', () => jobs.queues.pause('q')],
      ['schedules.list', () => jobs.schedules.list()],
      ['locks.tryAcquire', () => jobs.locks.tryAcquire('report')],
    ];
    let refused = 0;
    for (const [name, call] of calls) {
      const err = await call().then(() => null, (e: Error) => e);
      if (!err) continue;
      refused++;
      expect(err.message, name).to.match(/^sqljobs: this instance was closed \(close\(\)\), and the connections it opened with it: /);
      expect(err.message, name).to.include('(the database driver said: ');
    }
    expect(refused, 'calls needing the connections the instance opened').to.be.greaterThan(0);
    expect(await jobs.enqueue('any', {}).then(() => 'written', (e: Error) => e.message), 'enqueue on the app\'s own handle').to.equal('written');
    const started = await jobs.start().then(() => null, (e: Error) => e.message);
    expect(started, 'start() after close()').to.match(/^sqljobs: start\(\) after close\(\): this instance was closed/);
  });

  it('a handler that outlives close() (it ignores its signal): its logs and progress are dropped unsaid, its saveCheckpoint says the instance is closed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, logFlushInterval: 20 } });
    const errors: string[] = [];
    jobs.on('error', (err) => errors.push((err as Error).message));
    let checkpoint: string | null = null;
    let started = false;
    const done = new Promise<void>((resolve) => {
      jobs.define('chatty', async (_p: unknown, ctx: JobContext) => {
        started = true;
        for (let i = 0; i < 20; i++) {
          ctx.log(`line ${i}`);
          ctx.progress(i * 5);
          await sleep(25);
        }
        checkpoint = await ctx.saveCheckpoint({ at: 20 }).then(() => 'saved', (e: Error) => e.message);
        resolve();
      });
    });
    await jobs.enqueue('chatty', {});
    await jobs.start();
    await until(() => started, 'the handler to start');
    await jobs.close({ timeout: 50 });
    const afterClose = errors.length;
    await done;
    await sleep(100);
    expect(errors.slice(afterClose), 'errors after close()').to.deep.equal([]);
    expect(checkpoint).to.match(/^sqljobs: this instance was closed \(close\(\)\)/);
  });

  it('close() while start() is under way (0, 5 and 20 ms in): both settle, start() without an error (the close overtook it)', async () => {
    for (const ms of [0, 5, 20]) {
      // A database of its own each time: each start migrates.
      const t = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 50 } }).define('any', () => undefined);
      const starting = jobs.start().then(() => 'started', (err: Error) => err.message);
      await new Promise((r) => setTimeout(r, ms));
      await jobs.close();
      expect(await starting, `close() ${ms} ms after start()`).to.equal('started');
    }
  });

  it('close() while start() is under way on a migrated schema, with a leader and a schedule (0 to 50 ms in): start() settles without an error', async () => {
    const t = await fresh();
    await t.jobs({ worker: false }).migrate();
    for (const ms of [0, 1, 2, 5, 10, 20, 50]) {
      const jobs = t.jobs({ leader: { leaseMs: 1000 }, worker: { pollInterval: 50 } }).define('any', () => undefined);
      jobs.recurring('every-minute', '* * * * *', {}, { name: 'any' });
      const errors: string[] = [];
      jobs.on('error', (e) => errors.push((e as Error).message));
      const starting = jobs.start().then(() => 'started', (err: Error) => err.message);
      await new Promise((r) => setTimeout(r, ms));
      await jobs.close();
      expect(await starting, `close() ${ms} ms after start()`).to.equal('started');
      expect(errors, `errors reported, close() ${ms} ms after start()`).to.deep.equal([]);
    }
  });

  it('close() while start() waits for another process\'s migration: returns at once (nothing of its own to finish), start() without an error, none reported', async function () {
    const t = await fresh();
    if (t.dialect !== 'postgres' && t.dialect !== 'mysql') return this.skip(); // SQLite migrates synchronously; SQL Server: not live here
    await t.jobs({ worker: false }).migrate();
    const holder = await holdMigrationLock(t);
    try {
      const jobs = t.jobs({ worker: { pollInterval: 50 } }).define('any', () => undefined);
      const errors: string[] = [];
      jobs.on('error', (e) => errors.push((e as Error).message));
      const starting = jobs.start().then(() => 'started', (err: Error) => err.message);
      await sleep(300);
      const t0 = Date.now();
      await jobs.close();
      expect(Date.now() - t0, 'close() ms').to.be.below(2_000);
      expect(await starting).to.equal('started');
      expect(errors).to.deep.equal([]);
    } finally {
      await holder.release();
    }
  });

  it('close() whose connections refused to end: every call made meanwhile fails with it, and a later close() tries again', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } }).define('any', () => undefined);
    await jobs.start();
    const store = jobs.store as unknown as { close(): Promise<void> };
    const real = store.close.bind(store);
    let refusals = 1;
    store.close = async () => {
      await new Promise((r) => setTimeout(r, 50));
      if (refusals-- > 0) throw new Error('refused to end');
      return real();
    };
    const both = await Promise.allSettled([jobs.close(), jobs.close()]);
    expect(both.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'fulfilled'))).to.deep.equal(['refused to end', 'refused to end']);
    await jobs.close();
    expect(refusals, 'the store was asked to close again').to.equal(-1);
  });

  it('stop() waits for a heartbeat under way, so the worker row does not come back after its removal', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { heartbeatInterval: 100, stallTimeout: 300 } });
    jobs.define('noop', async () => undefined);
    await jobs.start();
    const id = jobs.workerId!;
    const beat = jobs.store.workerHeartbeat.bind(jobs.store);
    let slowBeats = 0;
    jobs.store.workerHeartbeat = async (w) => {
      slowBeats++;
      await sleep(400); // the database is slow to answer this one
      return beat(w);
    };
    await until(() => slowBeats > 0, 'a heartbeat under way');
    await jobs.stop();
    await sleep(600);
    const { workers } = await t.jobs({ mode: 'producer' }).status();
    expect(workers.map((w) => w.id), 'the stopped worker is not listed').to.not.include(id);
  });
});

// The writer's pauses are the same on every database: one is enough to show that stop ends them all.
forEachDialect('shutdown: writes retrying at once', ({ fresh }) => {
  it('close() past its timeout ends every retry pause under way (a completion and a log write both meeting contention), not only the last begun', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 2, pollInterval: 60_000, logFlushInterval: 20 } });
    const tries = { complete: 0, logs: 0 };
    // Contention: outcomes retry it while the worker runs, log writes a few times per flush.
    const busy = (kind: keyof typeof tries) => async (): Promise<Set<string>> => {
      tries[kind]++;
      throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    };
    jobs.store.jobCompleteMany = busy('complete');
    jobs.store.logAppendMany = busy('logs');
    jobs.define('quick', async () => 'done');
    jobs.define('chatty', async (_p, ctx) => {
      while (!ctx.signal.aborted) {
        ctx.log('still here');
        await sleep(30);
      }
    });
    jobs.on('error', () => undefined);
    await jobs.start();
    await jobs.enqueue('chatty', {});
    await jobs.enqueue('quick', {});
    // From its sixth try the completion pauses 5 s; log writes pause (50 ms doubling) all along.
    await until(() => tries.complete >= 6, 'the completion to retry with long pauses', 20_000);
    const logTries = tries.logs;
    await until(() => tries.logs > logTries, 'a log write to be retrying too');
    let closed = false;
    const closing = jobs.close({ timeout: 200 }).then(() => (closed = true));
    await until(() => closed, 'close() to return soon after its timeout', 1_500);
    await closing;
  });
}, ['sqlite']);
