import type BetterSqlite3 from 'better-sqlite3';
import { ormAdapterOf } from './orm/caller.ts';
import { fn } from './orm/shape.ts';
import { drizzleClient } from './orm/drizzle.ts';
import { isKnexInstance } from './orm/knex.ts';
import { isKysely } from './orm/kysely.ts';

/** Which driver is this object? Decided by shape, never instanceof (the app's copy of a driver may not be ours). */

export type DriverKind = 'better-sqlite3' | 'pg-pool' | 'pg-client' | 'slonik' | 'mysql2' | 'mssql';


/** A better-sqlite3 Database (node:sqlite's DatabaseSync has neither transaction nor pragma). */
export function isBetterSqlite(o: unknown): o is BetterSqlite3.Database {
  const d = o as Record<string, unknown>;
  return fn(d, 'prepare') && fn(d, 'transaction') && fn(d, 'pragma') && typeof d?.inTransaction === 'boolean';
}

export function detectDriver(db: unknown): DriverKind {
  const o = db as Record<string, unknown>;
  if (isBetterSqlite(o)) return 'better-sqlite3';
  if (fn(o, 'oneFirst') && fn(o, 'maybeOne') && fn(o, 'any') && fn(o, 'transaction')) return 'slonik';
  if (fn(o, 'request') && fn(o, 'transaction') && o && 'connected' in o && fn(o, 'connect') && fn(o, 'close')) return 'mssql';
  if (fn(o, 'getConnection') && fn(o, 'execute')) return 'mysql2';
  if (fn(o, 'connect') && fn(o, 'query') && typeof o?.totalCount === 'number') return 'pg-pool';
  if (fn(o, 'query') && o && 'connectionParameters' in o && 'processID' in o) return 'pg-client';
  if (fn(o, 'execute') && fn(o, 'query') && fn(o, 'beginTransaction')) {
    throw new TypeError('createJobs: db must be a mysql2 pool (mysql.createPool), not a single connection (the worker needs its own connections); pass the connection as opts.tx to enqueue inside its transaction');
  }
  throw new TypeError(
    `createJobs: db: expected a better-sqlite3 Database, pg Pool, slonik pool, mysql2 pool or mssql ConnectionPool; got ${shape(db)}`,
  );
}

function shape(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v !== 'object' && typeof v !== 'function') return `${typeof v} ${JSON.stringify(v)}`;
  const name = (v as object).constructor?.name ?? 'Object';
  const keys = Object.keys(v as object).slice(0, 6);
  return `${name}${keys.length ? ` with keys ${keys.join(', ')}` : ''}`;
}

/** What the caller gave as opts.tx, in words, for a refusal: an ORM's object is named as such, anything else by its shape. */
export function describeTx(tx: unknown): string {
  return ormAdapterOf(tx)?.name ?? ormInstanceName(tx) ?? shape(tx);
}

/**
 * describeTx, plus the database an ORM's transaction runs on when that is another one than the
 * instance's (a Knex transaction on MySQL given to a PostgreSQL instance said only "got a Knex
 * transaction" where a Knex transaction was asked for).
 */
export function describeCallerTx(tx: unknown, native: unknown): string {
  const what = describeTx(tx);
  if (native === tx || native == null || typeof native !== 'object') return what;
  const n = native as Record<string, unknown>;
  const on = isPgClient(n)
    ? 'PostgreSQL (a pg client)'
    : isBetterSqlite(n)
      ? `SQLite (${String(n.name)})`
      : fn(n, 'query') && ('threadId' in n || (typeof n.connection === 'object' && n.connection !== null && 'threadId' in n.connection))
        ? 'MySQL/MariaDB (a mysql2 connection)'
        : null;
  return on ? `${what} running on ${on}` : what;
}

/** An ORM's instance given where its transaction belongs. */
function ormInstanceName(o: unknown): string | undefined {
  if (isKnexInstance(o)) return 'a Knex instance (not a transaction: pass the trx of knex.transaction())';
  if (o !== null && typeof o === 'object' && isKysely(o as Record<string, unknown>)) return 'a Kysely instance (not a transaction: pass the trx of db.transaction().execute())';
  if (drizzleClient(o) !== undefined) return 'a Drizzle database (not a transaction: pass the tx of db.transaction())';
  return undefined;
}

/** A pg client handed as opts.tx: a PoolClient or Client, which must be inside BEGIN. */
export function isPgClient(tx: unknown): boolean {
  const o = tx as Record<string, unknown>;
  return fn(o, 'query') && o != null && 'connectionParameters' in o;
}
