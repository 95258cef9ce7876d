/**
 * Driver detection by shape, fed real objects of every driver (constructed; a pool client and a
 * slonik transaction need PostgreSQL, the rest never connect), and wrong objects.
 */
import { expect } from 'chai';
import Database from 'better-sqlite3';
import pg from 'pg';
import mysql from 'mysql2';
import mysqlPromise from 'mysql2/promise';
import mssql from 'mssql';
import { createPool } from 'slonik';
import { detectDriver } from '../../lib/driver/detect.ts';
import { isSlonikConnection, isSlonikPool } from '../../lib/driver/postgres/slonik.ts';
import { isMssqlPool, isMssqlTransaction } from '../../lib/driver/mssql/store.ts';
import { createJobs } from '../../lib/index.ts';
import { PG_URL, DIALECTS, requireDatabase } from '../helpers/dialects.ts';

const EXPECTED = /^createJobs: db: expected a better-sqlite3 Database, pg Pool, slonik pool, mysql2 pool or mssql ConnectionPool; got /;

describe('driver detection', () => {
  const mssqlConfig = { server: '127.0.0.1', port: 1, database: 'none', user: 'u', password: 'p', options: { trustServerCertificate: true } };
  const mysqlConfig = { host: '127.0.0.1', port: 1, user: 'none' };

  it('recognises each driver\'s own objects, constructed without connecting', async () => {
    const sqlite = new Database(':memory:');
    const pgPool = new pg.Pool({ connectionString: PG_URL });
    const mysqlPool = mysql.createPool(mysqlConfig);
    const mysqlPromisePool = mysqlPromise.createPool(mysqlConfig);
    const mssqlPool = new mssql.ConnectionPool(mssqlConfig);
    const slonikPool = await createPool(PG_URL);
    try {
      expect(detectDriver(sqlite)).to.equal('better-sqlite3');
      expect(detectDriver(pgPool)).to.equal('pg-pool');
      expect(detectDriver(new pg.Client({ connectionString: PG_URL }))).to.equal('pg-client');
      expect(detectDriver(mysqlPool)).to.equal('mysql2');
      expect(detectDriver(mysqlPool.promise())).to.equal('mysql2');
      expect(detectDriver(mysqlPromisePool)).to.equal('mysql2');
      expect(detectDriver(mssqlPool)).to.equal('mssql');
      expect(detectDriver(slonikPool)).to.equal('slonik');
      expect(isSlonikPool(slonikPool)).to.equal(true);
      expect(isMssqlPool(mssqlPool)).to.equal(true);
      expect(isMssqlTransaction(new mssql.Transaction(mssqlPool))).to.equal(true);
      expect(isMssqlPool(pgPool)).to.equal(false);
      expect(isSlonikConnection(pgPool)).to.equal(false);
    } finally {
      sqlite.close();
      await pgPool.end();
      await new Promise((r) => mysqlPool.end(r));
      await mysqlPromisePool.end();
      await slonikPool.end();
    }
  });

  it('refuses a single mysql2 connection as db, pointing to opts.tx', () => {
    // Made without connecting: a connection object has the shape the app would pass.
    for (const conn of [mysql.createConnection({ host: '127.0.0.1', port: 1 }).promise(), mysql.createConnection({ host: '127.0.0.1', port: 1 })]) {
      (conn as unknown as { on?(e: string, f: () => void): void }).on?.('error', () => undefined);
      expect(() => createJobs({ db: conn as never, worker: false })).to.throw(TypeError, /must be a mysql2 pool \(mysql\.createPool\), not a single connection.*opts\.tx/);
      (conn as unknown as { destroy(): void }).destroy();
    }
  });

  it('refuses wrong objects, naming what is expected and what it got', () => {
    const mssqlPool = new mssql.ConnectionPool(mssqlConfig);
    const wrong: [unknown, RegExp][] = [
      [{}, /got Object$/],
      [null, /got null$/],
      [undefined, /got undefined$/],
      ['postgres://localhost/db', /got string "postgres:\/\/localhost\/db"$/],
      [42, /got number 42$/],
      [new Map(), /got Map$/],
      [new mssql.Transaction(mssqlPool), /got Transaction with keys /],
      [new mssql.Request(), /got Request with keys /],
      [{ query: () => undefined }, /got Object with keys query$/],
    ];
    for (const [db, got] of wrong) {
      expect(() => detectDriver(db), String(db)).to.throw(TypeError, EXPECTED);
      expect(() => detectDriver(db), String(db)).to.throw(got);
      expect(() => createJobs({ db: db as never, worker: false }), String(db)).to.throw(TypeError, EXPECTED);
    }
  });

  describe('objects that need PostgreSQL', () => {
    before(requireDatabase(DIALECTS.find((d) => d.name === 'postgres')!));

    it('tells a slonik transaction connection from a pool: one is opts.tx, the other db', async () => {
      const pool = await createPool(PG_URL);
      try {
        await pool.transaction(async (t) => {
          expect(detectDriver(t)).to.equal('slonik');
          expect(isSlonikConnection(t)).to.equal(true);
          expect(isSlonikPool(t)).to.equal(false);
          expect(() => createJobs({ db: t as never, worker: false })).to.throw(TypeError, /db must be a slonik pool, not a connection.*opts\.tx/);
        });
      } finally {
        await pool.end();
      }
    });

    it('refuses a pg pool client as db, pointing to opts.tx', async () => {
      const pool = new pg.Pool({ connectionString: PG_URL });
      const client = await pool.connect();
      try {
        expect(detectDriver(client)).to.equal('pg-client');
        expect(() => createJobs({ db: client as never, worker: false })).to.throw(TypeError, /not a single Client.*opts\.tx/);
      } finally {
        client.release();
        await pool.end();
      }
    });
  });
});

describe('opts.tx refusals say what they received', () => {
  it('names an ORM transaction or instance as such, anything else by its shape', async () => {
    const { describeTx } = await import('../../lib/driver/detect.ts');
    const f = () => undefined;
    const knexClient = { acquireConnection: f, releaseConnection: f };
    const knexTrx = Object.assign(() => undefined, { isTransaction: true, commit: f, raw: f, client: knexClient });
    expect(describeTx(knexTrx)).to.equal('a Knex transaction');
    expect(describeTx(Object.assign(() => undefined, { raw: f, transaction: f, client: knexClient }))).to.match(/^a Knex instance \(not a transaction/);
    expect(describeTx({ $executeRawUnsafe: f, $queryRawUnsafe: f })).to.equal('a Prisma client');
    expect(describeTx({ selectFrom: f, insertInto: f, executeQuery: f, isTransaction: true })).to.equal('a Kysely transaction');
    expect(describeTx({ selectFrom: f, insertInto: f, executeQuery: f, isTransaction: false })).to.match(/^a Kysely instance/);
    expect(describeTx({ select: f, rollback: f, session: {}, dialect: {} })).to.equal('a Drizzle transaction');
    expect(describeTx({ select: f, transaction: f, $client: {}, dialect: {} })).to.match(/^a Drizzle database/);
    expect(describeTx({ getRepository: f, transaction: f, queryRunner: undefined })).to.match(/^a TypeORM EntityManager/);
    expect(describeTx({ commit: f, rollback: f, afterCommit: f, sequelize: {} })).to.equal('a Sequelize Transaction');
    expect(describeTx({ getTransactionContext: f, persist: f, flush: f })).to.equal('a MikroORM EntityManager');
    class Pool {
      totalCount = 0;
    }
    expect(describeTx(new Pool())).to.equal('Pool with keys totalCount');
    expect(describeTx(undefined)).to.equal('undefined');
    expect(describeTx('tx')).to.equal('string "tx"');
  });
});
