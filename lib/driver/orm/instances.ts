/**
 * An ORM's own instance given as createJobs({ db }): the app runs one pool, the ORM's. Where the
 * ORM keeps the driver's pool or Database as such (Drizzle's $client, a TypeORM DataSource's
 * driver), that is the db; where it pools raw driver connections itself (Knex, MikroORM,
 * Sequelize), sqljobs borrows them one at a time; Kysely and Prisma keep theirs private, so the
 * app gives sqljobs the pool it built them on.
 */
import type { Client, PoolConfig } from 'pg';
import type { Connection as CbConnection, Pool as CbPool } from 'mysql2';
import type { PoolConnection } from 'mysql2/promise';
import { HeldConnection, nothingToUndo, withHeld } from '../held.ts';
import { lentPgAppSide, type ClientCtor, type LendingPool, type PgAppSide, type PoolCtor } from '../postgres/app.ts';
import type { MysqlAppSide } from '../mysql/store.ts';
import { ormAdapterOf } from './caller.ts';
import { drizzleClient } from './drizzle.ts';
import { isKnexInstance, type KnexLike } from './knex.ts';
import { isKysely } from './kysely.ts';
import { mikroOrmKnex } from './mikro-orm.ts';
import { isPrismaClient } from './prisma.ts';
import { isSequelize, type SequelizeLike } from './sequelize.ts';
import { typeormClient } from './typeorm.ts';

export type OrmDb = { native: unknown } | { postgres: PgAppSide } | { mysql: MysqlAppSide };

/** What createJobs runs on when `db` is an ORM's instance; undefined when it is not one. */
export function ormDb(db: unknown): OrmDb | undefined {
  if (db === null || (typeof db !== 'object' && typeof db !== 'function')) return undefined;
  const client = drizzleClient(db) ?? typeormClient(db);
  if (client !== undefined) return { native: client };
  const knex = isKnexInstance(db) ? db : mikroOrmKnex(db);
  if (knex) return knexDb(knex);
  if (isSequelize(db)) return sequelizeDb(db);
  const o = db as Record<string, unknown>;
  if (isKysely(o)) {
    throw new TypeError('createJobs: db: Kysely keeps its pool private; give createJobs the pool you gave Kysely\'s dialect (new PostgresDialect({ pool })), so both share it; Kysely transactions are accepted as opts.tx');
  }
  if (isPrismaClient(o)) {
    throw new TypeError('createJobs: db: Prisma keeps its connections inside its adapter; build one pg Pool, give it to new PrismaPg(pool) and to createJobs; Prisma interactive transactions are accepted as opts.tx');
  }
  // An ORM's transaction or manager given as db (a TypeORM EntityManager, a Sequelize Transaction...):
  // named, with what to give instead, rather than "expected a ... pool; got EntityManager with keys ...".
  const tx = ormAdapterOf(o);
  if (tx) {
    throw new TypeError(`createJobs: db: got ${tx.name}; give createJobs what owns the connections (a Knex instance, TypeORM DataSource, Sequelize or MikroORM instance, Drizzle database, or the pool the ORM was built on), and the transaction as opts.tx of enqueue`);
  }
  return undefined;
}

type Dialect = 'postgres' | 'mysql' | 'sqlite' | 'other';

function dialectOf(name: unknown): Dialect {
  const n = String(name ?? '').toLowerCase();
  if (['pg', 'postgres', 'postgresql'].includes(n)) return 'postgres';
  if (['mysql2', 'mysql'].includes(n)) return 'mysql';
  if (['better-sqlite3', 'sqlite3', 'sqlite'].includes(n)) return 'sqlite';
  return 'other';
}

function knexDb(knex: KnexLike): OrmDb {
  const dialect = dialectOf(typeof knex.client.config.client === 'string' ? knex.client.config.client : (knex.client as { dialect?: string }).dialect);
  // Knex built on the app's own driver pool (config.connectionPool): that pool is the db.
  const given = (knex.client.config as { connectionPool?: unknown }).connectionPool;
  if (given != null && dialect !== 'other') return { native: given };
  if ((knex.client as { searchPath?: unknown }).searchPath != null) {
    // Knex sets it on its own connections only; the worker's would look for the tables elsewhere.
    throw new TypeError('createJobs: db: this Knex instance has a searchPath, which the worker\'s own connections would not have; set search_path on the database role (ALTER ROLE ... SET search_path) instead, or give createJobs a pg Pool');
  }
  const settings = knex.client.connectionSettings;
  if (settings == null || (typeof settings !== 'object' && typeof settings !== 'string') || (typeof settings === 'object' && Object.keys(settings).length === 0)) {
    // A connection function is resolved at Knex's first acquire; the worker's own pools need the settings now.
    throw new TypeError('createJobs: db: this Knex instance has no connection settings yet (its connection is a function); give Knex a settings object or string, or run a first query before createJobs');
  }
  const acquire = () => knex.client.acquireConnection();
  const release = (c: unknown) => knex.client.releaseConnection(c);
  if (dialect === 'postgres') {
    const config = typeof settings === 'string' ? { connectionString: settings } : (settings as PoolConfig);
    return { postgres: lentPgAppSide({ config, driver: knex.client.driver as LendingPool['driver'], acquire: acquire as () => Promise<Client>, release }) };
  }
  if (dialect === 'mysql') return { mysql: lentMysqlAppSide(knex.client.driver, settings, acquire, release) };
  const hint = dialect === 'sqlite' ? SQLITE_HINT : 'give createJobs the driver\'s own pool, and Knex transactions as opts.tx';
  throw new TypeError(`createJobs: db: a Knex instance on ${String(knex.client.config.client)} is not taken; ${hint}`);
}

function sequelizeDb(seq: SequelizeLike): OrmDb {
  const dialect = dialectOf(seq.options.dialect);
  const cm = seq.connectionManager;
  const acquire = () => cm.getConnection({ type: 'write' });
  const release = (c: unknown) => cm.releaseConnection(c);
  if (dialect === 'postgres') {
    const c = seq.config;
    const config: PoolConfig = {
      host: c.host as string, port: Number(c.port) || undefined, database: c.database as string, user: c.username as string,
      password: c.password as string | undefined, ...(seq.options.dialectOptions ?? {}),
    };
    return { postgres: lentPgAppSide({ config, driver: cm.lib as { Pool: PoolCtor; Client: ClientCtor }, acquire: acquire as () => Promise<Client>, release }) };
  }
  throw new TypeError(`createJobs: db: a Sequelize instance on ${String(seq.options.dialect)} is not taken (PostgreSQL only); give createJobs the driver's pool, and Sequelize transactions as opts.tx`);
}

const SQLITE_HINT = 'on SQLite give createJobs a better-sqlite3 Database on the same file; the ORM\'s transactions are accepted as opts.tx';

/**
 * An ORM's pool of mysql2 connections as the app side. A template pool carries the settings our
 * private pools copy; it never connects, so it holds nothing and needs no end().
 */
function lentMysqlAppSide(driver: unknown, settings: unknown, acquire: () => Promise<unknown>, release: (c: unknown) => unknown): MysqlAppSide {
  const template = (driver as { createPool(o: unknown): CbPool }).createPool(settings);
  const hold = async () => {
    const conn = (await acquire()) as CbConnection;
    // A broken connection is destroyed before it goes back, so that the ORM's pool drops it.
    return new HeldConnection(conn.promise() as unknown as PoolConnection, (_c, broken) => {
      if (broken) conn.destroy();
      void release(conn);
    }, { lent: true });
  };
  return {
    template,
    query: async (text, values) => withHeld(await hold(), nothingToUndo, (c) => c.query(text, values)),
    hold,
  };
}
