/**
 * Edges of taking the app's transactions and ORM instances: the server refuses an enqueue that
 * reaches a caller's connection after its transaction ended; a Knex built on the app's own pool
 * shares it; a transaction on another SQLite file is refused; a caller's SqlTransaction on MySQL
 * may bind through execute() (no array expansion).
 */
import { expect } from 'chai';
import pg from 'pg';
import mysql from 'mysql2/promise';
import Database from 'better-sqlite3';
import knexLib from 'knex';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createJobs, type SqlTransaction } from '../../lib/index.ts';
import { literal } from '../../lib/driver/postgres/enqueue.ts';
import { DIALECTS, MYSQL_URL, PG_URL, requireDatabase, uniquePrefix } from '../helpers/dialects.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;
const mariadb = DIALECTS.find((d) => d.name === 'mysql')!;

describe('ORMs: edges', function () {
  describe('PostgreSQL', function () {
    before(requireDatabase(postgres));
    let pool: pg.Pool;
    let jobs: ReturnType<typeof createJobs>;
    before(async () => {
      pool = new pg.Pool({ connectionString: PG_URL, max: 3 });
      jobs = createJobs({ db: pool, tablePrefix: uniquePrefix(), worker: false });
      await jobs.migrate();
    });
    after(async () => {
      await jobs.close();
      await pool.end();
    });

    it('an enqueue queued on a pg client behind its ROLLBACK is refused by the server, and nothing is written', async () => {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        const tag = `late-${crypto.randomUUID()}`;
        // The ROLLBACK is sent first; the enqueue, not awaited, reaches the connection after it.
        const rolledBack = c.query('ROLLBACK');
        const late = jobs.enqueue('x', {}, { tx: c, tag }).then(() => null, (e: Error) => e);
        await rolledBack;
        const err = await late;
        expect(err?.message).to.match(/^opts\.tx: the pg client is not inside a transaction/);
        expect((await jobs.list({ tag })).items).to.have.length(0);
      } finally {
        c.release();
      }
    });

    it('a pg client on which BEGIN was never run is refused, saying so (not only that a transaction ended)', async () => {
      const c = await pool.connect();
      try {
        const err = await jobs.enqueue('x', {}, { tx: c }).then(() => null, (e: Error) => e);
        expect(err?.message).to.match(/^opts\.tx: the pg client is not inside a transaction \(BEGIN was not run on it, /);
      } finally {
        c.release();
      }
    });

    it('the guarded statement carries any payload as literals: quotes, backslashes, unicode', async () => {
      const tricky = `it's a "quote" \\ back\\slash \\n ${'\u00e9\u{1F600}'} '' \\\\' E'x'`;
      for (const s of [tricky, "'", '\\', '']) expect((await pool.query(`SELECT ${literal(s)}::text AS v`)).rows[0].v).to.equal(s);
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        const { id } = await jobs.enqueue('x', { tricky, nested: { tricky } }, { tx: c, meta: { tricky }, tag: tricky.slice(0, 20) });
        await c.query('COMMIT');
        const job = await jobs.get(id);
        expect(job?.payload).to.deep.equal({ tricky, nested: { tricky } });
        expect(job?.meta).to.deep.equal({ tricky });
      } finally {
        c.release();
      }
    });

    it('a Knex built on the app\'s own pg Pool (connectionPool) runs on that pool', async () => {
      const knex = knexLib({ client: 'pg', connectionPool: pool } as never);
      try {
        const viaKnex = createJobs({ db: knex, tablePrefix: uniquePrefix(), worker: false });
        await viaKnex.migrate(); // on the worker's pool, built from the Pool's own settings (not Knex's empty ones)
        const { id } = await knex.transaction(async (trx) => viaKnex.enqueue('x', {}, { tx: trx }));
        expect((await viaKnex.get(id))?.state).to.equal('pending');
        await viaKnex.close();
      } finally {
        await knex.destroy();
      }
    });
  });

  describe('SQLite', function () {
    it('a transaction on another database file is refused, naming both', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'sqljobs-edges-'));
      const a = new Database(path.join(dir, 'a.db'));
      const b = new Database(path.join(dir, 'b.db'));
      const jobs = createJobs({ db: a, worker: false });
      const other = createJobs({ db: b, worker: false }); // b has the tables too, so a wrong write would succeed
      try {
        await other.migrate();
        const knexB = knexLib({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'b.db') }, useNullAsDefault: true });
        const err = await knexB.transaction(async (trx) => jobs.enqueue('x', {}, { tx: trx })).then(() => null, (e: Error) => e);
        await knexB.destroy();
        expect(err?.message).to.match(/another database \(.*b\.db\) than the one given to createJobs \(.*a\.db\)/);
        expect((await other.list({})).items).to.have.length(0);
      } finally {
        await jobs.close();
        await other.close();
        a.close();
        b.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('a transaction of another database', function () {
    before(requireDatabase(postgres));
    before(requireDatabase(mariadb));
    it('a Knex transaction on MySQL given to a PostgreSQL instance, and one on PostgreSQL given to a MySQL instance, are refused naming the database they run on', async () => {
      const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
      const onPg = createJobs({ db: pool, tablePrefix: uniquePrefix(), worker: false });
      const myPool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
      const onMysql = createJobs({ db: myPool, tablePrefix: uniquePrefix(), worker: false });
      const knexMysql = knexLib({ client: 'mysql2', connection: MYSQL_URL, pool: { min: 0, max: 1 } });
      const knexPg = knexLib({ client: 'pg', connection: PG_URL, pool: { min: 0, max: 1 } });
      try {
        const refusal = (jobs: { enqueue(n: string, p: object, o: { tx: never }): Promise<unknown> }, trx: unknown) => jobs.enqueue('x', {}, { tx: trx as never }).then(() => null, (e: Error) => e.message);
        await knexMysql.transaction(async (trx) => {
          expect(await refusal(onPg, trx)).to.match(/^opts\.tx on PostgreSQL must be .*; got a Knex transaction running on MySQL\/MariaDB \(a mysql2 connection\)$/);
        });
        await knexPg.transaction(async (trx) => {
          expect(await refusal(onMysql, trx)).to.match(/^opts\.tx on MySQL\/MariaDB must be .*; got a Knex transaction running on PostgreSQL \(a pg client\)$/);
        });
      } finally {
        await Promise.all([onPg.close(), onMysql.close(), knexMysql.destroy(), knexPg.destroy()]);
        await Promise.all([pool.end(), myPool.end()]);
      }
    });
  });

  describe('MySQL/MariaDB', function () {
    before(requireDatabase(mariadb));
    it("a caller's SqlTransaction that binds through execute() enqueues with refIds", async () => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
      const jobs = createJobs({ db: pool, tablePrefix: uniquePrefix(), worker: false });
      try {
        await jobs.migrate();
        const c = await pool.getConnection();
        await c.beginTransaction();
        const tx: SqlTransaction = {
          query: async (text, values) => (await c.execute(text, values as never[]))[0],
          inTransaction: async () => true,
        };
        const ref = `ref-${crypto.randomUUID()}`;
        const first = await jobs.enqueue('x', {}, { tx, refId: ref });
        const again = await jobs.enqueue('x', {}, { tx, refId: ref });
        await c.commit();
        c.release();
        expect(again).to.deep.equal({ id: first.id, existed: true });
      } finally {
        await jobs.close();
        await pool.end();
      }
    });
  });
});
