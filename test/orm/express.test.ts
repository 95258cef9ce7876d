/**
 * The app's per-request ORM transaction joined by the middleware's `transaction` option: what a
 * request writes through the ORM and what it enqueues through req.jobs commit or roll back as one.
 */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import knexLib, { type Knex } from 'knex';
import pg from 'pg';
import { Kysely, PostgresDialect, type ControlledTransaction } from 'kysely';
import { drizzle } from 'drizzle-orm/node-postgres';
import { sql as dsql } from 'drizzle-orm';
import { createJobs, jobsMiddleware, type Jobs, type TransactionHandle } from '../../lib/index.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix } from '../helpers/dialects.ts';
import { createRowsTable } from './postgres-tables.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

/** POST /orders/:id/201 keeps its row and job; /orders/:id/409 keeps neither. */
async function expectCommitAndRollback(app: express.Express, jobs: Jobs, rows: () => Promise<string[]>): Promise<void> {
  const ok = `ok-${crypto.randomUUID()}`;
  const bad = `bad-${crypto.randomUUID()}`;
  await request(app).post(`/orders/${ok}/201`).expect(201);
  await request(app).post(`/orders/${bad}/409`).expect(409);
  expect(await rows()).to.include(ok).and.not.include(bad);
  expect((await jobs.list({ tag: ok })).items).to.have.length(1);
  expect((await jobs.list({ tag: bad })).items).to.have.length(0);
}

interface PerRequest {
  /** Open the app's transaction for a request. */
  begin(): Promise<TransactionHandle>;
  insert(trx: TransactionHandle, id: string): Promise<unknown>;
  end(trx: TransactionHandle, commit: boolean): Promise<unknown>;
  rows(): Promise<string[]>;
  db: unknown;
  close(): Promise<unknown>;
}

async function knexPerRequest(): Promise<PerRequest> {
  await createRowsTable('orm_rows_express_knex');
  const knex = knexLib({ client: 'pg', connection: PG_URL, pool: { min: 0, max: 3 } });
  const t = (trx: TransactionHandle) => trx as unknown as Knex.Transaction;
  return {
    db: knex,
    begin: () => knex.transaction() as Promise<TransactionHandle>,
    insert: (trx, id) => t(trx)('orm_rows_express_knex').insert({ id }),
    end: (trx, commit) => (commit ? t(trx).commit() : t(trx).rollback()),
    rows: async () => (await knex('orm_rows_express_knex').select('id')).map((r: { id: string }) => r.id),
    close: () => knex.destroy(),
  };
}

async function kyselyPerRequest(): Promise<PerRequest> {
  await createRowsTable('orm_rows_express_kysely');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 3 });
  type DB = { orm_rows_express_kysely: { id: string } };
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  const t = (trx: TransactionHandle) => trx as unknown as ControlledTransaction<DB>;
  return {
    db: pool,
    begin: () => db.startTransaction().execute() as Promise<TransactionHandle>,
    insert: (trx, id) => t(trx).insertInto('orm_rows_express_kysely').values({ id }).execute(),
    end: (trx, commit) => (commit ? t(trx).commit().execute() : t(trx).rollback().execute()),
    rows: async () => (await db.selectFrom('orm_rows_express_kysely').select('id').execute()).map((r) => r.id),
    close: () => db.destroy(),
  };
}

describe("ORMs: the app's per-request transaction joined by the middleware", function () {
  before(requireDatabase(postgres));

  for (const [orm, open] of [['Knex', knexPerRequest], ['Kysely', kyselyPerRequest]] as const) {
    it(`${orm}: the request's row and its job commit together, or roll back together`, async () => {
      const app$ = await open();
      const jobs = createJobs({ db: app$.db as never, tablePrefix: uniquePrefix(), worker: false });
      try {
        const app = express();
        app.use(async (req: express.Request & { trx?: TransactionHandle }, res, next) => {
          const trx = await app$.begin();
          req.trx = trx;
          res.on('finish', () => void app$.end(trx, res.statusCode < 400));
          next();
        });
        app.use(jobsMiddleware(jobs, { transaction: (req) => (req as { trx?: TransactionHandle }).trx }));
        app.post('/orders/:id/:status', async (req: express.Request & { trx?: TransactionHandle }, res) => {
          const id = String(req.params.id);
          await app$.insert(req.trx!, id);
          await req.jobs.enqueue('receipt', { id }, { tag: id });
          res.sendStatus(Number(req.params.status));
        });
        await expectCommitAndRollback(app, jobs, async () => {
          await new Promise((r) => setTimeout(r, 100)); // the app's own commit runs on 'finish'
          return app$.rows();
        });
      } finally {
        await jobs.close();
        await app$.close();
      }
    });
  }
});

describe("ORMs: running the ORM on the request's transaction (req.jobs.transaction())", function () {
  before(requireDatabase(postgres));

  const writers: [string, (client: pg.PoolClient, id: string) => Promise<unknown>][] = [
    ['Knex (.connection(client))', (client, id) => knexLib({ client: 'pg' })('orm_rows_request').insert({ id }).connection(client)],
    ['Drizzle (drizzle({ client }))', (client, id) => drizzle({ client }).execute(dsql`INSERT INTO orm_rows_request (id) VALUES (${id})`)],
  ];
  for (const [orm, write] of writers) {
    it(`${orm}: the row and the job commit with the response, or roll back with an error status`, async () => {
      await createRowsTable('orm_rows_request');
      const pool = new pg.Pool({ connectionString: PG_URL, max: 3 });
      const jobs = createJobs({ db: pool, tablePrefix: uniquePrefix(), worker: false });
      try {
        const app = express();
        app.use(jobsMiddleware(jobs));
        app.post('/orders/:id/:status', async (req, res) => {
          const id = String(req.params.id);
          await write(await req.jobs.transaction<pg.PoolClient>(), id);
          await req.jobs.enqueue('receipt', { id }, { tag: id });
          res.sendStatus(Number(req.params.status));
        });
        await expectCommitAndRollback(app, jobs, async () => (await pool.query('SELECT id FROM orm_rows_request')).rows.map((r) => r.id as string));
      } finally {
        await jobs.close();
        await pool.end();
      }
    });
  }
});
