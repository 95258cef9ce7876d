/** ORMs on PostgreSQL: their transactions as opts.tx, their instances as db (see harness.ts). */
import pg from 'pg';
import { Kysely, PostgresDialect, sql as ksql } from 'kysely';
import { drizzle } from 'drizzle-orm/node-postgres';
import { DataSource } from 'typeorm';
import { Sequelize } from 'sequelize';
import { MikroORM, PostgreSqlDriver } from '@mikro-orm/postgresql';
import { expect } from 'chai';
import { createJobs } from '../../lib/index.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix } from '../helpers/dialects.ts';
import { ROLLBACK, ormSuite, type OrmCase } from './harness.ts';
import { backendsNamed, createRowsTable } from './postgres-tables.ts';
import { knexCase } from './knex-case.ts';
import { drizzleCase } from './drizzle-case.ts';
import { sqlTransactionCase } from './sql-transaction-case.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

const knexPg = knexCase({
  dialect: 'postgres',
  config: () => ({ client: 'pg', connection: { connectionString: PG_URL, application_name: 'sqljobs_orm_knex' }, pool: { min: 0, max: 2 } }),
  table: 'orm_rows_knex',
  prepare: () => createRowsTable('orm_rows_knex'),
  poolMax: 2,
  connections: () => backendsNamed('sqljobs_orm_knex'),
});

const kyselyCase: OrmCase = {
  orm: 'Kysely',
  dialect: 'postgres',
  async open() {
    await createRowsTable('orm_rows_kysely');
    // Kysely keeps its pool private: the app gives createJobs the pool it gave Kysely's dialect.
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    const db = new Kysely<{ orm_rows_kysely: { id: string } }>({ dialect: new PostgresDialect({ pool }) });
    return {
      db: pool,
      transaction: (body, rollback) =>
        db.transaction().execute(async (trx) => {
          await trx.insertInto('orm_rows_kysely').values({ id: body.rowId }).execute();
          const r = await body.enqueue(trx);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => (await ksql<{ id: string }>`SELECT id FROM orm_rows_kysely`.execute(db)).rows.map((r) => r.id),
      close: () => db.destroy(),
    };
  },
};

const kyselyControlledCase: OrmCase = {
  orm: 'Kysely (controlled transaction)',
  dialect: 'postgres',
  async open() {
    await createRowsTable('orm_rows_kysely_ct');
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    const db = new Kysely<{ orm_rows_kysely_ct: { id: string } }>({ dialect: new PostgresDialect({ pool }) });
    return {
      db: pool,
      async transaction(body, rollback) {
        const trx = await db.startTransaction().execute();
        await trx.insertInto('orm_rows_kysely_ct').values({ id: body.rowId }).execute();
        const r = await body.enqueue(trx);
        if (rollback) {
          await trx.rollback().execute();
          return ROLLBACK();
        }
        await trx.commit().execute();
        return r;
      },
      rows: async () => (await ksql<{ id: string }>`SELECT id FROM orm_rows_kysely_ct`.execute(db)).rows.map((r) => r.id),
      close: () => db.destroy(),
    };
  },
};

const drizzlePg = drizzleCase({
  dialect: 'postgres',
  table: 'orm_rows_drizzle',
  async open() {
    await createRowsTable('orm_rows_drizzle');
    const pool = new pg.Pool({ connectionString: PG_URL, application_name: 'sqljobs_orm_drizzle', max: 2 });
    return { db: drizzle({ client: pool }), end: () => pool.end() };
  },
  rowsOf: (result) => (result as { rows: { id: string }[] }).rows,
  connections: () => backendsNamed('sqljobs_orm_drizzle'),
});

const pgPool = new pg.Pool({ connectionString: PG_URL, max: 2 });
const customPg = sqlTransactionCase({
  dialect: 'postgres',
  db: () => pgPool,
  prepare: () => createRowsTable('orm_rows_custom'),
  async connect() {
    const c = await pgPool.connect();
    return {
      query: async (text, values) => (await c.query(text, values)).rows,
      inTransaction: () => c.getTransactionStatus() !== 'I',
      begin: () => c.query('BEGIN'),
      commit: () => c.query('COMMIT'),
      rollback: () => c.query('ROLLBACK'),
      release: () => c.release(),
    };
  },
  insertText: 'INSERT INTO orm_rows_custom (id) VALUES ($1)',
  rowsText: 'SELECT id FROM orm_rows_custom',
  close: () => pgPool.end(),
});
const typeormCase: OrmCase = {
  orm: 'TypeORM (dataSource.transaction manager)',
  dialect: 'postgres',
  finishedRefusal: /^opts\.tx: the TypeORM EntityManager is not inside a transaction \(use the manager dataSource\.transaction/,
  connections: () => backendsNamed('sqljobs_orm_typeorm'),
  async open() {
    await createRowsTable('orm_rows_typeorm');
    const ds = new DataSource({ type: 'postgres', url: PG_URL, applicationName: 'sqljobs_orm_typeorm', poolSize: 2, entities: [] });
    await ds.initialize();
    return {
      db: ds, // sqljobs takes ds.driver.master, the pg Pool TypeORM runs on
      poolMax: 2,
      transaction: (body, rollback) =>
        ds.transaction(async (manager) => {
          await manager.query('INSERT INTO orm_rows_typeorm (id) VALUES ($1)', [body.rowId]);
          const r = await body.enqueue(manager);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => ((await ds.query('SELECT id FROM orm_rows_typeorm')) as { id: string }[]).map((r) => r.id),
      close: () => ds.destroy(),
    };
  },
};

const typeormRunnerCase: OrmCase = {
  orm: 'TypeORM (QueryRunner after startTransaction)',
  dialect: 'postgres',
  finishedRefusal: /^opts\.tx: the TypeORM QueryRunner is not inside a transaction/,
  async open() {
    await createRowsTable('orm_rows_typeorm_qr');
    const ds = new DataSource({ type: 'postgres', url: PG_URL, poolSize: 2, entities: [] });
    await ds.initialize();
    return {
      db: ds,
      async transaction(body, rollback) {
        const qr = ds.createQueryRunner();
        await qr.connect();
        try {
          await qr.startTransaction();
          await qr.query('INSERT INTO orm_rows_typeorm_qr (id) VALUES ($1)', [body.rowId]);
          const r = await body.enqueue(qr);
          if (rollback) {
            await qr.rollbackTransaction();
            return ROLLBACK();
          }
          await qr.commitTransaction();
          return r;
        } finally {
          await qr.release();
        }
      },
      rows: async () => ((await ds.query('SELECT id FROM orm_rows_typeorm_qr')) as { id: string }[]).map((r) => r.id),
      close: () => ds.destroy(),
    };
  },
};

const sequelizeCase: OrmCase = {
  orm: 'Sequelize',
  dialect: 'postgres',
  finishedRefusal: /^opts\.tx: the Sequelize Transaction has already finished \(commit\)/,
  connections: () => backendsNamed('sqljobs_orm_sequelize'),
  async open() {
    await createRowsTable('orm_rows_sequelize');
    const sequelize = new Sequelize(PG_URL, {
      dialect: 'postgres', logging: false, pool: { min: 0, max: 2 }, dialectOptions: { application_name: 'sqljobs_orm_sequelize' },
    });
    await sequelize.authenticate();
    return {
      db: sequelize, // sqljobs borrows connections through sequelize.connectionManager
      poolMax: 2,
      transaction: (body, rollback) =>
        sequelize.transaction(async (t) => {
          await sequelize.query('INSERT INTO orm_rows_sequelize (id) VALUES ($1)', { bind: [body.rowId], transaction: t });
          const r = await body.enqueue(t);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => ((await sequelize.query('SELECT id FROM orm_rows_sequelize', { type: 'SELECT' })) as { id: string }[]).map((r) => r.id),
      close: () => sequelize.close(),
    };
  },
};

const mikroOrmCase: OrmCase = {
  orm: 'MikroORM',
  dialect: 'postgres',
  finishedRefusal: /^opts\.tx: the MikroORM EntityManager's transaction has already committed or rolled back/,
  connections: () => backendsNamed('sqljobs_orm_mikro'),
  async open() {
    await createRowsTable('orm_rows_mikro');
    const orm = await MikroORM.init({
      driver: PostgreSqlDriver, clientUrl: PG_URL, entities: [], discovery: { warnWhenNoEntities: false },
      pool: { min: 0, max: 2 }, driverOptions: { connection: { application_name: 'sqljobs_orm_mikro' } }, debug: false,
    });
    return {
      db: orm, // sqljobs borrows connections from orm.em.getConnection().getKnex()
      poolMax: 2,
      transaction: (body, rollback) =>
        orm.em.transactional(async (em) => {
          await em.execute('INSERT INTO orm_rows_mikro (id) VALUES (?)', [body.rowId]);
          const r = await body.enqueue(em);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => ((await orm.em.getConnection().execute('SELECT id FROM orm_rows_mikro')) as { id: string }[]).map((r) => r.id),
      close: () => orm.close(true),
    };
  },
};

describe('ORMs on PostgreSQL', function () {
  before(requireDatabase(postgres));
  for (const c of [knexPg, kyselyCase, kyselyControlledCase, drizzlePg, customPg, typeormCase, typeormRunnerCase, sequelizeCase, mikroOrmCase]) ormSuite(c);
});

/** ORM objects given in the wrong place: each refusal names what it got and says what to give instead. */
describe('ORMs on PostgreSQL: objects given in the wrong place', function () {
  before(requireDatabase(postgres));
  let pool: pg.Pool;
  let jobs: ReturnType<typeof createJobs>;
  let ds: DataSource;
  let sequelize: Sequelize;
  let orm: MikroORM;
  before(async () => {
    pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    jobs = createJobs({ db: pool, tablePrefix: uniquePrefix(), worker: false });
    await jobs.migrate();
    ds = await new DataSource({ type: 'postgres', url: PG_URL, poolSize: 1, entities: [] }).initialize();
    sequelize = new Sequelize(PG_URL, { dialect: 'postgres', logging: false, pool: { min: 0, max: 1 } });
    orm = await MikroORM.init({ driver: PostgreSqlDriver, clientUrl: PG_URL, entities: [], discovery: { warnWhenNoEntities: false }, pool: { min: 0, max: 1 }, debug: false });
  });
  after(async () => {
    await jobs?.close();
    await ds?.destroy();
    await sequelize?.close();
    await orm?.close(true);
    await pool?.end();
  });

  const asTx = (tx: unknown) => jobs.enqueue('orm.job', {}, { tx: tx as never }).then(() => null, (e: unknown) => e as Error);
  const refusedAsTx = async (tx: unknown, message: RegExp) => {
    const err = await asTx(tx);
    expect(err, 'refused').to.be.instanceOf(TypeError);
    expect(err!.message).to.match(message);
  };
  const refusedAsDb = (db: unknown, message: RegExp) => expect(() => createJobs({ db: db as never, worker: false })).to.throw(TypeError, message);
  const NOT_DB = /^createJobs: db: got (a TypeORM EntityManager or QueryRunner|a Sequelize Transaction); give createJobs what owns the connections \(a Knex instance, TypeORM DataSource, Sequelize or MikroORM instance/;

  it('TypeORM: the DataSource, its root manager and an idle QueryRunner as tx; a manager or QueryRunner, or an uninitialised DataSource, as db', async () => {
    await refusedAsTx(ds, /^opts\.tx: a TypeORM DataSource is not a transaction \(use the manager dataSource\.transaction\(async \(manager\) => \.\.\.\) gives you/);
    await refusedAsTx(ds.manager, /^opts\.tx: the TypeORM EntityManager is not inside a transaction/);
    const qr = ds.createQueryRunner();
    try {
      await refusedAsTx(qr, /^opts\.tx: the TypeORM QueryRunner is not inside a transaction \(.*a QueryRunner after startTransaction\(\)\)/);
      refusedAsDb(qr, NOT_DB);
    } finally {
      await qr.release();
    }
    refusedAsDb(ds.manager, NOT_DB);
    refusedAsDb(new DataSource({ type: 'postgres', url: PG_URL }), /^createJobs: db: the TypeORM DataSource is not initialised; await dataSource\.initialize\(\) first/);
  });

  it('Sequelize: the instance as tx; a Transaction as db', async () => {
    await refusedAsTx(sequelize, /^opts\.tx: the Sequelize instance is not a transaction \(use the t of sequelize\.transaction\(async \(t\) => \.\.\.\)\)/);
    await sequelize.transaction(async (t) => refusedAsDb(t, NOT_DB));
  });

  it('MikroORM: the instance, and an EntityManager outside a transaction, as tx', async () => {
    await refusedAsTx(orm, /^opts\.tx: the MikroORM instance is not a transaction \(use the em orm\.em\.transactional\(async \(em\) => \.\.\.\) gives you\)/);
    await refusedAsTx(orm.em.fork(), /^opts\.tx: the MikroORM EntityManager is not inside a transaction \(use the one em\.transactional/);
  });
});
