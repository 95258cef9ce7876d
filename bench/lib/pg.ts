/** PostgreSQL helpers: pools, durability read-out, dropping what a run created. */
import pg from 'pg';
import { NAME_PREFIX, PG_URL } from './config.ts';

export function newPool(max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: PG_URL, max });
  pool.on('error', () => undefined);
  return pool;
}

export async function newClient(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: PG_URL });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

export async function describePg(q: Pick<pg.Pool, 'query'>): Promise<string> {
  const get = async (name: string) => (await q.query(`SHOW ${name}`)).rows[0][name] as string;
  return `synchronous_commit=${await get('synchronous_commit')}, fsync=${await get('fsync')}, wal_level=${await get('wal_level')}`;
}

/**
 * Drop every table whose name starts with `prefix` in public, and the schemas named in `schemas`.
 * `family`: the prefix every name must start with (the harness's own, or a bench's that keeps its
 * tables out of the harness's sweep).
 */
export async function dropByPrefix(prefix: string, schemas: string[] = [], family = NAME_PREFIX): Promise<void> {
  if (!prefix.startsWith(family)) throw new Error(`refusing to drop objects outside ${family}*: ${prefix}`);
  const c = await newClient();
  try {
    const { rows } = await c.query(
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND starts_with(tablename, $1)`,
      [prefix],
    );
    for (const r of rows) await c.query(`DROP TABLE IF EXISTS public."${r.tablename}" CASCADE`);
    await dropFunctions(c, prefix);
    for (const s of schemas) {
      if (!s.startsWith(family)) throw new Error(`refusing to drop schema ${s}`);
      await c.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    }
  } finally {
    await c.end();
  }
}

/** Leftovers of interrupted runs: every bx_* table in public and every bx_* schema. */
export async function sweepLeftovers(): Promise<number> {
  const c = await newClient();
  try {
    const tables = await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND starts_with(tablename, $1)`, [NAME_PREFIX]);
    for (const r of tables.rows) await c.query(`DROP TABLE IF EXISTS public."${r.tablename}" CASCADE`);
    await dropFunctions(c, NAME_PREFIX);
    const schemas = await c.query(`SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, [NAME_PREFIX]);
    for (const r of schemas.rows) await c.query(`DROP SCHEMA IF EXISTS "${r.nspname}" CASCADE`);
    return tables.rowCount! + schemas.rowCount!;
  } finally {
    await c.end();
  }
}

/** Functions the migrations made (history's finished_notify trigger function): dropping the tables leaves them. */
async function dropFunctions(c: pg.Client, prefix: string): Promise<void> {
  const { rows } = await c.query(
    `SELECT p.oid::regprocedure::text AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public' AND starts_with(p.proname, $1)`,
    [prefix],
  );
  for (const r of rows) await c.query(`DROP FUNCTION IF EXISTS ${r.f} CASCADE`);
}
