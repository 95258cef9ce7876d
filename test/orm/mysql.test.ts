/** ORMs on MySQL/MariaDB (mysql2): their transactions as opts.tx, their instances as db (see harness.ts). */
import mysql from 'mysql2/promise';
import { drizzle } from 'drizzle-orm/mysql2';
import { Sequelize } from 'sequelize';
import { DIALECTS, MYSQL_URL, requireDatabase } from '../helpers/dialects.ts';
import { ROLLBACK, ormSuite, type OrmCase } from './harness.ts';
import { knexCase } from './knex-case.ts';
import { drizzleCase } from './drizzle-case.ts';
import { sqlTransactionCase } from './sql-transaction-case.ts';

const mariadb = DIALECTS.find((d) => d.name === 'mysql')!;

async function createRowsTable(table: string): Promise<void> {
  const c = await mysql.createConnection(MYSQL_URL);
  await c.query(`DROP TABLE IF EXISTS ${table}`);
  await c.query(`CREATE TABLE ${table} (id varchar(64) PRIMARY KEY) ENGINE = InnoDB`);
  await c.end();
}

/**
 * A user of the case's own, so that its server connections can be counted (MariaDB keeps no
 * connection attributes without performance_schema): the ORM's pool and our private pools
 * copied from its settings all log in as it.
 */
async function createCaseUser(user: string): Promise<void> {
  const c = await mysql.createConnection(MYSQL_URL);
  await c.query(`CREATE USER IF NOT EXISTS '${user}'@'%' IDENTIFIED BY 'orm'`);
  await c.query(`CREATE USER IF NOT EXISTS '${user}'@'localhost' IDENTIFIED BY 'orm'`);
  await c.query(`GRANT ALL ON test.* TO '${user}'@'%'`);
  await c.query(`GRANT ALL ON test.* TO '${user}'@'localhost'`);
  await c.end();
}

function caseUrl(user: string): string {
  const url = new URL(MYSQL_URL);
  url.username = user;
  url.password = 'orm';
  return url.toString();
}

async function connectionsOf(user: string): Promise<number> {
  const c = await mysql.createConnection(MYSQL_URL);
  try {
    const [rows] = await c.query('SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE USER = ?', [user]);
    return Number((rows as { n: number }[])[0].n);
  } finally {
    await c.end();
  }
}

const knexMysql = knexCase({
  dialect: 'mysql',
  config: () => ({ client: 'mysql2', connection: caseUrl('sqljobs_orm_knex'), pool: { min: 0, max: 2 } }),
  table: 'orm_rows_knex',
  prepare: async () => {
    await createRowsTable('orm_rows_knex');
    await createCaseUser('sqljobs_orm_knex');
  },
  poolMax: 2,
  connections: () => connectionsOf('sqljobs_orm_knex'),
});

const drizzleMysql = drizzleCase({
  dialect: 'mysql',
  table: 'orm_rows_drizzle',
  async open() {
    await createRowsTable('orm_rows_drizzle');
    await createCaseUser('sqljobs_orm_drizzle');
    const pool = mysql.createPool({ uri: caseUrl('sqljobs_orm_drizzle'), connectionLimit: 2 });
    return { db: drizzle({ client: pool }), end: () => pool.end() };
  },
  rowsOf: (result) => (result as [{ id: string }[]])[0],
  connections: () => connectionsOf('sqljobs_orm_drizzle'),
});

const mysqlPool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
const customMysql = sqlTransactionCase({
  dialect: 'mysql',
  db: () => mysqlPool,
  prepare: () => createRowsTable('orm_rows_custom'),
  async connect() {
    const c = await mysqlPool.getConnection();
    return {
      query: async (text, values) => (await c.query(text, values))[0] as Record<string, unknown>[],
      inTransaction: async () => Number(((await c.query('SELECT @@in_transaction AS t'))[0] as { t: number }[])[0].t) === 1,
      begin: () => c.beginTransaction(),
      commit: () => c.commit(),
      rollback: () => c.rollback(),
      release: () => c.release(),
    };
  },
  insertText: 'INSERT INTO orm_rows_custom (id) VALUES (?)',
  rowsText: 'SELECT id FROM orm_rows_custom',
  close: () => mysqlPool.end(),
});

/**
 * Sequelize's mysql dialect runs on mysql2: createJobs is given a mysql2 pool (a Sequelize
 * instance on MySQL is not taken as db), and Sequelize's transactions are opts.tx.
 */
const sequelizeMysql: OrmCase = {
  orm: 'Sequelize',
  dialect: 'mysql',
  finishedRefusal: /^opts\.tx: the Sequelize Transaction has already finished \(commit\)/,
  unawaitedUndetected:
    "MariaDB is asked whether the connection is in a transaction just before the write, and Sequelize's ROLLBACK can land between the two on its connection (the INSERT then commits alone); await the enqueue",
  async open() {
    await createRowsTable('orm_rows_sequelize');
    const sequelize = new Sequelize(MYSQL_URL, { dialect: 'mysql', logging: false, pool: { min: 0, max: 2 } });
    await sequelize.authenticate();
    const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
    return {
      db: pool,
      transaction: (body, rollback) =>
        sequelize.transaction(async (t) => {
          await sequelize.query('INSERT INTO orm_rows_sequelize (id) VALUES (?)', { replacements: [body.rowId], transaction: t });
          const r = await body.enqueue(t);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => ((await sequelize.query('SELECT id FROM orm_rows_sequelize', { type: 'SELECT' })) as { id: string }[]).map((r) => r.id),
      close: async () => {
        await sequelize.close();
        await pool.end();
      },
    };
  },
};

describe('ORMs on MySQL/MariaDB', function () {
  before(requireDatabase(mariadb));
  for (const c of [knexMysql, drizzleMysql, customMysql, sequelizeMysql]) ormSuite(c);
});
