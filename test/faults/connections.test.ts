/**
 * The server ends a connection the library holds: nothing may crash the host process.
 *
 * pg-pool takes its 'error' listener off a client while it is checked out, so a backend ended
 * while sqljobs holds the client (a request's unit of work, a transactional handler, the sweeper,
 * a migration) used to emit an 'error' nobody listened to: "Unhandled 'error' event" and the
 * process was gone. Each case ends one such connection from the server side
 * (idle_in_transaction_session_timeout, pg_terminate_backend, MariaDB KILL CONNECTION) while it
 * is in use, traps uncaught exceptions and unhandled rejections, and checks that the request
 * answers 500, the next request works, and the worker goes on.
 *
 * The statement windows (sweeper, migration) are hit on purpose, not by luck: a lock held by the
 * test keeps the statement waiting on the server while the test ends its connection.
 */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import pg from 'pg';
import mysql from 'mysql2/promise';
import mssql from 'mssql';
import type { EventEmitter } from 'node:events';
import { createPool as createSlonikPool, type DatabasePool } from 'slonik';
import { createJobs, jobsMiddleware, koaJobs, type Jobs, type RequestJobs } from '../../lib/index.ts';
import { lockName } from '../../lib/driver/mysql/store.ts';
import { MssqlStore } from '../../lib/driver/mssql/store.ts';
import { leadershipKey } from '../../lib/maintenance/leader.ts';
import { DIALECTS, MYSQL_URL, PG_URL, requireDatabase, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { poolSettled, setupShop, visible, writeOrder } from '../helpers/http.ts';

/** Records what would have killed the process outside mocha (mocha keeps its own listeners). */
class CrashTrap {
  readonly seen: unknown[] = [];
  private readonly onUncaught = (err: unknown) => this.seen.push(err);
  private readonly onRejection = (reason: unknown) => this.seen.push(reason);

  constructor() {
    process.on('uncaughtException', this.onUncaught);
    process.on('unhandledRejection', this.onRejection);
  }

  /** No crash so far: an uncaught 'error' event or an unhandled rejection is reported with its message. */
  expectNone(): void {
    expect(this.seen.map((e) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e))), 'uncaught exceptions and unhandled rejections').to.deep.equal([]);
  }

  remove(): void {
    process.off('uncaughtException', this.onUncaught);
    process.off('unhandledRejection', this.onRejection);
  }
}

/**
 * The server side of the test: which connection a handle runs on, ending it, and locks that hold
 * one of the library's statements waiting so that its connection can be ended mid-statement.
 */
interface Server {
  /** The server's id of the connection behind a handle (pg client, slonik or mysql2 connection). */
  idOf(handle: unknown): Promise<number>;
  /** End that connection from the server side and wait until it is gone. */
  end(id: number): Promise<void>;
  /** Hold a lock from a connection of the test's own; `release` lets the waiters go. */
  holdTable(table: string): Promise<Held>;
  holdMigrationLock(): Promise<Held>;
  /** The connection whose statement waits behind `held` and contains every marker. */
  waiting(held: Held, markers: string[]): Promise<number>;
  /** The connection holding the leader's session lock. */
  leaderConnection(): Promise<number>;
}

interface Held {
  id: number;
  release(): Promise<void>;
}

function postgresServer(t: TestDb): Server {
  const dedicated = async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  const pidOf = async (c: pg.Client) => Number((await c.query('SELECT pg_backend_pid() AS id')).rows[0].id);
  return {
    idOf: async (handle) => {
      const rows = isSlonik(handle) ? await t.appQuery(handle, 'SELECT pg_backend_pid() AS id') : (await (handle as pg.PoolClient).query('SELECT pg_backend_pid() AS id')).rows;
      return Number(rows[0].id);
    },
    end: async (id) => {
      await t.query('SELECT pg_terminate_backend($1)', [id]);
      await until(async () => (await t.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [id])).length === 0, `backend ${id} to end`, 5000);
    },
    holdTable: async (table) => {
      const c = await dedicated();
      await c.query('BEGIN');
      await c.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      return { id: await pidOf(c), release: () => c.end() };
    },
    holdMigrationLock: async () => {
      const c = await dedicated();
      await c.query('SELECT pg_advisory_lock(hashtext($1))', [`${t.prefix}migrate`]);
      return { id: await pidOf(c), release: () => c.end() };
    },
    waiting: (held, markers) =>
      theOneWaiting(markers, () => t.query<Statement>('SELECT pid AS id, query AS text FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [held.id])),
    leaderConnection: async () => {
      const rows = await t.query<{ pid: number }>(
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = (hashtext($1)::bigint & 4294967295)::oid`,
        [`${t.prefix}${leadershipKey('leader')}`],
      );
      expect(rows).to.have.length(1);
      return Number(rows![0].pid);
    },
  };
}

function mysqlServer(t: TestDb): Server {
  const dedicated = async () => {
    const c = await mysql.createConnection({ uri: MYSQL_URL });
    c.on('error', () => undefined);
    return c;
  };
  const idOf = async (c: mysql.Connection) => Number(((await c.query('SELECT CONNECTION_ID() AS id'))[0] as { id: number }[])[0].id);
  return {
    idOf: async (handle) => Number((await t.appQuery(handle, 'SELECT CONNECTION_ID() AS id'))[0].id),
    end: async (id) => {
      await t.query(`KILL CONNECTION ${Number(id)}`);
      await until(async () => (await t.query('SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?', [id])).length === 0, `connection ${id} to end`, 5000);
    },
    holdTable: async (table) => {
      const c = await dedicated();
      await c.query(`LOCK TABLES ${table} WRITE`);
      return { id: await idOf(c), release: () => c.end() };
    },
    holdMigrationLock: async () => {
      const c = await dedicated();
      await c.query('SELECT GET_LOCK(?, 0)', [lockName(`${t.prefix}migrate`)]);
      return { id: await idOf(c), release: () => c.end() };
    },
    waiting: (held, markers) =>
      theOneWaiting(markers, () => t.query<Statement>('SELECT ID AS id, INFO AS text FROM information_schema.PROCESSLIST WHERE ID <> ? AND ID <> CONNECTION_ID()', [held.id])),
    leaderConnection: async () => {
      const rows = await t.query<{ id: number | null }>('SELECT IS_USED_LOCK(?) AS id', [lockName(`${t.prefix}${leadershipKey('leader')}`)]);
      expect(rows[0].id).to.not.equal(null);
      return Number(rows[0].id);
    },
  };
}

interface Statement {
  id: number;
  text: string | null;
}

/** The one connection among `list()` whose statement contains every marker (waited for: it may not have been sent yet). */
async function theOneWaiting(markers: string[], list: () => Promise<Statement[]>): Promise<number> {
  const found = await until(
    async () => {
      const hits = (await list()).filter((s) => s.text !== null && markers.every((m) => s.text!.includes(m)));
      return hits.length ? hits : null;
    },
    `a statement with ${markers.join(' … ')} waiting behind the test's lock`,
    10_000,
  );
  expect(found).to.have.length(1);
  return Number(found![0].id);
}

function isSlonik(handle: unknown): boolean {
  return typeof (handle as { oneFirst?: unknown }).oneFirst === 'function';
}

/** The worker's statements the tests hold and end (their text as the server shows it). */
const SWEEPER_MARKER = 'w.id = j.worker_id';

/**
 * The app a web tier would run: its own pool, with nothing listening for the pool's 'error'
 * events. On PostgreSQL the server ends a session left idle in a transaction for 400 ms (the
 * issue's reproduction); on MariaDB the handler's connection is killed (KILL CONNECTION).
 */
interface WebTier {
  jobs: Jobs;
  /** The pool as the app sees it, for poolSettled(). */
  view: TestDb;
  close(): Promise<void>;
}

async function webTier(t: TestDb): Promise<WebTier> {
  if (t.driver === 'pg') {
    const pool = new pg.Pool({ connectionString: PG_URL, max: 3, application_name: t.prefix, options: '-c idle_in_transaction_session_timeout=400' });
    const jobs = createJobs({ db: pool, tablePrefix: t.prefix, worker: false });
    return { jobs, view: { ...t, db: pool }, close: async () => (await jobs.close(), await pool.end()) };
  }
  if (t.driver === 'slonik') {
    const url = new URL(PG_URL);
    url.searchParams.set('application_name', t.prefix);
    const pool: DatabasePool = await createSlonikPool(url.toString(), { maximumPoolSize: 3, idleInTransactionSessionTimeout: 400 });
    const jobs = createJobs({ db: pool, tablePrefix: t.prefix, worker: false });
    return { jobs, view: { ...t, db: pool }, close: async () => (await jobs.close(), await pool.end()) };
  }
  const jobs = t.jobs({ worker: false });
  return { jobs, view: t, close: () => jobs.close() };
}

type PlaceOrder = (uow: RequestJobs, item: string, slow: boolean) => Promise<void>;

/** POST /slow/:item or /fast/:item places an order in the request's unit of work and answers 201. */
function expressShop(jobs: Jobs, placeOrder: PlaceOrder) {
  const app = express();
  app.use(jobsMiddleware(jobs));
  app.post('/:speed/:item', async (req, res) => {
    await placeOrder(req.jobs, req.params.item, req.params.speed === 'slow');
    res.status(201).json({ ok: true });
  });
  return app;
}

function koaShop(jobs: Jobs, placeOrder: PlaceOrder) {
  const app = new Koa();
  app.silent = true;
  app.use(koaJobs(jobs));
  app.use(async (ctx: Koa.ParameterizedContext & { jobs: RequestJobs }) => {
    const [, speed, item] = ctx.path.split('/');
    await placeOrder(ctx.jobs, item, speed === 'slow');
    ctx.status = 201;
    ctx.body = { ok: true };
  });
  return app.callback();
}

const NAMES = ['postgres', 'slonik', 'mysql'];
const only = process.env.SQLJOBS_DIALECTS?.split(',');

for (const factory of DIALECTS.filter((d) => NAMES.includes(d.name) && (!only || only.includes(d.name)))) {
  describe(`a connection ended by the server [${factory.name}]`, function () {
    let trap: CrashTrap;
    let cleanups: (() => Promise<unknown>)[] = [];
    before(requireDatabase(factory));
    beforeEach(() => {
      trap = new CrashTrap();
    });
    afterEach(async () => {
      for (const c of cleanups.reverse()) await c().catch(() => undefined);
      cleanups = [];
      trap.remove();
    });

    const fresh = async (): Promise<{ t: TestDb; server: Server }> => {
      const t = await factory.create();
      cleanups.push(() => t.cleanup());
      return { t, server: t.dialect === 'mysql' ? mysqlServer(t) : postgresServer(t) };
    };

    for (const framework of ['express', 'koa'] as const) {
      it(`a request's unit of work (${framework}): the request answers 500, nothing is committed, the next request works on a sound connection`, async () => {
        const { t, server } = await fresh();
        const web = await webTier(t);
        cleanups.push(() => web.close());
        await setupShop(t, web.jobs);
        const used: number[] = [];
        const placeOrder = async (uow: RequestJobs, item: string, slow: boolean) => {
          await writeOrder(t, uow, item);
          await uow.enqueue('receipt', { item }, { tag: item });
          const id = await server.idOf(await uow.transaction());
          used.push(id);
          if (!slow) return;
          if (t.dialect === 'mysql') await server.end(id);
          await sleep(1200); // PostgreSQL: idle in transaction for over 400 ms, so the server ends the session
        };
        const app = framework === 'express' ? expressShop(web.jobs, placeOrder) : koaShop(web.jobs, placeOrder);

        await request(app).post('/slow/lost').expect(500);
        expect(await visible(t, web.jobs, 'lost')).to.deep.equal({ job: false, row: false });
        await request(app).post('/fast/kept').expect(201);
        expect(await visible(t, web.jobs, 'kept')).to.deep.equal({ job: true, row: true });
        expect(used[1], 'the ended connection is not handed out again').to.not.equal(used[0]);
        await poolSettled(web.view);
        trap.expectNone();
      });
    }

    it("a transactional handler's connection: the worker goes on, the attempt is retried, its effect exists once", async () => {
      const { t, server } = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 100 } });
      await jobs.migrate();
      await t.query(`CREATE TABLE ${t.prefix}ledger (job_id VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL)`);
      const insert = `INSERT INTO ${t.prefix}ledger (job_id, attempt) VALUES ($1, $2)`;
      let inHandler!: (id: number) => void;
      const handlerConnection = new Promise<number>((r) => (inHandler = r));
      let goOn!: () => void;
      const ended = new Promise<void>((r) => (goOn = r));
      jobs.define(
        'charge',
        async (_p, ctx) => {
          if (t.dialect === 'mysql') await t.appQuery(ctx.tx, insert, [ctx.id, ctx.attempt]);
          else await (ctx.tx as pg.PoolClient).query(insert, [ctx.id, ctx.attempt]);
          if (ctx.attempt === 1) {
            inHandler(await server.idOf(ctx.tx));
            await ended; // the server ends this connection meanwhile
          }
          return { charged: ctx.attempt };
        },
        { transactional: true, backoff: { type: 'fixed', baseMs: 10, jitter: 0 } },
      );
      jobs.define('after', async () => 'done');
      await jobs.start();
      const { id } = await jobs.enqueue('charge', {});
      await server.end(await handlerConnection);
      await sleep(100); // the client reads the end of its connection while the handler still holds it
      goOn();
      await until(async () => (await jobs.get(id))?.state === 'completed', 'the retried job to complete', 10_000);
      expect(await jobs.get(id)).to.deep.include({ attempts: 2, result: { charged: 2 } });
      const rows = await t.query<{ attempt: number }>(`SELECT attempt FROM ${t.prefix}ledger`);
      expect(rows.map((r) => Number(r.attempt)), 'the effect exists once, from the attempt that completed').to.deep.equal([2]);
      const next = await jobs.enqueue('after', {});
      await until(async () => (await jobs.get(next.id))?.state === 'completed', 'a later job', 10_000);
      trap.expectNone();
    });

    it("the sweeper's transaction, ended mid-statement: the worker goes on and sweeps again", async () => {
      const { t, server } = await fresh();
      // Heartbeats read the locked table too (the jobs they own), and each waits on a private connection: room for them beside the sweep.
      const jobs = t.jobs({ workerPoolSize: 10, worker: { pollInterval: 100, heartbeatInterval: 1000, stallTimeout: 3000 } });
      jobs.define('after', async () => 'done');
      const sweeps: ('ok' | 'failed')[] = [];
      const stalled = jobs.store.jobStalledList.bind(jobs.store);
      jobs.store.jobStalledList = (req) => stalled(req).then(
        (r) => (sweeps.push('ok'), r),
        (err) => (sweeps.push('failed'), Promise.reject(err)),
      );
      await jobs.start();
      // The sweeper reads the jobs table for stalled jobs (after its own heartbeat's age, on the
      // workers table): with it locked, the sweep's statement waits in its transaction.
      const held = await server.holdTable(`${t.prefix}jobs`);
      cleanups.push(() => held.release());
      await server.end(await server.waiting(held, [SWEEPER_MARKER, `${t.prefix}jobs`]));
      await held.release();
      await until(() => sweeps.includes('failed'), 'the ended sweep to fail', 5000);
      const failedAt = sweeps.lastIndexOf('failed');
      await until(() => sweeps.slice(failedAt).includes('ok'), 'a later sweep', 5000);
      const next = await jobs.enqueue('after', {});
      await until(async () => (await jobs.get(next.id))?.state === 'completed', 'a later job', 10_000);
      trap.expectNone();
    });

    it("a migration's connection, ended while it waits for the migration lock: migrate fails, the next one succeeds", async () => {
      const { t, server } = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 100 } });
      jobs.define('after', async () => 'done');
      const held = await server.holdMigrationLock();
      cleanups.push(() => held.release());
      const migrating = jobs.migrate().then(
        () => 'migrated',
        (err: Error) => err,
      );
      const marker = t.dialect === 'mysql' ? lockName(`${t.prefix}migrate`) : 'pg_advisory_xact_lock';
      await server.end(await server.waiting(held, [marker]));
      expect(await migrating).to.be.an('error');
      await held.release();
      await jobs.migrate();
      await jobs.start();
      const next = await jobs.enqueue('after', {});
      await until(async () => (await jobs.get(next.id))?.state === 'completed', 'a job after the migration', 10_000);
      trap.expectNone();
    });

    it("the leader's session-lock connection: the leader steps down, leadership returns and jobs go on", async () => {
      const { t, server } = await fresh();
      const jobs = t.jobs({ leader: { leaseMs: 300 }, worker: { pollInterval: 100, heartbeatInterval: 100, stallTimeout: 300 } });
      jobs.define('after', async () => 'done');
      const seen: boolean[] = [];
      jobs.on('leader', (e) => seen.push(e.leader));
      await jobs.start();
      await until(() => jobs.isLeader(), 'leadership', 5000);
      await server.end(await server.leaderConnection());
      await until(() => seen.includes(false), 'the leader to step down', 5000);
      await until(() => jobs.isLeader(), 'leadership again', 5000);
      const next = await jobs.enqueue('after', {});
      await until(async () => (await jobs.get(next.id))?.state === 'completed', 'a later job', 10_000);
      trap.expectNone();
    });

    if (factory.name !== 'mysql') {
      it('the LISTEN connection: the worker listens again and hears a job enqueued elsewhere', async () => {
        const { t, server } = await fresh();
        const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
        jobs.define('after', async () => 'done');
        await jobs.start();
        const producer = (await t.another()).jobs({ worker: false });
        const listening = async () => t.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE query = $1', [`LISTEN "${t.prefix}cancel"`]);
        const first = await until(async () => (await listening())[0], 'the LISTEN connection', 5000);
        await server.end(Number(first.pid));
        await until(async () => (await listening()).some((r) => r.pid !== first.pid), 'a new LISTEN connection', 5000);
        const next = await producer.enqueue('after', {});
        // The poll interval is a minute: only a NOTIFY on the new connection starts the job this soon.
        await until(async () => (await jobs.get(next.id))?.state === 'completed', 'the job to start through LISTEN', 5000);
        trap.expectNone();
      });
    }
  });
}

/**
 * SQL Server cannot run here. mssql keeps an 'error' listener on every tedious connection for its
 * whole life and re-emits what is not a socket error on the pool that made it; so what the library
 * must provide is a listener on each pool of its own (the app's pool is the app's, as with pg).
 */
describe('a connection ended by the server [mssql, wiring without a server]', () => {
  it("an error mssql re-emits on the library's private pool reaches a listener, not the process", () => {
    const config = { server: '127.0.0.1', port: 1, database: 'none', user: 'u', password: 'p', options: { trustServerCertificate: true } };
    const store = new MssqlStore(new mssql.ConnectionPool(config), { prefix: 'app_', workerPoolSize: 1 });
    const own = (store as unknown as { own: EventEmitter }).own;
    expect(() => own.emit('error', new Error('Connection lost - read ECONNRESET'))).to.not.throw();
  });
});
