/**
 * The databases every conformance case runs on. SQLite always; PostgreSQL when reachable.
 * A missing server is skipped with a loud message on a developer's machine and is a failure in CI.
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createJobs, type Jobs, type JobsOptions } from '../../lib/index.ts';

export const PG_URL = process.env.SQLJOBS_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestDb {
  dialect: 'sqlite' | 'postgres';
  /** The app handle given to createJobs. */
  db: Database.Database | pg.Pool;
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
  name: 'sqlite' | 'postgres';
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

/** Remember a Jobs instance both globally and on its TestDb, whose cleanup closes it before dropping anything. */
function track(j: Jobs, mine: Jobs[]): Jobs {
  created.push(j);
  mine.push(j);
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
      const mine: Jobs[] = [];
      return {
        dialect: 'sqlite',
        db,
        prefix,
        location: file,
        jobs: (opts = {}) => track(createJobs({ db, tablePrefix: prefix, ...opts }), mine),
        query: async (sql, params = []) => {
          const stmt = db.prepare(sql);
          return (stmt.reader ? stmt.all(...params) : (stmt.run(...params), [])) as never;
        },
        another: async () => open(),
        cleanup: async () => {
          await closeJobs(mine);
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
    /** `beforeEnd` runs after this handle's Jobs instances are closed: a worker must not see its tables vanish. */
    const open = (beforeEnd: (pool: pg.Pool) => Promise<void> = async () => undefined): TestDb => {
      const pool = new pg.Pool({ connectionString: PG_URL, max: 10 });
      pool.on('error', () => undefined); // idle connections dropped by a server restart are replaced on next use
      const mine: Jobs[] = [];
      return {
        dialect: 'postgres',
        db: pool,
        prefix,
        location: PG_URL,
        jobs: (opts = {}) => track(createJobs({ db: pool, tablePrefix: prefix, ...opts }), mine),
        query: async (sql, params = []) => (await pool.query(sql, params)).rows as never,
        another: async () => open(),
        cleanup: async () => {
          await closeJobs(mine);
          await beforeEnd(pool);
          await pool.end();
        },
      };
    };
    return open(async (pool) => {
      const tables = await pool.query(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1`, [`${prefix}%`]);
      for (const t of tables.rows) await pool.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
    });
  },
};

export const DIALECTS: DialectFactory[] = [sqlite, postgres];

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
  for (const factory of DIALECTS) {
    describe(`${title} [${factory.name}]`, function () {
      const opened: TestDb[] = [];
      before(requireDatabase(factory));
      afterEach(async function () {
        // Each TestDb's cleanup closes its Jobs instances before it drops tables or closes handles.
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
