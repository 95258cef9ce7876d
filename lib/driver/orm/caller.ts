/**
 * The caller's transaction, whatever it came as: a driver handle (pg client, mysql2 connection,
 * better-sqlite3 Database, slonik or mssql transaction), an ORM's own transaction object, or any
 * object with the minimal SqlTransaction interface. ORM objects are recognised by shape (the
 * app's copy of an ORM may not be ours) and turned into the driver connection they run on, or,
 * where an ORM keeps it private (Kysely, Prisma), into statements run through its raw-query API.
 */
import { drizzleTransaction } from './drizzle.ts';
import { knexTransaction } from './knex.ts';
import { kyselyTransaction } from './kysely.ts';
import { mikroOrmTransaction } from './mikro-orm.ts';
import { prismaTransaction } from './prisma.ts';
import { sequelizeTransaction } from './sequelize.ts';
import { typeormTransaction } from './typeorm.ts';
import { fn } from './shape.ts';

/**
 * Anything sqljobs can enqueue through, for a database layer it does not know: one statement in
 * the dialect's own placeholders (`$1` on PostgreSQL, `?` on MySQL/MariaDB and SQLite), its rows
 * back (for a statement without a result set, whatever the driver answers); and whether a
 * transaction is open on it now (a job outside one would not roll back).
 */
export interface SqlTransaction {
  query(text: string, values: unknown[]): Promise<unknown>;
  inTransaction(): boolean | Promise<boolean>;
}

/** What a caller's transaction comes down to: the driver's own handle, or statements run through its owner. */
export type CallerTx = { native: unknown } | { runner: SqlTransaction; name: string };

export interface OrmTransactionAdapter {
  /** In words, for messages: "a Knex transaction". */
  readonly name: string;
  matches(o: Record<string, unknown>): boolean;
  /**
   * The handle to run on; throws (naming the ORM) when the ORM can tell the object is not inside a
   * transaction. Where it cannot (Drizzle, Prisma), the driver's or the server's own check decides.
   */
  open(o: Record<string, unknown>): Promise<CallerTx>;
  /** The driver handle, when it can be had synchronously (SQLite enqueues inside a synchronous transaction). */
  native?(o: Record<string, unknown>): unknown;
}

/** Order matters only where shapes overlap: MikroORM's EntityManager before Knex, Kysely before Drizzle. */
const ADAPTERS: OrmTransactionAdapter[] = [
  mikroOrmTransaction, knexTransaction, prismaTransaction, kyselyTransaction, drizzleTransaction, typeormTransaction, sequelizeTransaction,
];

export function ormAdapterOf(tx: unknown): OrmTransactionAdapter | undefined {
  if (tx === null || (typeof tx !== 'object' && typeof tx !== 'function')) return undefined;
  return ADAPTERS.find((a) => a.matches(tx as Record<string, unknown>));
}

/** The caller's handle without awaiting, when there is one: the object itself, or the driver handle under an ORM's transaction. */
export function callerHandleSync(tx: unknown): unknown {
  const orm = ormAdapterOf(tx);
  return orm ? orm.native?.(tx as Record<string, unknown>) : tx;
}

export function isSqlTransaction(tx: unknown): tx is SqlTransaction {
  return fn(tx, 'query') && fn(tx, 'inTransaction');
}

/** The handle the caller's opts.tx (or the middleware's transaction option) runs on. */
export async function openCallerTx(tx: unknown): Promise<CallerTx> {
  const orm = ormAdapterOf(tx);
  if (orm) return orm.open(tx as Record<string, unknown>);
  if (isSqlTransaction(tx)) return { runner: tx, name: 'the given SqlTransaction' };
  return { native: tx };
}

/** Run one statement through a runner, after making sure the job would be part of its transaction. */
export async function runnerQuery(tx: { runner: SqlTransaction; name: string }, text: string, values: unknown[]): Promise<Record<string, unknown>[]> {
  if (!(await tx.runner.inTransaction())) {
    throw new TypeError(`opts.tx: ${tx.name} is not inside a transaction, so the job would not be part of it`);
  }
  const rows: unknown = await tx.runner.query(text, values);
  // A statement with no result set may come back as the driver's own summary (mysql2's ResultSetHeader).
  return Array.isArray(rows) ? rows : [];
}

/** The objects opts.tx takes, for refusals. */
export const ACCEPTED_TX =
  'a Knex transaction, Kysely Transaction, Drizzle transaction, Prisma interactive transaction client, TypeORM EntityManager or QueryRunner in a transaction, Sequelize Transaction, MikroORM EntityManager in a transaction, or any { query(text, values), inTransaction() }';
