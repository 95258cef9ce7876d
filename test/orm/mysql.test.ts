/** ORMs on MySQL/MariaDB (mysql2): their transactions as opts.tx, their instances as db (see harness.ts). */
import mysql from 'mysql2/promise';
import { drizzle } from 'drizzle-orm/mysql2';
import { sql as dsql } from 'drizzle-orm';
import { DIALECTS, MYSQL_URL, requireDatabase } from '../helpers/dialects.ts';
import { ROLLBACK, ormSuite, type OrmCase } from './harness.ts';
import { knexCase } from './knex-case.ts';

const mariadb = DIALECTS.find((d) => d.name === 'mysql')!;

async function createRowsTable(table: string): Promise<void> {
  const c = await mysql.createConnection(MYSQL_URL);
  await c.query(`DROP TABLE IF EXISTS ${table}`);
  await c.query(`CREATE TABLE ${table} (id varchar(64) PRIMARY KEY) ENGINE = InnoDB`);
  await c.end();
}

const knexMysql = knexCase({
  dialect: 'mysql',
  config: { client: 'mysql2', connection: MYSQL_URL, pool: { min: 0, max: 2 } },
  table: 'orm_rows_knex',
  prepare: () => createRowsTable('orm_rows_knex'),
});

const drizzleCase: OrmCase = {
  orm: 'Drizzle',
  dialect: 'mysql',
  async open() {
    await createRowsTable('orm_rows_drizzle');
    const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
    const db = drizzle({ client: pool });
    return {
      db,
      transaction: (body, rollback) =>
        db.transaction(async (tx) => {
          await tx.execute(dsql`INSERT INTO orm_rows_drizzle (id) VALUES (${body.rowId})`);
          const r = await body.enqueue(tx);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => ((await db.execute(dsql`SELECT id FROM orm_rows_drizzle`))[0] as unknown as { id: string }[]).map((r) => r.id),
      close: () => pool.end(),
    };
  },
};

describe('ORMs on MySQL/MariaDB', function () {
  before(requireDatabase(mariadb));
  for (const c of [knexMysql, drizzleCase]) ormSuite(c);
});
