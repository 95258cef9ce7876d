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
import express from 'express';
import fs from 'node:fs';
import path from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createJobs, jobsAdmin, type Jobs } from '../lib/index.ts';
import { buildSchedule } from '../lib/schedule/schedule.ts';
import { PG_URL, SQLITE_DIR, newRunId } from './lib/config.ts';
import { dropByPrefix } from './lib/pg.ts';
import { timeRequests, type Timing } from './lib/timing.ts';
import { SEED_COLS, pgSeedId } from './lib/seed-columns.ts';

const { values: flags } = parseArgs({
  options: {
    dialect: { type: 'string', default: 'both' },
    history: { type: 'string', default: '1000000' },
    pending: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '7' },
    keep: { type: 'boolean', default: false },
  },
});
const HISTORY = Number(flags.history);
const PENDING = Number(flags.pending);
const RUNS = Number(flags.runs);
const TARGET_MS = 200;
const log = (s: string) => process.stderr.write(`${s}\n`);

/** Seed rows, shared by both dialects: finished jobs spread over 30 days (UUIDv7-shaped ids in time order), pending ones due over the last hour. */
const SPREAD_MS = 30 * 86_400_000;

// Column expressions over (i, ts): see ./lib/seed-columns.ts; the id is written once per dialect.
const SQLITE_COLS = {
  ...SEED_COLS,
  id: (variant: string) => `substr(printf('%012x', ts), 1, 8) || '-' || substr(printf('%012x', ts), 9, 4) || '-7' || printf('%03x', i % 4096) || '-${variant}' || printf('%03x', (i / 4096) % 4096) || '-' || printf('%012x', i)`,
};

function seedSqlite(db: Database.Database, p: string, now: number): void {
  const c = SQLITE_COLS;
  const series = (n: number) => `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${n - 1})`;
  db.exec('BEGIN');
  db.prepare(`${series(HISTORY)}
    INSERT INTO ${p}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, started_at, finished_at, tag, batch_id, ref_id, error, result)
    SELECT ${c.id('8')}, ${c.name}, ${c.queue}, ${c.state}, '{"n":' || i || '}', 0, 1, 25, ts, ts, ts, ts + 40,
      ${c.tag}, ${c.batch}, ${c.ref('ref-h')},
      CASE WHEN ${c.state} = 'failed' THEN '{"message":"boom"}' END, CASE WHEN ${c.state} = 'completed' THEN '{"ok":true}' END
    FROM (SELECT i, ${now} - (${HISTORY} - i) * ${Math.floor(SPREAD_MS / HISTORY)} AS ts FROM n)`).run();
  db.prepare(`${series(PENDING)}
    INSERT INTO ${p}jobs (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, tag, batch_id, ref_id)
    SELECT ${c.id('9')}, ${c.name}, ${c.queue}, 'pending', '{"n":' || i || '}', 0, 0, 25, ts, ts, ${c.tag}, ${c.batch}, ${c.ref('ref-p')}
    FROM (SELECT i, ${now} - 3600000 + i * ${Math.floor(3_600_000 / PENDING)} AS ts FROM n)`).run();
  db.exec('COMMIT');
  db.exec('ANALYZE');
}

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

const time = (label: string, send: () => Promise<Response>) => timeRequests(label, send, RUNS);

async function measure(jobs: Jobs): Promise<Timing[]> {
  const app = express();
  app.use('/admin', jobsAdmin(jobs));
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}/admin`;
  try {
    const first = await fetch(`${origin}/`);
    const cookie = first.headers.get('set-cookie')!.split(';')[0];
    const token = /name="sqljobs-csrf" content="([^"]+)"/.exec(await first.text())![1];
    const get = (p: string) => () => fetch(origin + p, { headers: { cookie } });
    const finished = (await jobs.list({ state: 'completed', limit: 1 })).items[0].id;
    const failed = (await jobs.list({ state: 'failed', limit: RUNS + 1 })).items.map((j) => j.id);
    const pending = (await jobs.list({ state: 'pending', limit: RUNS + 1 })).items.map((j) => j.id);
    const deep = (await jobs.list({ state: 'completed', limit: 500 })).nextCursor!;
    const pages: [string, string][] = [
      ['overview', '/'],
      ['overview fragment (live poll)', '/fragments/overview'],
      ['jobs (all)', '/jobs'],
      ['jobs state=completed', '/jobs?state=completed'],
      ['jobs state=failed', '/jobs?state=failed'],
      ['jobs state=pending queue=q3', '/jobs?state=pending&queue=q3'],
      ['jobs queue=q2', '/jobs?queue=q2'],
      ['jobs name=rare-report (0.01%)', '/jobs?name=rare-report'],
      ['jobs name=job-3', '/jobs?name=job-3'],
      ['jobs tag=tag-10', '/jobs?tag=tag-10'],
      ['jobs batch=batch-21', '/jobs?batch=batch-21'],
      ['jobs refId=ref-h12', '/jobs?refId=ref-h12'],
      ['jobs name=no-such-name', '/jobs?name=no-such-name'],
      ['jobs state=completed, page 11', `/jobs?state=completed&cursor=${deep}`],
      ['job detail', `/jobs/${finished}`],
      ['job live fragment', `/jobs/${pending[0]}/live`],
      ['recurring', '/recurring'],
      ['queues', '/queues'],
      ['workers', '/workers'],
      ['API list', '/api/jobs'],
      ['API list state=failed queue=q1', '/api/jobs?state=failed&queue=q1'],
      ['API list tag=tag-10', '/api/jobs?tag=tag-10'],
      ['API detail', `/api/jobs/${finished}`],
      ['API stats', '/api/stats'],
      ['API queues', '/api/queues'],
      ['API recurring', '/api/recurring'],
    ];
    const out: Timing[] = [];
    for (const [label, p] of pages) out.push(await time(label, get(p)));
    const post = (ids: string[], action: string) => {
      let k = 0;
      return () => fetch(`${origin}/api/jobs/${ids[k++]}/${action}`, { method: 'POST', headers: { cookie, 'x-csrf-token': token } });
    };
    out.push(await time('API retry (a failed job)', post(failed, 'retry')));
    out.push(await time('API cancel (a pending job)', post(pending, 'cancel')));
    const pause = () => fetch(`${origin}/api/queues/q4/pause`, { method: 'POST', headers: { cookie, 'x-csrf-token': token } });
    out.push(await time('API pause queue', pause));
    return out;
  } finally {
    server.close();
  }
}

function table(dialect: string, rows: Timing[]): string {
  const lines = [`\n${dialect}: ${HISTORY.toLocaleString('en-US')} finished + ${PENDING.toLocaleString('en-US')} pending jobs, median of ${RUNS} requests (target < ${TARGET_MS} ms)\n`];
  lines.push('| page / call | median ms | max ms | < 200 ms |', '|---|---:|---:|:-:|');
  for (const r of rows) lines.push(`| ${r.what} | ${r.median.toFixed(1)} | ${r.max.toFixed(1)} | ${r.median < TARGET_MS ? 'yes' : '**NO**'} |`);
  return lines.join('\n');
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
    seedSqlite(db, prefix, Date.now());
    log(`sqlite: seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s (${file})`);
    await addSchedules(jobs);
    return table('SQLite', await measure(jobs));
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
    return table('PostgreSQL', await measure(jobs));
  } finally {
    await jobs.close();
    await pool.end();
    if (!flags.keep) await dropByPrefix(prefix);
  }
}

if (flags.dialect === 'both' || flags.dialect === 'sqlite') console.log(await runSqlite());
if (flags.dialect === 'both' || flags.dialect === 'postgres') console.log(await runPostgres());
