/**
 * How long migration 015 (logs and attempts partitioned by their job's month) holds its locks on an
 * installation at version 14 with N log lines and N/10 failed attempts; with `pre`, after the logs
 * key was built beforehand with CREATE INDEX CONCURRENTLY, as the README suggests for large tables.
 * `node --import tsx bench/migration-015.ts 1000000 [pre]` (URL from env).
 */
import pg from 'pg';
import { loadMigrations, splitStatements } from '../lib/driver/migrations.ts';

const N = Number(process.argv[2] ?? 1_000_000);
const pre = process.argv[3] === 'pre';
const prefix = `m015_${Date.now() % 100000}_`;
const pool = new pg.Pool({ connectionString: process.env.URL ?? 'postgres://postgres@127.0.0.1:5432/test' });
/** UUIDv7-shaped ids, one per millisecond back from now. */
const ids = `(lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint - g), 12, '0') || '7000' || lpad(to_hex(g), 16, '0'))::uuid`;

async function elapsed(what: string, fn: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  await fn();
  console.log(`${what}: ${Math.round(performance.now() - t0)} ms`);
}

try {
  await pool.query(`CREATE TABLE ${prefix}migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  const all = loadMigrations('postgres', prefix);
  for (const m of all.filter((x) => x.version <= 14)) for (const s of splitStatements(m.sql)) await pool.query(s);
  await elapsed(`${N} log lines and ${N / 10} attempts generated`, async () => {
    await pool.query(`INSERT INTO ${prefix}logs (job_id, attempt, at, message) SELECT ${ids}, 1, now(), 'line ' || g FROM generate_series(1, ${N}) g`);
    await pool.query(`INSERT INTO ${prefix}attempts (job_id, attempt, finished_at) SELECT ${ids}, 1, now() FROM generate_series(1, ${N / 10}) g`);
    await pool.query(`VACUUM ANALYZE ${prefix}logs`);
  });
  if (pre) await elapsed('the logs key built beforehand (CONCURRENTLY)', () => pool.query(`CREATE UNIQUE INDEX CONCURRENTLY ${prefix}logs_legacy_key ON ${prefix}logs (job_id, seq)`));
  const c = await pool.connect();
  try {
    await elapsed(`migration 015${pre ? ' (key built beforehand)' : ''}, locks held`, async () => {
      await c.query('BEGIN');
      for (const s of splitStatements(all.find((x) => x.version === 15)!.sql)) await c.query(s);
      await c.query('COMMIT');
    });
  } finally {
    c.release();
  }
} finally {
  const tables = (await pool.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix}%`])).rows.map((r) => String(r.tablename));
  if (tables.length) await pool.query(`DROP TABLE IF EXISTS ${tables.join(', ')} CASCADE`);
  await pool.end();
}
