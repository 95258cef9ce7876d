/**
 * The admin at scale: seed 1,000,000 finished jobs and 100,000 pending ones (bulk SQL, in a
 * dedicated bx_ table prefix), then time every admin page and JSON API call over HTTP and print
 * each one's median against the 200 ms target.
 *
 *   npm run bench:admin                                  both dialects, 1,000,000 + 100,000
 *   npm run bench:admin -- --dialect sqlite --history 200000 --pending 20000 --runs 5
 *   flags: --keep (leave the seeded tables/file in place)
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createJobs, type Jobs } from '../lib/index.ts';
import { buildSchedule } from '../lib/schedule/schedule.ts';
import { PG_URL, SQLITE_DIR, newRunId } from './lib/config.ts';
import { dropByPrefix } from './lib/pg.ts';
import { SEED_COLS, pgSeedId } from './lib/seed-columns.ts';
import { SPREAD_MS, benchFlags, measure, seedSqlite, table } from './lib/admin-pages.ts';

const flags = benchFlags(1_000_000);
const { history: HISTORY, pending: PENDING, runs: RUNS } = flags;
const log = (s: string) => process.stderr.write(`${s}\n`);
/** The table's title: what was seeded and how often each call was timed. */
const titled = (dialect: string) => `${dialect}: ${HISTORY.toLocaleString('en-US')} finished + ${PENDING.toLocaleString('en-US')} pending jobs, median of ${RUNS} requests`;

const PG_COLS = { ...SEED_COLS, id: pgSeedId };

async function seedPostgres(pool: pg.Pool, p: string, now: number): Promise<void> {
  const c = PG_COLS;
  const at = (e: string) => `to_timestamp((${e}) / 1000.0)`;
  await pool.query(`INSERT INTO ${p}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, started_at, finished_at, tag, batch_id, ref_id, error, result)
    SELECT ${c.id('8')}, ${c.name}, ${c.queue}, ${c.state}, ('{"n":' || i || '}')::json, 0, 1, 25, ${at('ts')}, ${at('ts')}, ${at('ts')}, ${at('ts + 40')},
      ${c.tag}, ${c.batch}, ${c.ref('ref-h')},
      CASE WHEN ${c.state} = 'failed' THEN '{"message":"boom"}'::json END, CASE WHEN ${c.state} = 'completed' THEN '{"ok":true}'::json END
    FROM (SELECT i, ${now}::bigint - (${HISTORY} - i) * ${Math.floor(SPREAD_MS / HISTORY)} AS ts FROM generate_series(0::bigint, ${HISTORY - 1}) i) s`);
  await pool.query(`INSERT INTO ${p}jobs (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, tag, batch_id, ref_id)
    SELECT ${c.id('9')}, ${c.name}, ${c.queue}, 'pending', ('{"n":' || i || '}')::json, 0, 0, 25, ${at('ts')}, ${at('ts')}, ${c.tag}, ${c.batch}, ${c.ref('ref-p')}
    FROM (SELECT i, ${now}::bigint - 3600000 + i * ${Math.floor(3_600_000 / PENDING)} AS ts FROM generate_series(0::bigint, ${PENDING - 1}) i) s`);
  await pool.query(`VACUUM ANALYZE ${p}history`);
  await pool.query(`VACUUM ANALYZE ${p}jobs`);
}

async function addSchedules(jobs: Jobs): Promise<void> {
  for (let k = 0; k < 20; k++) {
    const def = buildSchedule(`report-${k}`, k % 2 ? `${k} 3 * * *` : { every: k + 1, unit: 'minutes' }, { k }, { name: 'job-1' }, Date.now());
    await jobs.store.scheduleUpsert({ def, nextRunAt: Date.now() + 60_000, codeHash: null });
  }
}

async function runSqlite(): Promise<string> {
  fs.mkdirSync(SQLITE_DIR, { recursive: true });
  const file = path.join(SQLITE_DIR, `${newRunId()}-admin.db`);
  const db = new Database(file);
  const prefix = `${newRunId()}_`;
  const jobs = createJobs({ db, tablePrefix: prefix, worker: false });
  try {
    await jobs.migrate();
    const t0 = Date.now();
    seedSqlite(db, prefix, Date.now(), { history: HISTORY, pending: PENDING });
    log(`sqlite: seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s (${file})`);
    await addSchedules(jobs);
    return table(titled('SQLite'), await measure(jobs, RUNS));
  } finally {
    await jobs.close();
    db.close();
    if (!flags.keep) for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
  }
}

async function runPostgres(): Promise<string> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 10 });
  const prefix = `${newRunId()}_`;
  const jobs = createJobs({ db: pool, tablePrefix: prefix, worker: false });
  try {
    await jobs.migrate();
    const t0 = Date.now();
    await seedPostgres(pool, prefix, Date.now());
    log(`postgres: seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s (prefix ${prefix})`);
    await addSchedules(jobs);
    return table(titled('PostgreSQL'), await measure(jobs, RUNS));
  } finally {
    await jobs.close();
    await pool.end();
    if (!flags.keep) await dropByPrefix(prefix);
  }
}

if (flags.dialect === 'both' || flags.dialect === 'sqlite') console.log(await runSqlite());
if (flags.dialect === 'both' || flags.dialect === 'postgres') console.log(await runPostgres());
