/**
 * createJobs options: what they are, and their validation into the settings the facade runs
 * with. Every refusal names the field and what is allowed.
 */
import { describe, validateName } from './model.ts';
import type { LeaderOptions } from './maintenance/leader.ts';
import type { MssqlPoolLike, MysqlPoolLike, PgPoolLike, PoolerMode, SlonikPoolLike, SqliteDatabaseLike } from './driver/handles.ts';
import type { OrmInstance } from './driver/orm/types.ts';
import { validatePrefix } from './driver/store.ts';
import type { WorkerOptions } from './worker/options.ts';
import type { Logger } from './report.ts';
import { resolveQueues, type QueueSettings } from './queues.ts';
import type { ProcessSpanRelation, TracingOptions } from './telemetry/options.ts';

export type SupportedDb = SqliteDatabaseLike | PgPoolLike | SlonikPoolLike | MysqlPoolLike | MssqlPoolLike | OrmInstance;

export type JobsMode = 'both' | 'producer' | 'consumer';

export interface JobsOptions {
  /**
   * The app's own handle: a better-sqlite3 Database, pg Pool, slonik pool, mysql2 pool (callback or
   * promise flavour) or mssql ConnectionPool (connected by the app); or the app's ORM where it owns
   * the pool: a knex instance, Drizzle database, TypeORM DataSource, Sequelize or MikroORM instance.
   */
  db: SupportedDb;
  /** Table name prefix; lowercase identifier. Default 'sqljobs_'. */
  tablePrefix?: string;
  /** Queue of jobs enqueued without one. Default 'default'. */
  defaultQueue?: string;
  /** Largest payload accepted, in UTF-8 bytes of JSON (or bytes of a Buffer). Default 1 MiB. */
  maxPayloadBytes?: number;
  /**
   * Largest result, checkpoint, progress message or log line a handler may write, in UTF-8 bytes
   * (of JSON for results and checkpoints). Over it the attempt fails with an error naming the
   * field; a result the database refuses anyway fails its attempt the same way. Default 1 MiB.
   */
  maxOutputBytes?: number;
  /**
   * Where errors go that no 'error' listener takes (a dropped connection, a refused write, a
   * listener or backoff function that threw): one line per distinct error per minute, with a
   * count of the repeats. Default `console`; `false` silences it.
   */
  logger?: Logger | false;
  /** Default runs per job including the first. Default 25. */
  maxAttempts?: number;
  /** Delete finished jobs older than this many days. Default: keep forever. */
  retentionDays?: number;
  /**
   * Priority aging: a due pending job gains one priority step for each `everyMs` it has waited, so a
   * flood of higher priorities cannot starve it (the leader raises them; claims are unchanged).
   */
  priorityAging?: { everyMs: number };
  /**
   * Limits per queue, global across every process and stored in the database (written when this
   * instance starts; a change made at run time with jobs.queues.configure stays until these
   * settings change in code): `concurrency` (most running at once), `groupConcurrency` (most of one
   * group), `rateLimit: { limit, intervalMs, per? }` (most starts in any window of intervalMs).
   */
  queues?: Record<string, QueueSettings>;
  /** A job enqueued with `reserve: true` and not committed (jobs.commitReserved) within this many ms is cancelled. Default 1 hour. */
  reserveTimeout?: number;
  /**
   * What this instance does. 'both' (default): enqueue, query, and (after start()) run jobs,
   * schedules and leader duties beside the app. 'producer': enqueue and query only — no worker,
   * no leader duties, schedules neither written nor fired (the web tier of a split deployment).
   * 'consumer': a dedicated worker process — as 'both', and it owns the process: SIGTERM or SIGINT
   * stops it gracefully (running jobs get worker.shutdownTimeout) and then exits.
   */
  mode?: JobsMode;
  /** Worker settings. `false`: the same as mode 'producer'. */
  worker?: Partial<Omit<WorkerOptions, 'retentionMs' | 'agingMs' | 'maxOutputBytes' | 'pollUnheard'>> | false;
  /** SQLite: put the database file in WAL mode (recommended; a property of the file). Default true. */
  sqliteWal?: boolean;
  /**
   * SQLite: where finished jobs are kept. 'table' (default): one history table in the database file.
   * 'monthly-files': one database file per UTC month beside it (`app.db` → `app.history-2026-12.db`),
   * filled when the month closes; get, list and the admin read across them; retention deletes whole
   * files. Needs a database file (not `:memory:`); PostgreSQL partitions history by month on its own.
   */
  history?: HistoryLayout;
  /** PostgreSQL, MySQL/MariaDB: size of the private pool the worker uses for claims, outcomes and heartbeats. Default 4. */
  workerPoolSize?: number;
  /**
   * Elect one leader among the instances that start a worker (PostgreSQL advisory lock or MySQL
   * GET_LOCK on a dedicated connection; a lease row on SQLite). Only the leader then runs the stalled-job
   * sweeper and history retention. Default: off (every worker runs them; they are safe to overlap).
   */
  leader?: boolean | Partial<LeaderOptions>;
  /**
   * PostgreSQL: what sits between `db` and the server. 'auto' (default): the worker asks once, when
   * it starts, whether its connections keep their server session. 'session': a direct connection
   * or a session pooler. 'transaction': a transaction pooler (PgBouncer `pool_mode = transaction`,
   * Supavisor or Neon's pooled endpoints, RDS Proxy): LISTEN and session locks are off, workers
   * poll (every 200 ms unless worker.pollInterval says otherwise), leadership is lease-only.
   */
  pooler?: PoolerMode;
  /**
   * PostgreSQL: a connection string to the server itself, bypassing a transaction pooler, for the
   * connections that need a session of their own: LISTEN, the leader's session lock and claims
   * (3 connections a process). Everything else still goes through `db`. Settings the URL leaves out
   * (ssl, password) are taken from `db`'s.
   */
  directUrl?: string;
  /**
   * OpenTelemetry traces through `@opentelemetry/api` (install it and register a tracer provider;
   * without one nothing is recorded or stored). Each enqueue is a `send <queue>` span in the
   * caller's trace, stored with the job; each attempt a `process <queue>` span in the process that
   * runs it, linked to the enqueue (`processSpan: 'link'`, the default) or its child (`'child'`: one
   * trace from the request to the job). `false`: no spans.
   */
  tracing?: TracingOptions | false;
  /**
   * Metrics through `@opentelemetry/api` (counters and histograms of enqueues and attempts, gauges
   * of every queue read from the database when the app's MeterProvider collects; without one,
   * nothing is recorded or read) and the prom-client registry the admin serves as `GET metrics`
   * (`jobs.metricsRegistry()`). Default true; `false`: neither.
   */
  metrics?: boolean;
}

const OPTION_KEYS = ['db', 'mode', 'tablePrefix', 'defaultQueue', 'maxPayloadBytes', 'maxOutputBytes', 'logger', 'maxAttempts', 'retentionDays', 'reserveTimeout', 'priorityAging', 'queues', 'worker', 'sqliteWal', 'history', 'workerPoolSize', 'leader', 'pooler', 'directUrl', 'tracing', 'metrics'];
const POOLER_MODES: readonly PoolerMode[] = ['auto', 'session', 'transaction'];
/** SQLite: where finished jobs are kept (see JobsOptions.history). */
export type HistoryLayout = 'table' | 'monthly-files';
const HISTORY_LAYOUTS: readonly HistoryLayout[] = ['table', 'monthly-files'];

function buildHistory(history: unknown): HistoryLayout {
  if (history === undefined) return 'table';
  if (!HISTORY_LAYOUTS.includes(history as HistoryLayout)) {
    throw new TypeError(`createJobs: history must be ${HISTORY_LAYOUTS.map((h) => `'${h}'`).join(' or ')}; got ${describe(history)}`);
  }
  return history as HistoryLayout;
}
/** Poll period when a PostgreSQL worker cannot LISTEN and the app set no pollInterval, ms. */
const UNHEARD_POLL_MS = 200;
const WORKER_KEYS = ['concurrency', 'queues', 'queueConcurrency', 'pollInterval', 'heartbeatInterval', 'stallTimeout', 'shutdownTimeout', 'logFlushInterval', 'prefetch', 'leaderOnly'];

/** Jobs claimed ahead of free slots, at most (see WorkerOptions.prefetch). */
const MAX_PREFETCH = 10_000;

/** The validated options. */
export interface ResolvedOptions {
  prefix: string;
  defaultQueue: string;
  maxPayloadBytes: number;
  maxAttempts: number;
  reserveTimeout: number;
  /** createJobs' queues option, validated, each with the hash of its settings. */
  queues: ReturnType<typeof resolveQueues>;
  workerPoolSize: number;
  sqliteWal: boolean;
  history: HistoryLayout;
  mode: JobsMode;
  /** null: this instance runs no worker (mode 'producer'). */
  worker: WorkerOptions | null;
  /** retentionDays in ms (null: none), validated in every mode. */
  retentionMs: number | null;
  leader: LeaderOptions | null;
  /** null: silenced. */
  logger: Logger | null;
  pooler: PoolerMode;
  directUrl: string | undefined;
  /** null: tracing off. */
  tracing: ProcessSpanRelation | null;
  metrics: boolean;
}

export function resolveOptions(opts: JobsOptions): ResolvedOptions {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`createJobs: options must be an object with a db; got ${describe(opts)}`);
  for (const k of Object.keys(opts)) {
    if (!OPTION_KEYS.includes(k)) throw new TypeError(`createJobs: unknown option "${k}"; allowed: ${OPTION_KEYS.join(', ')}`);
  }
  const mode = buildMode(opts);
  const maxOutputBytes = positiveInt('maxOutputBytes', opts.maxOutputBytes, DEFAULT_MAX_OUTPUT_BYTES, 64 * 1024 * 1024);
  const worker = mode === 'producer' ? null : { ...buildWorkerOptions(opts.worker || {}, opts.retentionDays), agingMs: buildAging(opts.priorityAging), maxOutputBytes };
  if (worker?.leaderOnly && !opts.leader) {
    throw new TypeError('createJobs: worker.leaderOnly needs leader: true (only the elected leader processes jobs)');
  }
  return {
    prefix: validatePrefix(opts.tablePrefix ?? 'sqljobs_'),
    defaultQueue: opts.defaultQueue === undefined ? 'default' : validateName(opts.defaultQueue, 'defaultQueue'),
    // 64 MiB: MariaDB's default max_allowed_packet, and far past what a job payload should carry.
    maxPayloadBytes: positiveInt('maxPayloadBytes', opts.maxPayloadBytes, 1024 * 1024, 64 * 1024 * 1024),
    maxAttempts: positiveInt('maxAttempts', opts.maxAttempts, 25, 1_000_000),
    reserveTimeout: positiveInt('reserveTimeout', opts.reserveTimeout, 3_600_000, 10 * 365 * 86_400_000),
    queues: resolveQueues(opts.queues),
    workerPoolSize: positiveInt('workerPoolSize', opts.workerPoolSize, 4, 100),
    sqliteWal: opts.sqliteWal === undefined ? true : checkBoolean('sqliteWal', opts.sqliteWal),
    history: buildHistory(opts.history),
    mode,
    worker,
    retentionMs: retentionOf(opts.retentionDays),
    leader: buildLeaderOptions(opts.leader),
    logger: buildLogger(opts.logger),
    pooler: buildPooler(opts.pooler),
    directUrl: buildDirectUrl(opts.directUrl),
    tracing: buildTracing(opts.tracing),
    metrics: opts.metrics === undefined ? true : checkBoolean('metrics', opts.metrics),
  };
}

function buildTracing(v: unknown): ProcessSpanRelation | null {
  if (v === false) return null;
  if (v === undefined) return 'link';
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TypeError(`createJobs: tracing must be false or { processSpan: 'link' | 'child' }; got ${describe(v)}`);
  for (const k of Object.keys(v)) if (k !== 'processSpan') throw new TypeError(`createJobs: tracing.${k} is not a tracing option; allowed: processSpan`);
  const relation = (v as TracingOptions).processSpan ?? 'link';
  if (relation !== 'link' && relation !== 'child') throw new TypeError(`createJobs: tracing.processSpan must be 'link' or 'child'; got ${describe(relation)}`);
  return relation;
}

function buildPooler(v: unknown): PoolerMode {
  if (v === undefined) return 'auto';
  if (!POOLER_MODES.includes(v as PoolerMode)) throw new TypeError(`createJobs: pooler must be 'auto', 'session' or 'transaction'; got ${describe(v)}`);
  return v as PoolerMode;
}

/** A postgres:// or postgresql:// URL; the refusal does not repeat it (it may hold a password). */
function buildDirectUrl(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const ok = typeof v === 'string' && /^postgres(ql)?:\/\//.test(v) && URL.canParse(v);
  if (!ok) throw new TypeError(`createJobs: directUrl must be a PostgreSQL connection string (postgres://user@host:5432/db); got ${typeof v === 'string' ? 'a string that is not one' : describe(v)}`);
  return v;
}

function buildLogger(v: JobsOptions['logger']): Logger | null {
  if (v === undefined) return console;
  if (v === false) return null;
  if (v === null || typeof v !== 'object' || typeof v.error !== 'function') {
    throw new TypeError(`createJobs: logger must be an object with an error(message) method (console, pino, winston…) or false; got ${describe(v)}`);
  }
  return v;
}

export function positiveInt(field: string, v: unknown, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  return intInRange(`createJobs: ${field}`, v, dflt, 1, max);
}

/** Node timers fire at once past this many ms (a 32-bit signed delay), so no interval may exceed it. */
export const MAX_TIMER_MS = 2_147_483_647;
/** maxOutputBytes when not given: 1 MiB. */
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
/** Jobs one process runs at once: far beyond what one event loop or one pool serves well. */
export const MAX_CONCURRENCY = 1000;

/** An integer option in [min, max], or its default when undefined; `field` names the caller and the field. */
export function intInRange(field: string, v: unknown, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = min === 1 ? `a positive integer no greater than ${max}` : `an integer from ${min} to ${max}`;
    throw new TypeError(`${field} must be ${range}; got ${describe(v)}`);
  }
  return v;
}

function buildWorkerOptions(w: Partial<WorkerOptions>, retentionDays: number | undefined): Omit<WorkerOptions, 'maxOutputBytes' | 'agingMs'> {
  if (w === null || typeof w !== 'object') throw new TypeError(`createJobs: worker must be an object or false; got ${describe(w)}`);
  for (const k of Object.keys(w)) {
    if (!WORKER_KEYS.includes(k)) throw new TypeError(`createJobs: unknown worker option "${k}"; allowed: ${WORKER_KEYS.join(', ')}`);
  }
  const heartbeatInterval = positiveInt('worker.heartbeatInterval', w.heartbeatInterval, 5000, Math.floor(MAX_TIMER_MS / 3));
  const stallTimeout = positiveInt('worker.stallTimeout', w.stallTimeout, Math.max(30_000, heartbeatInterval * 3), MAX_TIMER_MS);
  if (stallTimeout < heartbeatInterval * 3) {
    throw new TypeError(`createJobs: worker.stallTimeout must be at least 3 × heartbeatInterval (${heartbeatInterval * 3} ms); got ${stallTimeout}`);
  }
  if (w.queues !== undefined) {
    if (!Array.isArray(w.queues) || !w.queues.length) throw new TypeError(`createJobs: worker.queues must be a non-empty array of queue names; got ${describe(w.queues)}`);
    w.queues.forEach((q, i) => validateName(q, `worker.queues[${i}]`));
  }
  if (w.queueConcurrency !== undefined && (w.queueConcurrency === null || typeof w.queueConcurrency !== 'object' || Array.isArray(w.queueConcurrency))) {
    throw new TypeError(`createJobs: worker.queueConcurrency must be an object { [queue]: limit }; got ${describe(w.queueConcurrency)}`);
  }
  for (const [q, n] of Object.entries(w.queueConcurrency ?? {})) {
    validateName(q, 'worker.queueConcurrency key');
    if (n === undefined) throw new TypeError(`createJobs: worker.queueConcurrency.${q} must be a positive integer no greater than ${MAX_CONCURRENCY}; got undefined`);
    positiveInt(`worker.queueConcurrency.${q}`, n, 1, MAX_CONCURRENCY);
  }
  return {
    concurrency: positiveInt('worker.concurrency', w.concurrency, 10, MAX_CONCURRENCY),
    queues: w.queues,
    queueConcurrency: w.queueConcurrency,
    pollInterval: positiveInt('worker.pollInterval', w.pollInterval, 1000, MAX_TIMER_MS),
    pollUnheard: w.pollInterval ?? UNHEARD_POLL_MS,
    heartbeatInterval,
    stallTimeout,
    shutdownTimeout: positiveInt('worker.shutdownTimeout', w.shutdownTimeout, 10_000, MAX_TIMER_MS),
    logFlushInterval: positiveInt('worker.logFlushInterval', w.logFlushInterval, 200, MAX_TIMER_MS),
    prefetch: intInRange('createJobs: worker.prefetch', w.prefetch, 500, 0, MAX_PREFETCH),
    leaderOnly: w.leaderOnly === undefined ? false : checkBoolean('worker.leaderOnly', w.leaderOnly),
    retentionMs: retentionOf(retentionDays),
  };
}

/** retentionDays in ms (null: keep history). Also kept by a producer, whose admin shows it. */
export function retentionOf(retentionDays: number | undefined): number | null {
  // Retention older than 100 years keeps everything; beyond it the cut-off date leaves what databases store.
  // At least a minute: 1e-20 was taken, and rounded to 0 ms (every finished job pruned at once).
  if (retentionDays !== undefined && (typeof retentionDays !== 'number' || !(Math.round(retentionDays * 86_400_000) >= 60_000) || retentionDays > 36_500)) {
    throw new TypeError(`createJobs: retentionDays must be a number of days from 1 minute (0.0007) to 36500; got ${describe(retentionDays)}`);
  }
  return retentionDays === undefined ? null : Math.round(retentionDays * 86_400_000);
}

/** priorityAging: { everyMs } (at least 100 ms), or null without it. */
function buildAging(v: unknown): number | null {
  if (v === undefined) return null;
  if (v === null || typeof v !== 'object' || Object.keys(v).some((k) => k !== 'everyMs')) {
    throw new TypeError(`createJobs: priorityAging must be { everyMs }; got ${describe(v)}`);
  }
  const everyMs = (v as { everyMs?: unknown }).everyMs;
  if (everyMs === undefined) throw new TypeError('createJobs: priorityAging.everyMs is required (milliseconds per priority step)');
  return intInRange('createJobs: priorityAging.everyMs', everyMs, 0, 100, MAX_TIMER_MS);
}

function checkBoolean(field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`createJobs: ${field} must be true or false; got ${describe(v)}`);
  return v;
}

function buildMode(opts: JobsOptions): JobsMode {
  const mode = opts.mode ?? (opts.worker === false ? 'producer' : 'both');
  if (!['both', 'producer', 'consumer'].includes(mode)) throw new TypeError(`createJobs: mode must be 'both', 'producer' or 'consumer'; got ${describe(mode)}`);
  if (opts.worker === false && mode !== 'producer') throw new TypeError(`createJobs: worker: false means mode 'producer'; got mode ${describe(mode)}`);
  if (mode === 'producer' && opts.worker !== undefined && opts.worker !== false) throw new TypeError(`createJobs: worker options do not apply to mode 'producer' (it runs no worker)`);
  if (mode === 'producer' && opts.leader) throw new TypeError(`createJobs: leader does not apply to mode 'producer' (it performs no leader duties)`);
  return mode;
}

function buildLeaderOptions(v: JobsOptions['leader']): LeaderOptions | null {
  if (v === undefined || v === false) return null;
  const o = v === true ? {} : v;
  if (o === null || typeof o !== 'object') throw new TypeError(`createJobs: leader must be true, false or { name, leaseMs }; got ${describe(v)}`);
  for (const k of Object.keys(o)) {
    if (k !== 'name' && k !== 'leaseMs') throw new TypeError(`createJobs: unknown leader option "${k}"; allowed: name, leaseMs`);
  }
  const name = o.name === undefined ? 'leader' : validateName(o.name, 'leader.name');
  const leaseMs = positiveInt('leader.leaseMs', o.leaseMs, 15_000, MAX_TIMER_MS);
  if (leaseMs < 150) throw new TypeError(`createJobs: leader.leaseMs must be at least 150 ms; got ${leaseMs}`);
  return { name, leaseMs };
}
