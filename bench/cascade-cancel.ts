/**
 * Cancelling the head of a workflow: every waiting dependent below it is cancelled, transitively,
 * in the cancelling transaction. Times `jobs.cancel(head)` for a chain (each job depends on the one
 * before: one level per job) and a fan (every job depends on the head: one level), per database.
 *
 *   node --import tsx bench/cascade-cancel.ts                       2,000 jobs, sqlite,postgres,mysql, 3 runs
 *   node --import tsx bench/cascade-cancel.ts --jobs 500 --dialects postgres --runs 5
 */
import Database from 'better-sqlite3';
import path from 'node:path';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createJobs } from '../lib/index.ts';
import { SQLITE_DIR, newRunId } from './lib/config.ts';
import { newPool, dropByPrefix } from './lib/pg.ts';
import { newMysqlPool, dropMysqlByPrefix } from './lib/mysql.ts';
import { fmt } from './lib/stats.ts';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '2000' }, dialects: { type: 'string', default: 'sqlite,postgres,mysql' }, runs: { type: 'string', default: '3' } } });
const JOBS = Number(values.jobs);
const RUNS = Number(values.runs);

/** One database handle per measurement, and how to drop what it made. */
function open(dialect: string, runId: string): { db: Database.Database | ReturnType<typeof newPool> | ReturnType<typeof newMysqlPool>; done(): Promise<void> } {
  if (dialect === 'sqlite') {
    fs.mkdirSync(SQLITE_DIR, { recursive: true });
    const file = path.join(SQLITE_DIR, `${runId}.db`);
    const db = new Database(file);
    return { db, done: async () => { db.close(); for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true }); } };
  }
  if (dialect === 'postgres') {
    const db = newPool();
    return { db, done: async () => { await db.end(); await dropByPrefix(`${runId}_`); } };
  }
  const db = newMysqlPool();
  return { db, done: async () => { await db.end(); await dropMysqlByPrefix(`${runId}_`); } };
}

async function timeCancel(dialect: string, shape: 'chain' | 'fan'): Promise<number> {
  const runId = newRunId();
  const { db, done } = open(dialect, runId);
  try {
    const jobs = createJobs({ db, tablePrefix: `${runId}_`, worker: false });
    const items = Array.from({ length: JOBS }, (_, i) => ({ name: 'step', payload: i, ...(i === 0 ? {} : { dependsOn: shape === 'chain' ? i - 1 : 0 }) }));
    const [head] = await jobs.enqueueMany(items);
    const t0 = performance.now();
    await jobs.cancel(head.id);
    const ms = performance.now() - t0;
    const last = await jobs.get((await jobs.list({ state: 'cancelled', limit: 1 })).items[0].id);
    if (last?.state !== 'cancelled') throw new Error(`${dialect} ${shape}: the last job is ${last?.state}`);
    await jobs.close();
    return ms;
  } finally {
    await done();
  }
}

const rows: string[][] = [];
for (const dialect of values.dialects.split(',')) {
  for (const shape of ['chain', 'fan'] as const) {
    const ms: number[] = [];
    for (let r = 0; r < RUNS; r++) ms.push(await timeCancel(dialect, shape));
    ms.sort((a, b) => a - b);
    rows.push([dialect, shape, String(JOBS), fmt(ms[Math.floor(ms.length / 2)]), fmt(ms[ms.length - 1])]);
  }
}
console.log(['database', 'shape', 'jobs', 'cancel ms (median)', 'max'].join('\t'));
for (const r of rows) console.log(r.join('\t'));
