/**
 * The crash tests of workflows and flow control (test/crash/workflows.test.ts, flow-control.test.ts):
 * worker processes of test/fixtures/workflow-process.ts on one test database, and their execution
 * log, <prefix>wf_exec: a row per execution (no unique key: a duplicate would show) with its start
 * and end read from the database clock, on which every timing claim is checked.
 */
import path from 'node:path';
import type { TestDb } from './dialects.ts';
import { spawnWorker, type WorkerProc } from './processes.ts';
import type { Jobs, JobsOptions } from '../../lib/index.ts';

const FIXTURE = path.resolve('test/fixtures/workflow-process.ts');

export interface Exec {
  jobId: string;
  name: string;
  attempt: number;
  pid: number;
  /** Database clock, epoch ms. */
  start: number;
  end: number | null;
  info: {
    parents: { id: string; name: string; state: string; result: { name: string; tag: unknown; pid: number } | null }[];
    batch: Record<string, unknown> | null;
    deadLetterOf?: string | null;
  } | null;
}

/** A job's row in the jobs table or in history. */
export interface JobRow {
  id: string;
  queue: string;
  state: string;
  callback_batch: string | null;
  table: 'jobs' | 'history';
}

/** A worker process the crash tests stop at a chosen point. */
export interface Victim {
  queue: string;
  env: Record<string, string | number>;
  killOn: string | null;
}

export interface ExecLog {
  t: TestDb;
  /** An instance of the test process (no worker), started: its `queues` settings are stored. */
  jobs: Jobs;
  spawn(env?: Record<string, string | number>): WorkerProc;
  /** n processes, once each printed "ready". */
  spawnReady(n: number, env?: Record<string, string | number>): Promise<WorkerProc[]>;
  /**
   * One process per victim, alone on the victim's queue (with `env` and the victim's own), ready;
   * each is SIGKILLed as it prints a line starting with its `killOn` word (never, when null):
   * `killed` resolves then. On the line itself, not at the next poll of `lines`.
   */
  spawnVictims<V extends Victim>(victims: V[], env: Record<string, string | number>): Promise<(V & { proc: WorkerProc; killed: Promise<void> })[]>;
  /** SIGTERM to those still alive, and wait for every one to exit. */
  stop(procs: WorkerProc[]): Promise<void>;
  execs(): Promise<Exec[]>;
  count(sql: string, params?: unknown[]): Promise<number>;
  /** Rows of jobs named `name`, live and finished: read in both tables. */
  rowsNamed(name: string): Promise<JobRow[]>;
  /** t.query with $n placeholders on every dialect (better-sqlite3 binds `$1` by name only: given as ? in order there). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

/**
 * A test database with the library's tables and the execution log. Not on slonik (its worker
 * processes would be the postgres case again) nor SQL Server (the fixture does not open it).
 */
export async function openExecLog(ctx: Mocha.Context, fresh: () => Promise<TestDb>, options: Pick<JobsOptions, 'queues'> = {}): Promise<ExecLog> {
  const t = await fresh();
  if (t.driver === 'slonik' || t.dialect === 'mssql') ctx.skip();
  const jobs = t.jobs({ worker: false, ...options });
  await jobs.start();
  await t.query(
    `CREATE TABLE ${t.prefix}wf_exec (job_id VARCHAR(64) NOT NULL, name VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, started_at BIGINT NOT NULL, ended_at BIGINT, info TEXT)`,
  );
  const query = <T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> => {
    if (t.dialect !== 'sqlite') return t.query<T>(sql, params);
    const order: unknown[] = [];
    return t.query<T>(sql.replace(/\$(\d+)/g, (_, n) => (order.push(params[Number(n) - 1]), '?')), order);
  };
  const spawn = (env: Record<string, string | number> = {}) =>
    spawnWorker({ DIALECT: t.dialect, LOCATION: t.location, PREFIX: t.prefix, PGAPPNAME: t.prefix, ...env }, FIXTURE);
  return {
    t,
    jobs,
    spawn,
    async spawnReady(n, env = {}) {
      const procs = Array.from({ length: n }, () => spawn(env));
      await Promise.all(procs.map((p) => p.waitFor(/^ready$/, 30_000)));
      return procs;
    },
    async spawnVictims(victims, env) {
      const out = victims.map((v) => {
        const proc = spawn({ ...env, ...v.env, QUEUES: v.queue });
        const killed = new Promise<void>((resolve) => {
          if (v.killOn === null) return;
          const line = new RegExp(`^${v.killOn}\\b`, 'm');
          proc.child.stdout!.on('data', (d: Buffer) => {
            if (!line.test(String(d))) return;
            proc.kill('SIGKILL');
            resolve();
          });
        });
        return { ...v, proc, killed };
      });
      await Promise.all(out.map((v) => v.proc.waitFor(/^ready$/, 30_000)));
      return out;
    },
    async stop(procs) {
      for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.exited));
    },
    async execs() {
      const rows = await query(`SELECT job_id, name, attempt, pid, started_at, ended_at, info FROM ${t.prefix}wf_exec`);
      return rows.map((r) => ({
        jobId: String(r.job_id),
        name: String(r.name),
        attempt: Number(r.attempt),
        pid: Number(r.pid),
        start: Number(r.started_at),
        end: r.ended_at == null ? null : Number(r.ended_at),
        info: r.info == null ? null : JSON.parse(String(r.info)),
      }));
    },
    async count(sql, params = []) {
      return Number((await query<{ n: unknown }>(sql, params))[0].n);
    },
    async rowsNamed(name) {
      const columns = 'id, queue, state, callback_batch';
      const rows = await query(
        `SELECT ${columns}, 'jobs' AS tbl FROM ${t.prefix}jobs WHERE name = $1 UNION ALL SELECT ${columns}, 'history' AS tbl FROM ${t.prefix}history WHERE name = $2`,
        [name, name],
      );
      return rows.map((r) => ({
        id: String(r.id),
        queue: String(r.queue),
        state: String(r.state),
        callback_batch: r.callback_batch == null ? null : String(r.callback_batch),
        table: String(r.tbl) as JobRow['table'],
      }));
    },
    query,
  };
}
