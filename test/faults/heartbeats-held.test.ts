/**
 * Heartbeats held back by the database (another session locking the workers' rows past
 * stallTimeout: a long migration, a backup tool, an operator's open transaction) make every worker
 * look silent at once, the rescuer's own included. The rescuer must not take that for dead workers:
 * their jobs are running, and a rescue would run each of them a second time. It rescues only while
 * its own heartbeat is current.
 *
 * SQLite has no row locks (a second writer holds the whole file, and the rescue's write with it):
 * the guard is checked there at the store level (test/store/rescue.test.ts).
 */
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import mssql from 'mssql';
import pg from 'pg';
import { MSSQL_URL, MYSQL_URL, PG_URL, forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import type { Jobs } from '../../lib/index.ts';
import { rescueStalled } from '../../lib/maintenance/rescuer.ts';
import { claimOne, storeOf } from '../store/helpers.ts';

type RescuedJob = { id: string; outcome: string };

const worker = { host: 'h', pid: 1, queues: null, names: ['x'], concurrency: 1 };

/** Lock the rows of the workers table (those of `ids`, or all) in another session until release() (reads still pass). */
async function lockWorkerRows(t: TestDb, ids?: string[]): Promise<{ release(): Promise<void> }> {
  const table = `${t.prefix}workers`;
  const only = ids ? ` WHERE id IN (${ids.map((id) => `'${id}'`).join(', ')})` : '';
  if (t.dialect === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL });
    client.on('error', () => undefined);
    await client.connect();
    await client.query('BEGIN');
    await client.query(`SELECT id FROM ${table}${only} FOR UPDATE`);
    return { release: async () => void (await client.query('COMMIT'), await client.end()) };
  }
  if (t.dialect === 'mysql') {
    const conn = await mysql.createConnection(MYSQL_URL);
    conn.on('error', () => undefined);
    await conn.query('START TRANSACTION');
    await conn.query(`SELECT id FROM ${table}${only} FOR UPDATE`);
    return { release: async () => void (await conn.query('COMMIT'), await conn.end()) };
  }
  const pool = await new mssql.ConnectionPool(MSSQL_URL!).connect();
  pool.on('error', () => undefined);
  const tx = new mssql.Transaction(pool);
  await tx.begin();
  await tx.request().query(`SELECT id FROM ${table} WITH (UPDLOCK, HOLDLOCK)${only}`);
  return { release: async () => void (await tx.commit(), await pool.close()) };
}

/**
 * Lock rows of the jobs table (those of `ids`, or all) in another session until release() (reads
 * still pass). One row at a time by key: MariaDB may scan a small table for an IN list and lock
 * every row it read.
 */
async function lockJobRows(t: TestDb, ids?: string[]): Promise<{ release(): Promise<void> }> {
  const table = `${t.prefix}jobs`;
  const each = ids ? ids.map((id) => ` WHERE id = '${id}'`) : [''];
  if (t.dialect === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL });
    client.on('error', () => undefined);
    await client.connect();
    await client.query('BEGIN');
    for (const where of each) await client.query(`SELECT id FROM ${table}${where} FOR UPDATE`);
    return { release: async () => void (await client.query('COMMIT'), await client.end()) };
  }
  if (t.dialect === 'mysql') {
    const conn = await mysql.createConnection(MYSQL_URL);
    conn.on('error', () => undefined);
    await conn.query('START TRANSACTION');
    for (const where of each) await conn.query(`SELECT id FROM ${table}${where} FOR UPDATE`);
    return { release: async () => void (await conn.query('COMMIT'), await conn.end()) };
  }
  const pool = await new mssql.ConnectionPool(MSSQL_URL!).connect();
  pool.on('error', () => undefined);
  const tx = new mssql.Transaction(pool);
  await tx.begin();
  for (const where of each) await tx.request().query(`SELECT id FROM ${table} WITH (UPDLOCK, HOLDLOCK)${where}`);
  return { release: async () => void (await tx.commit(), await pool.close()) };
}

/**
 * A worker with a pool of two and four running jobs that checkpoint every 50 ms until finish(),
 * and a second instance whose rescuer watches it; every rescue either reports is collected.
 */
async function checkpointingWorker(t: TestDb) {
  const runs = new Map<string, number>();
  const rescued: RescuedJob[] = [];
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const settings = { pollInterval: 100, heartbeatInterval: 100, stallTimeout: 600 };
  const busy = t.jobs({ workerPoolSize: 2, worker: { concurrency: 4, ...settings } });
  busy.define('saving', async (_payload, ctx) => {
    runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
    while (!ctx.signal.aborted && !(await Promise.race([finished.then(() => true), sleep(50).then(() => false)]))) {
      await ctx.saveCheckpoint({ at: Date.now() }).catch(() => undefined);
    }
  });
  const watcher = (await t.another()).jobs({ worker: { concurrency: 1, ...settings } });
  for (const jobs of [busy, watcher]) jobs.on('rescued', (r) => void rescued.push(r));
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push((await busy.enqueue('saving', {})).id);
  return {
    busy,
    ids,
    rescued,
    async start() {
      await busy.start();
      await until(() => runs.size === 4, 'four jobs running', 5_000);
      await watcher.start();
    },
    /** Let the jobs finish: each ran once, and completed. */
    async finishOnce() {
      finish();
      await until(async () => (await Promise.all(ids.map((id) => busy.get(id)))).every((j) => j?.state === 'completed'), 'all four completed', 5_000);
      expect(ids.map((id) => runs.get(id)), 'runs per job').to.deep.equal([1, 1, 1, 1]);
      await watcher.stop();
      await busy.stop();
    },
  };
}

forEachDialect('faults: heartbeats held back by a lock on the workers table', ({ fresh }) => {
  it('rescue nothing while the rescuer\'s own heartbeat is late: every job runs once', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const instances: Jobs[] = [];
    const runs = new Map<string, number>();
    const rescued: RescuedJob[] = [];
    const errors: string[] = [];
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    for (const handle of [t, await t.another()]) {
      const jobs = handle.jobs({ leader: { leaseMs: 300 }, worker: { concurrency: 1, pollInterval: 100, heartbeatInterval: 100, stallTimeout: 400 } });
      jobs.define('long', async (_payload, ctx) => {
        runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
        await finished;
      });
      jobs.on('rescued', (r) => void rescued.push(r));
      jobs.on('error', (err) => void errors.push((err as Error).message));
      instances.push(jobs);
    }
    const ids = [(await instances[0].enqueue('long', {})).id, (await instances[0].enqueue('long', {})).id];
    for (const jobs of instances) await jobs.start();
    await until(() => runs.size === 2, 'both jobs running, one on each instance', 5_000);
    await until(() => instances.some((j) => j.isLeader()), 'a leader', 5_000);

    // Held for over three stall timeouts and two of the leader's rescue rounds (every 1 s at least).
    const lock = await lockWorkerRows(t);
    await sleep(2_600);
    await lock.release();
    await sleep(1_200); // the heartbeats that waited are written; a rescue round after the lock finds nothing stale

    expect(rescued, 'jobs rescued from live workers').to.deep.equal([]);
    const deferred = errors.filter((m) => m.startsWith('rescue of stalled jobs deferred'));
    expect(deferred, 'the deferral is said, once per leader').to.have.length.within(1, 2);
    expect(deferred[0]).to.match(/own heartbeat was last written \d+ ms ago \(stallTimeout 400 ms\)/);
    finish();
    await until(async () => (await Promise.all(ids.map((id) => instances[0].get(id)))).every((j) => j?.state === 'completed'), 'both jobs completed', 5_000);
    expect([...runs.values()], 'runs per job').to.deep.equal([1, 1]);
    for (const id of ids) expect((await instances[0].get(id))!.attempts, `attempts of ${id}`).to.equal(1);
    for (const jobs of instances) await jobs.stop();
  });

  it('a worker whose every pooled connection waits on locked job rows still beats: its jobs are not rescued', async function () {
    // Checkpoints (or outcomes, log lines) waiting on job rows another session holds each keep one
    // of the worker's connections; the heartbeat has a connection of its own, so it is not queued
    // behind them, and the other instance's rescuer sees a live worker.
    this.timeout(20_000);
    const t = await fresh();
    const w = await checkpointingWorker(t);
    await w.start();
    // Held for over three stall timeouts, with every checkpoint queued behind it.
    const lock = await lockJobRows(t);
    await sleep(2_400);
    await lock.release();
    await sleep(800);
    expect(w.rescued, 'jobs rescued from a live worker').to.deep.equal([]);
    await w.finishOnce();
  });

  it('the heartbeat does not wait for its release of a job the worker never received (the release waits for the busy pool)', async function () {
    // A job running under this worker in the database that it never received (a claim whose answer
    // was lost after its COMMIT) is released by the heartbeat's answer. On the worker's pool, that
    // release queued behind the checkpoints waiting on locked rows, and the next beats waited for it.
    this.timeout(20_000);
    const t = await fresh();
    const w = await checkpointingWorker(t);
    const stranger = (await w.busy.enqueue('saving', {}, { delay: 3_600_000 })).id;
    await w.start();
    const lock = await lockJobRows(t, w.ids); // the running rows only
    try {
      await sleep(300); // every checkpoint waits on the lock now, each holding one of the two pooled connections
      const p = (n: number) => (t.dialect === 'postgres' ? `$${n}` : '?');
      const now = t.dialect === 'postgres' ? 'now()' : t.dialect === 'mysql' ? 'UTC_TIMESTAMP(3)' : 'SYSUTCDATETIME()';
      const [{ worker_id: workerId }] = await t.query(`SELECT worker_id FROM ${t.prefix}jobs WHERE id = ${p(1)}`, [w.ids[0]]);
      await t.query(
        `UPDATE ${t.prefix}jobs SET state = 'running', worker_id = ${p(1)}, token = ${p(2)}, attempts = 1, started_at = ${now} WHERE id = ${p(3)}`,
        [workerId, crypto.randomUUID(), stranger],
      );
      await sleep(2_400);
    } finally {
      await lock.release();
    }
    await until(async () => (await w.busy.get(stranger))?.state === 'pending', 'the job it never received released', 5_000);
    expect(w.rescued.filter((r) => w.ids.includes(r.id)), 'live jobs rescued').to.deep.equal([]);
    await w.finishOnce();
  });

  it('a heartbeat that waited behind the lock is dated when written, not when sent', async function () {
    const t = await fresh();
    const { store } = await storeOf(t);
    await store.workerHeartbeat({ id: 'w', ...worker });
    const lock = await lockWorkerRows(t);
    const beat = store.workerHeartbeat({ id: 'w', ...worker });
    await sleep(1_500);
    await lock.release();
    await beat;
    const age = await store.workerHeartbeatAge('w');
    expect(age, 'the heartbeat\'s age just after it was written').to.be.lessThan(500);
  });

  it('a silent worker whose row another session holds is not rescued (its heartbeat may be waiting there); once free, it is', async function () {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const { id } = await jobs.enqueue('x', {});
    await store.workerHeartbeat({ id: 'held', ...worker });
    await claimOne(store, 'x', 'held');
    await sleep(300);
    // The rescuer's own row is free and current (it registered after the lock, say).
    const lock = await lockWorkerRows(t, ['held']);
    try {
      expect(await rescueStalled(store, 200), 'rescued while the row is held').to.deep.equal([]);
      expect((await jobs.get(id))!.state).to.equal('running');
    } finally {
      await lock.release();
    }
    expect((await rescueStalled(store, 200)).map((r) => r.id), 'rescued once the row is free').to.deep.equal([id]);
  });

  it('a silent worker left alone for its held row is said once, and rescued once the row is free', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const { jobs: writer, store } = await storeOf(t);
    const { id } = await writer.enqueue('x', {});
    await store.workerHeartbeat({ id: 'held', ...worker });
    await claimOne(store, 'x', 'held');
    const errors: string[] = [];
    const rescued: RescuedJob[] = [];
    const sweeper = t.jobs({ worker: { concurrency: 1, pollInterval: 100, heartbeatInterval: 100, stallTimeout: 400 } });
    sweeper.on('error', (err) => void errors.push((err as Error).message));
    sweeper.on('rescued', (r) => void rescued.push(r));
    const lock = await lockWorkerRows(t, ['held']);
    try {
      await sweeper.start();
      const saidOfHeld = () => errors.filter((m) => m.startsWith('rescue of worker held'));
      // Said once two rounds (every 1 s) found the row held; a loaded machine starts later.
      await until(() => saidOfHeld().length > 0, 'the held worker said', 12_000);
      await sleep(2_400); // two rounds more: not said again
      expect(rescued, 'rescued while the row is held').to.deep.equal([]);
      const said = saidOfHeld();
      expect(said, 'what was said of the held worker').to.have.length(1);
      expect(said[0]).to.match(/^rescue of worker held's 1 stalled job deferred: it sent no heartbeat for over 400 ms, but another session holds its row/);
    } finally {
      await lock.release();
    }
    await until(() => rescued.some((r) => r.id === id), 'the job rescued once the row is free', 5_000);
    await sweeper.stop();
  });

  it('the sweep of silent workers skips a row another session holds, instead of waiting for it', async function () {
    const t = await fresh();
    const { store } = await storeOf(t);
    await store.workerHeartbeat({ id: 'idle', ...worker });
    await store.workerHeartbeat({ id: 'gone', ...worker });
    await sleep(300);
    const lock = await lockWorkerRows(t, ['idle']);
    try {
      const started = Date.now();
      await store.workerRemoveStale(200);
      expect(Date.now() - started, 'ms the sweep took').to.be.lessThan(2_000);
      expect((await store.workerList()).map((w) => w.id), 'the held row stays, the other goes').to.deep.equal(['idle']);
    } finally {
      await lock.release();
    }
    await store.workerRemoveStale(200);
    expect(await store.workerList()).to.deep.equal([]);
  });
}, ['postgres', 'slonik', 'mysql', 'mssql']);
