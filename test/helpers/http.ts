/** What the Express and Koa tests share: the app's own table, and what they look at afterwards. */
import { expect } from 'chai';
import type pg from 'pg';
import type { DatabasePool } from 'slonik';
import type Database from 'better-sqlite3';
import type { Jobs } from '../../lib/index.ts';
import { until, type TestDb } from './dialects.ts';

/**
 * The app's own orders table (PostgreSQL: written in the request's transaction, with a deferred
 * unique constraint that fails only at COMMIT), and on SQLite a trigger that refuses the jobs
 * tagged 'zip' (a failing write at the commit point).
 */
export async function setupShop(t: TestDb, jobs: Jobs): Promise<void> {
  await jobs.migrate();
  if (t.dialect === 'postgres') {
    await t.query(`CREATE TABLE ${t.prefix}orders (id serial PRIMARY KEY, item text NOT NULL,
      code text, CONSTRAINT ${t.prefix}code_unique UNIQUE (code) DEFERRABLE INITIALLY DEFERRED)`);
  } else if (t.dialect === 'mssql') {
    // SQL Server has no deferred constraints: the duplicate code fails at its INSERT, not at COMMIT.
    await t.query(`CREATE TABLE ${t.prefix}orders (id INT IDENTITY PRIMARY KEY, item NVARCHAR(200) NOT NULL, code NVARCHAR(200))`);
    await t.query(`CREATE UNIQUE INDEX ${t.prefix}code_unique ON ${t.prefix}orders (code) WHERE code IS NOT NULL`);
  } else {
    (t.db as Database.Database).exec(`CREATE TRIGGER ${t.prefix}boom BEFORE INSERT ON ${t.prefix}jobs WHEN NEW.tag = 'zip' BEGIN SELECT RAISE(ABORT, 'refused'); END`);
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
