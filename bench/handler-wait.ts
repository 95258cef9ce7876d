/**
 * Jobs whose handlers wait (a timer of 1, 2, 5 ms: an HTTP call, a query) at concurrency 10, on
 * one database: the rate beside what the slots alone allow (10 / the handler's measured time).
 * It shows whether the jobs claimed ahead keep the slots busy while the next claim is under way;
 * no-op jobs (bench/measure.ts) cannot, as their slots turn over faster than any claim returns.
 * Compare two trees by pointing BENCH_SQLJOBS_LIB at each built tree in turn.
 *   node --import tsx bench/handler-wait.ts [--backend postgres|mysql|sqlite] [--ms 1,2,5] [--jobs 4000] [--rounds 3]
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type Database from 'better-sqlite3';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import { SQLJOBS_ENTRY, newRunId } from './lib/config.ts';
import { dropMysqlByPrefix, newMysqlPool } from './lib/mysql.ts';
import { dropByPrefix, newPool } from './lib/pg.ts';
import { openAppDb, removeSqliteFile, sqliteFile } from './lib/sqlite.ts';
import { fmt, median } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'postgres' },
    ms: { type: 'string', default: '1,2,5' },
    jobs: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '3' },
  },
});
const { createJobs } = (await import(pathToFileURL(SQLJOBS_ENTRY).href)) as typeof import('../lib/index.ts');
const CONCURRENCY = 10;
const n = Number(args.jobs);

/** The app's handle on a fresh set of tables, and how to remove them. */
function open(runId: string): { db: Database.Database | pg.Pool | mysql.Pool; drop: () => Promise<unknown> } {
  if (args.backend === 'postgres') {
    const db = newPool(5);
    return { db, drop: async () => (await db.end(), dropByPrefix(`${runId}_`)) };
  }
  if (args.backend === 'mysql') {
    const db = newMysqlPool(5);
    return { db, drop: async () => (await db.end(), dropMysqlByPrefix(`${runId}_`)) };
  }
  const file = sqliteFile(runId);
  const db = openAppDb(file);
  return { db, drop: async () => (db.close(), removeSqliteFile(file)) };
}

/** One run: jobs/s, and the handler's own mean time (a timer of `ms` fires a little late). */
async function once(ms: number): Promise<{ rate: number; handlerMs: number }> {
  const runId = newRunId();
  const { db, drop } = open(runId);
  let done = 0;
  let handlerTotal = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const jobs = createJobs<{ wait: { i: number } }>({ db, tablePrefix: `${runId}_`, worker: { concurrency: CONCURRENCY } }).define('wait', async () => {
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, ms));
    handlerTotal += performance.now() - t0;
    if (++done === n) finish();
  });
  try {
    await jobs.migrate();
    for (let i = 0; i < n; i += 1000) await jobs.enqueueMany(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'wait' as const, payload: { i: i + j } })));
    const t0 = performance.now();
    await jobs.start();
    await all;
    return { rate: (n / (performance.now() - t0)) * 1000, handlerMs: handlerTotal / n };
  } finally {
    await jobs.close();
    await drop();
  }
}

for (const ms of args.ms!.split(',').map(Number)) {
  const runs = [];
  for (let r = 0; r < Number(args.rounds); r++) runs.push(await once(ms));
  const rate = median(runs.map((x) => x.rate));
  const slots = (CONCURRENCY * 1000) / median(runs.map((x) => x.handlerMs));
  console.log(`${args.backend}, handlers waiting ${ms} ms: ${fmt(rate)} jobs/s (runs ${runs.map((x) => fmt(x.rate)).join(', ')}); the slots allow ${fmt(slots)}: ${fmt((rate / slots) * 100)} %`);
}
