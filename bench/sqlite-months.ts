/**
 * SQLite with history: 'monthly-files' at scale: seed finished jobs spread over the last 24 months
 * (set-based, into the main file's history, as completions would have left them), let the leader's
 * upkeep move each closed month to its file (timed), then time every admin page and JSON API call
 * over HTTP, a keyset page deep into the list, get of the oldest job and the History view's months,
 * each median against the 200 ms target.
 *
 *   npm run bench:sqlite-months                                         5,000,000 finished + 100,000 pending
 *   npm run bench:sqlite-months -- --history 200000 --pending 20000 --runs 5
 *   flags: --keep (leave the files in place)
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { createJobs, type Jobs } from '../lib/index.ts';
import { SQLITE_DIR, newRunId } from './lib/config.ts';
import { benchFlags, measure, seedSqlite, table, type Timing } from './lib/admin-pages.ts';
import { fmt, percentile } from './lib/stats.ts';

const flags = benchFlags(5_000_000);
const { history: HISTORY, pending: PENDING, runs: RUNS } = flags;
/** 24 closed months before the current one, and some of the current one. */
const SPREAD_MS = 24.5 * 30.44 * 86_400_000;
/** The keyset page timed deep in the list (the pages before it are walked first, untimed). */
const DEEP_PAGE = 50;
const log = (s: string) => process.stderr.write(`${s}\n`);

/** The median and max of RUNS calls of `fn`, after one to warm up. */
async function timeCall(label: string, fn: () => Promise<unknown>): Promise<Timing> {
  await fn();
  const ms: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return { what: label, median: ms[Math.floor(ms.length / 2)], max: ms[ms.length - 1] };
}

/** The calls the admin pages do not cover: a deep keyset page, get of a job in the oldest file, the months. */
async function acrossFiles(jobs: Jobs): Promise<Timing[]> {
  let cursor: string | undefined;
  for (let page = 1; page < DEEP_PAGE; page++) cursor = (await jobs.list({ state: 'completed', cursor })).nextCursor ?? undefined;
  const oldest = (await jobs.list({ state: 'completed', createdBefore: new Date(Date.now() - SPREAD_MS + 86_400_000), limit: 1 })).items[0];
  if (!oldest) throw new Error('no job in the oldest month');
  return [
    await timeCall(`list state=completed, keyset page ${DEEP_PAGE}`, () => jobs.list({ state: 'completed', cursor })),
    await timeCall('list name=rare-report (0.01%)', () => jobs.list({ name: 'rare-report' })),
    await timeCall('get, a job in the oldest file', () => jobs.get(oldest.id)),
    await timeCall('historyMonths (History view), cap 10,000', () => jobs.store.historyMonths({ cap: 10_000 })),
  ];
}

/** How late a 5 ms timer fires while something runs: the longest synchronous stretches of the event loop. */
function loopStalls(): { stop(): void; max(): number; p99(): number } {
  const late: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    late.push(now - last - 5);
    last = now;
  }, 5);
  return { stop: () => clearInterval(timer), max: () => Math.max(0, ...late), p99: () => percentile(late, 99) };
}

async function run(): Promise<string> {
  const dir = path.join(SQLITE_DIR, `${newRunId()}-months`);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'app.db');
  const db = new Database(file);
  const prefix = `${newRunId()}_`;
  const jobs = createJobs({ db, tablePrefix: prefix, worker: false, history: 'monthly-files' });
  try {
    await jobs.migrate();
    let t0 = Date.now();
    seedSqlite(db, prefix, Date.now(), { history: HISTORY, pending: PENDING, spreadMs: SPREAD_MS });
    log(`seeded ${HISTORY.toLocaleString('en-US')} finished jobs in ${fmt((Date.now() - t0) / 1000)} s (${file})`);
    // The seed is one transaction: its WAL is checkpointed here, as a running app's is as it goes, not by the move's first commit.
    db.pragma('wal_checkpoint(TRUNCATE)');
    t0 = Date.now();
    // The move runs each batch's statements synchronously in the leader's process: how long they hold its event loop.
    const lag = loopStalls();
    await jobs.store.historyUpkeep!();
    lag.stop();
    const rollS = (Date.now() - t0) / 1000;
    const files = fs.readdirSync(dir).filter((f) => f.includes('history-'));
    const bytes = files.reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
    const kept = (db.prepare(`SELECT COUNT(*) AS n FROM ${prefix}history`).get() as { n: number }).n;
    const moved = `closed months moved to ${files.length} files (${fmt(bytes / 2 ** 20)} MiB) in ${fmt(rollS)} s, ${fmt((HISTORY - kept) / rollS)} rows/s (the event loop held up to ${fmt(lag.max())} ms at a time, p99 ${fmt(lag.p99())} ms); ${kept.toLocaleString('en-US')} rows of the current month stay in the main file`;
    const rows = [...(await measure(jobs, RUNS)), ...(await acrossFiles(jobs))];
    return `${moved}\n${table(`SQLite, monthly files: ${HISTORY.toLocaleString('en-US')} finished + ${PENDING.toLocaleString('en-US')} pending jobs, median of ${RUNS} requests`, rows)}`;
  } finally {
    await jobs.close();
    db.close();
    if (!flags.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

console.log(await run());
