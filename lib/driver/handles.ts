/**
 * The database handles createJobs({ db }) and opts.tx take, as types: each driver's pool,
 * database or connection by the members that tell it apart (structural, as the ORM shapes in
 * ./orm/types.ts are). The public declarations import no driver package: an app on PostgreSQL
 * compiles without better-sqlite3's or mysql2's types, and the one it uses keeps its own types for
 * what it does with the handle.
 */

type Method = (...args: never[]) => unknown;

/** A better-sqlite3 Database. */
export interface SqliteDatabaseLike {
  prepare: Method;
  exec: Method;
  pragma: Method;
  transaction: Method;
  readonly inTransaction: boolean;
}

/** A pg Pool (node-postgres). */
export interface PgPoolLike {
  connect: Method;
  query: Method;
  end: Method;
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

/** A pg Client or a Pool's client (`await pool.connect()`). */
export interface PgClientLike {
  query: Method;
  escapeIdentifier: Method;
  escapeLiteral: Method;
}

/** A mysql2 pool, callback or promise flavour (`mysql.createPool(…)`, `…/promise`). */
export interface MysqlPoolLike {
  getConnection: Method;
  query: Method;
  execute: Method;
  escape: Method;
  format: Method;
  end: Method;
}

/** A mysql2 connection, callback or promise flavour, its own or a pool's. */
export interface MysqlConnectionLike {
  query: Method;
  execute: Method;
  beginTransaction: Method;
  commit: Method;
  rollback: Method;
  escape: Method;
  /** A pool: mysql2's promise Pool is typed as a Connection too, but it is no transaction. */
  getConnection?: never;
}

type SlonikRow = Record<string, unknown>;
type SlonikQueryToken = unknown;

/** What we use of a slonik connection (pool, pool connection or transaction connection). */
export interface SlonikConnectionLike {
  query(token: SlonikQueryToken): Promise<{ rows: readonly SlonikRow[] }>;
  transaction<T>(handler: (t: SlonikConnectionLike) => Promise<T>, transactionRetryLimit?: number): Promise<T>;
  oneFirst(token: SlonikQueryToken): Promise<unknown>;
  maybeOne(token: SlonikQueryToken): Promise<unknown>;
  any(token: SlonikQueryToken): Promise<readonly SlonikRow[]>;
}

/** A slonik pool, as createPool() returns it. */
export interface SlonikPoolLike extends SlonikConnectionLike {
  readonly configuration: { readonly connectionUri: string };
  connect<T>(handler: (c: SlonikConnectionLike) => Promise<T>): Promise<T>;
  end(): Promise<void>;
}

/** What an mssql request answers. */
export interface MssqlResult {
  recordset?: Record<string, unknown>[];
  recordsets: Record<string, unknown>[][];
  rowsAffected: number[];
}

/** What we use of an mssql Request. */
export interface MssqlRequestLike {
  input(name: string, type: unknown, value: unknown): MssqlRequestLike;
  query(text: string): Promise<MssqlResult>;
}

/** What we use of an mssql Transaction. */
export interface MssqlTransactionLike {
  begin(isolationLevel?: number): Promise<unknown>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  request(): MssqlRequestLike;
  readonly parent: unknown;
}

/** An mssql ConnectionPool (`new sql.ConnectionPool(config)`; the app connects it). */
export interface MssqlPoolLike {
  readonly connected: boolean;
  readonly config: object;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  request(): MssqlRequestLike;
  transaction(): MssqlTransactionLike;
  on(event: 'error', cb: (err: unknown) => void): unknown;
}

/** PostgreSQL: what sits between the app's pool and the server (see ./postgres/pooler.ts). */
export type PoolerMode = 'auto' | 'session' | 'transaction';
