/**
 * The databases every conformance case runs on. SQLite always; PostgreSQL when reachable.
 * A missing server is skipped with a loud message on a developer's machine and is a failure in CI.
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import mysql from 'mysql2/promise';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPool as createSlonikPool, sql as slonikSql, type DatabasePool, type DatabaseTransactionConnection, type Interceptor } from 'slonik';
import { createJobs, type Jobs, type JobsOptions } from '../../lib/index.ts';
import { token as slonikToken } from '../../lib/driver/postgres/slonik.ts';
import { isCI } from './ci.ts';
import mssql, { type ConnectionPool as MssqlPool, type Transaction as MssqlTx, type Request as MssqlRequest } from 'mssql';

export const PG_URL = process.env.SQLJOBS_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_URL = process.env.SQLJOBS_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export interface TestDb {
  /** The SQL the database speaks. */
  dialect: 'sqlite' | 'postgres' | 'mysql' | 'mssql';
  /** The app's driver, when the dialect has more than one (slonik speaks postgres). */
  driver: 'better-sqlite3' | 'pg' | 'slonik' | 'mysql2' | 'mssql';
  /** The app handle given to createJobs. */
  db: Database.Database | pg.Pool | DatabasePool | mysql.Pool | MssqlPool;
  /** Run the app's own statement ($n placeholders) on a transaction handle of this driver, as the app would. */
  appQuery(handle: unknown, sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  prefix: string;
  /** What a child process needs to open the same database: a file path or a URL. */
  location: string;
  /** Create a Jobs instance on this database with test-friendly defaults. */
  jobs(opts?: Omit<JobsOptions, 'db'>): Jobs;
  /** Run SQL directly (assertions look at the tables themselves). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** A second, independent handle (another "process" in the same test). */
  another(): Promise<TestDb>;
  cleanup(): Promise<void>;
}

export interface DialectFactory {
  name: 'sqlite' | 'postgres' | 'slonik' | 'mysql' | 'mssql';
  available(): Promise<string | null>;
  create(prefix?: string): Promise<TestDb>;
}

let counter = 0;
export function uniquePrefix(): string {
  return `t${process.pid % 100000}_${Date.now() % 1_000_000}_${counter++}_`;
}

const created: Jobs[] = [];
/** Safety net for instances whose TestDb was never cleaned up (mocha runs this after the suites' own afterEach hooks). */
afterEach(async function () {
  await closeJobs(created);
});

async function closeJobs(list: Jobs[]): Promise<void> {
  for (const j of list.splice(0)) {
    if (created.includes(j)) created.splice(created.indexOf(j), 1);
    await j.close({ timeout: 2000 }).catch(() => undefined);
  }
}

/**
 * Remember a Jobs instance globally and on its test database (`mine`, shared by the handles from
 * another()), whose cleanup closes every one of them before it drops a table or ends a pool: a
 * worker must never see its tables vanish under it.
 */
function track(j: Jobs, mine: Jobs[]): Jobs {
  created.push(j);
  mine.push(j);
  return j;
}

/**
 * SQLJOBS_SQLITE_HISTORY=monthly-files: every SQLite Jobs a test makes keeps history in monthly
 * files (the conformance suite runs both ways); a test's own `history` option still wins.
 */
const SQLITE_HISTORY: { history?: 'monthly-files' } = process.env.SQLJOBS_SQLITE_HISTORY === 'monthly-files' ? { history: 'monthly-files' } : {};
/** Whether SQLite test databases keep history in monthly files (SQLJOBS_SQLITE_HISTORY=monthly-files). */
export const SQLITE_MONTHLY_FILES = SQLITE_HISTORY.history === 'monthly-files';

const sqlite: DialectFactory = {
  name: 'sqlite',
  async available() {
    try {
      new Database(':memory:').close();
      return null;
    } catch (err) {
      return `better-sqlite3 cannot load: ${(err as Error).message}`;
    }
  },
  async create(prefix = uniquePrefix()) {
    const mine: Jobs[] = [];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-test-'));
    const file = path.join(dir, 'jobs.db');
    const open = (): TestDb => {
      const db = new Database(file);
      db.pragma('busy_timeout = 5000');
      return {
        dialect: 'sqlite',
        driver: 'better-sqlite3',
        db,
        appQuery: async () => {
          throw new Error('better-sqlite3 has no transaction handle to run on across an await');
        },
        prefix,
        location: file,
        jobs: (opts = {}) => track(createJobs({ db, tablePrefix: prefix, ...SQLITE_HISTORY, ...opts }), mine),
        query: async (sql, params = []) => {
          const stmt = db.prepare(sql);
          return (stmt.reader ? stmt.all(...params) : (stmt.run(...params), [])) as never;
        },
        another: async () => open(),
        cleanup: async () => {
          db.close();
        },
      };
    };
    const first = open();
    const close = first.cleanup;
    first.cleanup = async () => {
      await closeJobs(mine);
      await close();
      fs.rmSync(dir, { recursive: true, force: true });
    };
    return first;
  },
};

const postgres: DialectFactory = {
  name: 'postgres',
  async available() {
    const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
      return null;
    } catch (err) {
      return `PostgreSQL at ${PG_URL} is not reachable: ${(err as Error).message}`;
    } finally {
      await c.end().catch(() => undefined);
    }
  },
  async create(prefix = uniquePrefix()) {
    const mine: Jobs[] = [];
    const open = (): TestDb => {
      // Named after the test's prefix, so checks on pg_stat_activity see this test's sessions only.
      const pool = new pg.Pool({ connectionString: PG_URL, max: 10, application_name: prefix });
      pool.on('error', () => undefined); // idle connections dropped by a server restart are replaced on next use
      return {
        dialect: 'postgres',
        driver: 'pg',
        db: pool,
        appQuery: async (handle, sql, params = []) => (await (handle as pg.PoolClient).query(sql, params)).rows,
        prefix,
        location: PG_URL,
        jobs: (opts = {}) => track(createJobs({ db: pool, tablePrefix: prefix, ...opts }), mine),
        query: async (sql, params = []) => (await pool.query(sql, params)).rows as never,
        another: async () => open(),
        cleanup: async () => {
          await pool.end();
        },
      };
    };
    const first = open();
    const close = first.cleanup;
    first.cleanup = async () => {
      await closeJobs(mine);
      await dropPrefixed(first.db as pg.Pool, prefix);
      await close();
    };
    return first;
  },
};

async function dropPrefixed(pool: pg.Pool, prefix: string): Promise<void> {
  // '_' is a LIKE wildcard: escaped, so t1_2_1_ does not match t1_2_10_jobs of another test.
  const tables = await pool.query(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`]);
  for (const t of tables.rows) await pool.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
  // History's trigger goes with its table; its function (migration 016) stays unless dropped.
  await pool.query(`DROP FUNCTION IF EXISTS "${prefix}finished_notify"()`);
}

/**
 * slonik 47 on the same PostgreSQL, with slonik's default type parsers (timestamps as numbers,
 * int8 as bigint) and a camelCase row interceptor, as apps commonly configure it: the library's
 * reads must not depend on either. Assertions (`query`) look at the tables through plain pg.
 */
const slonik: DialectFactory = {
  name: 'slonik',
  available: () => postgres.available(),
  async create(prefix = uniquePrefix()) {
    const mine: Jobs[] = [];
    const open = async (): Promise<TestDb> => {
      const url = new URL(PG_URL);
      url.searchParams.set('application_name', prefix);
      const pool = await createSlonikPool(url.toString(), { maximumPoolSize: 10, interceptors: [camelCaseRows] });
      const side = new pg.Pool({ connectionString: PG_URL, max: 3 });
      side.on('error', () => undefined);
      return {
        dialect: 'postgres',
        driver: 'slonik',
        db: pool,
        appQuery: async (handle, sql, params = []) =>
          [...(await (handle as DatabaseTransactionConnection).query(slonikToken(slonikSql.unsafe as never, sql, params) as never)).rows] as Record<string, unknown>[],
        prefix,
        location: PG_URL,
        jobs: (opts = {}) => track(createJobs({ db: pool, tablePrefix: prefix, ...opts }), mine),
        query: async (sql, params = []) => (await side.query(sql, params)).rows as never,
        another: () => open(),
        cleanup: async () => {
          await side.end();
          await pool.end();
        },
      };
    };
    const first = await open();
    const close = first.cleanup;
    first.cleanup = async () => {
      await closeJobs(mine);
      const side = new pg.Pool({ connectionString: PG_URL, max: 1 });
      await dropPrefixed(side, prefix).finally(() => side.end());
      await close();
    };
    return first;
  },
};

/** A slonik interceptor apps use: snake_case columns become camelCase keys. */
const camelCaseRows: Interceptor = {
  name: 'camel-case-rows',
  transformRow: (_ctx, _query, row) =>
    Object.fromEntries(Object.entries(row).map(([k, v]) => [k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()), v])) as typeof row,
};

export const MSSQL_URL = process.env.SQLJOBS_MSSQL_URL;

/** Run a test statement written with $n placeholders on an mssql pool or transaction (values bound). */
async function mssqlQuery(on: { request(): MssqlRequest }, text: string, params: unknown[]): Promise<Record<string, unknown>[]> {
  const req = on.request();
  params.forEach((v, i) => req.input(`p${i + 1}`, v));
  const res = await req.query(text.replace(/\$(\d+)/g, '@p$1'));
  return (res.recordsets as unknown as Record<string, unknown>[][]).at(-1) ?? [];
}

/**
 * SQL Server, only when SQLJOBS_MSSQL_URL is set (an mssql connection string, e.g.
 * "Server=127.0.0.1,1433;Database=test;User Id=sa;Password=...;Encrypt=true;TrustServerCertificate=true").
 */
const sqlserver: DialectFactory = {
  name: 'mssql',
  async available() {
    const pool = new mssql.ConnectionPool(MSSQL_URL!);
    try {
      await pool.connect();
      return null;
    } catch (err) {
      return `SQL Server at SQLJOBS_MSSQL_URL is not reachable: ${(err as Error).message}`;
    } finally {
      await pool.close().catch(() => undefined);
    }
  },
  async create(prefix = uniquePrefix()) {
    const mine: Jobs[] = [];
    const open = async (): Promise<TestDb> => {
      const pool = await new mssql.ConnectionPool(MSSQL_URL!).connect();
      pool.on('error', () => undefined);
      return {
        dialect: 'mssql',
        driver: 'mssql',
        db: pool,
        appQuery: (handle, sql, params = []) => mssqlQuery(handle as MssqlTx, sql, params),
        prefix,
        location: MSSQL_URL!,
        jobs: (opts = {}) => track(createJobs({ db: pool, tablePrefix: prefix, ...opts }), mine),
        query: (sql, params = []) => mssqlQuery(pool, sql, params) as never,
        another: () => open(),
        cleanup: async () => {
          await pool.close();
        },
      };
    };
    const first = await open();
    const close = first.cleanup;
    first.cleanup = async () => {
      await closeJobs(mine);
      const pool = first.db as MssqlPool;
      const tables = await mssqlQuery(pool, `SELECT name FROM sys.tables WHERE name LIKE $1`, [`${prefix.replace(/_/g, '[_]')}%`]);
      for (const t of tables) await pool.request().query(`DROP TABLE [${String(t.name).replace(/]/g, ']]')}]`);
      await close();
    };
    return first;
  },
};

/** A mysql2 promise pool for tests; UTC both ways, so Date parameters mean what they say. */
export function mysqlPool(url = MYSQL_URL, max = 10): mysql.Pool {
  return mysql.createPool({ uri: url, connectionLimit: max, timezone: 'Z' });
}

/** Tests write PostgreSQL-style $n placeholders; mysql2 takes ? in order. */
function toMysql(sql: string, params: unknown[]): [string, unknown[]] {
  if (!/\$\d/.test(sql)) return [sql, params];
  const order: unknown[] = [];
  return [sql.replace(/\$(\d+)/g, (_, n) => (order.push(params[Number(n) - 1]), '?')), order];
}

/**
 * SQLJOBS_MYSQL_PARTITIONED=1: every MySQL test database starts migrated with history partitioned
 * by month (`sqljobs history-partitions --apply`), so the suites run against a partitioned history.
 */
export const MYSQL_HISTORY_PARTITIONED = process.env.SQLJOBS_MYSQL_PARTITIONED === '1';

async function partitionHistory(t: TestDb): Promise<void> {
  const jobs = t.jobs({ worker: false });
  await jobs.migrate();
  await jobs.historyPartitions({ apply: true });
}

export const mysqlDialect: DialectFactory = {
  name: 'mysql',
  async available() {
    try {
      const c = await mysql.createConnection({ uri: MYSQL_URL, connectTimeout: 3000 });
      await c.query('SELECT 1');
      await c.end();
      return null;
    } catch (err) {
      return `MySQL/MariaDB at ${MYSQL_URL} is not reachable: ${(err as Error).message}`;
    }
  },
  async create(prefix = uniquePrefix()) {
    const mine: Jobs[] = [];
    const open = (): TestDb => {
      const pool = mysqlPool();
      return {
        dialect: 'mysql',
        driver: 'mysql2',
        db: pool,
        appQuery: async (handle, sql, params = []) => (await (handle as mysql.PoolConnection).query(...toMysql(sql, params)))[0] as Record<string, unknown>[],
        prefix,
        location: MYSQL_URL,
        jobs: (opts = {}) => track(createJobs({ db: pool, tablePrefix: prefix, ...opts }), mine),
        query: async (sql, params = []) => (await pool.query(...toMysql(sql, params)))[0] as never,
        another: async () => open(),
        cleanup: async () => {
          await pool.end();
        },
      };
    };
    const first = open();
    if (MYSQL_HISTORY_PARTITIONED) await partitionHistory(first);
    const close = first.cleanup;
    first.cleanup = async () => {
      await closeJobs(mine);
      const pool = first.db as mysql.Pool;
      const [tables] = await pool.query(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?`, [`${prefix.replaceAll('_', '\\_')}%`]);
      // A DROP waits for every open transaction on the table; bound the wait (default: a day).
      const c = await pool.getConnection();
      try {
        await c.query('SET SESSION lock_wait_timeout = 10');
        for (const t of tables as { t: string }[]) await c.query(`DROP TABLE IF EXISTS \`${t.t}\``);
      } finally {
        c.release();
      }
      await close();
    };
    return first;
  },
};

export const DIALECTS: DialectFactory[] = [sqlite, postgres, slonik, mysqlDialect, ...(MSSQL_URL ? [sqlserver] : [])];

/** The dialects the shared suites run on: all, or those named in SQLJOBS_DIALECTS (e.g. `mysql` while working on one). */
function selectedDialects(): DialectFactory[] {
  const only = process.env.SQLJOBS_DIALECTS?.split(',');
  return only ? DIALECTS.filter((d) => only.includes(d.name)) : DIALECTS;
}

/**
 * A mocha before() hook for dialect-only suites: skip loudly when the database (or something else
 * the suite needs, `extra`) is missing on a developer's machine; fail in CI.
 */
export function requireDatabase(factory: DialectFactory, extra: () => string | null = () => null) {
  return async function (this: Mocha.Context): Promise<void> {
    const why = (await factory.available()) ?? extra();
    if (!why) return;
    if (isCI()) throw new Error(`CI: ${why}`);
    console.warn(`\n  !!! SKIPPING ${this.test?.parent?.title ?? factory.name}: ${why}\n`);
    this.skip();
  };
}

/**
 * describe() once per dialect (of those in `only`, when given). Unavailable databases are skipped
 * loudly locally and fail in CI.
 */
/**
 * The dialects the multi-process suites (test/crash/) run on: every database, each through its
 * main driver. slonik sends PostgreSQL the same statements as pg, and what is its own (its pool,
 * transactions, errors, type parsers) is covered by the conformance, store, fault and HTTP suites;
 * running every crash test through it too cost CI about 2.5 minutes.
 */
export const PROCESS_DIALECTS: DialectFactory['name'][] = ['sqlite', 'postgres', 'mysql', 'mssql'];

export function forEachDialect(
  title: string,
  body: (ctx: { factory: DialectFactory; fresh: () => Promise<TestDb> }) => void,
  only?: DialectFactory['name'][],
): void {
  for (const factory of selectedDialects().filter((d) => !only || only.includes(d.name))) {
    describe(`${title} [${factory.name}]`, function () {
      const opened: TestDb[] = [];
      before(requireDatabase(factory));
      afterEach(async function () {
        // Each test database's cleanup closes its Jobs instances before it drops tables or ends pools.
        for (const t of opened.splice(0)) await t.cleanup().catch(() => undefined);
      });
      body({
        factory,
        fresh: async () => {
          const t = await factory.create();
          opened.push(t);
          const origAnother = t.another;
          t.another = async () => {
            const o = await origAnother();
            opened.unshift(o);
            return o;
          };
          return t;
        },
      });
    });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll until fn returns a truthy value (for behaviour that completes asynchronously). */
export async function until<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 10_000, everyMs = 10): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
