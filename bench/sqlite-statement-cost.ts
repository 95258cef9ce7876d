/**
 * What SQLite's statements alone cost per job, sqljobs' against the raw floor's, on one file in one
 * process, no worker: N pre-enqueued jobs are claimed and finished B at a time, one batch after
 * the other, and the process's CPU (SQLite runs in it) is divided by N.
 * - sqljobs: the store's claim (`jobClaim`) and fenced completion (`jobCompleteMany`), the
 *   statements the worker sends, on the schema its migrations make (four b-trees a pending job,
 *   the move to history with its indexes).
 * - the floor: bench/systems/floor-sqlite.ts's statements (claim 100 with UPDATE … RETURNING, one
 *   DELETE a batch; `archive` also copies the batch to a history table without indexes).
 * The worker cannot go faster than its statements: 1e6 / (sqljobs µs) bounds its rate whatever the
 * JavaScript around them costs, so the ratio printed is the most any worker on this schema reaches.
 *   node --import tsx bench/sqlite-statement-cost.ts [--jobs 50000] [--batches 100,250,500] [--rounds 3]
 */
import Database from 'better-sqlite3';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SQLJOBS_ENTRY, newRunId } from './lib/config.ts';
import { openAppDb, removeSqliteFile, sqliteFile } from './lib/sqlite.ts';
import { fmt, median } from './lib/stats.ts';
import type { Store } from '../lib/driver/store.ts';

const { values: args } = parseArgs({
  options: { jobs: { type: 'string', default: '50000' }, batches: { type: 'string', default: '100,250,500' }, rounds: { type: 'string', default: '3' } },
});
const { createJobs } = (await import(pathToFileURL(SQLJOBS_ENTRY).href)) as typeof import('../lib/index.ts');
const n = Number(args.jobs);

/** CPU µs per job of `work`, which finishes `n` jobs. */
async function cpuPerJob(work: () => Promise<number>): Promise<number> {
  const cpu0 = process.cpuUsage();
  const done = await work();
  const cpu = process.cpuUsage(cpu0);
  if (done !== n) throw new Error(`finished ${done} of ${n} jobs`);
  return (cpu.user + cpu.system) / n;
}

async function sqljobs(db: Database.Database, batch: number): Promise<{ total: number; claim: number }> {
  const jobs = createJobs<{ noop: { i: number } }>({ db, tablePrefix: `${newRunId()}_`, worker: false });
  await jobs.migrate();
  for (let i = 0; i < n; i += 1000) {
    await jobs.enqueueMany(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'noop' as const, payload: { i: i + j } })));
  }
  const store = jobs.store as unknown as Store;
  let claimUs = 0;
  const us = await cpuPerJob(async () => {
    let done = 0;
    for (;;) {
      const before = process.cpuUsage();
      const got = await store.jobClaim({ names: ['noop'], limit: batch, workerId: 'w' });
      const claimed = process.cpuUsage(before);
      claimUs += claimed.user + claimed.system;
      if (!got.length) return done;
      done += (await store.jobCompleteMany(got.map((j) => ({ id: j.id, token: j.token, resultJson: null, flow: j.flow, rowid: j.rowid })))).size;
    }
  });
  await jobs.close();
  return { total: us, claim: claimUs / n };
}

/** The floor's table and statements, as bench/systems/floor-sqlite.ts makes them. */
async function floor(db: Database.Database, batch: number, archive: boolean): Promise<number> {
  const t = `${newRunId()}_floor`;
  db.exec(`
    CREATE TABLE ${t} (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, payload TEXT, state TEXT NOT NULL DEFAULT 'pending',
      priority INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started_at INTEGER);
    CREATE INDEX ${t}_claim ON ${t} (priority DESC, run_at, id) WHERE state = 'pending';
    CREATE TABLE ${t}_history (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload TEXT, state TEXT NOT NULL,
      priority INTEGER NOT NULL, run_at INTEGER NOT NULL, attempts INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER NOT NULL);`);
  const insert = db.prepare(`INSERT INTO ${t} (name, payload, run_at) SELECT 'noop', value, ? FROM json_each(?)`);
  for (let i = 0; i < n; i += 1000) insert.run(Date.now(), JSON.stringify(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ i: i + j }))));
  const claim = db.prepare(`UPDATE ${t} SET state = 'running', attempts = attempts + 1, started_at = ?
    WHERE id IN (SELECT id FROM ${t} WHERE state = 'pending' AND run_at <= ? ORDER BY priority DESC, run_at, id LIMIT ${batch})
    RETURNING id, payload`);
  const del = db.prepare(`DELETE FROM ${t} WHERE id IN (SELECT value FROM json_each(?))`);
  const move = db.prepare(`INSERT INTO ${t}_history (id, name, payload, state, priority, run_at, attempts, started_at, finished_at)
    SELECT id, name, payload, 'completed', priority, run_at, attempts, started_at, ? FROM ${t} WHERE id IN (SELECT value FROM json_each(?))`);
  const finish = archive
    ? db.transaction((ids: string) => {
        move.run(Date.now(), ids);
        del.run(ids);
      })
    : (ids: string) => del.run(ids);
  return cpuPerJob(async () => {
    let done = 0;
    for (;;) {
      const now = Date.now();
      const rows = claim.all(now, now) as { id: number; payload: string }[];
      if (!rows.length) return done;
      for (const r of rows) JSON.parse(r.payload);
      finish(JSON.stringify(rows.map((r) => r.id)));
      done += rows.length;
    }
  });
}

const runId = newRunId();
const file = sqliteFile(runId);
const db = openAppDb(file);
try {
  for (const batch of args.batches!.split(',').map(Number)) {
    const figures = { sqljobs: [] as number[], claim: [] as number[], floor: [] as number[], archiving: [] as number[] };
    for (let round = 0; round < Number(args.rounds); round++) {
      const { total, claim } = await sqljobs(db, batch);
      figures.sqljobs.push(total);
      figures.claim.push(claim);
      figures.floor.push(await floor(db, batch, false));
      figures.archiving.push(await floor(db, batch, true));
    }
    const [s, f, a] = [median(figures.sqljobs), median(figures.floor), median(figures.archiving)];
    console.log(
      `B=${batch}: CPU µs per job (medians of ${args.rounds}) sqljobs ${fmt(s)} (claim ${fmt(median(figures.claim))}), floor ${fmt(f)}, archiving floor ${fmt(a)}; ` +
        `statements alone bound sqljobs at ${fmt(1e6 / s)} jobs/s = ${(f / s).toFixed(2)}× the floor's statements`,
    );
  }
} finally {
  db.close();
  removeSqliteFile(file);
}
