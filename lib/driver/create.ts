/** The store for the app's database handle, chosen by the driver's shape (never instanceof). */
import type BetterSqlite3 from 'better-sqlite3';
import type { Pool as PgPool } from 'pg';
import type { HistoryLayout, SupportedDb } from '../options.ts';
import { detectDriver } from './detect.ts';
import { ormDb } from './orm/instances.ts';
import { MssqlStore, isMssqlPool } from './mssql/store.ts';
import { MysqlStore } from './mysql/store.ts';
import { PostgresStore } from './postgres/store.ts';
import { createSlonikStore, isSlonikPool } from './postgres/slonik.ts';
import { SqliteStore } from './sqlite/store.ts';
import type { Store } from './store.ts';
import type { PoolerMode } from './postgres/pooler.ts';

export interface StoreSettings {
  prefix: string;
  /** SQLite: put the file in WAL mode. */
  sqliteWal: boolean;
  /** SQLite: one history table, or one file per month. */
  history: HistoryLayout;
  /** Server databases: connections of the worker's private pool. */
  workerPoolSize: number;
  /** PostgreSQL: the pooler in front of `db`, and a direct connection string for the session-scoped connections. */
  pooler: PoolerMode;
  directUrl: string | undefined;
  /** Warnings, each once (a transaction pooler detected). */
  warn: (message: string) => void;
}

export function createStore(given: SupportedDb, settings: StoreSettings): Store {
  const { prefix, sqliteWal, workerPoolSize } = settings;
  const postgres = { prefix, workerPoolSize, pooler: settings.pooler, directUrl: settings.directUrl, warn: settings.warn };
  const orm = ormDb(given);
  if (orm && 'postgres' in orm) {
    refuseMonthlyFiles(settings, 'pg (through the ORM)');
    return new PostgresStore(orm.postgres, postgres);
  }
  if (orm && 'mysql' in orm) {
    refusePostgresOnly(settings, 'mysql2 (through the ORM)');
    refuseMonthlyFiles(settings, 'mysql2 (through the ORM)');
    return new MysqlStore(orm.mysql, { prefix, workerPoolSize });
  }
  const db = (orm ? orm.native : given) as SupportedDb;
  const kind = detectDriver(db);
  if (kind !== 'pg-pool' && kind !== 'slonik') refusePostgresOnly(settings, kind);
  if (kind !== 'better-sqlite3') refuseMonthlyFiles(settings, kind);
  switch (kind) {
    case 'better-sqlite3':
      return new SqliteStore(db as BetterSqlite3.Database, { prefix, wal: sqliteWal, history: settings.history });
    case 'pg-pool':
      return new PostgresStore(db as PgPool, postgres);
    case 'mysql2':
      return new MysqlStore(db, { prefix, workerPoolSize: workerPoolSize });
    case 'pg-client':
      throw new TypeError('createJobs: db must be a pg Pool, not a single Client (the worker needs its own connections); pass the client as opts.tx to enqueue inside its transaction');
    case 'slonik':
      if (!isSlonikPool(db)) {
        throw new TypeError('createJobs: db must be a slonik pool, not a connection (the worker needs its own connections); pass a transaction connection as opts.tx to enqueue inside it');
      }
      return createSlonikStore(db, postgres);
    case 'mssql':
      if (!isMssqlPool(db)) throw new TypeError('createJobs: db must be an mssql ConnectionPool');
      return new MssqlStore(db, { prefix, workerPoolSize: workerPoolSize });
    default:
      throw new TypeError(`createJobs: the ${kind satisfies never} driver is not supported`);
  }
}

/** pooler and directUrl describe a PostgreSQL deployment; elsewhere they would be silently ignored. */
function refusePostgresOnly(settings: StoreSettings, kind: string): void {
  if (settings.directUrl !== undefined) throw new TypeError(`createJobs: directUrl applies to PostgreSQL (a pg Pool or slonik pool) only; db is a ${kind} handle`);
  if (settings.pooler !== 'auto') throw new TypeError(`createJobs: pooler applies to PostgreSQL (a pg Pool or slonik pool) only; db is a ${kind} handle`);
}

/** Monthly history files are SQLite's; PostgreSQL partitions history by month itself, the others keep one table. */
function refuseMonthlyFiles(settings: StoreSettings, kind: string): void {
  if (settings.history === 'monthly-files') {
    throw new TypeError(`createJobs: history: 'monthly-files' applies to SQLite (a better-sqlite3 Database) only; db is a ${kind} handle (PostgreSQL partitions history by month on its own)`);
  }
}
