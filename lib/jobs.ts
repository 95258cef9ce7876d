/**
 * The Jobs facade: the public verbs (define, enqueue, start, stop, get, list, cancel, retry, ...)
 * over one store and one in-process worker. No SQL here, no HTTP.
 */
import { nextDrop, type HistoryOverview } from './history.ts';
import { FinishedFeed, SUBSCRIBE_EVENTS, type FinishedJob, type SubscribeEvent } from './finished.ts';
import { MAX_WAIT_MS, settlesWithin, waitForFinished, WaitTimeoutError } from './wait.ts';

/** This process's events that end a job (waitFor looks again at once). */
const FINISHING_EVENTS = ['completed', 'failed', 'cancelled'] as const;

/** What define() set for a job name (jobs.defined); null where it left the default. */
export interface DefinedOptions {
  queue: string | null;
  timeoutMs: number | null;
  maxAttempts: number | null;
  priority: number | null;
  deadLetter: string | null;
  transactional: boolean;
}
import { EventEmitter } from 'node:events';
import {
  JobValidationError, MAX_REDRIVE, buildJobRow, dependsOnList, describe, idsMatching, validateBackoff, validateId, validateIds, validateListFilter, validateName,
  validateRedriveFilter, type AttemptRecord, type BackoffOptions, type CallbackOption, type EnqueueOptions, type EnqueueResult, type JobError, untypedCallbacks,
  type JobRecord, type ListFilter, type ListPage, type LogRecord, type NewJobRow, type Payload, type RedriveFilter, type RedriveResult,
} from './model.ts';
import { FLOW, type NewBatch, type StoredCallbacks } from './driver/portable/flow.ts';
import { callbacksJson, markParentsWithin, needsFlow, orderCall, type PlannedRow } from './workflow.ts';
import { TransientRunner } from './worker/transient.ts';
import { REQUEST_JOB, dispatcherOf, requestHandler, requestPayload, type AppLike, type JobRequestInit } from './http/app-requests.ts';
import type { JobContext } from './worker/context.ts';
import type { JobDefinition } from './worker/executor.ts';
import { Worker } from './worker/worker.ts';
import type { JobEventPayload, TransientOptions, TransientRun, WorkerOptions } from './worker/options.ts';
import { stopOnSignals } from './worker/shutdown.ts';
import type { OpenTransaction, Store } from './driver/store.ts';
import { createStore } from './driver/create.ts';
import { describeTx, isBetterSqlite } from './driver/detect.ts';
import { callerHandleSync } from './driver/orm/caller.ts';
import type { TransactionHandle } from './driver/orm/types.ts';
import { DEFAULT_MAX_OUTPUT_BYTES, MAX_TIMER_MS, intInRange, resolveOptions, type JobsMode, type JobsOptions } from './options.ts';
import { uuidv7 } from './uuid.ts';
import { RateLimitedLog, SafeEvents } from './report.ts';
import { Locks } from './locks.ts';
import { LeaderElector, leadershipKey, type LeaderOptions } from './maintenance/leader.ts';
import type { RecurringOptions, ScheduleRecord, ScheduleSpec } from './schedule/schedule.ts';
import { Schedules } from './schedule/schedules.ts';
import { Maintenance } from './maintenance/service.ts';
import { isEndedConnectionError, migratedStore, type MigratedStore } from './migrated.ts';
import { validateQueueSettings, type QueueSettings, type QueueSettingsRecord } from './queues.ts';
import type { BatchStatus, JobLink, QueueGroupCounts, QueueStats, StatusCounts, ThroughputBuckets, WorkerRecord } from './driver/store.ts';
import { Tracing } from './telemetry/tracing.ts';
import { JobMetrics } from './telemetry/metrics.ts';
import type { Registry } from 'prom-client';

/** jobs.batch's options: a callback per outcome of the whole batch, and the caller's transaction. */
export interface BatchOptions<Tx = TransactionHandle, M extends JobMap = {}> {
  /** Enqueued once, when the batch's last job finished, whatever the outcomes. */
  onComplete?: CallbackOption<M>;
  /** Enqueued once every job of the batch completed. */
  onSuccess?: CallbackOption<M>;
  /** Enqueued once, when the batch finished with a job failed or cancelled. */
  onFailure?: CallbackOption<M>;
  tx?: Tx;
}

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

/**
 * What define() asks of a name in the job map: a handler whose payload takes the map's (anything
 * else reads as a compile error on the name, saying why). Names not in the map take any handler.
 */
export type HandlerTakes<M, K, P> = [Extract<K, keyof M>] extends [never]
  ? unknown
  : [M[Extract<K, keyof M>]] extends [P] ? unknown : { 'the handler\'s payload type does not take the job map\'s payload for this name': M[Extract<K, keyof M>] };

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
  /** When a job of this name fails for good, a copy is enqueued in this queue (the enqueue option overrides it). */
  deadLetter?: string;
}

export type { JobsMode, JobsOptions, SupportedDb } from './options.ts';

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
  [K in JobName<M>]: { name: K; payload: PayloadOf<M, K> } & Omit<EnqueueOptions<TransactionHandle, M>, 'tx'>;
}[JobName<M>];

/**
 * M: job names and their payload types. Tx: what opts.tx takes, narrowed by createJobs to the
 * handles and ORM transactions of the database given (every kind when it cannot tell).
 */
export class Jobs<M extends JobMap = {}, Tx extends TransactionHandle = TransactionHandle> {
  /** The database behind this instance (the library's own seam; not part of the public API). @internal */
  readonly store: Store;
  /** The schema, applied once before the first database use. */
  private readonly schema: MigratedStore;
  /** The store as every verb here and every service below uses it: migrated before its first call. */
  private readonly db: Store;
  /** Named, expiring cross-process locks in the jobs database (tryAcquire, release, withLock). */
  readonly locks: Locks;
  private readonly emitter = new EventEmitter();
  /** Calls the app's listeners without letting them throw into the library; reports problems. */
  private readonly events: SafeEvents;
  private readonly definitions = new Map<string, JobDefinition>();
  private readonly options: Required<Pick<JobsOptions, 'defaultQueue' | 'maxPayloadBytes' | 'maxAttempts' | 'reserveTimeout'>>;
  /** What this instance does (see JobsOptions.mode). */
  readonly mode: JobsMode;
  private readonly workerOptions: WorkerOptions | null;
  /** Jobs finished by any process, for jobs.subscribe. */
  private readonly finished: FinishedFeed;
  /** retentionDays in ms, as the History view shows it (the leader's maintenance applies its own). */
  private readonly retentionMs: number | null;
  private worker: Worker | null = null;
  private readonly leaderOptions: LeaderOptions | null;
  private elector: LeaderElector | null = null;
  /** Schedules defined in code or stored at run time, and the scheduler that fires them. */
  private readonly scheduling: Schedules;
  /** Rescue of stalled jobs and retention, beside the worker. */
  private maintenance: Maintenance | null = null;
  /** createJobs' queues option: written to the database when this instance starts. */
  private readonly codeQueues: ReturnType<typeof resolveOptions>['queues'];
  /** OpenTelemetry spans of enqueues and attempts (no-ops without a registered tracer provider). */
  private readonly tracing: Tracing;
  /** Counters, histograms and queue gauges, through OpenTelemetry and (once asked for) prom-client. */
  private readonly metrics: JobMetrics;
  /** Handlers run now in this process, written nowhere (runTransient). */
  private readonly transients = new TransientRunner((name) => this.definitions.get(name));

  constructor(opts: JobsOptions) {
    const o = resolveOptions(opts);
    this.options = { defaultQueue: o.defaultQueue, maxPayloadBytes: o.maxPayloadBytes, maxAttempts: o.maxAttempts, reserveTimeout: o.reserveTimeout };
    this.mode = o.mode;
    this.workerOptions = o.worker;
    this.retentionMs = o.retentionMs;
    this.codeQueues = o.queues;
    const log = new RateLimitedLog(o.logger);
    this.store = createStore(opts.db, {
      prefix: o.prefix, sqliteWal: o.sqliteWal, history: o.history, workerPoolSize: o.workerPoolSize, pooler: o.pooler, directUrl: o.directUrl,
      warn: (message) => log.warnOnce(message),
    });
    // Jobs our own writes made due (a released dependent or serial key): this process's worker looks at once.
    this.store.onJobsDue = (queue) => this.worker?.wake(queue);
    this.schema = migratedStore(this.store, () => this.closeCalled);
    this.db = this.schema.view;
    // Locks is public and takes its gate as a constructor argument (its declared signature stays).
    // It is given the view, so that its calls after close() are reworded as the others are.
    this.locks = new Locks(this.db, this.schema.migrate);
    this.leaderOptions = o.leader;
    this.events = new SafeEvents(this.emitter, log);
    this.tracing = new Tracing(o.tracing, (err) => this.events.error(err, 'tracing'));
    this.metrics = new JobMetrics(o.metrics, () => this.db.queueLive(), (err) => this.events.error(err, 'metrics'));
    this.finished = new FinishedFeed(this.db, (listener, job) => this.events.call('subscribe', listener, job), (err) => this.events.error(err, 'subscribe'));
    this.scheduling = new Schedules(this.db, {
      row: (name, payload, options) => this.row(name, payload, options),
      enqueue: (rows) => this.writeRows(rows),
      running: () => this.worker?.isRunning ?? false,
      fired: (e) => {
        // This process's worker runs the tick now, not at its next poll (PostgreSQL's NOTIFY would
        // wake it too; SQLite and MySQL have none).
        if (!e.skipped) this.worker?.wake();
        this.events.emit('scheduled', e);
      },
      error: (err, context) => this.events.error(err, context),
    });
  }

  /**
   * Register a handler. Its payload is the job map's for that name, or what the handler declares;
   * a handler declaring a payload that does not take the map's is a compile error (enqueue gives it
   * what the map says). Returns this instance, typed with the new job, for chaining.
   */
  define<K extends string, P = K extends keyof M ? M[K] : unknown, R = unknown>(
    name: K & HandlerTakes<M, K, P>,
    handler: Handler<P, R>,
    options: DefineOptions = {},
  ): Jobs<M & { [N in K]: P }, Tx> {
    validateName(name, 'name');
    if (this.definitions.has(name)) {
      throw new JobValidationError(`job "${name}": is already defined on this instance; a name has one handler (define each name once, or create another Jobs instance)`, 'name', name);
    }
    if (typeof handler !== 'function') throw new JobValidationError(`job "${name}": handler must be a function; got ${describe(handler)}`, 'handler', name);
    for (const k of Object.keys(options)) {
      if (!['queue', 'priority', 'maxAttempts', 'timeout', 'backoff', 'transactional', 'deadLetter'].includes(k)) {
        throw new JobValidationError(`job "${name}": ${k} is not a define option; allowed: queue, priority, maxAttempts, timeout, backoff, transactional, deadLetter`, k, name);
      }
    }
    if (options.deadLetter !== undefined) validateName(options.deadLetter, 'deadLetter', name);
    if (options.backoff !== undefined) validateBackoff(options.backoff, 'backoff', name);
    // Validates queue, priority, maxAttempts and timeout with the enqueue rules.
    if (options.transactional !== undefined && typeof options.transactional !== 'boolean') {
      throw new JobValidationError(`job "${name}": transactional must be true or false; got ${describe(options.transactional)}`, 'transactional', name);
    }
    // Refused at run time too (a promise returned), but by then the handler runs on past its first
    // await, and what it writes on ctx.tx after that commits on its own, at every attempt.
    if (options.transactional && this.store.dialect === 'sqlite' && Object.prototype.toString.call(handler) === '[object AsyncFunction]') {
      throw new JobValidationError(
        `job "${name}": a transactional handler on SQLite must be synchronous (better-sqlite3 cannot hold a transaction across an await); this one is an async function`,
        'handler',
        name,
      );
    }
    buildJobRow(uuidv7(), name, undefined, { queue: options.queue, priority: options.priority, maxAttempts: options.maxAttempts, timeout: options.timeout }, {
      queue: this.options.defaultQueue,
      maxPayloadBytes: this.options.maxPayloadBytes,
    });
    this.definitions.set(name, { name, handler: handler as JobDefinition['handler'], ...options });
    return this as unknown as Jobs<M & { [N in K]: P }, Tx>;
  }

  /** Apply the schema (idempotent; also done lazily on first use). */
  migrate(): Promise<void> {
    return this.schema.migrate();
  }

  /** Validate and encode one job without writing it (the request unit of work buffers rows on SQLite). @internal */
  prepareRow(name: string, payload: unknown, opts: Omit<EnqueueOptions, 'tx'>): NewJobRow {
    return this.row(name, payload, opts);
  }

  /** Write prepared rows and batches in one transaction (a later row may depend on an earlier one). @internal */
  async writeRows(rows: NewJobRow[], batches: NewBatch[] = []): Promise<EnqueueResult[]> {
    if (!rows.length) return [];
    markParentsWithin(rows);
    if (this.db.capabilities.syncEnqueue) return this.afterEnqueue(rows, this.tracing.send(rows, () => this.writeSync(rows, undefined, batches)), false);
    const write = () => (batches.length || needsFlow(rows) ? this.db.jobInsertFlow({ rows, batches }) : this.db.jobInsertMany({ rows }));
    return this.afterEnqueue(rows, await this.tracing.send(rows, write), false);
  }

  /** Validate and encode one call's items without writing them (enqueueMany through a buffered request). @internal */
  prepareCall(items: unknown): { rows: NewJobRow[]; ids: string[] } {
    const { rows, ids } = this.planCall(items, 'enqueueMany');
    return { rows, ids };
  }

  /** Validate and encode a batch without writing it (jobs.batch through a buffered request). @internal */
  prepareBatch(items: unknown, opts: Omit<BatchOptions, 'tx'>): { rows: NewJobRow[]; ids: string[]; batch: NewBatch } {
    return this.planBatch(items, opts);
  }

  /** Open a transaction on the app's database for a request's unit of work. @internal */
  async beginTransaction(): Promise<OpenTransaction> {
    if (!this.db.beginTransaction) throw new Error(`${this.db.dialect}: a request transaction cannot be held open here`);
    return this.db.beginTransaction();
  }

  /** An error the library handled outside any call of the app's (a request's failed commit): to the 'error' listeners, or the logger. @internal */
  reportError(err: unknown, context: string): void {
    this.events.error(err, context);
  }

  /** A transaction that enqueued jobs committed: wake this process's worker. @internal */
  notifyCommitted(tx?: unknown): void {
    this.worker?.wake();
    const written = tx === undefined ? undefined : this.uncommitted.get(tx as object);
    if (written) {
      this.uncommitted.delete(tx as object);
      for (const { rows, results } of written) this.metrics.enqueued(rows, results);
    }
  }

  /**
   * The request's unit of work began a transaction on `tx`: its enqueues are counted in the
   * metrics once notifyCommitted(tx) says it committed. A pooled connection carries one
   * transaction after another, so each begins with nothing to count (a rolled back one's are dropped). @internal
   */
  countOnCommit(tx: unknown): void {
    if (tx !== null && typeof tx === 'object') this.uncommitted.set(tx, []);
  }

  /** The database dialect behind this instance. */
  get dialect(): string {
    return this.db.dialect;
  }

  private row(name: string, payload: unknown, opts: EnqueueOptions): NewJobRow {
    return this.plan(name, payload, opts, null).row;
  }

  /**
   * A validated, encoded row with the definition's defaults; its workflow options resolved
   * (`sameCall`: the number of items in an enqueueMany or batch call, whose indexes dependsOn may name).
   */
  private plan(name: string, payload: unknown, opts: EnqueueOptions, sameCall: number | null): PlannedRow {
    const def = this.definitions.get(name);
    // The options are read, never copied: this runs once per job of every enqueueMany.
    const row = buildJobRow(uuidv7(), name, payload, opts, {
      queue: def?.queue || this.options.defaultQueue,
      priority: def?.priority ?? 0,
      maxPayloadBytes: this.options.maxPayloadBytes,
    });
    row.maxAttempts ??= def?.maxAttempts ?? this.options.maxAttempts;
    if (row.reserveMs !== null) row.reserveMs = this.options.reserveTimeout;
    const deadLetter = opts.deadLetter ?? def?.deadLetter;
    if (opts.dependsOn === undefined && opts.onSuccess === undefined && opts.onFailure === undefined && deadLetter === undefined) return { row, sameCall: NO_PARENTS };
    const parents = dependsOnList(name, opts.dependsOn, sameCall);
    row.dependsOn = parents.filter((p): p is string => typeof p === 'string');
    if (parents.length) {
      if (row.runAt !== null || row.delayMs !== 0) {
        throw new JobValidationError(`job "${name}": dependsOn cannot be combined with runAt or delay (a dependent runs when its last parent completes)`, 'dependsOn', name);
      }
      row.flow |= FLOW.parents;
    }
    const callbacks = callbacksJson(name, opts, ['onSuccess', 'onFailure'], (n, p, o) => this.row(n, p, o as EnqueueOptions)) ?? {};
    if (deadLetter !== undefined) callbacks.deadLetter = validateName(deadLetter, 'deadLetter', name);
    if (Object.keys(callbacks).length) {
      row.callbacksJson = JSON.stringify(callbacks);
      row.flow |= FLOW.callbacks;
    }
    return { row, sameCall: parents.filter((p): p is number => typeof p === 'number') };
  }

  /** Items of one call (enqueueMany, batch) as rows, parents first; results come back in the items' order. */
  private planCall(items: unknown, what: string, each: (row: NewJobRow, i: number) => void = () => undefined): { rows: NewJobRow[]; ids: string[]; inOrder: (results: EnqueueResult[]) => EnqueueResult[] } {
    if (!Array.isArray(items)) throw new TypeError(`${what}: items must be an array of { name, payload, ...options }; got ${describe(items)}`);
    const planned = items.map((it, i) => {
      if (it === null || typeof it !== 'object') throw new TypeError(`${what}: items[${i}] must be an object { name, payload, ...options }; got ${describe(it)}`);
      // The item is its own options (name and payload are allowed keys there): no copy per item.
      const item = it as { name: string; payload: unknown } & EnqueueOptions;
      if ('tx' in item) throw new JobValidationError(`${what}: items[${i}].tx is not an item option; pass the transaction once, as ${what}(items, { tx })`, 'tx', item.name);
      const p = this.plan(item.name, item.payload, item, items.length);
      each(p.row, i);
      return p;
    });
    const ids = planned.map((p) => p.row.id);
    // Without same-call parents the rows are written in the items' order (the common case, kept cheap).
    if (!planned.some((p) => p.sameCall.length)) return { rows: planned.map((p) => p.row), ids, inOrder: (results) => results };
    const rows = orderCall(planned, what);
    const inOrder = (results: EnqueueResult[]) => {
      const byId = new Map(rows.map((r, i) => [r.id, results[i]]));
      return ids.map((id) => byId.get(id)!);
    };
    return { rows, ids, inOrder };
  }

  /** Enqueue one job. Resolves to its id, and existed = true when a live job with the same refId was returned. */
  async enqueue<K extends JobName<M>>(name: K, payload: PayloadOf<M, K>, opts: EnqueueOptions<Tx, M> = {}): Promise<EnqueueResult> {
    const row = this.row(name, payload, untypedCallbacks(opts ?? {}));
    const tx = givenTx(opts, `job "${name}": opts.tx`, name);
    return (await this.insert([row], tx))[0];
  }

  /**
   * SQLite: write now on the app's handle. Without a tx the write would silently join whatever
   * transaction the app has open on that shared handle (an async ORM's) and vanish with its
   * rollback, so it is refused; enqueueSync and an explicit tx join on purpose.
   */
  private writeSync(rows: NewJobRow[], tx: unknown, batches: NewBatch[] = []): EnqueueResult[] {
    if (tx === undefined && this.db.appInTransaction?.()) {
      throw new Error(
        'enqueue: the app\'s better-sqlite3 handle is inside a transaction this call was not given, and the job would silently join it ' +
          '(and vanish if it rolls back); to join it, call jobs.enqueueSync() inside db.transaction() or pass { tx: db }; otherwise enqueue after it ends',
      );
    }
    if (batches.length || needsFlow(rows)) return this.db.jobInsertFlowSync!({ rows, tx, batches });
    return this.db.jobInsertManySync!({ rows, tx });
  }

  /**
   * SQLite only: enqueue synchronously, so it can run inside the app's own
   * `db.transaction(() => ...)` and commit or roll back with it.
   */
  enqueueSync<K extends JobName<M>>(name: K, payload: PayloadOf<M, K>, opts: Omit<EnqueueOptions<Tx, M>, 'tx'> = {}): EnqueueResult {
    if (!this.db.jobInsertManySync) throw new Error(`enqueueSync needs a better-sqlite3 database; this instance uses ${this.db.dialect}: use await jobs.enqueue(..., { tx })`);
    const rows = [this.row(name, payload, untypedCallbacks(opts))];
    const written = this.tracing.send(rows, () => (needsFlow(rows) ? this.db.jobInsertFlowSync!({ rows }) : this.db.jobInsertManySync!({ rows })));
    return this.afterEnqueue(rows, written, this.db.appInTransaction?.() ?? true)[0];
  }

  /** Enqueue many jobs in one round trip per chunk. */
  async enqueueMany(items: EnqueueManyItem<M>[], opts: { tx?: Tx } = {}): Promise<EnqueueResult[]> {
    const { rows, inOrder } = this.planCall(items, 'enqueueMany');
    const tx = givenTx(opts, 'enqueueMany: opts.tx');
    if (!rows.length) return [];
    return inOrder(await this.insert(rows, tx));
  }

  /**
   * Enqueue jobs as one batch: when its last job finishes, exactly one job per callback given is
   * enqueued, in that job's finishing transaction (onComplete always; onSuccess when every job
   * completed; onFailure when one failed or was cancelled). The callbacks see `ctx.batch`.
   */
  async batch(items: EnqueueManyItem<M>[], opts: BatchOptions<Tx, M> = {}): Promise<{ batchId: string; ids: string[] }> {
    const { rows, ids, batch } = this.planBatch(items, untypedCallbacks(opts));
    const tx = givenTx(opts, 'batch: opts.tx');
    return batchResult(batch, rows, ids, await this.insert(rows, tx, [batch]));
  }

  /**
   * SQLite only: jobs.batch synchronously, so it can run inside the app's own
   * `db.transaction(() => ...)` (beside enqueueSync) and commit or roll back with it.
   */
  batchSync(items: EnqueueManyItem<M>[], opts: Omit<BatchOptions<Tx, M>, 'tx'> = {}): { batchId: string; ids: string[] } {
    if (!this.db.jobInsertFlowSync) throw new Error(`batchSync needs a better-sqlite3 database; this instance uses ${this.db.dialect}: use await jobs.batch(..., { tx })`);
    const { rows, ids, batch } = this.planBatch(items, untypedCallbacks(opts));
    const written = this.tracing.send(rows, () => this.db.jobInsertFlowSync!({ rows, batches: [batch] }));
    return batchResult(batch, rows, ids, this.afterEnqueue(rows, written, this.db.appInTransaction?.() ?? true));
  }

  /** A batch's rows (parents first), its items' ids in order, and the batch to make with them. */
  private planBatch(items: unknown, opts: BatchOptions<unknown>): { rows: NewJobRow[]; ids: string[]; batch: NewBatch } {
    if (opts === null || typeof opts !== 'object') throw new TypeError(`batch: options must be an object { onComplete, onSuccess, onFailure, tx }; got ${describe(opts)}`);
    for (const key of Object.keys(opts)) {
      if (!['onComplete', 'onSuccess', 'onFailure', 'tx'].includes(key)) throw new JobValidationError(`batch: ${key} is not a batch option; allowed: onComplete, onSuccess, onFailure, tx`, key);
    }
    const id = uuidv7();
    const { rows, ids } = this.planCall(items, 'batch', (row, i) => {
      if (row.batchId !== null) throw new JobValidationError(`batch: items[${i}].batchId is set by the batch; leave it out`, 'batchId', row.name);
      row.batchId = id;
      row.flow |= FLOW.batch;
    });
    if (!rows.length) throw new TypeError('batch: items must hold at least one job (an empty batch would never finish)');
    const callbacks = callbacksJson('batch', opts, ['onComplete', 'onSuccess', 'onFailure'], (n, p, o) => this.row(n, p, o as EnqueueOptions)) ?? {};
    return { rows, ids, batch: { id, callbacks } };
  }

  /**
   * Commit jobs enqueued with `reserve: true`: each runs once nothing else holds it, in its FIFO
   * place. Answers the ids committed (a job not reserved, already committed or gone is left out).
   */
  async commitReserved(ids: string | string[], opts: { tx?: Tx } = {}): Promise<string[]> {
    const list = Array.isArray(ids) ? ids : [ids];
    for (const id of list) validateId(id);
    const committed = await this.db.jobCommitReserved(list, givenTx(opts, 'commitReserved: opts.tx'));
    if (committed.length && !('tx' in opts)) this.worker?.wake();
    return committed;
  }

  /** A batch's jobs counted by state (exact while they run in any number of processes), or null when no job has that batchId. */
  async batchStatus(batchId: string): Promise<BatchStatus | null> {
    if (typeof batchId !== 'string' || batchId.length === 0 || batchId.length > 255) throw new TypeError(`batchStatus: batchId must be a batch id (1-255 characters); got ${describe(batchId)}`);
    return this.db.batchStatus(batchId);
  }

  /** A job's parents (its dependsOn in order, or the job a callback reports on) and its dependents, with their states. */
  async links(id: string): Promise<{ parents: JobLink[]; dependents: JobLink[] }> {
    validateId(id);
    return this.db.jobLinks(id);
  }

  /**
   * SQLite writes at once, synchronously, when it can: on the app's handle or on the Database a
   * caller's transaction runs on (a synchronous Drizzle transaction must see the job before it
   * returns). Anything else (a server database, Knex or Kysely on SQLite) is written asynchronously.
   */
  private insert(rows: NewJobRow[], tx: unknown, batches: NewBatch[] = []): EnqueueResult[] | Promise<EnqueueResult[]> {
    return this.tracing.send(rows, () => this.write(rows, tx, batches));
  }

  private write(rows: NewJobRow[], tx: unknown, batches: NewBatch[]): EnqueueResult[] | Promise<EnqueueResult[]> {
    const inTx = tx !== undefined;
    const flow = batches.length > 0 || needsFlow(rows);
    if (this.db.capabilities.syncEnqueue) {
      const handle = inTx ? callerHandleSync(tx) : undefined;
      if (handle !== tx && isBetterSqlite(handle) && !handle.inTransaction) {
        // An ORM's transaction that has ended: its Database would take the job outside any transaction.
        throw new TypeError(`opts.tx: ${describeTx(tx)} is not inside a transaction (it has ended), so the job would not be part of it`);
      }
      if (!inTx || isBetterSqlite(handle)) return this.afterEnqueue(rows, this.writeSync(rows, handle, batches), inTx);
    }
    const written = flow ? this.db.jobInsertFlow({ rows, tx, batches }) : this.db.jobInsertMany({ rows, tx });
    return written.then((results) => {
      if (inTx) this.uncommitted.get(tx as object)?.push({ rows, results });
      return this.afterEnqueue(rows, results, inTx);
    });
  }

  /** Enqueues on a request's transaction (the unit of work's), counted once it commits (committed). */
  private readonly uncommitted = new WeakMap<object, { rows: NewJobRow[]; results: EnqueueResult[] }[]>();

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
    // Inside a caller's transaction the job may still roll back, so 'enqueued' is only told (and counted) for enqueues we committed.
    if (!inTx) this.metrics.enqueued(rows, results);
    if (!inTx && this.emitter.listenerCount('enqueued')) {
      rows.forEach((r, i) => this.events.emit('enqueued', { id: results[i].id, name: r.name, queue: r.queue, existed: results[i].existed }));
    }
    return results;
  }

  /**
   * Start this process's worker (claims only the job names defined here), the scheduler and, with
   * `leader`, the campaign for leadership. A producer only makes sure the schema is migrated.
   */
  start(): Promise<void> {
    if (this.closeCalled || this.closing) return Promise.reject(new Error('sqljobs: start() after close(): this instance was closed, and the connections it opened with it; create another (createJobs) to run jobs'));
    // A second start() while one is under way waits for the same outcome.
    this.starting ??= this.startOnce().finally(() => (this.starting = null));
    return this.starting;
  }

  private starting: Promise<void> | null = null;
  /** Bumped by stop(): a start() still under way then leaves off instead of starting what stop() just stopped. */
  private generation = 0;

  private async startOnce(): Promise<void> {
    const generation = this.generation;
    const stopped = () => generation !== this.generation;
    // Up front: a migration that fails rejects start() as itself. The services below then use the
    // store itself (their hot path pays for no migration gate). One a close() cut (the store's
    // close waits a while for a migration applying statements, not for one waiting on another
    // process's) is no failure of this start, which has nothing left to do.
    try {
      await this.migrate();
    } catch (err) {
      if (this.closing && stopped()) return;
      throw err;
    }
    for (const [queue, q] of this.codeQueues) await this.db.queueSettingsSave({ queue, settings: q.settings, codeHash: q.codeHash });
    if (!this.workerOptions || stopped()) return;
    if (this.worker?.isRunning) return;
    if (this.mode === 'consumer') stopOnSignals(this);
    if (this.leaderOptions && !this.elector) {
      this.elector = new LeaderElector(
        this.store,
        this.locks.owner,
        this.leaderOptions,
        (leader) => {
          this.events.emit('leader', { leader });
          if (leader) this.worker?.wake(); // a leaderOnly worker starts claiming now
        },
        (err) => this.events.error(err, 'leader election'),
      );
      await this.elector.start();
      if (stopped()) return;
    }
    const elector = this.elector;
    const leads = () => !elector || elector.isLeader;
    this.worker = new Worker(this.store, this.definitions, this.workerOptions, this.workerEvents(), leads, this.tracing, this.metrics);
    try {
      await this.worker.start();
    } catch (err) {
      this.worker = null;
      this.elector = null;
      await elector?.stop();
      throw err;
    }
    if (stopped()) return;
    this.maintenance = new Maintenance(this.store, { ...this.workerOptions, workerId: this.worker.id }, {
      leads,
      rescued: (r) => {
        this.metrics.rescued(r);
        this.events.emit('rescued', r);
      },
      wake: () => this.worker?.wake(),
      error: (err) => this.events.error(err, 'maintenance'),
    });
    this.maintenance.start();
    await this.scheduling.start(leads, stopped);
  }

  /**
   * A recurring job: a cron expression (5 fields, or 6 with seconds; `timezone` option) or an
   * interval `{ every, unit, startAt?, endAt?, limit? }`. Stored in the database when the worker
   * starts (or at once if it runs); each tick is enqueued at most once across all instances.
   */
  recurring<K extends JobName<M>>(key: string, schedule: ScheduleSpec, payload?: PayloadOf<M, K>, options: RecurringOptions & { name?: K } = {}): this {
    this.scheduling.define(key, schedule, payload, options);
    return this;
  }

  /** Stored schedules: list, create or edit, enable or disable, remove, or run one now. Every change is persisted. */
  readonly schedules = {
    /**
     * Create or edit a schedule at run time (same arguments as recurring()). Persisted at once and
     * kept across restarts; a schedule also defined in code is re-applied from code only when that
     * code definition changes. Enabled flag, run count and history are kept.
     */
    set: <K extends JobName<M>>(key: string, schedule: ScheduleSpec, payload?: PayloadOf<M, K>, options: RecurringOptions & { name?: K } = {}): Promise<void> =>
      this.scheduling.set(key, schedule, payload, options),
    list: (): Promise<ScheduleRecord[]> => this.scheduling.list(),
    toggle: (key: string, enabled: boolean): Promise<boolean> => this.scheduling.toggle(key, enabled),
    remove: (key: string): Promise<boolean> => this.scheduling.remove(key),
    /** Enqueue the schedule's job now, outside its ticks. */
    trigger: (key: string): Promise<EnqueueResult | null> => this.scheduling.trigger(key),
  };

  /**
   * A status snapshot: live jobs per state and queue, finished jobs per state (counted up to
   * `cap`, default 1,000,000, and flagged when capped), registered workers with their last
   * heartbeat, and who leads (leadership name `leader` unless configured otherwise).
   */
  async status(opts: { cap?: number } = {}): Promise<JobsStatus> {
    if (opts === null || typeof opts !== 'object') throw new TypeError(`status: options must be an object { cap }; got ${describe(opts)}`);
    const cap = intInRange('status: cap', opts.cap, 1_000_000, 1, 10_000_000);
    const [counts, workers, leader] = await Promise.all([
      this.db.jobCountByState(cap),
      this.db.workerList(),
      this.db.leaderDescribe(leadershipKey(this.leaderOptions?.name ?? 'leader')),
    ]);
    return { ...counts, workers, leader };
  }

  /**
   * Queues: list them with their live figures, pause one (workers everywhere stop claiming its
   * jobs from their next claim; jobs already claimed finish), resume it.
   */
  readonly queues = {
    list: (): Promise<QueueStats[]> => this.db.queueList(),
    /**
     * The queues this process's code names (the default queue, define()'s queue options, the
     * queues option, worker.queues), sorted: the admin lists them even while they hold no job, so
     * an idle queue can be paused before its jobs arrive.
     */
    known: (): string[] => {
      const names = new Set([this.options.defaultQueue, ...this.codeQueues.keys(), ...(this.workerOptions?.queues ?? [])]);
      for (const def of this.definitions.values()) if (def.queue) names.add(def.queue);
      return [...names].sort();
    },
    pause: async (queue: string): Promise<void> => {
      validateName(queue, 'queue');
      await this.db.queuePause(queue);
    },
    /** False when the queue was not paused. */
    resume: async (queue: string): Promise<boolean> => {
      validateName(queue, 'queue');
      const resumed = await this.db.queueResume(queue);
      // refreshQueues also lifts this worker's hold on the queue (a managed claim found it paused).
      if (resumed) this.worker?.refreshQueues();
      return resumed;
    },
    /**
     * Replace a queue's limits at run time, for every process (each worker applies them from its
     * next claim of the queue). A limit left out is removed. Kept across restarts until the
     * createJobs `queues` settings for the queue change in code.
     */
    configure: async (queue: string, settings: QueueSettings): Promise<void> => {
      validateName(queue, 'queue');
      await this.db.queueSettingsSave({ queue, settings: validateQueueSettings('settings', settings), codeHash: null });
      this.worker?.refreshQueues();
    },
    /** The queues with limits or groups, and their settings. */
    settings: async (): Promise<QueueSettingsRecord[]> =>
      (await this.db.queueSettingsList()).map(({ codeHash: _, ...row }) => row),
    /**
     * A queue's live jobs per group (pending, due, running), the busiest first, at most `limit`
     * groups (default 100, at most 1,000; or only `groups`), with the starts its rate limit counts
     * in the current window, per group and for the queue (null without a rate limit).
     */
    groups: async (queue: string, opts: { groups?: string[]; limit?: number } = {}): Promise<QueueGroupCounts> => {
      validateName(queue, 'queue');
      const limit = intInRange('queues.groups: limit', opts.limit, 100, 1, 1000);
      if (opts.groups !== undefined && (!Array.isArray(opts.groups) || opts.groups.length > 1000)) {
        throw new TypeError(`queues.groups: groups must be an array of at most 1000 group names; got ${describe(opts.groups)}`);
      }
      opts.groups?.forEach((g, i) => validateName(g, `groups[${i}]`));
      const rate = (await this.db.queueSettingsList()).find((q) => q.queue === queue)?.rateLimit ?? null;
      return this.db.queueGroups({ queue, windowMs: rate?.intervalMs ?? null, groups: opts.groups, limit });
    },
  };

  /**
   * History per UTC month of its finish time, newest first (at most 36 months): each month's jobs
   * per state (exact up to `cap`, default 10,000; a larger month answers the database's estimate or
   * the capped count, `estimated: true`), where it is kept and its size on disk. With this instance's
   * retentionDays, and the next whole partition or file retention will drop, and when.
   */
  async historyMonths(opts: { cap?: number } = {}): Promise<HistoryOverview> {
    if (opts === null || typeof opts !== 'object') throw new TypeError(`historyMonths: options must be an object { cap }; got ${describe(opts)}`);
    const cap = intInRange('historyMonths: cap', opts.cap, 10_000, 1, 10_000_000);
    const months = await this.db.historyMonths({ cap });
    const retentionMs = this.retentionMs;
    return { months, retentionDays: retentionMs === null ? null : retentionMs / 86_400_000, nextDrop: nextDrop(months, retentionMs) };
  }

  /**
   * Completed and failed jobs per bucket (default: per minute over the last hour): summed from the
   * leader's per-minute counters where the buckets hold whole minutes, counted in history for the
   * rest (what finished since the leader's last round, or before its first).
   */
  async throughput(opts: { windowMs?: number; bucketMs?: number } = {}): Promise<ThroughputBuckets> {
    const windowMs = intInRange('throughput: windowMs', opts.windowMs, 3_600_000, 1, 366 * 86_400_000);
    const bucketMs = intInRange('throughput: bucketMs', opts.bucketMs, 60_000, 1, windowMs);
    return this.db.jobThroughput({ windowMs, bucketMs });
  }

  /**
   * MySQL/MariaDB and SQL Server: the DDL that partitions history by UTC month (the first run copies the table;
   * see the README, "Partitioned history (MySQL/MariaDB, SQL Server)"), or that makes the current
   * and next month of a partitioned history; run too with `apply: true`. Answers the statements.
   */
  async historyPartitions(opts: { apply?: boolean } = {}): Promise<string[]> {
    if (opts.apply !== undefined && typeof opts.apply !== 'boolean') throw new TypeError(`historyPartitions: apply must be a boolean; got ${typeof opts.apply}`);
    if (!this.db.historyPartitionScript) {
      throw new Error(`historyPartitions: ${this.db.dialect} has no partition script (PostgreSQL partitions history in its migrations; SQLite keeps one table or monthly files; the script is for MySQL/MariaDB and SQL Server)`);
    }
    return (await this.db.historyPartitionScript({ apply: opts.apply === true })).map((s) => s.text);
  }

  /** Make a pending job due now. False when the job is not pending (running, finished or unknown). */
  async runNow(id: string): Promise<boolean> {
    validateId(id);
    const due = await this.db.jobMakeDue(id);
    if (due) this.worker?.wake();
    return due;
  }

  /** Delete a pending or finished job with its attempts and logs. False when it is unknown or running (cancel it first). */
  async delete(id: string): Promise<boolean> {
    validateId(id);
    return (await this.db.jobDeleteMany([id])).length === 1;
  }

  /** Delete many pending or finished jobs (running ones are left). Returns the ids deleted. */
  async deleteMany(ids: string[]): Promise<string[]> {
    if (!Array.isArray(ids)) throw new TypeError(`deleteMany: ids must be an array of job ids; got ${describe(ids)}`);
    ids.forEach((id) => validateId(id));
    if (!ids.length) return [];
    return this.db.jobDeleteMany(ids);
  }

  /** Whether this instance leads (always false unless created with `leader`). */
  isLeader(): boolean {
    return this.elector?.isLeader ?? false;
  }

  private workerEvents() {
    const emit = (event: keyof JobsEvents) => (e: unknown) => {
      // After close(), a handler that outlived it (it ignored its signal) still logs and reports
      // progress: those writes meet the ended connections, and are dropped as after stop(), unsaid.
      if (event === 'error' && this.closeCalled && isEndedConnectionError(e)) return;
      if (event === 'error') this.events.error(e, 'worker');
      else this.events.emit(event, e);
    };
    return {
      started: emit('started'),
      completed: emit('completed'),
      retrying: emit('retrying'),
      failed: emit('failed'),
      snoozed: emit('snoozed'),
      aborted: emit('aborted'),
      error: emit('error'),
    };
  }

  /**
   * Hear jobs finished by any process (jobs.on hears only this one's): `event` is a terminal state
   * (completed, failed, cancelled, skipped) or `finished` for every one. Read from history from
   * when the first listener subscribed: on PostgreSQL as soon as a finishing transaction commits
   * (pushed by NOTIFY), on every database every 500 ms. Answers the function that stops listening;
   * stop() and close() stop every subscription. A listener's throw is reported ('error' event),
   * never thrown.
   */
  subscribe(event: SubscribeEvent, listener: (job: FinishedJob) => void | Promise<void>): () => void {
    if (!SUBSCRIBE_EVENTS.includes(event)) throw new TypeError(`subscribe: event must be one of ${SUBSCRIBE_EVENTS.join(', ')}; got ${describe(event)}`);
    if (typeof listener !== 'function') throw new TypeError(`subscribe: listener must be a function (job) => void; got ${describe(listener)}`);
    return this.finished.subscribe(event, listener);
  }

  /**
   * The job once it finished (completed, failed, cancelled or skipped), by whichever process:
   * for a request handler or a test that needs the outcome. Looks at once, then again as this
   * process finishes it, as another process's finish is pushed (PostgreSQL), or every 25 to 250 ms. Rejects with a WaitTimeoutError after `timeout` ms
   * (default 30,000), saying the state it was in (or that no such job was found).
   */
  async waitFor<K extends JobName<M>>(id: string, opts: { timeout?: number } = {}): Promise<JobRecord<PayloadOf<M, K>>> {
    validateId(id);
    if (opts === null || typeof opts !== 'object') throw new TypeError(`waitFor: options must be an object { timeout }; got ${describe(opts)}`);
    const timeout = intInRange('waitFor: timeout', opts.timeout, 30_000, 1, MAX_WAIT_MS);
    return waitForFinished(id, timeout, { get: (jobId) => this.get<K>(jobId), on: (listener) => this.onFinishedHere(listener) }).catch((err: unknown) => {
      // A job nobody claims: the usual cause is a worker never started.
      if (err instanceof WaitTimeoutError && err.state === 'pending' && !this.worker?.isRunning) {
        throw new WaitTimeoutError(id, err.state, timeout, 'this instance runs no worker (call start(), or run `sqljobs worker` elsewhere with a handler for the job)');
      }
      throw err;
    });
  }

  /**
   * Every job this process finishes or cancels, by id, and where finished jobs are pushed
   * (PostgreSQL) every one another process finishes, until the returned function is called. One
   * listener per event and one subscription serve every waitFor at once (hundreds of waiting
   * requests add none).
   */
  private onFinishedHere(listener: (id: string) => void): () => void {
    if (!this.finishedHere.size) {
      for (const event of FINISHING_EVENTS) this.emitter.on(event, this.tellFinishedHere);
      if (this.finished.pushes) this.finishedElsewhereOff = this.finished.subscribe('finished', this.tellFinishedHere);
    }
    this.finishedHere.add(listener);
    return () => {
      this.finishedHere.delete(listener);
      if (this.finishedHere.size) return;
      for (const event of FINISHING_EVENTS) this.emitter.off(event, this.tellFinishedHere);
      this.finishedElsewhereOff?.();
      this.finishedElsewhereOff = null;
    };
  }

  private readonly finishedHere = new Set<(id: string) => void>();
  private finishedElsewhereOff: (() => void) | null = null;
  private readonly tellFinishedHere = (e: { id: string }): void => {
    for (const listener of this.finishedHere) listener(e.id);
  };

  /**
   * Graceful shutdown: stop claiming, wait for running jobs up to `timeout` ms, then abort and
   * return them to pending. Returns within `timeout` + 5 s whatever the database does: past that,
   * the connections of its own are dropped (see STOP_GRACE_MS).
   */
  async stop(opts: { timeout?: number } = {}): Promise<void> {
    const timeout = this.stopTimeout(opts);
    this.severed = false;
    const stopping = this.stopEach(timeout);
    // A timer past MAX_TIMER_MS fires at once: a shutdownTimeout meaning "for ever" must not give up.
    const limit = Math.min(timeout + STOP_GRACE_MS, MAX_TIMER_MS);
    if (await settlesWithin(stopping, limit)) return stopping;
    const dropped = this.store.sever ? 'its connections were dropped' : 'the shutdown goes on in the background';
    this.events.error(new Error(`stop(): the database did not answer within ${limit} ms; ${dropped}, and jobs still running under this worker return to pending after stallTimeout`), 'stop');
    this.events.quietUntil(stopping);
    this.sever(stopping);
  }

  private stopTimeout(opts: { timeout?: number }): number {
    return intInRange('stop: timeout', opts.timeout, this.workerOptions?.shutdownTimeout ?? 0, 0, MAX_TIMER_MS);
  }

  /** Set once the store's connections were dropped (by this stop or close): what then fails for that reason is not news. */
  private severed = false;

  /** Drop the store's connections, and those it opens until `until` settles (its steps then fail at once). */
  private sever(until: Promise<unknown>): void {
    this.severed = true;
    this.store.sever?.(until);
  }

  /**
   * The services stop side by side, the leader's campaign last: one waiting for a database that
   * does not answer (a sweep under way, say) must not keep the worker claiming and its handlers
   * running past the timeout.
   */
  private async stopEach(timeout: number): Promise<void> {
    this.generation++;
    const maintenance = this.maintenance;
    this.maintenance = null;
    const each = await Promise.allSettled([this.finished.stop(), this.scheduling.stop(), maintenance?.stop(), this.worker?.stop(timeout)]);
    const elector = this.elector;
    this.elector = null;
    await elector?.stop();
    const failed = each.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * Stop the worker and release the library's own connections (not the app's db). Called again (a
   * signal handler and the app's own shutdown, say), it answers as the call under way or done does
   * (its timeout too): the pools are ended once. After a close that failed, it tries again.
   */
  async close(opts: { timeout?: number } = {}): Promise<void> {
    this.stopTimeout(opts); // a bad timeout throws before anything is stopped
    if (this.closing) return this.closing;
    const closing = this.closeOnce(opts).catch((err: unknown) => {
      if (this.closing === closing) this.closing = null; // a close that failed may be asked again
      throw err;
    });
    this.closing = closing;
    return closing;
  }

  private closing: Promise<void> | null = null;
  /** close() was called (and may have ended the connections this instance opened). */
  private closeCalled = false;

  private async closeOnce(opts: { timeout?: number }): Promise<void> {
    this.transients.abortAll();
    await this.stop(opts);
    this.metrics.close();
    this.closeCalled = true;
    const closing = this.store.close().catch((err: unknown) => {
      if (!this.severed) throw err;
    });
    // stop() gave up: the pools' ends would wait on connections opened since, to a database that
    // does not answer. Ending first, the pools open no more.
    if (this.severed) this.sever(closing);
    if (await settlesWithin(closing, STOP_GRACE_MS)) return closing;
    // A pool's end() waits for connections a database that does not answer never gives back.
    if (!this.severed) this.events.error(new Error(`close(): the database did not answer within ${STOP_GRACE_MS} ms while its connections were being ended; they were dropped`), 'close');
    this.sever(closing);
  }

  /** Run jobs until nothing is due, then resolve. Handy in tests. */
  async drain(): Promise<void> {
    await this.migrate(); // up front, as in start()
    if (!this.workerOptions) throw new Error('drain: this instance was created with worker: false (producer only)');
    if (this.worker?.isRunning) return this.worker.drain();
    const temp = new Worker(this.store, this.definitions, { ...this.workerOptions, pollInterval: 3_600_000, pollUnheard: 3_600_000 }, this.workerEvents(), undefined, this.tracing, this.metrics);
    this.worker = temp;
    try {
      await temp.start();
      await temp.drain();
    } finally {
      await temp.stop();
      if (this.worker === temp) this.worker = null;
    }
  }

  private runningNext = false;

  /**
   * One attempt of the next due job (of `name` when given) and no other: a worker of concurrency 1
   * that claims nothing ahead and makes one claim. Answers its id, or null when no job
   * was due. For sqljobs/testing's runOnce.
   * @internal
   */
  async runNext(name?: string): Promise<string | null> {
    await this.migrate();
    if (!this.workerOptions) throw new Error('runOnce: this instance was created with worker: false (producer only)');
    if (this.worker?.isRunning || this.runningNext) throw new Error('runOnce: this instance\'s worker is running (or another runOnce is): let it finish, or stop it (runOnce runs exactly one job)');
    if (name !== undefined && !this.definitions.has(name)) throw new Error(`runOnce: no handler for "${name}" in this process (define it first)`);
    const only = name === undefined ? this.definitions : new Map([[name, this.definitions.get(name)!]]);
    const temp = new Worker(this.store, only, { ...this.workerOptions, concurrency: 1, prefetch: 0, pollInterval: 3_600_000, pollUnheard: 3_600_000 }, this.workerEvents(), undefined, this.tracing, this.metrics);
    temp.claimsLeft = 1;
    let ran: string | null = null;
    const seen = (e: { id: string }) => void (ran ??= e.id);
    // Every way an attempt ends here: a snooze or an abort (the instance stopping) included.
    const events = ['completed', 'failed', 'retrying', 'snoozed', 'aborted'] as const;
    for (const event of events) this.on(event, seen);
    this.worker = temp;
    this.runningNext = true;
    try {
      await temp.start();
      await temp.runOne();
    } finally {
      this.runningNext = false;
      for (const event of events) this.off(event, seen);
      await temp.stop();
      if (this.worker === temp) this.worker = null;
    }
    return ran;
  }

  async get<K extends JobName<M>>(id: string): Promise<JobRecord<PayloadOf<M, K>> | null> {
    validateId(id);
    return (await this.db.jobGet(id)) as JobRecord<PayloadOf<M, K>> | null;
  }

  async list(filter: ListFilter = {}): Promise<ListPage> {
    validateListFilter(filter);
    return this.db.jobList(filter);
  }

  async attempts(id: string): Promise<AttemptRecord[]> {
    validateId(id);
    return this.db.attemptList(id);
  }

  /**
   * A job's log lines in order: the first `limit` (default 200, at most 1,000) after `afterSeq`, or
   * with `last: true` the latest `limit` (a long job's tail).
   */
  async logs(id: string, opts: { afterSeq?: number; limit?: number; last?: boolean } = {}): Promise<LogRecord[]> {
    validateId(id);
    if (opts === null || typeof opts !== 'object') throw new TypeError(`logs: options must be an object { afterSeq, limit, last }; got ${describe(opts)}`);
    const limit = intInRange('logs: limit', opts.limit, 200, 1, 1000);
    const afterSeq = intInRange('logs: afterSeq', opts.afterSeq, 0, 0, Number.MAX_SAFE_INTEGER);
    if (opts.last !== undefined && typeof opts.last !== 'boolean') throw new TypeError(`logs: last must be true or false; got ${describe(opts.last)}`);
    return this.db.logList({ id, afterSeq, limit, last: opts.last === true });
  }

  /**
   * Run a defined handler in this process now, with the context a worker gives it (progress, logs,
   * signal, timeout), writing nothing to the database; listed by transient() while it runs. With
   * `serial`, runs with the same key run one at a time in call order. Resolves to its result.
   */
  runTransient<K extends JobName<M>>(name: K, payload: PayloadOf<M, K>, opts: TransientOptions = {}): Promise<unknown> {
    return this.transients.run(name, payload, opts);
  }

  /** The transient runs of this process, running or waiting for their serial key. */
  transient(): TransientRun[] {
    return this.transients.list();
  }

  /**
   * Let workers of this process run requests enqueued with enqueueRequest through `app` (an
   * Express app, a Koa app or a (req, res) handler), in-process, with no socket.
   */
  useApp(app: AppLike): this {
    const handler = requestHandler(dispatcherOf(app), this.workerOptions?.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES);
    this.definitions.set(REQUEST_JOB, { name: REQUEST_JOB, handler: handler as JobDefinition['handler'] });
    return this;
  }

  /**
   * Enqueue a request to one of the app's routes as a job: a worker of a process that called
   * useApp runs it through the app; its result is the response `{ status, headers, body }`. A 5xx
   * or a thrown error is retried; a 4xx fails for good. The app reads the job's user with jobRequest(req).
   */
  async enqueueRequest(request: JobRequestInit, opts: EnqueueOptions<Tx, M> = {}): Promise<EnqueueResult> {
    const payload = requestPayload(request);
    const userId = request.userId ?? opts.userId;
    return this.enqueue(REQUEST_JOB as JobName<M>, payload as PayloadOf<M, JobName<M>>, userId === undefined ? opts : { ...opts, userId });
  }

  /** Cancel a pending or running job (or a transient run of this process). A running handler's signal fires (at once in this process; within a heartbeat elsewhere). */
  async cancel(id: string): Promise<boolean> {
    validateId(id);
    if (this.transients.cancel(id)) return true;
    const res = await this.db.jobCancel(id);
    if (!res) return false;
    this.worker?.abortJob(id, 'cancelled');
    this.events.emit('cancelled', { id, previous: res.previous });
    return true;
  }

  /** Run a failed or cancelled job again (attempts kept; the limit is raised by one if exhausted), or a pending one now. */
  async retry(id: string): Promise<boolean> {
    validateId(id);
    const state = await this.db.jobRetry(id);
    if (state) this.worker?.wake();
    return state !== null;
  }

  /**
   * Redrive dead-letter copies (the deadLetter option): the jobs given by id, or those `filter`
   * matches in its dead-letter queue (newest first, at most `limit`, default 1000). For each copy
   * whose original failed, the original goes back to pending as retry() moves it, and the copy, if
   * still pending, is cancelled with the error "Redriven" (a running or finished copy is left as
   * it is), in one transaction. Everything else is skipped and counted by reason: not a copy, the
   * original gone, live (redriven already) or not failed. So a second redrive of the same copies
   * retries nothing until an original has failed again.
   */
  async redriveDeadLetters(target: RedriveFilter | string[]): Promise<RedriveResult> {
    const { ids, more } = Array.isArray(target)
      ? { ids: validateIds(target, 'redriveDeadLetters', MAX_REDRIVE), more: false }
      : await this.redriveTargets(target);
    const result: RedriveResult = { redriven: 0, skipped: 0, reasons: {}, originals: [], more };
    for (const id of ids) {
      const { outcome, originalId, copyCancelled } = await this.db.jobRedrive(id, REDRIVEN);
      if (outcome === 'redriven') {
        result.redriven++;
        result.originals.push(originalId!);
      } else {
        result.skipped++;
        result.reasons[outcome] = (result.reasons[outcome] ?? 0) + 1;
      }
      if (copyCancelled) this.events.emit('cancelled', { id, previous: 'pending' });
    }
    if (result.redriven) this.worker?.wake();
    return result;
  }

  /** The jobs a redrive filter matches, newest first, up to its limit. */
  private async redriveTargets(target: RedriveFilter): Promise<{ ids: string[]; more: boolean }> {
    const { filter, limit } = validateRedriveFilter(target);
    return idsMatching((f) => this.db.jobList(f), filter, limit);
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

  /**
   * This instance's prom-client Registry: the counters and histograms of sqljobs' metrics from the
   * first call on (made then: an instance nobody scrapes pays nothing for it), and the queue
   * gauges read from the database at each collection. Null with `metrics: false`. The admin serves
   * it as `GET metrics`; an app with its own registry merges them (`Registry.merge([register,
   * jobs.metricsRegistry()])`).
   */
  metricsRegistry(): Registry | null {
    return this.metrics.registry();
  }

  /** Names this instance has handlers for. */
  get names(): string[] {
    return [...this.definitions.keys()];
  }

  /**
   * The options this process's define() gave a job name (null: not defined here): what its jobs
   * run with where the enqueue did not say (the admin shows a defined timeout from it).
   */
  defined(name: string): DefinedOptions | null {
    const def = this.definitions.get(name);
    if (!def) return null;
    return { queue: def.queue ?? null, timeoutMs: def.timeout ?? null, maxAttempts: def.maxAttempts ?? null, priority: def.priority ?? null, deadLetter: def.deadLetter ?? null, transactional: def.transactional === true };
  }

  get workerId(): string | null {
    return this.worker?.id ?? null;
  }
}

/**
 * What stop() and close() wait beyond the shutdown timeout for the database to take the shutdown's
 * writes (the release of aborted jobs, the last outcomes, the worker's row): milliseconds when it
 * answers. One that does not answer (stopped, or behind a half-open connection) would hold the
 * app's exit forever; past this the store's connections are dropped and what was not written is
 * left to the rescue, as after a crash.
 */
const STOP_GRACE_MS = 5_000;

/** A job without same-call parents (shared: never written to). */
const NO_PARENTS: readonly number[] = [];

/** The error a redriven copy is cancelled with: its page says why it will not run. */
const REDRIVEN: JobError = { name: 'Redriven', message: 'cancelled: its original job was retried by a redrive (jobs.redriveDeadLetters)' };

/**
 * The caller's transaction, or undefined when the key is absent. A key present with no value is an
 * error, not "no transaction": an ORM handle that is undefined inside a transaction (Drizzle's
 * tx.$client) would otherwise enqueue outside it, and the job would survive the app's rollback.
 */
function givenTx(opts: { tx?: unknown } | undefined, field: string, job?: string): unknown {
  if (opts && 'tx' in opts && (opts.tx === undefined || opts.tx === null)) {
    throw new JobValidationError(
      `${field} is ${opts.tx}: pass the open transaction's driver client (pg PoolClient, slonik transaction connection, mysql2 connection, mssql Transaction, or the better-sqlite3 Database), or leave the key out to enqueue outside any transaction`,
      'tx',
      job,
    );
  }
  return opts?.tx;
}

/** What jobs.batch answers: the items' ids in order, as written (a refId that existed answers the live job's id). */
function batchResult(batch: NewBatch, rows: NewJobRow[], ids: string[], written: EnqueueResult[]): { batchId: string; ids: string[] } {
  const byId = new Map(rows.map((r, i) => [r.id, written[i].id]));
  return { batchId: batch.id, ids: ids.map((id) => byId.get(id)!) };
}
