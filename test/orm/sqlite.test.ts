/**
 * ORMs on SQLite. createJobs gets a better-sqlite3 Database on the ORM's file (Drizzle: its own,
 * through $client); Knex and Kysely hold their transaction across awaits, so the job is written on
 * the very connection the transaction runs on, and our worker's handle waits for the file's lock.
 */
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, sql as ksql } from 'kysely';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { sql as dsql } from 'drizzle-orm';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROLLBACK, ormSuite, type OrmCase } from './harness.ts';
import { knexCase } from './knex-case.ts';

function freshFile(): { file: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'sqljobs-orm-'));
  return { file: path.join(dir, 'app.db'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function createRowsTable(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE app_rows (id varchar(64) PRIMARY KEY)');
  db.close();
}

/** Knex opens its own Database on the file; createJobs gets another (the job is written on Knex's, inside its transaction). */
function knexSqlite(): OrmCase {
  const { file, remove } = freshFile();
  return knexCase({
    dialect: 'sqlite',
    config: () => ({ client: 'better-sqlite3', connection: { filename: file }, useNullAsDefault: true }),
    table: 'app_rows',
    prepare: () => createRowsTable(file),
    db: () => {
      const db = new Database(file);
      return { db, close: () => (db.close(), remove()) };
    },
  });
}

const kyselyCase: OrmCase = {
  orm: 'Kysely',
  dialect: 'sqlite',
  unawaitedUndetected: "Kysely marks its transaction ended only after the ROLLBACK, and SQLite has no way to ask inside a statement; await the enqueue",
  async open() {
    const { file, remove } = freshFile();
    createRowsTable(file);
    // One Database for Kysely's dialect and for createJobs, as an app would share it.
    const database = new Database(file);
    const db = new Kysely<{ app_rows: { id: string } }>({ dialect: new SqliteDialect({ database }) });
    return {
      db: database,
      transaction: (body, rollback) =>
        db.transaction().execute(async (trx) => {
          await trx.insertInto('app_rows').values({ id: body.rowId }).execute();
          const r = await body.enqueue(trx);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => (await ksql<{ id: string }>`SELECT id FROM app_rows`.execute(db)).rows.map((r) => r.id),
      close: async () => {
        await db.destroy();
        remove();
      },
    };
  },
};

const drizzleCase: OrmCase = {
  orm: 'Drizzle',
  dialect: 'sqlite',
  async open() {
    const { file, remove } = freshFile();
    createRowsTable(file);
    const db = drizzle({ client: new Database(file) });
    return {
      db,
      // better-sqlite3 transactions are synchronous: the enqueue is written before the callback returns.
      async transaction(body, rollback) {
        let result!: Promise<import('../../lib/index.ts').EnqueueResult>;
        db.transaction((tx) => {
          tx.run(dsql`INSERT INTO app_rows (id) VALUES (${body.rowId})`);
          result = body.enqueue(tx);
          if (rollback) ROLLBACK();
        });
        return result;
      },
      rows: async () => db.all<{ id: string }>(dsql`SELECT id FROM app_rows`).map((r) => r.id),
      close: async () => {
        db.$client.close();
        remove();
      },
    };
  },
};

describe('ORMs on SQLite', function () {
  for (const c of [knexSqlite(), kyselyCase, drizzleCase]) ormSuite(c);
});
