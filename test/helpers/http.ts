/** What the Express and Koa tests share: the app's own table, and what they look at afterwards. */
import { expect } from 'chai';
import pg from 'pg';
import { createPool as createSlonikPool, type DatabasePool } from 'slonik';
import type mysql from 'mysql2/promise';
import type Database from 'better-sqlite3';
import type { Jobs, RequestJobs, SupportedDb } from '../../lib/index.ts';
import { MYSQL_URL, PG_URL, mysqlPool, until, type TestDb } from './dialects.ts';
import { innodbTransactions } from './innodb.ts';

/**
 * The app's own orders table (PostgreSQL: written in the request's transaction, with a deferred
 * unique constraint that fails only at COMMIT), and on SQLite a trigger that refuses the jobs
 * tagged 'zip…' (a failing write at the commit point).
 */
export async function setupShop(t: TestDb, jobs: Jobs): Promise<void> {
  await jobs.migrate();
  if (t.dialect === 'postgres') {
    await t.query(`CREATE TABLE ${t.prefix}orders (id serial PRIMARY KEY, item text NOT NULL,
      code text, CONSTRAINT ${t.prefix}code_unique UNIQUE (code) DEFERRABLE INITIALLY DEFERRED)`);
  } else if (t.dialect === 'mysql') {
    // MySQL/MariaDB check constraints at once: its failing commit is a lost connection (loseConnection).
    await t.query(`CREATE TABLE ${t.prefix}orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(255) NOT NULL, code VARCHAR(255))`);
  } else if (t.dialect === 'mssql') {
    // SQL Server has no deferred constraints: the duplicate code fails at its INSERT, not at COMMIT.
    await t.query(`CREATE TABLE ${t.prefix}orders (id INT IDENTITY PRIMARY KEY, item NVARCHAR(200) NOT NULL, code NVARCHAR(200))`);
    await t.query(`CREATE UNIQUE INDEX ${t.prefix}code_unique ON ${t.prefix}orders (code) WHERE code IS NOT NULL`);
  } else {
    (t.db as Database.Database).exec(`CREATE TRIGGER ${t.prefix}boom BEFORE INSERT ON ${t.prefix}jobs WHEN NEW.tag LIKE 'zip%' BEGIN SELECT RAISE(ABORT, 'refused'); END`);
  }
}

/** Whether the request's job (tagged with the item) and its order row (PostgreSQL) exist. */
export async function visible(t: TestDb, jobs: Jobs, item: string): Promise<{ job: boolean; row: boolean }> {
  const job = (await jobs.list({ tag: item })).items.length > 0;
  if (t.dialect === 'sqlite') return { job, row: job };
  const rows = await t.query(`SELECT 1 FROM ${t.prefix}orders WHERE item = $1 OR item LIKE $2`, [item, `${item}-%`]);
  return { job, row: rows.length > 0 };
}

/** Every pooled connection is back and no session is left inside a transaction. */
export async function poolSettled(t: TestDb): Promise<void> {
  if (t.dialect === 'sqlite') return;
  if (t.dialect === 'mysql') return mysqlPoolSettled(t);
  if (t.dialect === 'mssql') {
    const pool = t.db as unknown as { borrowed: number; pending: number };
    await until(() => pool.borrowed === 0 && pool.pending === 0, 'every connection back in the pool', 5000);
    const open = await t.query(`SELECT session_id FROM sys.dm_exec_sessions WHERE open_transaction_count > 0 AND database_id = DB_ID() AND session_id <> @@SPID`);
    expect(open).to.have.length(0);
    return;
  }
  if (t.driver === 'slonik') {
    const pool = t.db as DatabasePool;
    await until(() => pool.state().acquiredConnections === 0 && pool.state().waitingClients === 0, 'every connection back in the pool', 5000);
  } else {
    const pool = t.db as pg.Pool;
    await until(() => pool.totalCount === pool.idleCount && pool.waitingCount === 0, 'every connection back in the pool', 5000);
  }
  // Only this test's sessions (the app pool is named after the prefix): other runs share the database.
  const idleInTx = await t.query(
    `SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database() AND pid <> pg_backend_pid()
       AND application_name = $1`,
    [t.prefix],
  );
  expect(idleInTx).to.have.length(0);
}

interface Denque<T> {
  length: number;
  toArray(): T[];
}

async function mysqlPoolSettled(t: TestDb): Promise<void> {
  const pool = (t.db as mysql.Pool).pool as unknown as {
    _allConnections: Denque<{ threadId: number }>;
    _freeConnections: Denque<unknown>;
    _connectionQueue: Denque<unknown>;
  };
  await until(
    () => pool._allConnections.length === pool._freeConnections.length && pool._connectionQueue.length === 0,
    'every connection back in the pool',
    5000,
  );
  const ours = new Set(pool._allConnections.toArray().map((c) => c.threadId));
  const open = await innodbTransactions((text) => t.query(text));
  expect(open.filter((trx) => ours.has(trx.threadId)), 'sessions left inside a transaction').to.have.length(0);
}

/** The app's order row, written in the request's transaction (no table on SQLite, whose jobs are buffered). */
export async function writeOrder(t: TestDb, uow: RequestJobs, item: string, code?: string): Promise<void> {
  if (t.dialect === 'sqlite') return;
  await t.appQuery(await uow.transaction(), `INSERT INTO ${t.prefix}orders (item, code) VALUES ($1, $2)`, [item, code ?? null]);
}

/**
 * A statement of the app's own on the request's transaction fails and the app goes on (a
 * fallback). PostgreSQL has then aborted the transaction: its COMMIT answers ROLLBACK.
 */
export async function caughtFailure(t: TestDb, uow: RequestJobs): Promise<string> {
  try {
    await t.appQuery(await uow.transaction(), `SELECT 1 / 0 AS boom`, []);
    return 'no error';
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * MySQL/MariaDB check constraints at once (nothing is deferred to COMMIT): a commit that fails is
 * one whose connection died first. Kill the request's connection from outside.
 */
export async function loseConnection(t: TestDb, uow: RequestJobs): Promise<void> {
  const c = await uow.transaction<mysql.PoolConnection>();
  const [rows] = await c.query('SELECT CONNECTION_ID() AS id');
  await t.query(`KILL CONNECTION ${Number((rows as { id: number }[])[0].id)}`);
}

/**
 * A request's work whose commit fails, for an item named 'zip…': on PostgreSQL two orders with the
 * same deferred-unique code, on MariaDB the connection killed, on SQLite a job the trigger refuses.
 */
export async function failingWork(t: TestDb, uow: RequestJobs, item: string): Promise<void> {
  await writeOrder(t, uow, `${item}-a`, item);
  if (t.dialect === 'postgres') await writeOrder(t, uow, `${item}-b`, item);
  await uow.enqueue('receipt', { item }, { tag: item });
  if (t.dialect === 'mysql') await loseConnection(t, uow);
}

/** The route each dialect's app uses to make its commit fail (SQL Server: its duplicate fails at the INSERT). */
export function failingCommitRoute(t: TestDb): 'dup' | 'lost' | 'ok' {
  return t.dialect === 'sqlite' ? 'ok' : t.dialect === 'mysql' ? 'lost' : 'dup';
}

/** An app handle of the test's driver whose default-prefix tables (sqljobs_…) belong to it alone. */
export interface OwnHandle {
  db: SupportedDb;
  /** Rows in one of its tables. */
  count(table: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * For `jobsMiddleware(handle)`, which uses the default table prefix: the test's SQLite file, a
 * PostgreSQL pool (pg or slonik) whose search_path is a schema of its own, a MariaDB pool on a
 * database of its own. Other runs share the servers, so nothing lands in their sqljobs_ tables.
 */
export async function ownHandle(t: TestDb): Promise<OwnHandle> {
  const name = `${t.prefix}own`;
  if (t.dialect === 'sqlite') {
    return { db: t.db, count: async (table) => Number((await t.query<{ n: number }>(`SELECT count(*) AS n FROM ${table}`))[0].n), close: async () => undefined };
  }
  if (t.dialect === 'postgres') {
    await t.query(`CREATE SCHEMA ${name}`);
    const options = `-c search_path=${name}`;
    const side = new pg.Pool({ connectionString: PG_URL, max: 2, options });
    const url = new URL(PG_URL);
    url.searchParams.set('options', options);
    const db = t.driver === 'slonik' ? await createSlonikPool(url.toString(), { maximumPoolSize: 5 }) : new pg.Pool({ connectionString: PG_URL, max: 5, options });
    return {
      db,
      count: async (table) => Number((await side.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n),
      close: async () => {
        await db.end();
        await side.end();
        await t.query(`DROP SCHEMA ${name} CASCADE`);
      },
    };
  }
  if (t.dialect === 'mysql') {
    await t.query(`CREATE DATABASE ${name}`);
    const url = new URL(MYSQL_URL);
    url.pathname = `/${name}`;
    const db = mysqlPool(url.toString(), 5);
    return {
      db,
      count: async (table) => Number(((await db.query(`SELECT count(*) AS n FROM ${table}`))[0] as { n: number }[])[0].n),
      close: async () => {
        await db.end();
        await t.query(`DROP DATABASE ${name}`);
      },
    };
  }
  throw new Error(`ownHandle: not written for ${t.dialect}`);
}
