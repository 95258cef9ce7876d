/** The admin at scale, shared by bench/admin.ts and bench/sqlite-months.ts: seeding SQLite set-based, timing every admin page over HTTP (./timing.ts). */
import Database from 'better-sqlite3';
import express from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { jobsAdmin, type Jobs } from '../../lib/index.ts';
import { timeRequests, type Timing } from './timing.ts';
import { SEED_COLS } from './seed-columns.ts';

export const TARGET_MS = 200;

/** The command line of both admin benches: --history, --pending, --runs, --keep (and --dialect, where there is a choice). */
export interface BenchFlags {
  history: number;
  pending: number;
  runs: number;
  keep: boolean;
  dialect: string;
}

export function benchFlags(defaultHistory: number): BenchFlags {
  const { values } = parseArgs({
    options: {
      dialect: { type: 'string', default: 'both' },
      history: { type: 'string', default: String(defaultHistory) },
      pending: { type: 'string', default: '100000' },
      runs: { type: 'string', default: '7' },
      keep: { type: 'boolean', default: false },
    },
  });
  return { history: Number(values.history), pending: Number(values.pending), runs: Number(values.runs), keep: values.keep, dialect: values.dialect };
}

export interface SeedSize {
  history: number;
  pending: number;
  /** Finished jobs spread over this long before now, ms. Default 30 days. */
  spreadMs?: number;
}

/** Seed rows, shared by both dialects: finished jobs spread over 30 days (UUIDv7-shaped ids in time order), pending ones due over the last hour. */
export const SPREAD_MS = 30 * 86_400_000;

// Column expressions over (i, ts): see ./seed-columns.ts; the id is written once per dialect.
export const SQLITE_COLS = {
  ...SEED_COLS,
  id: (variant: string) => `substr(printf('%012x', ts), 1, 8) || '-' || substr(printf('%012x', ts), 9, 4) || '-7' || printf('%03x', i % 4096) || '-${variant}' || printf('%03x', (i / 4096) % 4096) || '-' || printf('%012x', i)`,
};

/** Finished jobs spread over `spreadMs` before `now`, pending ones due over the last hour, set-based in one transaction. */
export function seedSqlite(db: Database.Database, p: string, now: number, { history, pending, spreadMs = SPREAD_MS }: SeedSize): void {
  const c = SQLITE_COLS;
  const series = (n: number) => `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${n - 1})`;
  db.exec('BEGIN');
  db.prepare(`${series(history)}
    INSERT INTO ${p}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, started_at, finished_at, tag, batch_id, ref_id, error, result)
    SELECT ${c.id('8')}, ${c.name}, ${c.queue}, ${c.state}, '{"n":' || i || '}', 0, 1, 25, ts, ts, ts, ts + 40,
      ${c.tag}, ${c.batch}, ${c.ref('ref-h')},
      CASE WHEN ${c.state} = 'failed' THEN '{"message":"boom"}' END, CASE WHEN ${c.state} = 'completed' THEN '{"ok":true}' END
    FROM (SELECT i, ${now} - (${history} - i) * ${Math.floor(spreadMs / history)} AS ts FROM n)`).run();
  db.prepare(`${series(pending)}
    INSERT INTO ${p}jobs (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, tag, batch_id, ref_id)
    SELECT ${c.id('9')}, ${c.name}, ${c.queue}, 'pending', '{"n":' || i || '}', 0, 0, 25, ts, ts, ${c.tag}, ${c.batch}, ${c.ref('ref-p')}
    FROM (SELECT i, ${now} - 3600000 + i * ${Math.floor(3_600_000 / pending)} AS ts FROM n)`).run();
  db.exec('COMMIT');
  db.exec('ANALYZE');
}

export type { Timing };

/** The median and max of `runs` calls of `send`, after one to warm up (./timing.ts). */
export const time = timeRequests;

/** The admin of `jobs` on a free loopback port (mounted at /admin), with a session: its cookie and CSRF token. */
export async function serveAdmin(jobs: Jobs): Promise<{ origin: string; cookie: string; token: string; server: Server }> {
  const app = express();
  app.use('/admin', jobsAdmin(jobs));
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}/admin`;
  const first = await fetch(`${origin}/`);
  const cookie = first.headers.get('set-cookie')!.split(';')[0];
  const token = /name="sqljobs-csrf" content="([^"]+)"/.exec(await first.text())![1];
  return { origin, cookie, token, server };
}

/** Every admin page and JSON API call over HTTP, `runs` times each. */
export async function measure(jobs: Jobs, runs: number): Promise<Timing[]> {
  const { origin, cookie, token, server } = await serveAdmin(jobs);
  try {
    const get = (p: string) => () => fetch(origin + p, { headers: { cookie } });
    const finished = (await jobs.list({ state: 'completed', limit: 1 })).items[0].id;
    const failed = (await jobs.list({ state: 'failed', limit: runs + 1 })).items.map((j) => j.id);
    const pending = (await jobs.list({ state: 'pending', limit: runs + 1 })).items.map((j) => j.id);
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
      ['history (per month)', '/history'],
      ['API list', '/api/jobs'],
      ['API list state=failed queue=q1', '/api/jobs?state=failed&queue=q1'],
      ['API list tag=tag-10', '/api/jobs?tag=tag-10'],
      ['API detail', `/api/jobs/${finished}`],
      ['API stats', '/api/stats'],
      ['API queues', '/api/queues'],
      ['API recurring', '/api/recurring'],
      ['API history', '/api/history'],
    ];
    const out: Timing[] = [];
    for (const [label, p] of pages) out.push(await time(label, get(p), runs));
    const post = (ids: string[], action: string) => {
      let k = 0;
      return () => fetch(`${origin}/api/jobs/${ids[k++]}/${action}`, { method: 'POST', headers: { cookie, 'x-csrf-token': token } });
    };
    out.push(await time('API retry (a failed job)', post(failed, 'retry'), runs));
    out.push(await time('API cancel (a pending job)', post(pending, 'cancel'), runs));
    const pause = () => fetch(`${origin}/api/queues/q4/pause`, { method: 'POST', headers: { cookie, 'x-csrf-token': token } });
    out.push(await time('API pause queue', pause, runs));
    return out;
  } finally {
    server.close();
  }
}

/** A Markdown table of the timings against the 200 ms target, under `title`. */
export function table(title: string, rows: Timing[]): string {
  const lines = [`\n${title} (target < ${TARGET_MS} ms)\n`];
  lines.push('| page / call | median ms | max ms | < 200 ms |', '|---|---:|---:|:-:|');
  for (const r of rows) lines.push(`| ${r.what} | ${r.median.toFixed(1)} | ${r.max.toFixed(1)} | ${r.median < TARGET_MS ? 'yes' : '**NO**'} |`);
  return lines.join('\n');
}

