/**
 * A database that stops answering (a server stopped with SIGSTOP, a half-open connection after a
 * failover, a partition without a reset): the connections stay open and nothing comes back. The
 * app's shutdown must not wait for it forever, and nothing is lost: a job the worker could not give
 * back stays running under it and is rescued once the database answers again.
 */
import { expect } from 'chai';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { createPool as createSlonikPool } from 'slonik';
import { createJobs } from '../../lib/index.ts';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import type { PostgresStore } from '../../lib/driver/postgres/store.ts';
import { continueStopped, frozenProxy, socketsTo, stopProcess, throughProxy, type FrozenProxy } from '../helpers/frozen-proxy.ts';

type Held = { hold: boolean };

/** The app's handle of the test's driver, connected through the proxy; and how the app ends it. */
async function appHandle(t: TestDb, proxy: FrozenProxy): Promise<{ db: unknown; end: () => Promise<void> }> {
  const url = throughProxy(t.location, proxy);
  if (t.driver === 'slonik') {
    const pool = await createSlonikPool(url, { maximumPoolSize: 2 });
    return { db: pool, end: () => pool.end() };
  }
  if (t.driver === 'mysql2') {
    const pool = mysql.createPool({ uri: url, connectionLimit: 2 });
    return { db: pool, end: () => pool.end() };
  }
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  return { db: pool, end: () => pool.end() };
}

/** A worker through the proxy running one job held until the shutdown aborts it; the proxy then frozen. */
async function frozenWithAJob(t: TestDb, proxy: FrozenProxy) {
  // The job is enqueued on the database directly: the app's pool through the proxy holds no
  // connection of its own, so every socket towards the proxy is one of the library's.
  const producer = t.jobs({ worker: false });
  await producer.migrate();
  const app = await appHandle(t, proxy);
  const errors: string[] = [];
  const jobs = createJobs<{ held: Held }>({ db: app.db as never, tablePrefix: t.prefix, logger: false, worker: { concurrency: 2, pollInterval: 200 } });
  jobs.on('error', (err) => void errors.push((err as Error).message));
  let started = 0;
  // Held until the shutdown aborts it: the write left to do is then the shutdown's release.
  jobs.define('held', (_p, ctx) => new Promise<void>((_resolve, reject) => {
    started++;
    ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
  }));
  await jobs.start();
  const { id } = await producer.enqueue('held', { hold: true });
  await until(() => started === 1, 'the job to start');
  proxy.freeze();
  return { app, jobs, errors, id };
}

/** Nothing lost: the job is still running under the stopped worker, and a worker of a database that answers rescues it. */
async function rescued(t: TestDb, id: string): Promise<void> {
  expect((await t.query<{ state: string }>(`SELECT state FROM ${t.prefix}jobs WHERE id = $1`, [id]))[0]?.state).to.equal('running');
  let ran = 0;
  const rescuer = t.jobs({ worker: { heartbeatInterval: 100, stallTimeout: 300, pollInterval: 100 } }).define('held', () => void ran++);
  await rescuer.start();
  await until(async () => (await rescuer.get(id))?.state === 'completed', 'the rescued job to complete', 20_000);
  expect(ran).to.equal(1);
}

const GAVE_UP = /^stop\(\): the database did not answer within 5200 ms; its connections were dropped/;

forEachDialect('faults: a database that stops answering', ({ fresh }) => {
  let proxy: FrozenProxy | null = null;
  afterEach(async () => {
    await proxy?.close();
    proxy = null;
  });

  /** A fresh database behind a new proxy, a worker through it holding one job, the proxy frozen. */
  async function frozenJob() {
    const t = await fresh();
    proxy = await frozenProxy({ host: '127.0.0.1', port: Number(new URL(t.location).port) });
    return { t, ...(await frozenWithAJob(t, proxy)) };
  }

  it('close({ timeout }) returns within timeout + 5 s, says so once, leaves no socket of the library open, and the job it could not give back is rescued', async function () {
    this.timeout(60_000);
    const { t, app, jobs, errors, id } = await frozenJob();
    const t0 = Date.now();
    await jobs.close({ timeout: 200 });
    expect(Date.now() - t0, 'close() waited for a database that does not answer').to.be.below(200 + 5_000 + 1_500);
    expect(errors).to.have.length(1);
    expect(errors[0]).to.match(GAVE_UP);
    // Destroyed, not ended: the server would never close its side of a polite end.
    await until(() => socketsTo(proxy!) === 0, 'no socket of the library towards the database', 1_000);
    await app.end();
    await rescued(t, id);
  });

  it('stop({ timeout }) alone returns within timeout + 5 s and leaves no socket open either: the rest of the shutdown fails at once; a close() after it is quick', async function () {
    this.timeout(60_000);
    const { t, app, jobs, errors, id } = await frozenJob();
    const t0 = Date.now();
    await jobs.stop({ timeout: 200 });
    expect(Date.now() - t0, 'stop() waited for a database that does not answer').to.be.below(200 + 5_000 + 1_500);
    // The shutdown's later steps (giving back what it claimed, removing the worker's row) would open new connections.
    await until(() => socketsTo(proxy!) === 0, 'no socket of the library towards the database', 2_000);
    await sleep(500);
    expect(socketsTo(proxy!), 'a socket opened after the stop').to.equal(0);
    const t1 = Date.now();
    await jobs.close({ timeout: 200 });
    expect(Date.now() - t1, 'close() after a stop() that gave up').to.be.below(1_000);
    expect(errors).to.have.length(1);
    expect(errors[0]).to.match(GAVE_UP);
    await app.end();
    await rescued(t, id);
  });

  it('close() of a producer whose database stopped answering while it was idle returns, and leaves no socket of the library open', async function () {
    this.timeout(30_000);
    const t = await fresh();
    proxy = await frozenProxy({ host: '127.0.0.1', port: Number(new URL(t.location).port) });
    const app = await appHandle(t, proxy);
    const producer = createJobs({ db: app.db as never, tablePrefix: t.prefix, logger: false, worker: false });
    const errors: string[] = [];
    producer.on('error', (err) => void errors.push((err as Error).message));
    await producer.migrate(); // on the library's own connections, idle afterwards
    proxy.freeze();
    const t0 = Date.now();
    await producer.close();
    expect(Date.now() - t0).to.be.below(5_000 + 1_500);
    // A polite goodbye is never answered here: what is left open would keep the process alive.
    await until(() => socketsTo(proxy!) === 0, 'no socket of the library towards the database', 1_000);
    expect(errors.length, errors.join('\n')).to.be.at.most(1);
    await app.end();
  });
}, ['postgres', 'slonik', 'mysql']);

/** Our statements' watchdog (lib/driver/postgres/watchdog.ts), looking every `ms` instead of every 5 s. */
function watchEvery(jobs: { store: unknown }, ms: number): void {
  (jobs.store as PostgresStore).watchdog.checkMs = ms;
}

/** The backend of this test's connection running (or last run) a statement that starts with `start`. */
async function backendOf(t: TestDb, start: string): Promise<number> {
  const rows = await t.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE $2`, [t.prefix, `${start}%`]);
  expect(rows, `one backend last running ${start}…`).to.have.length(1);
  return rows[0].pid;
}

forEachDialect('faults: a PostgreSQL backend that never answers a statement of ours', ({ fresh }) => {
  afterEach(() => continueStopped());

  it('the claim connection\'s backend stopped (SIGSTOP) while idle: the claim is given up, that backend terminated, and the worker claims on', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const errors: string[] = [];
    let ran = 0;
    const jobs = t.jobs({ logger: false, worker: { pollInterval: 100 } }).define('x', () => void ran++);
    jobs.on('error', (err) => void errors.push((err as Error).message));
    watchEvery(jobs, 200);
    await jobs.start();
    await jobs.enqueue('x', {});
    await until(() => ran === 1, 'the first job to run');
    const claimer = await backendOf(t, 'WITH next AS');
    stopProcess(claimer);
    await jobs.enqueueMany([{ name: 'x', payload: {} }, { name: 'x', payload: {} }]);
    await until(() => ran === 3, 'the jobs enqueued after the stop to run', 15_000);
    expect(errors.join('\n')).to.match(/dropped this connection: the database did not answer/);
    // Terminated as it resumes: a statement it would read then cannot land after the claim was given up.
    continueStopped(claimer);
    await until(async () => (await t.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, [claimer])).length === 0, 'the stopped backend to end');
  });

  it('a statement the server runs (a completion waiting for a row lock) is waited for, however long: not dropped', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const errors: string[] = [];
    const side = new pg.Client({ connectionString: t.location });
    await side.connect();
    try {
      const jobs = t.jobs({ logger: false, worker: { pollInterval: 100 } });
      jobs.on('error', (err) => void errors.push((err as Error).message));
      watchEvery(jobs, 100);
      // The handler has another session lock its job's row before it returns: the completion waits for it.
      jobs.define('locked', async (_p, ctx) => {
        await side.query('BEGIN');
        await side.query(`SELECT 1 FROM ${t.prefix}jobs WHERE id = $1 FOR UPDATE`, [ctx.id]);
      });
      await jobs.start();
      const { id } = await jobs.enqueue('locked', {});
      await until(async () => (await t.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [t.prefix])).length === 1, 'the completion to wait for the lock');
      const looks = (jobs.store as PostgresStore).watchdog.looks;
      await sleep(1_500); // looks at 0.1, 0.3, 0.7 and 1.5 s: seen waiting for the lock at each
      expect((jobs.store as PostgresStore).watchdog.looks - looks, 'looks at the waiting completion').to.be.at.least(2);
      await side.query('COMMIT');
      const done = await jobs.waitFor(id, { timeout: 10_000 });
      expect(done).to.include({ state: 'completed', attempts: 1 });
      expect(errors).to.deep.equal([]);
    } finally {
      await side.end();
    }
  });
}, ['postgres', 'slonik']);
