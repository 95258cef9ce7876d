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
import { createJobs, type Jobs, type JobsOptions } from '../../lib/index.ts';

export const PG_URL = process.env.SQLJOBS_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_URL = process.env.SQLJOBS_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export interface TestDb {
  dialect: 'sqlite' | 'postgres' | 'mysql';
  /** The app handle given to createJobs. */
  db: Database.Database | pg.Pool | mysql.Pool;
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
  name: 'sqlite' | 'postgres' | 'mysql';
  available(): Promise<string | null>;
  create(prefix?: string): Promise<TestDb>;
}

let counter = 0;
export function uniquePrefix(): string {
  return `t${process.pid % 100000}_${Date.now() % 1_000_000}_${counter++}_`;
}

const created: Jobs[] = [];
afterEach(async function () {
  for (const j of created.splice(0)) await j.close({ timeout: 2000 }).catch(() => undefined);
});

function track(j: Jobs): Jobs {
  created.push(j);
  return j;
}

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
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-test-'));
    const file = path.join(dir, 'jobs.db');
    const open = (): TestDb => {
      const db = new Database(file);
      db.pragma('busy_timeout = 5000');
      return {
        dialect: 'sqlite',
        db,
        prefix,
        location: file,
        jobs: (opts = {}) => track(createJobs({ db, tablePrefix: prefix, ...opts })),
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
    const open = (): TestDb => {
      const pool = new pg.Pool({ connectionString: PG_URL, max: 10 });
      pool.on('error', () => undefined); // idle connections dropped by a server restart are replaced on next use
      return {
        dialect: 'postgres',
        db: pool,
        prefix,
        location: PG_URL,
        jobs: (opts = {}) => track(createJobs({ db: pool, tablePrefix: prefix, ...opts })),
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
      const pool = first.db as pg.Pool;
      const tables = await pool.query(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1`, [`${prefix}%`]);
      for (const t of tables.rows) await pool.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
      await close();
    };
    return first;
  },
};

/** A mysql2 promise pool for tests; UTC both ways, so Date parameters mean what they say. */
export function mysqlPool(url = MYSQL_URL, max = 10): mysql.Pool {
  return mysql.createPool({ uri: url, connectionLimit: max, timezone: 'Z' });
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
    const open = (): TestDb => {
      const pool = mysqlPool();
      return {
        dialect: 'mysql',
        db: pool,
        prefix,
        location: MYSQL_URL,
        jobs: (opts = {}) => track(createJobs({ db: pool, tablePrefix: prefix, ...opts })),
        // Tests write PostgreSQL-style $n placeholders; mysql2 takes ? in order.
        query: async (sql, params = []) => {
          const order: unknown[] = [];
          const text = sql.replace(/\$(\d+)/g, (_, n) => (order.push(params[Number(n) - 1]), '?'));
          return (await pool.query(text, /\$\d/.test(sql) ? order : params))[0] as never;
        },
        another: async () => open(),
        cleanup: async () => {
          await pool.end();
        },
      };
    };
    const first = open();
    const close = first.cleanup;
    first.cleanup = async () => {
      const pool = first.db as mysql.Pool;
      const [tables] = await pool.query(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?`, [`${prefix.replaceAll("_", "\\_")}%`]);
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

export const DIALECTS: DialectFactory[] = [sqlite, postgres, mysqlDialect];

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
    if (process.env.CI === 'true') throw new Error(`CI: ${why}`);
    console.warn(`\n  !!! SKIPPING ${this.test?.parent?.title ?? factory.name}: ${why}\n`);
    this.skip();
  };
}

/**
 * describe() once per dialect. Unavailable databases are skipped loudly locally and fail in CI.
 */
export function forEachDialect(title: string, body: (ctx: { factory: DialectFactory; fresh: () => Promise<TestDb> }) => void): void {
  for (const factory of selectedDialects()) {
    describe(`${title} [${factory.name}]`, function () {
      const opened: TestDb[] = [];
      before(requireDatabase(factory));
      afterEach(async function () {
        // Jobs instances are closed by the global afterEach above (registered first, runs first).
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
