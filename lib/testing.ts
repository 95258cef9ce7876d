/**
 * `sqljobs/testing`: jobs in an app's own tests without worker timing. A Jobs instance on an
 * in-memory SQLite database (or the app's own, given), run on demand: `drain` runs until nothing is
 * due (optionally making delayed jobs and retries due as it goes), `runOnce` runs the next due job
 * alone, and `expectEnqueued` asserts a job is waiting, naming what is there when it is not.
 */
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import type BetterSqlite3 from 'better-sqlite3';
import { createJobs } from './index.ts';
import type { Jobs, JobMap, JobName, PayloadOf } from './jobs.ts';
import type { JobRecord, JobState } from './model.ts';
import type { JobsOptions } from './options.ts';

/** createJobs' options; `db` defaults to a fresh in-memory SQLite database. */
export type TestJobsOptions = Omit<JobsOptions, 'db'> & { db?: JobsOptions['db'] };

/**
 * A Jobs instance for tests: an in-memory SQLite database unless `db` is given, quiet (no logger),
 * its worker never started by itself: jobs run when the test calls drain or runOnce.
 */
export function createTestJobs<M extends JobMap = {}>(options: TestJobsOptions = {}): Jobs<M> {
  const { db, ...rest } = options;
  return createJobs<M>({ logger: false, ...rest, db: db ?? inMemorySqlite() });
}

/** better-sqlite3 is an optional peer: loaded only when no `db` was given, so an app on another database imports this module without it. */
function inMemorySqlite(): BetterSqlite3.Database {
  let Database: typeof BetterSqlite3;
  try {
    Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  } catch (err) {
    throw new Error("createTestJobs: without { db } it runs on an in-memory SQLite database, and better-sqlite3 is not installed: npm i -D better-sqlite3, or pass your app's database as { db }", { cause: err });
  }
  return new Database(':memory:');
}

export interface DrainOptions {
  /** Also run jobs that wait for a time (a delay, run at, or a retry's backoff): each is made due in turn. Default false. */
  delayed?: boolean;
  /** Rounds at most (each runs what is due, then makes the waiting due when `delayed`): a safety net for jobs that enqueue forever. Default 100. */
  maxRounds?: number;
}

/**
 * Run jobs until none is due, the ones they enqueue included (callbacks, dependents, retries due at
 * once); with `delayed`, also those waiting for a time. Resolves with the jobs that finished meanwhile,
 * in the order they finished.
 */
export async function drain<M extends JobMap>(jobs: Jobs<M>, options: DrainOptions = {}): Promise<JobRecord<PayloadOf<M, JobName<M>>>[]> {
  const maxRounds = options.maxRounds ?? 100;
  const finished: string[] = [];
  const failedIds = new Set<string>();
  const seen = (e: { id: string }) => void finished.push(e.id);
  const failed = (e: { id: string }) => {
    finished.push(e.id);
    failedIds.add(e.id);
  };
  jobs.on('completed', seen);
  jobs.on('failed', failed);
  try {
    for (let round = 0; round < maxRounds; round++) {
      await jobs.drain();
      if (!options.delayed || !(await makeWaitingDue(jobs))) return await records(jobs, await withCancelledDependents(jobs, finished, failedIds));
    }
    throw new Error(`drain: jobs were still due after ${maxRounds} rounds (maxRounds): a job that enqueues another each time it runs?`);
  } finally {
    jobs.off('completed', seen);
    jobs.off('failed', failed);
  }
}

/**
 * The finished ids, each failed job followed by the waiting dependents its finishing transaction
 * cancelled, transitively (no worker event says so: read from its links).
 */
async function withCancelledDependents<M extends JobMap>(jobs: Jobs<M>, finished: string[], failed: Set<string>): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = async (id: string, cascade: boolean): Promise<void> => {
    if (seen.has(id)) return;
    seen.add(id);
    out.push(id);
    if (!cascade) return;
    // Only those this job's end cancelled (their error names it as the parent), not one cancelled otherwise before.
    for (const d of (await jobs.links(id)).dependents) if (d.state === 'cancelled' && (d.error as { parentId?: string } | null)?.parentId === id) await add(d.id, true);
  };
  for (const id of finished) await add(id, failed.has(id));
  return out;
}

/** Make every pending job that waits for a time due now; false when there was none. (A job waiting for its parents is left to them.) */
async function makeWaitingDue<M extends JobMap>(jobs: Jobs<M>): Promise<boolean> {
  let made = false;
  for (const job of await pendingJobs(jobs)) if (await jobs.runNow(job.id)) made = true;
  return made;
}

async function pendingJobs<M extends JobMap>(jobs: Jobs<M>, name?: string): Promise<JobRecord[]> {
  const all: JobRecord[] = [];
  for (let cursor: string | undefined; ; ) {
    const page = await jobs.list({ state: 'pending', ...(name === undefined ? {} : { name }), includePayload: true, limit: 500, cursor });
    all.push(...page.items);
    if (!page.nextCursor) return all;
    cursor = page.nextCursor;
  }
}

async function records<M extends JobMap>(jobs: Jobs<M>, ids: string[]): Promise<JobRecord<PayloadOf<M, JobName<M>>>[]> {
  const found = await Promise.all(ids.map((id) => jobs.get(id)));
  return found.filter((j) => j !== null);
}

/**
 * Run the next due job (of `name`, when given), as a worker would pick it, and no other: resolves
 * with its record once its attempt ended (completed, failed, or pending again for a retry), or null
 * when none was due. The instance's own worker must not be running.
 */
export async function runOnce<M extends JobMap>(jobs: Jobs<M>, name?: JobName<M>): Promise<JobRecord<PayloadOf<M, JobName<M>>> | null> {
  const id = await jobs.runNext(name);
  return id === null ? null : jobs.get(id);
}

/** A recursive partial match: every key `expected` names has an equal value in `actual` (arrays and other values compared whole). */
export function matches(actual: unknown, expected: unknown): boolean {
  if (expected === null || typeof expected !== 'object' || Array.isArray(expected) || Buffer.isBuffer(expected)) return isDeepStrictEqual(actual, expected);
  if (actual === null || typeof actual !== 'object') return false;
  return Object.entries(expected).every(([k, v]) => matches((actual as Record<string, unknown>)[k], v));
}

/** A waiting job as enqueued() and expectEnqueued() answer it: with its payload. */
export type EnqueuedJob<P> = JobRecord<P> & { payload: P };

/** The jobs of `name` waiting to run (pending), whose payload matches `match` when given, oldest first. */
export async function enqueued<M extends JobMap, K extends JobName<M>>(jobs: Jobs<M>, name: K, match?: Partial<PayloadOf<M, K>> | PayloadOf<M, K>): Promise<EnqueuedJob<PayloadOf<M, K>>[]> {
  const waiting = (await pendingJobs(jobs, name)).filter((j) => match === undefined || matches(j.payload, match));
  return waiting.reverse() as EnqueuedJob<PayloadOf<M, K>>[];
}

/** Thrown by expectEnqueued: what was asked for, and what is waiting instead. */
export class EnqueuedAssertionError extends Error {
  constructor(message: string, readonly waiting: { name: string; payload: unknown; state: JobState }[]) {
    super(message);
    this.name = 'EnqueuedAssertionError';
  }
}

/**
 * Assert that a job of `name` whose payload matches `match` (a partial, compared key by key) is
 * waiting to run; resolves with the oldest such job. Throws EnqueuedAssertionError listing the jobs
 * that are waiting when none matches.
 */
export async function expectEnqueued<M extends JobMap, K extends JobName<M>>(jobs: Jobs<M>, name: K, match?: Partial<PayloadOf<M, K>> | PayloadOf<M, K>): Promise<EnqueuedJob<PayloadOf<M, K>>> {
  const [first] = await enqueued(jobs, name, match);
  if (first) return first;
  const waiting = (await pendingJobs(jobs)).reverse().map((j) => ({ name: j.name, payload: j.payload, state: j.state }));
  const what = match === undefined ? `a "${name}" job` : `a "${name}" job with a payload matching ${JSON.stringify(match)}`;
  const list = waiting.length ? waiting.slice(0, 20).map((j) => `  ${j.name} ${JSON.stringify(j.payload)}`).join('\n') : '  (none)';
  throw new EnqueuedAssertionError(`expected ${what} to be enqueued; waiting:\n${list}${waiting.length > 20 ? `\n  … and ${waiting.length - 20} more` : ''}`, waiting);
}
