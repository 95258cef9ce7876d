/**
 * Compile-time checks (type-checked by `npm run typecheck`, never run): opts.tx takes each ORM's
 * transaction object by its own type, and a pool, an ORM instance or a plain value is an error.
 */
import type pg from 'pg';
import type { Knex } from 'knex';
import type { Kysely, Transaction } from 'kysely';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { EntityManager, QueryRunner } from 'typeorm';
import type { Transaction as SequelizeTransaction } from 'sequelize';
import type { EntityManager as MikroEntityManager } from '@mikro-orm/postgresql';
import type { DataSource } from 'typeorm';
import type { Sequelize } from 'sequelize';
import type { MikroORM } from '@mikro-orm/postgresql';
import { createJobs, type Jobs } from '../../lib/index.ts';

/** What drizzle({ client: pool }) returns. */
type Drizzle = NodePgDatabase<Record<string, never>> & { $client: pg.Pool };
type DrizzleTx = Parameters<Parameters<Drizzle['transaction']>[0]>[0];

export async function accepted(jobs: Jobs<{ a: { n: number } }>, t: {
  client: pg.PoolClient; knexTrx: Knex.Transaction; kyselyTrx: Transaction<{ t: { id: string } }>; drizzleTx: DrizzleTx;
  manager: EntityManager; runner: QueryRunner; seqT: SequelizeTransaction; em: MikroEntityManager;
}): Promise<void> {
  for (const tx of [t.client, t.knexTrx, t.kyselyTrx, t.drizzleTx, t.manager, t.runner, t.seqT, t.em]) await jobs.enqueue('a', { n: 1 }, { tx });
  await jobs.enqueue('a', { n: 1 }, { tx: { query: async () => [], inTransaction: () => true } });
}

export async function refused(jobs: Jobs<{ a: { n: number } }>, pool: pg.Pool, kysely: Kysely<{ t: { id: string } }>): Promise<void> {
  // @ts-expect-error a pool: its statements land on any connection, outside the caller's transaction
  await jobs.enqueue('a', { n: 1 }, { tx: pool });
  // @ts-expect-error a Kysely instance, not a transaction
  await jobs.enqueue('a', { n: 1 }, { tx: kysely });
  // @ts-expect-error not a transaction at all
  await jobs.enqueue('a', { n: 1 }, { tx: 'trx' });
  // @ts-expect-error a plain object
  await jobs.enqueue('a', { n: 1 }, { tx: {} });
}

/** The ORM instances createJobs takes as db, by their own types; a Kysely instance is not one. */
export function instances(o: { knex: Knex; drizzle: Drizzle; dataSource: DataSource; sequelize: Sequelize; orm: MikroORM; kysely: Kysely<{ t: { id: string } }> }): void {
  for (const db of [o.knex, o.drizzle, o.dataSource, o.sequelize, o.orm, o.orm.em]) createJobs({ db });
  // @ts-expect-error Kysely keeps its pool private: give createJobs the pool you gave its dialect
  createJobs({ db: o.kysely });
}

/** opts.tx narrowed by the database createJobs was given: another database's handle is a compile error. */
export async function perDatabase(o: { sqlite: import('better-sqlite3').Database; pool: pg.Pool; client: pg.PoolClient; knexTrx: Knex.Transaction; mysqlConn: import('mysql2/promise').PoolConnection }): Promise<void> {
  const onSqlite = createJobs<{ a: { n: number } }>({ db: o.sqlite });
  await onSqlite.enqueue('a', { n: 1 }, { tx: o.sqlite });
  await onSqlite.enqueue('a', { n: 1 }, { tx: o.knexTrx });
  // @ts-expect-error a pg client on a SQLite instance
  await onSqlite.enqueue('a', { n: 1 }, { tx: o.client });
  const onPostgres = createJobs({ db: o.pool });
  await onPostgres.enqueue('a', {}, { tx: o.client });
  // @ts-expect-error a better-sqlite3 Database on a PostgreSQL instance
  await onPostgres.enqueue('a', {}, { tx: o.sqlite });
  // @ts-expect-error a mysql2 connection on a PostgreSQL instance
  await onPostgres.enqueue('a', {}, { tx: o.mysqlConn });
  // @ts-expect-error the payload is still checked
  await onSqlite.enqueue('a', { n: 'one' }, { tx: o.sqlite });
}

/** On MySQL/MariaDB (createJobs given the mysql2 pool), a Sequelize Transaction of its mysql dialect is a transaction too. */
export async function onMysql(o: { pool: import('mysql2/promise').Pool; seqT: SequelizeTransaction; conn: import('mysql2/promise').PoolConnection }): Promise<void> {
  const jobs = createJobs<{ a: { n: number } }>({ db: o.pool });
  await jobs.enqueue('a', { n: 1 }, { tx: o.seqT });
  await jobs.enqueue('a', { n: 1 }, { tx: o.conn });
  // @ts-expect-error the pool: its statements land on any connection
  await jobs.enqueue('a', { n: 1 }, { tx: o.pool });
}

/** Prisma: the client of an interactive transaction, never the PrismaClient (its shape, as Prisma 7 generates it). */
export async function prisma(jobs: Jobs<{ a: { n: number } }>, o: {
  client: { $queryRawUnsafe(q: string, ...v: unknown[]): Promise<unknown>; $executeRawUnsafe(q: string, ...v: unknown[]): Promise<number>; $transaction(fn: unknown): Promise<unknown>; $connect(): Promise<void>; $disconnect(): Promise<void> };
  tx: { $queryRawUnsafe(q: string, ...v: unknown[]): Promise<unknown>; $executeRawUnsafe(q: string, ...v: unknown[]): Promise<number>; $transaction(fn: unknown): Promise<unknown> };
}): Promise<void> {
  await jobs.enqueue('a', { n: 1 }, { tx: o.tx });
  // @ts-expect-error the PrismaClient outside a transaction
  await jobs.enqueue('a', { n: 1 }, { tx: o.client });
}
