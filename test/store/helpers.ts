/** Store-level conformance: what a test needs to drive the Store directly and look at its tables. */
import { rescueStalled } from '../../lib/maintenance/rescuer.ts';
import { expect } from 'chai';
import type Database from 'better-sqlite3';
import type pg from 'pg';
import type { ClaimedJob, Fenced, Store } from '../../lib/driver/store.ts';
import type { TestDb } from '../helpers/dialects.ts';
import type { Jobs } from '../../lib/index.ts';

/** The n-th placeholder of a test statement: `?` on SQLite, `$n` elsewhere (the helpers map it). */
export function ph(t: TestDb, n: number): string {
  return t.dialect === 'sqlite' ? '?' : `$${n}`;
}

/** What a fenced write needs from a claim. */
export function fenced(job: ClaimedJob): Fenced {
  return { id: job.id, token: job.token, rowid: job.rowid };
}

/** A migrated Jobs instance with no worker, and its store. */
export async function storeOf(t: TestDb): Promise<{ jobs: Jobs; store: Store }> {
  const jobs = t.jobs({ worker: false });
  await jobs.migrate();
  return { jobs, store: jobs.store };
}

/** Claim the one pending job named `name` as `workerId`. */
export async function claimOne(store: Store, name: string, workerId: string): Promise<ClaimedJob> {
  const got = await store.jobClaim({ workerId, names: [name], limit: 1 });
  expect(got, `a claim of ${name} by ${workerId}`).to.have.length(1);
  return got[0];
}

/**
 * A job claimed by worker A (token A), rescued as a sweeper rescues a worker whose heartbeat
 * stopped (A never sent one), then claimed again by worker B: the row runs under token B while A
 * still holds token A.
 */
export async function reclaimed(jobs: Jobs, name: string): Promise<{ id: string; stale: ClaimedJob; current: ClaimedJob }> {
  const store = jobs.store;
  const { id } = await jobs.enqueue(name, { job: name });
  const stale = await claimOne(store, name, 'worker-a');
  const rescued = await rescueStalled(store, 0);
  expect(rescued.map((r) => r.id)).to.include(id);
  const current = await claimOne(store, name, 'worker-b');
  expect(current.id).to.equal(id);
  expect(current.token).to.not.equal(stale.token);
  expect(current.attempts).to.equal(2);
  return { id, stale, current };
}

/** Everything the database holds about one job: its live row, its history row, its attempts and its logs, as stored. */
export async function snapshot(t: TestDb, id: string): Promise<Record<string, unknown[]>> {
  const p = ph(t, 1);
  const out: Record<string, unknown[]> = {};
  for (const [table, key] of [['jobs', 'id'], ['history', 'id'], ['attempts', 'job_id'], ['logs', 'job_id']] as const) {
    const order = table === 'attempts' ? ' ORDER BY attempt' : table === 'logs' ? ' ORDER BY seq' : '';
    out[table] = await t.query(`SELECT * FROM ${t.prefix}${table} WHERE ${key} = ${p}${order}`, [id]);
  }
  return out;
}

/** The live row of a job (throws when it has left the live table). */
export async function liveRow(t: TestDb, id: string): Promise<Record<string, unknown>> {
  const rows = (await snapshot(t, id)).jobs;
  expect(rows, `job ${id} in the live table`).to.have.length(1);
  return rows[0] as Record<string, unknown>;
}

/**
 * Write one row into `table` (job_id, token) on the transaction a transactional completion runs
 * in, the way the app would: better-sqlite3 synchronously on its Database, pg on its PoolClient,
 * mysql2 and SQL Server through the app's query helper.
 */
export function insertOnJobTx(t: TestDb, tx: unknown, table: string, values: unknown[]): unknown {
  const cols = values.map((_, i) => ph(t, i + 1)).join(', ');
  const insert = `INSERT INTO ${t.prefix}${table} VALUES (${cols})`;
  if (t.dialect === 'sqlite') return (tx as Database.Database).prepare(insert).run(...values);
  if (t.dialect === 'mssql' || t.dialect === 'mysql') return t.appQuery(tx, insert, values);
  return (tx as pg.PoolClient).query(insert, values);
}
