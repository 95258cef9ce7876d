/**
 * The Jobs facade: the public verbs (define, enqueue, start, stop, get, list, cancel, retry, ...)
 * over one store and one in-process worker. No SQL here, no HTTP.
 */
import { EventEmitter } from 'node:events';
import type BetterSqlite3 from 'better-sqlite3';
import type { Pool as PgPool } from 'pg';
import type { Pool as MysqlPool } from 'mysql2';
import type { Pool as MysqlPromisePool } from 'mysql2/promise';
import {
  JobValidationError, buildJobRow, describe, isValidId, validateBackoff, validateId, validateName,
  type AttemptRecord, type BackoffOptions, type EnqueueOptions, type EnqueueResult, type JobError,
  type JobRecord, type JobState, type ListFilter, type ListPage, type LogRecord, type NewJobRow, type Payload,
} from './model.ts';
import type { JobContext } from './worker/context.ts';
import type { JobDefinition } from './worker/executor.ts';
import { Worker, type JobEventPayload, type WorkerOptions } from './worker/worker.ts';
import { stopOnSignals } from './worker/shutdown.ts';
import { detectDriver } from './store/detect.ts';
import { SqliteStore } from './store/sqlite.ts';
import { PostgresStore } from './store/postgres.ts';
import { createSlonikStore, isSlonikPool, type SlonikPoolLike } from './store/slonik.ts';
import { MssqlStore, isMssqlPool, type MssqlPoolLike } from './store/mssql.ts';
import { MysqlStore } from './store/mysql.ts';
import { validatePrefix, type OpenTransaction, type Store } from './store/store.ts';
import { uuidv7 } from './uuid.ts';
import { Locks } from './locks.ts';
import { LeaderElector, type LeaderOptions } from './schedule/leader.ts';
import { buildSchedule, definitionHash, type RecurringOptions, type ScheduleDef, type ScheduleRecord, type ScheduleSpec } from './schedule/schedule.ts';
import { Scheduler, firstRun } from './schedule/scheduler.ts';
import type { QueueStats, StatusCounts, StoredSchedule, ThroughputBuckets, WorkerRecord } from './store/store.ts';

export interface JobsStatus extends StatusCounts {
  workers: WorkerRecord[];
  leader: string | null;
}

/** A map from job name to payload type, e.g. `{ sendReceipt: { orderId: number } }` (a type or an interface). */
export type JobMap = object;
/** Job names a Jobs instance accepts: the map's keys, or any string when no map was given. */
export type JobName<M extends JobMap> = [keyof M] extends [never] ? string : Extract<keyof M, string>;
/** The payload type of job K. */
export type PayloadOf<M extends JobMap, K extends string> = K extends keyof M ? M[K] : Payload;

export type Handler<P, R> = (payload: P, ctx: JobContext) => R | Promise<R>;

export interface DefineOptions {
  /** Default queue for jobs of this name. */
  queue?: string;
  /** Default priority (higher first). */
  priority?: number;
  /** Runs per job including the first. Default 25. */
  maxAttempts?: number;
  /** Per-attempt timeout in ms. */
  timeout?: number;
  backoff?: BackoffOptions;
  /**
   * Run the handler inside the transaction that marks the job completed: `ctx.tx` is that
   * transaction's handle, and the handler's writes there commit exactly once with its completion.
   */
  transactional?: boolean;
}

export type SupportedDb = BetterSqlite3.Database | PgPool | SlonikPoolLike | MysqlPool | MysqlPromisePool | MssqlPoolLike;

export type JobsMode = 'both' | 'producer' | 'consumer';

export interface JobsOptions {
  /** The app's own handle: a better-sqlite3 Database, pg Pool, slonik pool, mysql2 pool (callback or promise flavour) or mssql ConnectionPool (connected by the app). */
  db: SupportedDb;
  /** Table name prefix; lowercase identifier. Default 'sqljobs_'. */
  tablePrefix?: string;
  /** Queue of jobs enqueued without one. Default 'default'. */
  defaultQueue?: string;
  /** Largest payload accepted, in UTF-8 bytes of JSON (or bytes of a Buffer). Default 1 MiB. */
  maxPayloadBytes?: number;
  /** Default runs per job including the first. Default 25. */
  maxAttempts?: number;
  /** Delete finished jobs older than this many days. Default: keep forever. */
  retentionDays?: number;
  /**
   * What this instance does. 'both' (default): enqueue, query, and (after start()) run jobs,
   * schedules and leader duties beside the app. 'producer': enqueue and query only — no worker,
   * no leader duties, schedules neither written nor fired (the web tier of a split deployment).
   * 'consumer': a dedicated worker process — as 'both', and it owns the process: SIGTERM or SIGINT
   * stops it gracefully (running jobs get worker.shutdownTimeout) and then exits.
   */
  mode?: JobsMode;
  /** Worker settings. `false`: the same as mode 'producer'. */
  worker?: Partial<Omit<WorkerOptions, 'retentionMs'>> | false;
  /** SQLite: put the database file in WAL mode (recommended; a property of the file). Default true. */
  sqliteWal?: boolean;
  /** PostgreSQL, MySQL/MariaDB: size of the private pool the worker uses for claims, outcomes and heartbeats. Default 4. */
  workerPoolSize?: number;
  /**
   * Elect one leader among the instances that start a worker (PostgreSQL advisory lock or MySQL
   * GET_LOCK on a dedicated connection; a lease row on SQLite). Only the leader then runs the stalled-job
   * sweeper and history retention. Default: off (every worker runs them; they are safe to overlap).
   */
  leader?: boolean | Partial<LeaderOptions>;
}

const OPTION_KEYS = ['db', 'mode', 'tablePrefix', 'defaultQueue', 'maxPayloadBytes', 'maxAttempts', 'retentionDays', 'worker', 'sqliteWal', 'workerPoolSize', 'leader'];
const WORKER_KEYS = ['concurrency', 'queues', 'queueConcurrency', 'pollInterval', 'heartbeatInterval', 'stallTimeout', 'shutdownTimeout', 'logFlushInterval', 'prefetch', 'leaderOnly'];

export interface JobsEvents {
  enqueued: [{ id: string; name: string; queue: string; existed: boolean }];
  started: [JobEventPayload];
  completed: [JobEventPayload & { result: unknown }];
  retrying: [JobEventPayload & { error: JobError; delayMs: number }];
  failed: [JobEventPayload & { error: JobError }];
  snoozed: [JobEventPayload & { delayMs: number }];
  cancelled: [{ id: string; previous: 'pending' | 'running' }];
  aborted: [JobEventPayload & { reason: string }];
  rescued: [{ id: string; name: string; queue: string; outcome: 'retry' | 'failed' }];
  /** A recurring schedule fired a tick (skipped: recorded as a skipped job, the previous run being live). */
  scheduled: [{ key: string; fireAt: Date; jobId: string; skipped: boolean }];
  /** This instance became leader (true) or stopped being leader (false). */
  leader: [{ leader: boolean }];
  error: [unknown];
}

export type EnqueueManyItem<M extends JobMap> = {
  [K in JobName<M>]: { name: K; payload: PayloadOf<M, K> } & Omit<EnqueueOptions, 'tx'>;
}[JobName<M>];

export class Jobs<M extends JobMap = {}> {
  readonly store: Store;
  /** Named, expiring cross-process locks in the jobs database (tryAcquire, release, withLock). */
  readonly locks: Locks;
  private readonly emitter = new EventEmitter();
  private readonly definitions = new Map<string, JobDefinition>();
  private readonly options: Required<Pick<JobsOptions, 'defaultQueue' | 'maxPayloadBytes' | 'maxAttempts'>>;
  /** What this instance does (see JobsOptions.mode). */
  readonly mode: JobsMode;
  private readonly workerOptions: WorkerOptions | null;
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private readonly leaderOptions: LeaderOptions | null;
  private elector: LeaderElector | null = null;
  /** Schedules defined in code, with the hash of their definition. */
  private readonly recurringDefs = new Map<string, { def: ScheduleDef; hash: string }>();
  private scheduler: Scheduler | null = null;

  constructor(opts: JobsOptions) {
    if (opts === null || typeof opts !== 'object') throw new TypeError(`createJobs: options must be an object with a db; got ${describe(opts)}`);
    for (const k of Object.keys(opts)) {
      if (!OPTION_KEYS.includes(k)) throw new TypeError(`createJobs: unknown option "${k}"; allowed: ${OPTION_KEYS.join(', ')}`);
    }
    const prefix = validatePrefix(opts.tablePrefix ?? 'sqljobs_');
    this.options = {
      defaultQueue: opts.defaultQueue === undefined ? 'default' : validateName(opts.defaultQueue, 'defaultQueue'),
      maxPayloadBytes: positiveInt('maxPayloadBytes', opts.maxPayloadBytes, 1024 * 1024),
      maxAttempts: positiveInt('maxAttempts', opts.maxAttempts, 25),
    };
    this.mode = buildMode(opts);
    this.workerOptions = this.mode === 'producer' ? null : buildWorkerOptions(opts.worker || {}, opts.retentionDays);
    if (this.workerOptions?.leaderOnly && !opts.leader) {
      throw new TypeError('createJobs: worker.leaderOnly needs leader: true (only the elected leader processes jobs)');
    }
    this.store = createStore(opts, prefix);
    this.locks = new Locks(this.store, () => this.migrate());
    this.leaderOptions = buildLeaderOptions(opts.leader);
    this.emitter.on('error', () => undefined); // an 'error' with no listener must not crash the app
  }

  /** Register a handler. Returns this instance, typed with the new job, for chaining. */
  define<K extends string, P = K extends keyof M ? M[K] : unknown, R = unknown>(
    name: K,
    handler: Handler<P, R>,
    options: DefineOptions = {},
  ): Jobs<M & { [N in K]: P }> {
    validateName(name, 'name');
    if (typeof handler !== 'function') throw new JobValidationError(`job "${name}": handler must be a function; got ${describe(handler)}`, 'handler', name);
    for (const k of Object.keys(options)) {
      if (!['queue', 'priority', 'maxAttempts', 'timeout', 'backoff', 'transactional'].includes(k)) {
        throw new JobValidationError(`job "${name}": ${k} is not a define option; allowed: queue, priority, maxAttempts, timeout, backoff, transactional`, k, name);
      }
    }
    if (options.backoff !== undefined) validateBackoff(options.backoff, 'backoff', name);
    // Validates queue, priority, maxAttempts and timeout with the enqueue rules.
    if (options.transactional !== undefined && typeof options.transactional !== 'boolean') {
      throw new JobValidationError(`job "${name}": transactional must be true or false; got ${describe(options.transactional)}`, 'transactional', name);
    }
    buildJobRow(uuidv7(), name, undefined, { queue: options.queue, priority: options.priority, maxAttempts: options.maxAttempts, timeout: options.timeout }, {
      queue: this.options.defaultQueue,
      maxPayloadBytes: this.options.maxPayloadBytes,
    });
    this.definitions.set(name, { name, handler: handler as JobDefinition['handler'], ...options });
    return this as unknown as Jobs<M & { [N in K]: P }>;
  }

  /** Apply the schema (idempotent; also done lazily on first use). */
  migrate(): Promise<void> {
    if (!this.ready) {
      this.ready = this.store.migrate().catch((err) => {
        this.ready = null;
        throw err;
      });
    }
    return this.ready;
  }

  /** Validate and encode one job without writing it (the request unit of work buffers rows on SQLite). @internal */
  prepareRow(name: string, payload: unknown, opts: Omit<EnqueueOptions, 'tx'>): NewJobRow {
    return this.row(name, payload, opts);
  }

  /** Write prepared rows in one transaction. @internal */
  async writeRows(rows: NewJobRow[]): Promise<EnqueueResult[]> {
    if (!rows.length) return [];
    if (this.store.capabilities.syncEnqueue) return this.afterEnqueue(rows, this.store.enqueueSync!(rows), false);
    await this.migrate();
    return this.afterEnqueue(rows, await this.store.enqueue(rows), false);
  }

  /** Open a transaction on the app's database for a request's unit of work. @internal */
  async beginTransaction(): Promise<OpenTransaction> {
    if (!this.store.beginTransaction) throw new Error(`${this.store.dialect}: a request transaction cannot be held open here`);
    await this.migrate();
    return this.store.beginTransaction();
  }

  /** A transaction that enqueued jobs committed: wake this process's worker. @internal */
  notifyCommitted(): void {
    this.worker?.wake();
  }

  /** The database dialect behind this instance. */
  get dialect(): string {
    return this.store.dialect;
  }

  private row(name: string, payload: unknown, opts: EnqueueOptions): NewJobRow {
    const def = this.definitions.get(name);
    const merged: EnqueueOptions = { ...opts };
    if (merged.queue === undefined && def?.queue) merged.queue = def.queue;
    if (merged.priority === undefined && def?.priority !== undefined) merged.priority = def.priority;
    delete merged.tx;
    const row = buildJobRow(uuidv7(), name, payload, merged, { queue: this.options.defaultQueue, maxPayloadBytes: this.options.maxPayloadBytes });
    row.maxAttempts ??= def?.maxAttempts ?? this.options.maxAttempts;
    return row;
  }

  /** Enqueue one job. Resolves to its id, and existed = true when a live job with the same refId was returned. */
  async enqueue<K extends JobName<M>>(name: K, payload: PayloadOf<M, K>, opts: EnqueueOptions = {}): Promise<EnqueueResult> {
    const row = this.row(name, payload, opts ?? {});
    if (this.store.capabilities.syncEnqueue) return this.afterEnqueue([row], this.store.enqueueSync!([row], opts?.tx), opts?.tx !== undefined)[0];
    await this.migrate();
    const res = await this.store.enqueue([row], opts?.tx);
    return this.afterEnqueue([row], res, opts?.tx !== undefined)[0];
  }

  /**
   * SQLite only: enqueue synchronously, so it can run inside the app's own
   * `db.transaction(() => ...)` and commit or roll back with it.
   */
  enqueueSync<K extends JobName<M>>(name: K, payload: PayloadOf<M, K>, opts: Omit<EnqueueOptions, 'tx'> = {}): EnqueueResult {
    if (!this.store.enqueueSync) throw new Error(`enqueueSync needs a better-sqlite3 database; this instance uses ${this.store.dialect}: use await jobs.enqueue(..., { tx })`);
    const row = this.row(name, payload, opts);
    return this.afterEnqueue([row], this.store.enqueueSync([row]), true)[0];
  }

  /** Enqueue many jobs in one round trip per chunk. */
  async enqueueMany(items: EnqueueManyItem<M>[], opts: { tx?: unknown } = {}): Promise<EnqueueResult[]> {
    if (!Array.isArray(items)) throw new TypeError(`enqueueMany: items must be an array of { name, payload, ...options }; got ${describe(items)}`);
    const rows = items.map((it, i) => {
      if (it === null || typeof it !== 'object') throw new TypeError(`enqueueMany: items[${i}] must be an object { name, payload, ...options }; got ${describe(it)}`);
      const { name, payload, ...rest } = it as { name: string; payload: unknown } & EnqueueOptions;
      return this.row(name, payload, rest);
    });
    if (!rows.length) return [];
    if (this.store.capabilities.syncEnqueue) return this.afterEnqueue(rows, this.store.enqueueSync!(rows, opts.tx), opts.tx !== undefined);
    await this.migrate();
    return this.afterEnqueue(rows, await this.store.enqueue(rows, opts.tx), opts.tx !== undefined);
  }

  /** Wake this process's worker and emit 'enqueued'; inside a caller's transaction, only after the current tick (it may still roll back). */
  private afterEnqueue(rows: NewJobRow[], results: EnqueueResult[], inTx: boolean): EnqueueResult[] {
    const worker = this.worker;
    if (worker) {
      const wake = () => {
        let soonest = Infinity;
        for (const r of rows) soonest = Math.min(soonest, r.runAt ? r.runAt.getTime() - Date.now() : r.delayMs);
        if (soonest <= 0) worker.wake();
        else if (Number.isFinite(soonest)) worker.wakeIn(soonest);
      };
      if (inTx) setImmediate(wake);
      else wake();
    }
    // Inside a caller's transaction the job may still roll back, so 'enqueued' is only told for enqueues we committed.
    if (!inTx && this.emitter.listenerCount('enqueued')) {
      rows.forEach((r, i) => this.emitter.emit('enqueued', { id: results[i].id, name: r.name, queue: r.queue, existed: results[i].existed }));
    }
    return results;
  }

  /**
   * Start this process's worker (claims only the job names defined here), the scheduler and, with
   * `leader`, the campaign for leadership. A producer only makes sure the schema is migrated.
   */
  async start(): Promise<void> {
    await this.migrate();
    if (!this.workerOptions) return;
    if (this.worker?.isRunning) return;
    if (this.mode === 'consumer') stopOnSignals(this);
    if (this.leaderOptions && !this.elector) {
      this.elector = new LeaderElector(
        this.store,
        this.locks.owner,
        this.leaderOptions,
        (leader) => {
          this.emitter.emit('leader', { leader });
          if (leader) this.worker?.wake(); // a leaderOnly worker starts claiming now
        },
        (err) => this.emitter.emit('error', err),
      );
      await this.elector.start();
    }
    const elector = this.elector;
    const leads = () => !elector || elector.isLeader;
    this.worker = new Worker(this.store, this.definitions, this.workerOptions, this.workerEvents(), leads);
    await this.worker.start();
    for (const { def, hash } of this.recurringDefs.values()) await this.saveSchedule(def, hash);
    this.scheduler = new Scheduler(this.store, {
      row: (s, fireAt) => this.scheduledRow(s, fireAt),
      previousRunLive: async (s) => (await this.store.list({ refId: scheduleRefId(s.key), states: ['pending', 'running'], limit: 1 })).items.length > 0,
      leads,
      fired: (e) => this.emitter.emit('scheduled', { ...e, fireAt: new Date(e.fireAt) }),
      error: (err) => this.emitter.emit('error', err),
    });
    this.scheduler.start();
  }

  /**
   * A recurring job: a cron expression (5 fields, or 6 with seconds; `timezone` option) or an
   * interval `{ every, unit, startAt?, endAt?, limit? }`. Stored in the database when the worker
   * starts (or at once if it runs); each tick is enqueued at most once across all instances.
   */
  recurring<K extends JobName<M>>(key: string, schedule: ScheduleSpec, payload?: PayloadOf<M, K>, options: RecurringOptions & { name?: K } = {}): this {
    const def = this.buildRecurring(key, schedule, payload, options);
    const hash = definitionHash(schedule, payload, options);
    this.recurringDefs.set(key, { def, hash });
    if (this.worker?.isRunning) void this.saveSchedule(def, hash).catch((err) => this.emitter.emit('error', err));
    return this;
  }

  /** Validate a schedule and the job it enqueues (payload and options) now, not at its first tick. */
  private buildRecurring(key: string, schedule: ScheduleSpec, payload: unknown, options: RecurringOptions): ScheduleDef {
    const def = buildSchedule(key, schedule, payload, options, Date.now());
    this.scheduledRow({ ...def, enabled: true, nextRunAt: null, lastRunAt: null, lastJobId: null, runs: 0 }, Date.now());
    return def;
  }

  private async saveSchedule(def: ScheduleDef, codeHash: string | null): Promise<void> {
    await this.store.upsertSchedule(def, firstRun(def, await this.store.dbNow()), codeHash);
  }

  private scheduledRow(s: StoredSchedule, fireAt: number): NewJobRow {
    const options = (s.optionsJson ? JSON.parse(s.optionsJson) : {}) as EnqueueOptions;
    return this.row(s.name, s.payloadJson === null ? undefined : JSON.parse(s.payloadJson), {
      createdBy: `schedule:${s.key}`,
      ...options,
      runAt: new Date(fireAt),
      refId: s.overlap === 'allow' ? undefined : scheduleRefId(s.key),
    });
  }

  /** Stored schedules: list, create or edit, enable or disable, remove, or run one now. Every change is persisted. */
  readonly schedules = {
    /**
     * Create or edit a schedule at run time (same arguments as recurring()). Persisted at once and
     * kept across restarts; a schedule also defined in code is re-applied from code only when that
     * code definition changes. Enabled flag, run count and history are kept.
     */
    set: async <K extends JobName<M>>(key: string, schedule: ScheduleSpec, payload?: PayloadOf<M, K>, options: RecurringOptions & { name?: K } = {}): Promise<void> => {
      const def = this.buildRecurring(key, schedule, payload, options);
      await this.migrate();
      await this.saveSchedule(def, null);
    },
    list: async (): Promise<ScheduleRecord[]> => {
      await this.migrate();
      return (await this.store.listSchedules()).map(toScheduleRecord);
    },
    toggle: async (key: string, enabled: boolean): Promise<boolean> => {
      await this.migrate();
      const s = (await this.store.listSchedules()).find((x) => x.key === key);
      if (!s) return false;
      const next = enabled ? firstRun(s, await this.store.dbNow()) : null;
      return this.store.setScheduleEnabled(key, enabled, next);
    },
    remove: async (key: string): Promise<boolean> => {
      await this.migrate();
      this.recurringDefs.delete(key);
      return this.store.removeSchedule(key);
    },
    /** Enqueue the schedule's job now, outside its ticks. */
    trigger: async (key: string): Promise<EnqueueResult | null> => {
      await this.migrate();
      const s = (await this.store.listSchedules()).find((x) => x.key === key);
      if (!s) return null;
      const row = this.scheduledRow(s, Date.now());
      row.runAt = null;
      return this.writeRows([row]).then((r) => r[0]);
    },
  };

  /**
   * A status snapshot: live jobs per state and queue, finished jobs per state (counted up to
   * `cap`, default 1,000,000, and flagged when capped), registered workers with their last
   * heartbeat, and who leads (leadership name `leader` unless configured otherwise).
   */
  async status(opts: { cap?: number } = {}): Promise<JobsStatus> {
    await this.migrate();
    const cap = opts.cap ?? 1_000_000;
    const [counts, workers, leader] = await Promise.all([
      this.store.statusCounts(cap),
      this.store.listWorkers(),
      this.store.leaderInfo(this.leaderOptions?.name ?? 'leader'),
    ]);
    return { ...counts, workers, leader };
  }

  /**
   * Queues: list them with their live figures, pause one (workers everywhere stop claiming its
   * jobs from their next claim; jobs already claimed finish), resume it.
   */
  readonly queues = {
    list: async (): Promise<QueueStats[]> => {
      await this.migrate();
      return this.store.queueStats();
    },
    pause: async (queue: string): Promise<void> => {
      validateName(queue, 'queue');
      await this.migrate();
      await this.store.pauseQueue(queue);
    },
    /** False when the queue was not paused. */
    resume: async (queue: string): Promise<boolean> => {
      validateName(queue, 'queue');
      await this.migrate();
      const resumed = await this.store.resumeQueue(queue);
      if (resumed) this.worker?.wake();
      return resumed;
    },
  };

  /** Completed and failed jobs per bucket (default: per minute over the last hour). */
  async throughput(opts: { windowMs?: number; bucketMs?: number } = {}): Promise<ThroughputBuckets> {
    const windowMs = positiveInt('throughput windowMs', opts.windowMs, 3_600_000);
    const bucketMs = positiveInt('throughput bucketMs', opts.bucketMs, 60_000);
    await this.migrate();
    return this.store.throughput(windowMs, bucketMs);
  }

  /** Make a pending job due now. False when the job is not pending (running, finished or unknown). */
  async runNow(id: string): Promise<boolean> {
    validateId(id);
    await this.migrate();
    const due = await this.store.makeDue(id);
    if (due) this.worker?.wake();
    return due;
  }

  /** Delete a pending or finished job with its attempts and logs. False when it is unknown or running (cancel it first). */
  async delete(id: string): Promise<boolean> {
    validateId(id);
    await this.migrate();
    return (await this.store.deleteJobs([id])).length === 1;
  }

  /** Delete many pending or finished jobs (running ones are left). Returns the ids deleted. */
  async deleteMany(ids: string[]): Promise<string[]> {
    if (!Array.isArray(ids)) throw new TypeError(`deleteMany: ids must be an array of job ids; got ${describe(ids)}`);
    ids.forEach((id) => validateId(id));
    if (!ids.length) return [];
    await this.migrate();
    return this.store.deleteJobs(ids);
  }

  /** Whether this instance leads (always false unless created with `leader`). */
  isLeader(): boolean {
    return this.elector?.isLeader ?? false;
  }

  private workerEvents() {
    const emit = (event: keyof JobsEvents) => (e: unknown) => {
      this.emitter.emit(event, e);
    };
    return {
      started: emit('started'),
      completed: emit('completed'),
      retrying: emit('retrying'),
      failed: emit('failed'),
      snoozed: emit('snoozed'),
      aborted: emit('aborted'),
      rescued: emit('rescued'),
      error: emit('error'),
    };
  }

  /** Graceful shutdown: stop claiming, wait for running jobs up to `timeout` ms, then abort and return them to pending. */
  async stop(opts: { timeout?: number } = {}): Promise<void> {
    const scheduler = this.scheduler;
    this.scheduler = null;
    await scheduler?.stop();
    await this.worker?.stop(opts.timeout);
    const elector = this.elector;
    this.elector = null;
    await elector?.stop();
  }

  /** Stop the worker and release the library's own connections (not the app's db). */
  async close(opts: { timeout?: number } = {}): Promise<void> {
    await this.stop(opts);
    await this.store.close();
  }

  /** Run jobs until nothing is due, then resolve. Handy in tests. */
  async drain(): Promise<void> {
    await this.migrate();
    if (!this.workerOptions) throw new Error('drain: this instance was created with worker: false (producer only)');
    if (this.worker?.isRunning) return this.worker.drain();
    const temp = new Worker(this.store, this.definitions, { ...this.workerOptions, pollInterval: 3_600_000 }, this.workerEvents());
    this.worker = temp;
    await temp.start();
    try {
      await temp.drain();
    } finally {
      await temp.stop();
      if (this.worker === temp) this.worker = null;
    }
  }

  async get<K extends JobName<M>>(id: string): Promise<JobRecord<PayloadOf<M, K>> | null> {
    validateId(id);
    await this.migrate();
    return (await this.store.get(id)) as JobRecord<PayloadOf<M, K>> | null;
  }

  async list(filter: ListFilter = {}): Promise<ListPage> {
    validateListFilter(filter);
    await this.migrate();
    return this.store.list(filter);
  }

  async attempts(id: string): Promise<AttemptRecord[]> {
    validateId(id);
    await this.migrate();
    return this.store.attempts(id);
  }

  async logs(id: string, opts: { afterSeq?: number; limit?: number } = {}): Promise<LogRecord[]> {
    validateId(id);
    const limit = opts.limit ?? 200;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new TypeError(`logs: limit must be an integer from 1 to 1000; got ${limit}`);
    await this.migrate();
    return this.store.logs(id, { afterSeq: opts.afterSeq, limit });
  }

  /** Cancel a pending or running job. A running handler's signal fires (at once in this process; within a heartbeat elsewhere). */
  async cancel(id: string): Promise<boolean> {
    validateId(id);
    await this.migrate();
    const res = await this.store.cancel(id);
    if (!res) return false;
    this.worker?.abortJob(id, 'cancelled');
    this.emitter.emit('cancelled', { id, previous: res.previous });
    return true;
  }

  /** Run a failed or cancelled job again (attempts kept; the limit is raised by one if exhausted), or a pending one now. */
  async retry(id: string): Promise<boolean> {
    validateId(id);
    await this.migrate();
    const state = await this.store.retry(id);
    if (state) this.worker?.wake();
    return state !== null;
  }

  on<E extends keyof JobsEvents>(event: E, listener: (...args: JobsEvents[E]) => void): this {
    this.emitter.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<E extends keyof JobsEvents>(event: E, listener: (...args: JobsEvents[E]) => void): this {
    this.emitter.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<E extends keyof JobsEvents>(event: E, listener: (...args: JobsEvents[E]) => void): this {
    this.emitter.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /** Names this instance has handlers for. */
  get names(): string[] {
    return [...this.definitions.keys()];
  }

  get workerId(): string | null {
    return this.worker?.id ?? null;
  }
}

function positiveInt(field: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new TypeError(`createJobs: ${field} must be a positive integer; got ${describe(v)}`);
  return v;
}

function buildWorkerOptions(w: Partial<WorkerOptions>, retentionDays: number | undefined): WorkerOptions {
  if (w === null || typeof w !== 'object') throw new TypeError(`createJobs: worker must be an object or false; got ${describe(w)}`);
  for (const k of Object.keys(w)) {
    if (!WORKER_KEYS.includes(k)) throw new TypeError(`createJobs: unknown worker option "${k}"; allowed: ${WORKER_KEYS.join(', ')}`);
  }
  const heartbeatInterval = positiveInt('worker.heartbeatInterval', w.heartbeatInterval, 5000);
  const stallTimeout = positiveInt('worker.stallTimeout', w.stallTimeout, Math.max(30_000, heartbeatInterval * 3));
  if (stallTimeout < heartbeatInterval * 3) {
    throw new TypeError(`createJobs: worker.stallTimeout must be at least 3 × heartbeatInterval (${heartbeatInterval * 3} ms); got ${stallTimeout}`);
  }
  if (w.queues !== undefined) {
    if (!Array.isArray(w.queues) || !w.queues.length) throw new TypeError(`createJobs: worker.queues must be a non-empty array of queue names; got ${describe(w.queues)}`);
    w.queues.forEach((q, i) => validateName(q, `worker.queues[${i}]`));
  }
  for (const [q, n] of Object.entries(w.queueConcurrency ?? {})) {
    validateName(q, 'worker.queueConcurrency key');
    positiveInt(`worker.queueConcurrency.${q}`, n, 1);
  }
  if (retentionDays !== undefined && (typeof retentionDays !== 'number' || !(retentionDays > 0))) {
    throw new TypeError(`createJobs: retentionDays must be a positive number of days; got ${describe(retentionDays)}`);
  }
  return {
    concurrency: positiveInt('worker.concurrency', w.concurrency, 10),
    queues: w.queues,
    queueConcurrency: w.queueConcurrency,
    pollInterval: positiveInt('worker.pollInterval', w.pollInterval, 1000),
    heartbeatInterval,
    stallTimeout,
    shutdownTimeout: w.shutdownTimeout === undefined ? 10_000 : positiveInt('worker.shutdownTimeout', w.shutdownTimeout, 10_000),
    logFlushInterval: positiveInt('worker.logFlushInterval', w.logFlushInterval, 200),
    prefetch: w.prefetch === 0 ? 0 : positiveInt('worker.prefetch', w.prefetch, 500),
    leaderOnly: w.leaderOnly === undefined ? false : checkBoolean('worker.leaderOnly', w.leaderOnly),
    retentionMs: retentionDays === undefined ? null : Math.round(retentionDays * 86_400_000),
  };
}

/** The refId a schedule's runs carry when overlap is 'skip' or 'queue': at most one is live at a time. */
function scheduleRefId(key: string): string {
  return `schedule:${key}`;
}

function toScheduleRecord(s: StoredSchedule): ScheduleRecord {
  const at = (ms: number | null) => (ms === null ? null : new Date(ms));
  return {
    key: s.key,
    name: s.name,
    cron: s.cron,
    timezone: s.timezone,
    everyMs: s.everyMs,
    enabled: s.enabled,
    overlap: s.overlap,
    missed: s.missed,
    nextRunAt: at(s.nextRunAt),
    lastRunAt: at(s.lastRunAt),
    lastJobId: s.lastJobId,
    runs: s.runs,
    maxRuns: s.maxRuns,
    payload: s.payloadJson === null ? null : JSON.parse(s.payloadJson),
  };
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
  const leaseMs = positiveInt('leader.leaseMs', o.leaseMs, 15_000);
  if (leaseMs < 150) throw new TypeError(`createJobs: leader.leaseMs must be at least 150 ms; got ${leaseMs}`);
  return { name, leaseMs };
}

function validateListFilter(f: ListFilter): void {
  if (f === null || typeof f !== 'object') throw new TypeError(`list: filter must be an object; got ${describe(f)}`);
  const states = f.states ?? (f.state ? [f.state] : []);
  for (const s of states) {
    if (!['pending', 'running', 'completed', 'failed', 'cancelled', 'skipped'].includes(s)) {
      throw new TypeError(`list: state must be one of pending, running, completed, failed, cancelled, skipped; got ${describe(s)}`);
    }
  }
  if (f.cursor !== undefined && !isValidId(f.cursor)) throw new TypeError(`list: cursor must be a nextCursor from a previous page; got ${describe(f.cursor)}`);
  for (const k of ['queue', 'name', 'tag', 'batchId', 'refId', 'createdBy'] as const) {
    if (f[k] !== undefined && typeof f[k] !== 'string') throw new TypeError(`list: ${k} must be a string; got ${describe(f[k])}`);
  }
}

function createStore(opts: JobsOptions, prefix: string): Store {
  const kind = detectDriver(opts.db);
  switch (kind) {
    case 'better-sqlite3':
      return new SqliteStore(opts.db as BetterSqlite3.Database, { prefix, wal: opts.sqliteWal ?? true });
    case 'pg-pool':
      return new PostgresStore(opts.db as PgPool, { prefix, workerPoolSize: opts.workerPoolSize ?? 4 });
    case 'mysql2':
      return new MysqlStore(opts.db, { prefix, workerPoolSize: opts.workerPoolSize ?? 4 });
    case 'pg-client':
      throw new TypeError('createJobs: db must be a pg Pool, not a single Client (the worker needs its own connections); pass the client as opts.tx to enqueue inside its transaction');
    case 'slonik':
      if (!isSlonikPool(opts.db)) {
        throw new TypeError('createJobs: db must be a slonik pool, not a connection (the worker needs its own connections); pass a transaction connection as opts.tx to enqueue inside it');
      }
      return createSlonikStore(opts.db, { prefix, workerPoolSize: opts.workerPoolSize ?? 4 });
    case 'mssql':
      if (!isMssqlPool(opts.db)) throw new TypeError('createJobs: db must be an mssql ConnectionPool');
      return new MssqlStore(opts.db, { prefix, workerPoolSize: opts.workerPoolSize ?? 4 });
    default:
      throw new TypeError(`createJobs: the ${kind satisfies never} driver is not supported`);
  }
}

