/** PostgreSQL fixtures of the ORM suites: the app's rows table, and backends counted by application name. */
import pg from 'pg';
import { PG_URL } from '../helpers/dialects.ts';

/** Backends opened with `app` as application_name: the ORM's pool, and our private pools copied from its settings. */
export async function backendsNamed(app: string): Promise<number> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return Number((await c.query('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app])).rows[0].n);
  } finally {
    await c.end();
  }
}

export async function createRowsTable(table: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id varchar(64) PRIMARY KEY)`);
  await c.end();
}
