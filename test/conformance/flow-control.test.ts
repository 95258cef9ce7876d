/**
 * Flow control (issue 14), the enqueue side: uniqueness (unique: { key, forMs, states }), debounce
 * and dead letters, through the public API on every dialect. Concurrent enqueues race on two
 * instances with their own connections.
 */
import { expect } from 'chai';
import type Database from 'better-sqlite3';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import type { ConnectionPool as MssqlPool } from 'mssql';
import type { DatabasePool } from 'slonik';
import { JobValidationError, type JobContext, type Jobs } from '../../lib/index.ts';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';

const count = async (t: { query<T>(sql: string): Promise<T[]>; prefix: string }, table: string, where = '1 = 1') =>
  Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}${table} WHERE ${where}`))[0].n);

/** Jobs whose 'sync' runs on the default queue and, when `fails()` says so, fails for good at once, copied to sync-dlq. */
function failingSync(t: TestDb, fails: () => boolean = () => true): Jobs {
  const jobs = t.jobs({ worker: { queues: ['default'] } });
  jobs.define('sync', async () => {
    if (fails()) throw new Error('down');
  }, { deadLetter: 'sync-dlq', maxAttempts: 1 });
  return jobs;
}

type AppTx = NonNullable<NonNullable<Parameters<Jobs['commitReserved']>[1]>['tx']>;

class RolledBack extends Error {}

/** Run `fn` in a transaction of the app's own driver, as an app would, then commit it or roll it back. */
async function inAppTx<T>(t: TestDb, end: 'COMMIT' | 'ROLLBACK', fn: (tx: AppTx) => Promise<T>): Promise<T> {
  if (t.driver === 'slonik') {
    let out!: T;
    // slonik commits when the handler returns and rolls back when it throws.
    await (t.db as DatabasePool).transaction(async (tx) => {
      out = await fn(tx as never);
      if (end === 'ROLLBACK') throw new RolledBack();
    }).catch((err: unknown) => {
      if (!(err instanceof RolledBack)) throw err;
    });
    return out;
  }
  if (t.driver === 'mssql') {
    const tx = (t.db as MssqlPool).transaction();
    await tx.begin();
    try {
      return await fn(tx as never);
    } finally {
      await (end === 'COMMIT' ? tx.commit() : tx.rollback());
    }
  }
  if (t.driver === 'better-sqlite3') {
    const db = t.db as Database.Database;
    db.exec('BEGIN');
    try {
      return await fn(db as never);
    } finally {
      db.exec(end);
    }
  }
  const conn: { query(sql: string): Promise<unknown>; release(): void } =
    t.driver === 'pg' ? await (t.db as pg.Pool).connect() : await (t.db as mysql.Pool).getConnection();
  await conn.query(t.driver === 'pg' ? 'BEGIN' : 'START TRANSACTION');
  try {
    return await fn(conn as never);
  } finally {
    await conn.query(end);
    conn.release();
  }
}

forEachDialect('flow control: uniqueness, debounce, dead letters', ({ fresh }) => {
  it('unique: one live job per key; 20 concurrent enqueues from two instances make one job', async () => {
    const t = await fresh();
    const a = t.jobs({ worker: false });
    await a.migrate();
    const other = await t.another();
    const b = other.jobs({ worker: false });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).enqueue('sync', { i }, { unique: { key: 'account-7' } })),
    );
    const ids = new Set(results.map((r) => r.id));
    expect(ids.size, 'one job for the key').to.equal(1);
    expect(results.filter((r) => !r.existed)).to.have.length(1);
    expect(await count(t, 'jobs')).to.equal(1);
    // Another key is its own job.
    expect((await a.enqueue('sync', {}, { unique: { key: 'account-8' } })).existed).to.equal(false);
  });

  it('unique: an enqueue of the key waits for another transaction holding it, then returns that job (server databases)', async function () {
    const t = await fresh();
    // SQLite runs one writer at a time: the second enqueue cannot even start until the first commits.
    if (t.driver !== 'pg' && t.driver !== 'mysql2') return this.skip();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const pool = t.db as unknown as { connect?(): Promise<{ query(s: string): Promise<unknown>; release(): void }>; getConnection?(): Promise<{ query(s: string): Promise<unknown>; release(): void }> };
    const conn = t.driver === 'pg' ? await pool.connect!() : await pool.getConnection!();
    await conn.query(t.driver === 'pg' ? 'BEGIN' : 'START TRANSACTION');
    const first = await jobs.enqueue('sync', {}, { unique: { key: 'k' }, tx: conn as never });
    let secondDone = false;
    const second = jobs.enqueue('sync', {}, { unique: { key: 'k' } }).then((r) => ((secondDone = true), r));
    await new Promise((r) => setTimeout(r, 300));
    expect(secondDone, 'the second enqueue waits for the first transaction').to.equal(false);
    await conn.query('COMMIT');
    conn.release();
    expect(await second).to.deep.include({ id: first.id, existed: true });
    expect(await count(t, 'jobs')).to.equal(1);
  });

  it('unique with forMs and finished states: a completed job within the window counts; outside it does not', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('report', async () => 'done');
    await jobs.start();
    const first = await jobs.enqueue('report', {}, { unique: { key: 'daily', forMs: 3_600_000, states: ['pending', 'running', 'completed'] } });
    await until(async () => (await jobs.get(first.id))?.state === 'completed', 'the first to complete');
    const again = await jobs.enqueue('report', {}, { unique: { key: 'daily', forMs: 3_600_000, states: ['pending', 'running', 'completed'] } });
    expect(again).to.deep.include({ id: first.id, existed: true });
    // The default states are live ones only: the completed job does not hold the key.
    const live = await jobs.enqueue('report', {}, { unique: { key: 'daily' } });
    expect(live.existed).to.equal(false);
    await until(async () => (await jobs.get(live.id))?.state === 'completed', 'the second to complete');
    // A window that ended before the jobs were created: none counts.
    await jobs.stop();
    const shortWindow = await jobs.enqueue('report', {}, { unique: { key: 'daily', forMs: 0, states: ['completed'] } });
    expect(shortWindow.existed).to.equal(false);
  });

  it('debounce: the job runs ms after the last enqueue, with the last payload', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    const seen: unknown[] = [];
    jobs.define('reindex', async (p: { n: number }) => void seen.push(p.n));
    await jobs.start();
    const first = await jobs.enqueue('reindex', { n: 1 }, { debounce: { key: 'idx', ms: 600 } });
    expect(first).to.deep.include({ existed: false });
    const runAt1 = (await jobs.get(first.id))!.runAt.getTime();
    await new Promise((r) => setTimeout(r, 250));
    const second = await jobs.enqueue('reindex', { n: 2 }, { debounce: { key: 'idx', ms: 600 } });
    expect(second).to.deep.include({ id: first.id, existed: true, replaced: true });
    const runAt2 = (await jobs.get(first.id))!.runAt.getTime();
    expect(runAt2 - runAt1, 'run time moved by the time between the enqueues').to.be.within(150, 450);
    await until(async () => seen.length === 1, 'the debounced job to run', 5000);
    expect(seen).to.deep.equal([2]);
    // The outcome is written just after the handler returns: one job ran, and only one is ever finished.
    await until(async () => (await count(t, 'history')) === 1, 'the job to reach history');
    expect(await count(t, 'jobs')).to.equal(0);
    // After it ran, the next enqueue makes a new job.
    const third = await jobs.enqueue('reindex', { n: 3 }, { debounce: { key: 'idx', ms: 10 } });
    expect(third.existed).to.equal(false);
    await until(async () => seen.length === 2, 'the next one');
    await jobs.stop();
  });

  it('deadLetter: a job that fails for good is copied once to that queue with ctx.deadLetterOf; the copy has no dead letter', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, queues: ['default'] } });
    jobs.define('charge', async () => {
      throw new Error('card declined');
    }, { deadLetter: 'charge-dlq', maxAttempts: 2, backoff: { type: 'fixed', baseMs: 10 } });
    await jobs.start();
    const { id } = await jobs.enqueue('charge', { cents: 500 }, { userId: 'u1' });
    await until(async () => (await jobs.get(id))?.state === 'failed', 'the job to fail for good');
    const copies = (await jobs.list({ queue: 'charge-dlq', includePayload: true })).items;
    expect(copies).to.have.length(1);
    expect(copies[0]).to.deep.include({ name: 'charge', queue: 'charge-dlq', state: 'pending', payload: { cents: 500 }, userId: 'u1', callbacks: null });
    expect((await jobs.get(id))?.callbacks).to.deep.include({ deadLetter: 'charge-dlq' });
    await jobs.stop();
    // A worker on the dead-letter queue sees where the copy came from; when it fails too, nothing more is copied.
    const dlq = t.jobs({ worker: { pollInterval: 50, queues: ['charge-dlq'] } });
    let origin: string | null = null;
    dlq.define('charge', async (_p: unknown, ctx: JobContext) => {
      origin = ctx.deadLetterOf;
      throw new Error('still declined');
    }, { maxAttempts: 1 });
    await dlq.start();
    await until(async () => (await dlq.get(copies[0].id))?.state === 'failed', 'the copy to fail');
    expect(origin).to.equal(id);
    await new Promise((r) => setTimeout(r, 200));
    expect((await dlq.list({ queue: 'charge-dlq' })).items, 'no copy of the copy').to.have.length(1);
    await dlq.stop();
  });

  it('redriveDeadLetters: the failed originals run again and succeed, their pending copies are cancelled; redriving again retries nothing', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, queues: ['default'] } });
    let declined = true;
    const runs: number[] = [];
    jobs.define('charge', async (p: { cents: number }) => {
      runs.push(p.cents);
      if (declined) throw new Error('card declined');
      return 'charged';
    }, { deadLetter: 'charge-dlq', maxAttempts: 1 });
    const a = await jobs.enqueue('charge', { cents: 500 });
    const b = await jobs.enqueue('charge', { cents: 700 });
    await jobs.drain();
    const copies = (await jobs.list({ queue: 'charge-dlq' })).items;
    expect(copies.map((c) => c.deadLetterOf), 'each copy names its original, newest first').to.deep.equal([b.id, a.id]);
    expect((await jobs.get(copies[1].id))?.deadLetterOf).to.equal(a.id);
    expect((await jobs.get(a.id))?.deadLetterOf, 'an original is no copy').to.equal(null);
    // A job of the dead-letter queue that is no copy is left alone.
    const stray = await jobs.enqueue('charge', { cents: 1 }, { queue: 'charge-dlq' });
    const cancelled: string[] = [];
    jobs.on('cancelled', (e) => cancelled.push(e.id));

    declined = false;
    const first = await jobs.redriveDeadLetters({ queue: 'charge-dlq' });
    expect(first).to.deep.equal({ redriven: 2, skipped: 1, reasons: { notDeadLetter: 1 }, originals: [b.id, a.id], more: false });
    for (const c of copies) {
      const copy = await jobs.get(c.id);
      expect(copy).to.deep.include({ state: 'cancelled', deadLetterOf: c.deadLetterOf });
      expect(copy?.error?.name).to.equal('Redriven');
    }
    expect(cancelled.sort()).to.deep.equal(copies.map((c) => c.id).sort());
    expect((await jobs.get(stray.id))?.state).to.equal('pending');
    // Redriven again before they ran: the originals are live, so nothing is retried twice.
    const again = await jobs.redriveDeadLetters(copies.map((c) => c.id));
    expect(again).to.deep.equal({ redriven: 0, skipped: 2, reasons: { originalLive: 2 }, originals: [], more: false });

    await jobs.drain();
    for (const id of [a.id, b.id]) expect(await jobs.get(id)).to.deep.include({ state: 'completed', result: 'charged', attempts: 2 });
    expect(runs.sort()).to.deep.equal([500, 500, 700, 700]);
    const third = await jobs.redriveDeadLetters({ queue: 'charge-dlq' });
    expect(third).to.deep.equal({ redriven: 0, skipped: 3, reasons: { notDeadLetter: 1, originalNotFailed: 2 }, originals: [], more: false });
    await jobs.drain();
    expect(runs, 'no run after the completed originals').to.have.length(4);
    expect((await jobs.list({ queue: 'charge-dlq', state: 'pending' })).items.map((j) => j.id)).to.deep.equal([stray.id]);
  });

  it('redriveDeadLetters: an original that fails again makes a new copy, and only that one redrives it again', async () => {
    let runs = 0;
    const jobs = failingSync(await fresh(), () => ++runs < 3);
    const { id } = await jobs.enqueue('sync', {});
    await jobs.drain();
    expect(await jobs.redriveDeadLetters({ queue: 'sync-dlq' })).to.deep.include({ redriven: 1, originals: [id] });
    await jobs.drain();
    const copies = (await jobs.list({ queue: 'sync-dlq' })).items;
    expect(copies.map((c) => [c.state, c.deadLetterOf])).to.deep.equal([['pending', id], ['cancelled', id]]);
    // Both copies name the failed original: it is retried once, by the newest; the older finds it live.
    expect(await jobs.redriveDeadLetters({ queue: 'sync-dlq' })).to.deep.equal({ redriven: 1, skipped: 1, reasons: { originalLive: 1 }, originals: [id], more: false });
    await jobs.drain();
    expect(await jobs.get(id)).to.deep.include({ state: 'completed', attempts: 3 });
    expect(runs).to.equal(3);
  });

  it('redriveDeadLetters: a retry the original\'s refId refuses is a skip, and its copy stays pending', async () => {
    const jobs = failingSync(await fresh());
    const { id } = await jobs.enqueue('sync', {}, { refId: 'account-7' });
    await jobs.drain();
    const taken = await jobs.enqueue('sync', {}, { refId: 'account-7', delay: 3_600_000 });
    const [copy] = (await jobs.list({ queue: 'sync-dlq' })).items;
    expect(await jobs.redriveDeadLetters([copy.id])).to.deep.equal({ redriven: 0, skipped: 1, reasons: { retryRefused: 1 }, originals: [], more: false });
    expect((await jobs.get(id))?.state).to.equal('failed');
    expect((await jobs.get(copy.id))?.state).to.equal('pending');
    await jobs.cancel(taken.id);
    expect(await jobs.redriveDeadLetters([copy.id])).to.deep.include({ redriven: 1, originals: [id] });
  });

  it('redriveDeadLetters: a copy already run is left as it is; a gone original is skipped; limit, more and bad input', async () => {
    const t = await fresh();
    const jobs = failingSync(t);
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await jobs.enqueue('sync', { i })).id);
    await jobs.drain();
    const [newest, middle, oldest] = (await jobs.list({ queue: 'sync-dlq' })).items;
    expect([newest, middle, oldest].map((c) => c.deadLetterOf)).to.deep.equal([...ids].reverse());
    // The dead-letter queue's worker has run the oldest copy (it completed); its original is still redriven.
    const dlq = t.jobs({ worker: { queues: ['sync-dlq'] } });
    dlq.define('sync', async () => 'noted');
    await dlq.runNow(oldest.id);
    await jobs.cancel(newest.id);
    await jobs.cancel(middle.id);
    await dlq.drain();
    expect((await jobs.get(oldest.id))?.state).to.equal('completed');
    // The middle original is deleted: its copy still names it, and is skipped.
    expect(await jobs.delete(ids[1])).to.equal(true);
    expect((await jobs.get(middle.id))?.deadLetterOf).to.equal(ids[1]);

    const page = await jobs.redriveDeadLetters({ queue: 'sync-dlq', limit: 2 });
    expect(page).to.deep.equal({ redriven: 1, skipped: 1, reasons: { originalGone: 1 }, originals: [ids[2]], more: true });
    const rest = await jobs.redriveDeadLetters({ queue: 'sync-dlq', name: 'sync', states: ['completed'] });
    expect(rest).to.deep.equal({ redriven: 1, skipped: 0, reasons: {}, originals: [ids[0]], more: false });
    expect((await jobs.get(oldest.id))?.state, 'a finished copy stays as it was').to.equal('completed');
    expect((await jobs.get(ids[0]))?.state).to.equal('pending');
    expect(await jobs.redriveDeadLetters(['01936f4e-8a1b-7c2d-9e3f-0a1b2c3d4e5f'])).to.deep.include({ skipped: 1, reasons: { notFound: 1 } });

    for (const [target, field] of [
      [{}, 'queue'],
      [{ queue: 'bad queue!' }, 'queue'],
      [{ queue: 'sync-dlq', limit: 0 }, 'limit'],
      [{ queue: 'sync-dlq', limit: 10_001 }, 'limit'],
      [{ queue: 'sync-dlq', state: 'lost' }, 'state'],
      [{ queue: 'sync-dlq', cursor: ids[0] }, 'cursor'],
      [{ queue: 'sync-dlq', bogus: 1 }, 'bogus'],
      [['not-an-id'], 'ids[0]'],
      [null, 'filter'],
    ] as const) {
      const err = await jobs.redriveDeadLetters(target as never).then(() => null, (e: unknown) => e);
      expect(err, JSON.stringify(target)).to.be.instanceOf(JobValidationError);
      expect((err as JobValidationError).field, JSON.stringify(target)).to.equal(field);
    }
  });

  it('refuses bad unique, debounce and deadLetter options with the field named', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    for (const [opts, field] of [
      [{ unique: 'k' }, 'unique'],
      [{ unique: { key: '' } }, 'unique.key'],
      [{ unique: { key: 'k', states: ['done'] } }, 'unique.states'],
      [{ unique: { key: 'k', forMs: -1 } }, 'unique.forMs'],
      [{ unique: { key: 'k', bogus: 1 } }, 'unique.bogus'],
      [{ debounce: { key: 'k' } }, 'debounce.ms'],
      [{ debounce: { key: 'k', ms: 10 }, delay: 5 }, 'debounce'],
      [{ debounce: { key: 'k', ms: 10 }, unique: { key: 'k' } }, 'unique'],
      [{ deadLetter: '' }, 'deadLetter'],
    ] as const) {
      await jobs.enqueue('x', {}, opts as never).then(
        () => expect.fail(`${JSON.stringify(opts)} should be refused`),
        (err) => {
          expect(err, JSON.stringify(opts)).to.be.instanceOf(JobValidationError);
          expect(err.field, JSON.stringify(opts)).to.equal(field);
        },
      );
    }
    expect(() => jobs.define('y', async () => 1, { deadLetter: 'bad queue!' })).to.throw(JobValidationError, /deadLetter/);
  });
});

forEachDialect('flow control: serial keys', ({ fresh }) => {
  it('runs each key one job at a time in enqueue order across two instances; keys overlap; a failure passes the key on', async () => {
    const t = await fresh();
    const a = t.jobs({ worker: { pollInterval: 20, concurrency: 8 } });
    const other = await t.another();
    const b = other.jobs({ worker: { pollInterval: 20, concurrency: 8 } });
    const runs: { key: string; n: number; start: number; end: number }[] = [];
    for (const jobs of [a, b]) {
      jobs.define('step', async (p: { key: string; n: number; fail?: boolean }) => {
        const start = performance.now();
        await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 25)));
        runs.push({ key: p.key, n: p.n, start, end: performance.now() });
        if (p.fail) throw new Error('failed on purpose');
      });
    }
    const keys = ['k1', 'k2', 'k3'];
    for (let n = 0; n < 10; n++) {
      for (const key of keys) await (n % 2 ? a : b).enqueue('step', { key, n, fail: n === 4 }, { serial: key, maxAttempts: 1 });
    }
    await Promise.all([a.start(), b.start()]);
    await until(async () => runs.length === 30, 'every job to run', 30_000);
    for (const key of keys) {
      const mine = runs.filter((r) => r.key === key);
      expect(mine.map((r) => r.n), `${key} in enqueue order`).to.deep.equal([...Array(10).keys()]);
      for (let i = 1; i < mine.length; i++) expect(mine[i].start, `${key} #${i} starts after #${i - 1} ended`).to.be.at.least(mine[i - 1].end);
    }
    const overlapping = runs.some((x) => runs.some((y) => x.key !== y.key && x.start < y.end && y.start < x.end));
    expect(overlapping, 'different keys run at the same time').to.equal(true);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('one enqueueMany call with several jobs of a key: they follow the key\'s tail from before and each other, past a job that existed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20, concurrency: 8 } });
    const runs: { name: string; start: number; end: number }[] = [];
    jobs.define('s', async (p: { name: string }) => {
      const start = performance.now();
      await new Promise((r) => setTimeout(r, 10));
      runs.push({ name: p.name, start, end: performance.now() });
    });
    await jobs.enqueue('s', { name: 'a' }, { serial: 'k' });
    const results = await jobs.enqueueMany([
      { name: 's', payload: { name: 'b' }, serial: 'k' },
      { name: 's', payload: { name: 'c' }, serial: 'other' },
      { name: 's', payload: { name: 'd' }, serial: 'k', unique: { key: 'u1' } },
      { name: 's', payload: { name: 'd-again' }, serial: 'k', unique: { key: 'u1' } },
      { name: 's', payload: { name: 'e' }, serial: 'k' },
    ]);
    expect(results.map((r) => r.existed)).to.deep.equal([false, false, false, true, false]);
    expect(results[3].id, 'the second enqueue of u1 is the first').to.equal(results[2].id);
    expect(await jobs.get(results[0].id)).to.deep.include({ waitingFor: 1 });
    expect(await jobs.get(results[1].id)).to.deep.include({ waitingFor: 0 });
    await jobs.start();
    await until(async () => runs.length === 5, 'every job to run', 20_000);
    const k = runs.filter((r) => r.name !== 'c');
    expect(k.map((r) => r.name), 'the key in enqueue order').to.deep.equal(['a', 'b', 'd', 'e']);
    for (let i = 1; i < k.length; i++) expect(k[i].start, `${k[i].name} starts after ${k[i - 1].name} ended`).to.be.at.least(k[i - 1].end);
    // The key's tail is the call's last job: once it finished, a later job of the key runs at once.
    await until(async () => (await jobs.get(results[4].id))?.state === 'completed', 'the tail to be written');
    const f = await jobs.enqueue('s', { name: 'f' }, { serial: 'k' });
    expect(await jobs.get(f.id)).to.deep.include({ waitingFor: 0 });
    await until(async () => runs.length === 6, 'the job after the call');
    await jobs.stop();
  });

  it('a job waiting for its retry holds the key; retrying a finished job puts it at the end of its key', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20 } });
    const order: string[] = [];
    let failOnce = true;
    jobs.define('s', async (p: { name: string }) => {
      order.push(p.name);
      if (p.name === 'first' && failOnce) {
        failOnce = false;
        throw new Error('retry me');
      }
    });
    const first = await jobs.enqueue('s', { name: 'first' }, { serial: 'key', backoff: { type: 'fixed', baseMs: 300 } });
    const second = await jobs.enqueue('s', { name: 'second' }, { serial: 'key' });
    expect(await jobs.get(second.id)).to.deep.include({ state: 'pending', waitingFor: 1 });
    await jobs.start();
    await until(async () => (await jobs.get(second.id))?.state === 'completed', 'the second job');
    expect(order).to.deep.equal(['first', 'first', 'second']);
    // Retried, the first goes behind the key's current tail (a third, still waiting on a fourth's turn).
    await jobs.stop();
    const third = await jobs.enqueue('s', { name: 'third' }, { serial: 'key', delay: 0 });
    expect(await jobs.retry(first.id)).to.equal(true);
    expect(await jobs.get(first.id)).to.deep.include({ state: 'pending', waitingFor: 1 });
    await jobs.start();
    await until(async () => (await jobs.get(first.id))?.state === 'completed', 'the retried job');
    expect(order.slice(3)).to.deep.equal(['third', 'first']);
    expect((await jobs.get(third.id))?.state).to.equal('completed');
    await jobs.stop();
  });
});

forEachDialect('flow control: two-phase commit (reserve)', ({ fresh }) => {
  it('a reserved job holds its place in its serial key and in FIFO order, and runs once committed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20, concurrency: 1 } });
    const order: string[] = [];
    jobs.define('r', async (p: { name: string }) => void order.push(p.name));
    const a = await jobs.enqueue('r', { name: 'a' }, { reserve: true, serial: 'k' });
    expect(a).to.deep.include({ existed: false, reserved: true });
    const b = await jobs.enqueue('r', { name: 'b' }, { serial: 'k' });
    const c = await jobs.enqueue('r', { name: 'c' });
    await jobs.start();
    await until(async () => (await jobs.get(c.id))?.state === 'completed', 'the unrelated job');
    await new Promise((r) => setTimeout(r, 200));
    expect(order, 'nothing of the key ran before the commit').to.deep.equal(['c']);
    expect(await jobs.get(a.id)).to.deep.include({ state: 'pending', waitingFor: 1 });
    await jobs.stop();
    const d = await jobs.enqueue('r', { name: 'd' });
    expect(await jobs.commitReserved(a.id)).to.deep.equal([a.id]);
    expect(await jobs.commitReserved([a.id]), 'committed once').to.deep.equal([]);
    await jobs.start();
    await until(async () => (await jobs.get(b.id))?.state === 'completed', 'the key to move on');
    await until(async () => (await jobs.get(d.id))?.state === 'completed', 'the later job');
    expect(order, 'a ran in its FIFO place (before d, enqueued after it), b after a').to.deep.equal(['c', 'a', 'd', 'b']);
    await jobs.stop();
  });

  it('cancel discards a reservation and frees its key; one never committed is cancelled after reserveTimeout', async () => {
    const { RESERVATIONS_EVERY } = await import('../../lib/maintenance/service.ts');
    const every = RESERVATIONS_EVERY.ms;
    RESERVATIONS_EVERY.ms = 100;
    try {
      const t = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 20 }, reserveTimeout: 400 } as never);
      const ran: string[] = [];
      jobs.define('r', async (p: { name: string }) => void ran.push(p.name));
      const a = await jobs.enqueue('r', { name: 'a' }, { reserve: true, serial: 'k' });
      const b = await jobs.enqueue('r', { name: 'b' }, { serial: 'k' });
      expect(await jobs.cancel(a.id)).to.equal(true);
      await jobs.start();
      await until(async () => (await jobs.get(b.id))?.state === 'completed', 'the key to move on after the cancel');
      const late = await jobs.enqueue('r', { name: 'late' }, { reserve: true });
      await until(async () => (await jobs.get(late.id))?.state === 'cancelled', 'the expired reservation to be cancelled', 5000);
      expect(ran).to.deep.equal(['b']);
      expect(await jobs.commitReserved(late.id)).to.deep.equal([]);
      await jobs.stop();
    } finally {
      RESERVATIONS_EVERY.ms = every;
    }
  });

  it('a reserved job of a serial key never committed is cancelled after reserveTimeout, and the key\'s next job then runs', async () => {
    const { RESERVATIONS_EVERY } = await import('../../lib/maintenance/service.ts');
    const every = RESERVATIONS_EVERY.ms;
    RESERVATIONS_EVERY.ms = 50;
    try {
      const t = await fresh();
      // Long enough that a slow start (a loaded machine) still looks while the reservation lasts.
      const reserveTimeout = 1500;
      const jobs = t.jobs({ worker: { pollInterval: 20 }, reserveTimeout });
      const ran: { name: string; at: number }[] = [];
      jobs.define('r', async (p: { name: string }) => void ran.push({ name: p.name, at: Date.now() }));
      const before = Date.now();
      const a = await jobs.enqueue('r', { name: 'a' }, { reserve: true, serial: 'k' });
      const b = await jobs.enqueue('r', { name: 'b' }, { serial: 'k' });
      await jobs.start();
      await sleep(200);
      const held = await jobs.get(b.id);
      if (Date.now() - before < reserveTimeout) expect(held, 'the key is held while the reservation lasts').to.deep.include({ state: 'pending', waitingFor: 1 });
      await until(async () => (await jobs.get(b.id))?.state === 'completed', 'the key to move on after the reservation expired', 5000);
      expect((await jobs.get(a.id))?.state, 'the reservation was cancelled').to.equal('cancelled');
      expect(ran.map((r) => r.name)).to.deep.equal(['b']);
      expect(ran[0].at - before, 'b ran once the reservation ran out, not before').to.be.at.least(reserveTimeout);
      expect(await jobs.commitReserved(a.id), 'too late to commit').to.deep.equal([]);
      await jobs.stop();
    } finally {
      RESERVATIONS_EVERY.ms = every;
    }
  });

  it('commitReserved in the caller\'s transaction: committed with it, the job runs; rolled back, it stays reserved', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20 } });
    const ran: string[] = [];
    jobs.define('r', async (p: { name: string }) => void ran.push(p.name));
    await jobs.migrate();
    const kept = await jobs.enqueue('r', { name: 'kept' }, { reserve: true, serial: 'k1' });
    const lost = await jobs.enqueue('r', { name: 'lost' }, { reserve: true, serial: 'k2' });
    const after = await jobs.enqueue('r', { name: 'after-lost' }, { serial: 'k2' });
    // The worker starts after the transactions: on SQLite it would share the handle holding one open.
    expect(await inAppTx(t, 'ROLLBACK', (tx) => jobs.commitReserved(lost.id, { tx }))).to.deep.equal([lost.id]);
    expect(await inAppTx(t, 'COMMIT', (tx) => jobs.commitReserved(kept.id, { tx }))).to.deep.equal([kept.id]);
    await jobs.start();
    await until(async () => (await jobs.get(kept.id))?.state === 'completed', 'the committed job to run');
    await sleep(300);
    expect(ran, 'the rolled-back commit left its job (and the key behind it) waiting').to.deep.equal(['kept']);
    expect((await jobs.get(lost.id))?.reservedUntil, 'still reserved').to.be.instanceOf(Date);
    expect(await jobs.get(after.id)).to.deep.include({ state: 'pending', waitingFor: 1 });
    // The reservation is intact: a later commit still takes it.
    expect(await jobs.commitReserved(lost.id)).to.deep.equal([lost.id]);
    await until(async () => (await jobs.get(after.id))?.state === 'completed', 'the key to move on');
    expect(ran).to.deep.equal(['kept', 'lost', 'after-lost']);
    await jobs.stop();
  });

  it('refuses reserve with delay or a non-boolean', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    for (const opts of [{ reserve: true, delay: 10 }, { reserve: 'yes' }]) {
      await jobs.enqueue('x', {}, opts as never).then(
        () => expect.fail(`${JSON.stringify(opts)} should be refused`),
        (err) => expect(err.field).to.equal('reserve'),
      );
    }
  });
});

forEachDialect('flow control: priority aging', ({ fresh }) => {
  it('a priority-0 job starts within 10 × everyMs while priority-10 jobs keep arriving and a backlog of them never empties', async () => {
    const t = await fresh();
    const everyMs = 200;
    // No claiming ahead: the jobs not started stay pending, where the count below sees them.
    const jobs = t.jobs({ worker: { pollInterval: 20, concurrency: 1, prefetch: 0 }, priorityAging: { everyMs } } as never);
    let pendingWhenLowStarted = -1;
    let lowStartedAt = 0;
    jobs.define('work', async (p: { name: string }) => {
      if (p.name === 'low') {
        lowStartedAt = Date.now();
        pendingWhenLowStarted = Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs WHERE state = 'pending'`))[0].n);
      }
      await new Promise((r) => setTimeout(r, 20));
    });
    // The feeder keeps 5 high jobs pending, so the queue is never empty (without aging the low job
    // would wait until the arrivals stop) and none of them waits long (they age too).
    await jobs.enqueueMany(Array.from({ length: 5 }, () => ({ name: 'work', payload: { name: 'high' }, priority: 10 })));
    const low = await jobs.enqueue('work', { name: 'low' }, { priority: 0 });
    const since = Date.now();
    let feeding = true;
    const feed = (async () => {
      while (feeding) {
        const pending = Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs WHERE state = 'pending' AND priority >= 10`))[0].n);
        if (pending < 5) await jobs.enqueueMany(Array.from({ length: 5 - pending }, () => ({ name: 'work', payload: { name: 'high' }, priority: 10 })));
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await jobs.start();
    try {
      // Until its handler has also counted the jobs still pending (a read that takes a moment under load).
      await until(async () => pendingWhenLowStarted >= 0, 'the low-priority job to start', 10 * everyMs + 3000);
    } finally {
      feeding = false;
      await feed;
    }
    expect(pendingWhenLowStarted, 'high-priority jobs were still waiting: aging, not an empty queue, let it run').to.be.greaterThan(0);
    // It has its 10 steps at 10 × everyMs (the leader looks every everyMs / 10); then it waits for
    // the running job (20 ms), a claim, and a high job ahead of it that aged to 11 meanwhile.
    expect(lowStartedAt - since, 'within 10 × everyMs, plus the job ahead and a claim').to.be.below(10 * everyMs + 250);
    expect((await jobs.get(low.id))!.priority, 'raised a step per everyMs').to.be.within(10, 11);
    await jobs.stop();
  });

  it('a leader that starts late raises a waiting job by every step it waited, at once', async () => {
    const t = await fresh();
    const everyMs = 100;
    // Its worker claims another queue: the job only waits, and the instance's maintenance starts with the worker.
    const jobs = t.jobs({ worker: { queues: ['elsewhere'] }, priorityAging: { everyMs } });
    await jobs.migrate();
    const low = await jobs.enqueue('work', {}, { priority: 0 });
    // No leader for 12 steps' time: its first round must catch up all of them, not one or two a round.
    await sleep(12 * everyMs);
    const startedAt = Date.now();
    await jobs.start();
    const raised = await until(async () => ((await jobs.get(low.id))!.priority >= 12 ? Date.now() : 0), 'the job to be raised 12 steps', 5000);
    expect(raised - startedAt, 'caught up within a round or two').to.be.below(3 * everyMs);
    expect((await jobs.get(low.id))!.priority, 'no more steps than it waited').to.be.within(12, 14);
    await jobs.stop();
  });
});

forEachDialect('flow control: keys, dependents and batches combined', ({ fresh }) => {
  it('a dependent of an item that is an existing unique job counts it done when it completed, is cancelled when it failed, waits while it runs', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20 } });
    const ran: string[] = [];
    jobs.define('p', async (x: { fail?: boolean }) => {
      if (x.fail) throw new Error('parent down');
    }, { maxAttempts: 1 });
    jobs.define('c', async (x: { of: string }) => void ran.push(x.of));
    const states = ['pending', 'running', 'completed', 'failed'] as const;
    const done = await jobs.enqueue('p', {}, { unique: { key: 'u-done', states: [...states] } });
    const failed = await jobs.enqueue('p', { fail: true }, { unique: { key: 'u-failed', states: [...states] } });
    await jobs.drain();
    expect((await jobs.get(done.id))!.state).to.equal('completed');
    expect((await jobs.get(failed.id))!.state).to.equal('failed');
    const afterDone = await jobs.enqueueMany([{ name: 'p', payload: {}, unique: { key: 'u-done', states: [...states] } }, { name: 'c', payload: { of: 'done' }, dependsOn: 0 }]);
    const afterFailed = await jobs.enqueueMany([{ name: 'p', payload: {}, unique: { key: 'u-failed', states: [...states] } }, { name: 'c', payload: { of: 'failed' }, dependsOn: 0 }]);
    expect(afterDone[0]).to.deep.include({ id: done.id, existed: true });
    expect(afterFailed[0]).to.deep.include({ id: failed.id, existed: true });
    expect(await jobs.get(afterDone[1].id)).to.deep.include({ state: 'pending', waitingFor: 0 });
    expect(await jobs.get(afterFailed[1].id)).to.deep.include({ state: 'cancelled' });
    // A live holder: its dependent waits for it, and runs once it completed.
    const live = await jobs.enqueue('p', {}, { unique: { key: 'u-live' }, delay: 60_000 });
    const afterLive = await jobs.enqueueMany([{ name: 'p', payload: {}, unique: { key: 'u-live' } }, { name: 'c', payload: { of: 'live' }, dependsOn: 0 }]);
    expect(afterLive[0].id).to.equal(live.id);
    expect(await jobs.get(afterLive[1].id)).to.deep.include({ state: 'pending', waitingFor: 1 });
    await jobs.runNow(live.id);
    await jobs.drain();
    expect(ran.sort()).to.deep.equal(['done', 'live']);
  });

  it('enqueueMany calls naming the same unique and serial keys in opposite orders never deadlock (keys are locked in one order)', async () => {
    const t = await fresh();
    const a = t.jobs({ worker: false });
    await a.migrate();
    const other = await t.another();
    const b = other.jobs({ worker: false });
    const call = (jobs: Jobs, keys: string[], i: number) =>
      jobs.enqueueMany(keys.flatMap((k) => [
        { name: 'x', payload: { i }, serial: `s-${k}` },
        { name: 'x', payload: { i }, unique: { key: `u-${k}-${i % 3}` } },
      ]));
    const loop = (jobs: Jobs, keys: string[], from: number) => (async () => {
      for (let i = from; i < from + 15; i++) await call(jobs, keys, i);
    })();
    const outcomes = await Promise.allSettled([loop(a, ['x', 'y'], 0), loop(b, ['y', 'x'], 100), loop(a, ['y', 'x'], 200), loop(b, ['x', 'y'], 300)]);
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason))).to.deep.equal([]);
    expect(await count(t, 'jobs', "serial_key IS NOT NULL")).to.equal(4 * 15 * 2);
  });

  it('a job depending on its serial key\'s last job waits for it once (no second edge to it), then runs', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20 } });
    const order: string[] = [];
    jobs.define('w', async (x: { n: string }) => void order.push(x.n));
    const first = await jobs.enqueue('w', { n: 'a' }, { serial: 'doc:1', delay: 60_000 });
    const second = await jobs.enqueue('w', { n: 'b' }, { serial: 'doc:1', dependsOn: first.id });
    const [third] = await jobs.enqueueMany([{ name: 'w', payload: { n: 'c' }, serial: 'doc:1', dependsOn: second.id }]);
    expect(await jobs.get(second.id)).to.deep.include({ waitingFor: 1 });
    expect(await jobs.get(third.id)).to.deep.include({ waitingFor: 1 });
    await jobs.runNow(first.id);
    await jobs.drain();
    expect(order).to.deep.equal(['a', 'b', 'c']);
  });

  it('debounce on a job waiting for its serial key keeps it waiting: it starts after the job before it, with the last payload', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20, concurrency: 4 } });
    const runs: { n: number; start: number; end: number }[] = [];
    jobs.define('s', async (x: { n: number }) => {
      const start = performance.now();
      await sleep(x.n === 1 ? 800 : 10);
      runs.push({ n: x.n, start, end: performance.now() });
    });
    await jobs.enqueue('s', { n: 1 }, { serial: 'k' });
    await jobs.start();
    await until(async () => (await jobs.list({ state: 'running' })).items.length === 1, 'the first job to start');
    const debounced = await jobs.enqueue('s', { n: 2 }, { serial: 'k', debounce: { key: 'd', ms: 50 } });
    const again = await jobs.enqueue('s', { n: 3 }, { serial: 'k', debounce: { key: 'd', ms: 50 } });
    expect(again).to.deep.include({ id: debounced.id, replaced: true });
    expect(await jobs.get(debounced.id)).to.deep.include({ waitingFor: 1 });
    await until(() => runs.length === 2, 'both jobs to run', 10_000);
    expect(runs.map((r) => r.n)).to.deep.equal([1, 3]);
    expect(runs[1].start, 'the debounced job starts after the job before it ended').to.be.at.least(runs[0].end);
    await jobs.stop();
  });

  for (const how of ['cancel', 'delete'] as const) {
    it(`${how} of a job waiting in the middle or at the end of its serial key: the next waits for the one still running, and a later enqueue too`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 20, concurrency: 4 } });
      const runs: { n: string; start: number; end: number }[] = [];
      jobs.define('s', async (x: { n: string }) => {
        const start = performance.now();
        await sleep(x.n === 'a' ? 700 : 10);
        runs.push({ n: x.n, start, end: performance.now() });
      });
      const a = await jobs.enqueue('s', { n: 'a' }, { serial: 'k' });
      const b = await jobs.enqueue('s', { n: 'b' }, { serial: 'k' });
      const c = await jobs.enqueue('s', { n: 'c' }, { serial: 'k' });
      const d = await jobs.enqueue('s', { n: 'd' }, { serial: 'k' });
      await jobs.start();
      await until(async () => (await jobs.get(a.id))?.state === 'running', 'a to start');
      const drop = (id: string) => (how === 'cancel' ? jobs.cancel(id) : jobs.delete(id));
      expect(await drop(b.id)).to.equal(true);
      expect(await drop(d.id), 'the key\'s last job').to.equal(true);
      const e = await jobs.enqueue('s', { n: 'e' }, { serial: 'k' });
      expect(await jobs.get(c.id)).to.deep.include({ waitingFor: 1 });
      expect(await jobs.get(e.id), 'enqueued after the last job went').to.deep.include({ waitingFor: 1 });
      await until(() => runs.length === 3, 'a, c and e to run', 10_000);
      expect(runs.map((r) => r.n)).to.deep.equal(['a', 'c', 'e']);
      for (let i = 1; i < runs.length; i++) expect(runs[i].start, `${runs[i].n} starts after ${runs[i - 1].n} ended`).to.be.at.least(runs[i - 1].end);
      await jobs.stop();
    });
  }

  it('several jobs of a line ending together (a delete of two, a cascade from their parent): the next still waits for the one running', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20, concurrency: 4 } });
    const runs: { n: string; start: number; end: number }[] = [];
    jobs.define('s', async (x: { n: string }) => {
      const start = performance.now();
      await sleep(x.n.startsWith('a') ? 600 : 10);
      runs.push({ n: x.n, start, end: performance.now() });
    });
    // A delete of two neighbours; the second the key's last job, so a later enqueue must wait too.
    const a = await jobs.enqueue('s', { n: 'a1' }, { serial: 'k1' });
    const b = await jobs.enqueue('s', { n: 'b1' }, { serial: 'k1' });
    const c = await jobs.enqueue('s', { n: 'c1' }, { serial: 'k1' });
    // A cascade: both neighbours depend on x, whose cancel cancels them in one round.
    const x = await jobs.enqueue('s', { n: 'x' }, { delay: 3_600_000 });
    await jobs.enqueue('s', { n: 'a2' }, { serial: 'k2' });
    await jobs.enqueue('s', { n: 'b2' }, { serial: 'k2', dependsOn: x.id });
    await jobs.enqueue('s', { n: 'c2' }, { serial: 'k2', dependsOn: x.id });
    const d2 = await jobs.enqueue('s', { n: 'd2' }, { serial: 'k2' });
    await jobs.start();
    await until(async () => (await jobs.get(a.id))?.state === 'running', 'a1 to start');
    expect((await jobs.deleteMany([b.id, c.id])).sort()).to.deep.equal([b.id, c.id].sort());
    const e = await jobs.enqueue('s', { n: 'e1' }, { serial: 'k1' });
    expect(await jobs.get(e.id), 'enqueued after the last two went').to.deep.include({ waitingFor: 1 });
    expect(await jobs.cancel(x.id)).to.equal(true);
    expect(await jobs.get(d2.id)).to.deep.include({ state: 'pending', waitingFor: 1 });
    await until(() => runs.length === 4, 'a1, e1, a2, d2 to run', 10_000);
    for (const [first, then] of [['a1', 'e1'], ['a2', 'd2']]) {
      const [p, q] = [runs.find((r) => r.n === first)!, runs.find((r) => r.n === then)!];
      expect(q.start, `${then} starts after ${first} ended`).to.be.at.least(p.end);
    }
    await jobs.stop();
  });

  it('a retried job back at the end of its line, then a cancel of the job after its old place: every job runs (they waited for each other)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20, queues: ['qa', 'qb'] } });
    const ran: string[] = [];
    jobs.define('s', async (x: { n: string }) => void ran.push(x.n));
    const p = await jobs.enqueue('s', { n: 'p' }, { serial: 'k', queue: 'qa' });
    await jobs.queues.pause('qb');
    const r = await jobs.enqueue('s', { n: 'r' }, { serial: 'k', queue: 'qb' });
    await jobs.enqueue('s', { n: 'c' }, { serial: 'k', queue: 'qb' });
    await jobs.start();
    await until(async () => (await jobs.get(p.id))?.state === 'completed', 'p to complete');
    expect(await jobs.retry(p.id)).to.equal(true);
    expect(await jobs.cancel(r.id)).to.equal(true);
    await jobs.queues.resume('qb');
    await until(() => ran.length === 3, 'c and p (again) to run', 10_000);
    expect(ran).to.deep.equal(['p', 'c', 'p']);
    await jobs.stop();
  });

  it('enqueues and cancels of one key\'s line, with groups and parents, never deadlock', async () => {
    const t = await fresh();
    const a = t.jobs({ worker: false });
    await a.migrate();
    const other = await t.another();
    const b = other.jobs({ worker: false });
    const before = await a.enqueue('x', {}, { serial: 'line', delay: 3_600_000 });
    const errors: string[] = [];
    const note = (p: Promise<unknown>) => p.catch((err: Error) => void errors.push(err.message));
    for (let i = 0; i < 15; i++) {
      const waiting = await a.enqueue('x', { i }, { serial: 'line' });
      await Promise.all([
        note(a.enqueueMany([{ name: 'x', payload: {}, unique: { key: `u${i % 2}` }, group: 'g' }, { name: 'x', payload: {}, serial: `s${i % 2}` }])),
        note(b.enqueue('x', {}, { unique: { key: `u${i % 2}` }, group: 'g' })),
        note(a.cancel(waiting.id)),
        note(b.enqueue('x', { i }, { serial: 'line', dependsOn: before.id })),
      ]);
    }
    expect(errors).to.deep.equal([]);
  });

  it('retention keeps a serial key\'s row while its last job still waits (delayed past the retention): the next job waits for it', async () => {
    const t = await fresh();
    const jobs = t.jobs({ retentionDays: 1, worker: { pollInterval: 60_000 } });
    jobs.define('done', async () => undefined);
    await jobs.migrate();
    const tail = await jobs.enqueue('x', {}, { serial: 'reminders:7', delay: 5 * 86_400_000 });
    await jobs.enqueue('x', {}, { serial: 'reminders:8', delay: 5 * 86_400_000 });
    await jobs.enqueue('done', {});
    await jobs.drain();
    await jobs.delete((await jobs.list({ name: 'x' })).items.find((j) => j.id !== tail.id)!.id);
    const days = (n: number) => (t.dialect === 'sqlite' ? `${n * 86_400_000}` : t.dialect === 'postgres' ? `interval '${n} days'` : `INTERVAL ${n} DAY`);
    await t.query(`UPDATE ${t.prefix}history SET finished_at = finished_at - ${days(3)}`);
    await t.query(`UPDATE ${t.prefix}keys SET touched_at = touched_at - ${days(3)}`);
    const { store } = jobs;
    expect(await store.historyPrune({ olderThanMs: 86_400_000, limit: 100 })).to.be.at.least(1);
    await store.retentionLeftoversPrune(86_400_000); // the round's end
    const tails = (await t.query<{ tail_id: string }>(`SELECT tail_id FROM ${t.prefix}keys`)).map((r) => String(r.tail_id));
    expect(tails, 'the key whose last job waits stays; the other (its job deleted) goes').to.deep.equal([tail.id]);
    const next = await jobs.enqueue('x', {}, { serial: 'reminders:7' });
    expect(await jobs.get(next.id)).to.deep.include({ waitingFor: 1 });
  });

  it('a retry of a finished serial job and a delete of the job after it, both waiting on the key held by a caller\'s transaction, do not deadlock', async function () {
    const t = await fresh();
    if (t.driver !== 'pg' && t.driver !== 'mysql2') return this.skip(); // a caller's transaction held open across other calls
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    for (let round = 0; round < 4; round++) {
      const r = await jobs.enqueue('x', { round }, { serial: `k${round}` });
      const x = await jobs.enqueue('x', { round }, { serial: `k${round}` });
      expect(await jobs.cancel(r.id)).to.equal(true);
      let release!: () => void;
      const held = new Promise<void>((done) => (release = done));
      const caller = inAppTx(t, 'COMMIT', async (tx) => {
        await jobs.enqueue('x', {}, { serial: `k${round}`, tx });
        await held;
      });
      await sleep(100);
      const deleting = (round % 2 ? jobs.cancel(x.id) : jobs.delete(x.id)).then(() => 'ok', (err: Error) => err.message);
      await sleep(150);
      const retrying = jobs.retry(r.id).then(() => 'ok', (err: Error) => err.message);
      await sleep(150);
      release();
      await caller;
      expect([await deleting, await retrying], `round ${round}`).to.deep.equal(['ok', 'ok']);
    }
  });

  it('refuses serial on a callback, naming the field', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const err = await jobs.enqueue('x', {}, { onSuccess: { name: 'y', serial: 'K' } as never }).then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(JobValidationError);
    expect((err as JobValidationError).field).to.equal('onSuccess.serial');
  });

  it('a batch whose every item is an existing unique job is finished at once: its onComplete and onSuccess are enqueued', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const held = await jobs.enqueue('x', {}, { unique: { key: 'only' } });
    const { batchId, ids } = await jobs.batch([{ name: 'x', payload: {}, unique: { key: 'only' } }], { onComplete: 'done', onSuccess: 'ok', onFailure: 'bad' });
    expect(ids).to.deep.equal([held.id]);
    const status = (await jobs.batchStatus(batchId))!;
    expect(status.finishedAt, 'finished when made').to.be.instanceOf(Date);
    expect(Object.keys(status.callbackJobs).sort()).to.deep.equal(['onComplete', 'onSuccess']);
    expect((await jobs.list({ name: 'done' })).items).to.have.length(1);
    expect((await jobs.list({ name: 'bad' })).items).to.have.length(0);
  });
});
