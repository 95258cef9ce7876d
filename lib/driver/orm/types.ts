/**
 * What opts.tx takes, as types: each driver's transaction handle and each ORM's transaction
 * object, by the members sqljobs recognises them by (structural, so that no ORM has to be
 * installed for these types to resolve). Anything else, a pool, a string, a plain object, is a
 * compile error; at run time it is refused with what was received.
 */
import type { MssqlTransactionLike, MysqlConnectionLike, PgClientLike, SlonikConnectionLike, SqliteDatabaseLike } from '../handles.ts';
import type { SqlTransaction } from './caller.ts';

type Method = (...args: never[]) => unknown;

/** A Knex transaction (`knex.transaction(async (trx) => ...)`), also the one MikroORM runs on. */
export interface KnexTransactionLike {
  isTransaction?: boolean;
  commit: Method;
  rollback: Method;
  savepoint: Method;
  raw: Method;
}

/** A Kysely Transaction or ControlledTransaction. */
export interface KyselyTransactionLike {
  /** `true` on a transaction; a Kysely instance's is `boolean`, so the instance is a compile error. */
  readonly isTransaction: true;
  selectFrom: Method;
  executeQuery: Method;
}

/** A Drizzle transaction (node-postgres, mysql2 or better-sqlite3). */
export interface DrizzleTransactionLike {
  rollback: Method;
  select: Method;
  transaction: Method;
}

/** The client a Prisma interactive transaction gives (`prisma.$transaction(async (tx) => ...)`). */
export interface PrismaTransactionLike {
  $queryRawUnsafe: Method;
  $executeRawUnsafe: Method;
  /** Prisma leaves it off the transaction's client: the PrismaClient itself is a compile error. */
  $disconnect?: never;
}

/** A TypeORM EntityManager inside a transaction, or a QueryRunner after startTransaction(). */
export type TypeormTransactionLike = { getRepository: Method; transaction: Method; queryRunner?: object } | { isTransactionActive: boolean; startTransaction: Method; commitTransaction: Method };

/** A Sequelize Transaction. */
export interface SequelizeTransactionLike {
  afterCommit: Method;
  commit: Method;
  rollback: Method;
}

/** A MikroORM EntityManager inside `em.transactional(async (em) => ...)`. */
export interface MikroOrmEntityManagerLike {
  getTransactionContext: Method;
  persist: Method;
  flush: Method;
}

/** Everything opts.tx (and the middleware's `transaction` option) takes. */
export type TransactionHandle =
  | PgClientLike
  | SqliteDatabaseLike
  | MysqlConnectionLike
  | SlonikConnectionLike
  | MssqlTransactionLike
  | KnexTransactionLike
  | KyselyTransactionLike
  | DrizzleTransactionLike
  | PrismaTransactionLike
  | TypeormTransactionLike
  | SequelizeTransactionLike
  | MikroOrmEntityManagerLike
  | SqlTransaction;

/** A knex instance on PostgreSQL or MySQL/MariaDB (createJobs borrows its pooled connections). */
export interface KnexInstanceLike {
  client: object;
  raw: Method;
  transaction: Method;
}

/** A Drizzle database (createJobs runs on its `$client`). */
export interface DrizzleDatabaseLike {
  $client: unknown;
  select: Method;
  transaction: Method;
}

/** An initialised TypeORM DataSource (createJobs runs on its driver's pool or Database). */
export interface TypeormDataSourceLike {
  readonly isInitialized: boolean;
  driver: object;
  createQueryRunner: Method;
}

/** A Sequelize instance on PostgreSQL (createJobs borrows its pooled connections). */
export interface SequelizeInstanceLike {
  connectionManager: object;
  authenticate: Method;
  define: Method;
}

/** A MikroORM instance (or its EntityManager) on a SQL driver (createJobs runs on its Knex). */
export type MikroOrmInstanceLike = { em: MikroOrmEntityManagerLike; close: Method } | MikroOrmEntityManagerLike;

/** The ORM instances createJobs({ db }) takes, besides the drivers' own handles. */
export type OrmInstance = KnexInstanceLike | DrizzleDatabaseLike | TypeormDataSourceLike | SequelizeInstanceLike | MikroOrmInstanceLike;

/** ORM transactions that run on any of the databases below. */
type OrmTransaction = KnexTransactionLike | KyselyTransactionLike | DrizzleTransactionLike | PrismaTransactionLike | TypeormTransactionLike | SqlTransaction;

/** What opts.tx takes on each database (createJobs picks by the db given). */
export type SqliteTransactionHandle = SqliteDatabaseLike | OrmTransaction;
export type PostgresTransactionHandle = PgClientLike | SlonikConnectionLike | SequelizeTransactionLike | MikroOrmEntityManagerLike | OrmTransaction;
export type MysqlTransactionHandle = MysqlConnectionLike | SequelizeTransactionLike | OrmTransaction;
export type MssqlTransactionHandle = MssqlTransactionLike;
