/** ORMs on PostgreSQL: their transactions as opts.tx, their instances as db (see harness.ts). */
import pg from 'pg';
import { Kysely, PostgresDialect, sql as ksql } from 'kysely';
import { drizzle } from 'drizzle-orm/node-postgres';
import { sql as dsql } from 'drizzle-orm';
import { DIALECTS, PG_URL, requireDatabase } from '../helpers/dialects.ts';
import { ROLLBACK, ormSuite, type OrmCase } from './harness.ts';
import { backendsNamed, createRowsTable } from './postgres-tables.ts';
import { knexCase } from './knex-case.ts';
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

const drizzleCase: OrmCase = {
  orm: 'Drizzle',
  dialect: 'postgres',
  connections: () => backendsNamed('sqljobs_orm_drizzle'),
  async open() {
    await createRowsTable('orm_rows_drizzle');
    const pool = new pg.Pool({ connectionString: PG_URL, application_name: 'sqljobs_orm_drizzle', max: 2 });
    const db = drizzle({ client: pool });
    return {
      db,
      poolMax: 2,
      transaction: (body, rollback) =>
        db.transaction(async (tx) => {
          await tx.execute(dsql`INSERT INTO orm_rows_drizzle (id) VALUES (${body.rowId})`);
          const r = await body.enqueue(tx);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => (await db.execute<{ id: string }>(dsql`SELECT id FROM orm_rows_drizzle`)).rows.map((r) => r.id),
      close: () => pool.end(),
    };
  },
};

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

describe('ORMs on PostgreSQL', function () {
  before(requireDatabase(postgres));
  for (const c of [knexPg, kyselyCase, kyselyControlledCase, drizzleCase, customPg]) ormSuite(c);
});
