/**
 * The interfaces behind which every database difference lives, split by role (plumbing, the hot
 * path of job writes, liveness, leases, schedules, reads, operators' actions); Store is their
 * sum. Each dialect implements it in its own file, and that file is the only place its SQL is
 * written. The worker, the facade, the HTTP adapters and the admin reach the database only
 * through these verbs.
 *
 * Every write on behalf of a running attempt (progress, logs, checkpoint, complete, fail,
 * release) is fenced by (id, token, state = 'running') and reports which items it applied to:
 * an item missing from the answer lost its claim, and its outcome must be discarded.
 */
import type { ScheduleDef } from '../schedule/schedule.ts';
import type { NewBatch, StoredCallbacks } from './portable/flow.ts';
import type { ManagedClaim, ManagedClaimRequest, QueueSettingsRow, StoredQueueSettings } from './portable/queues.ts';
import type {
  AttemptRecord,
  BackoffOptions,
  EnqueueResult,
  JobError,
  JobRecord,
  JsonValue,
  JobState,
  ListFilter,
  ListPage,
  LogRecord,
  NewJobRow,
  RedriveSkip,
} from '../model.ts';

export type Dialect = 'sqlite' | 'postgres' | 'mysql' | 'mssql';

export interface StoreCapabilities {
  /** Cross-process wake-ups (LISTEN/NOTIFY). Without it, other processes learn by polling. */
  notify: boolean;
  /** enqueue can run synchronously (better-sqlite3). */
  syncEnqueue: boolean;
  /**
   * While jobs keep finishing, how long their outcomes may wait to be written together and how
   * many at most (default 1 ms, 100). Where each commit costs far more than a row, a longer wait
   * writes each page of the tables and indexes once for many jobs.
   */
  outcomeBatch?: { windowMs: number; max: number };
  /**
   * Size claims ahead by how long handlers run rather than by how long until their outcome is
   * written (a slot frees when its handler returns). Where every claim and every batch of outcomes
   * costs round trips and a commit that outweigh its rows (MySQL/MariaDB: no UPDATE … RETURNING),
   * short jobs then come in claims of hundreds instead of tens. On PostgreSQL too since its batch
   * writes are planned per call (a prepared completion's generic plan had made large batches slow):
   * 13,900-16,700 jobs/s against 13,100-13,600 (issue 17). Off for SQL Server, not measured.
   */
  claimAheadByHandlerTime?: boolean;
}

export interface ClaimRequest {
  workerId: string;
  /** Only jobs with these names are claimed: a worker never claims what it cannot run. */
  names: string[];
  /** Restrict to these queues (all queues when absent). */
  queues?: string[];
  /** Skip these queues (they are claimed separately under their own limits). */
  excludeQueues?: string[];
  limit: number;
}

/** Columns a claim returns: what running an attempt needs, nothing more (each column costs per row). */
export const CLAIM_COLUMNS = 'id, token, name, queue, payload, payload_bin, priority, attempts, max_attempts, timeout_ms, backoff, run_at, started_at, checkpoint, user_id, reply_to, args, flow, callback_batch, trace_context';

/** A claimed job: what its attempt needs, plus the claim token that fences every write of it. */
export interface ClaimedJob {
  id: string;
  token: string;
  name: string;
  queue: string;
  payload: unknown;
  priority: number;
  attempts: number;
  maxAttempts: number;
  timeoutMs: number | null;
  backoff: BackoffOptions | null;
  runAt: Date;
  startedAt: Date | null;
  checkpoint: JsonValue | null;
  userId: string | null;
  replyTo: string | null;
  args: Record<string, string> | null;
  rowid?: number;
  /** Bits of portable/flow.ts FLOW: a job with any finishes through the flow transaction. */
  flow: number;
  /** The batch whose callback this job is (its ctx.batch), or null. */
  callbackBatch: string | null;
  /** The enqueue's trace context (JSON propagation carrier), or null. */
  traceContext: string | null;
}

export interface Fenced {
  id: string;
  token: string;
  /** Where the dialect can find the row fastest, when it said so at claim (SQLite: the rowid). */
  rowid?: number;
  /** The job's flow bits as claimed (portable/flow.ts): nonzero finishes through the flow transaction. */
  flow?: number;
}

export interface CompleteItem extends Fenced {
  resultJson: string | null;
  /** The claim's attempt number: a completion written again after its connection dropped looks it up in history (jobCompletedBy). */
  attempt?: number;
}

/** Attempts of one worker, each a job id and the attempt number its claim counted. */
export interface AttemptsOf {
  workerId: string;
  attempts: { id: string; attempt: number }[];
}

export interface FailItem extends Fenced {
  attempt: number;
  startedAt: Date | null;
  error: JobError;
  /** Delay before the retry, or null when the job fails for good. */
  retryDelayMs: number | null;
}

export interface ReleaseItem extends Fenced {
  delayMs: number;
  /** Give the attempt back (graceful shutdown, snooze). */
  refund: boolean;
}

/** Jobs to insert, and the caller's open transaction to insert them in (dialect specific), if any. */
export interface InsertBatch {
  rows: NewJobRow[];
  tx?: unknown;
  /** jobs.batch: the batches to make with the jobs (each one's id is its rows' batchId). */
  batches?: NewBatch[];
}

/** A job's parent or dependent, as the job page and ctx.parents show it. */
export interface JobLink {
  id: string;
  /** Null when the job is gone (deleted, or pruned by retention). */
  name: string | null;
  state: JobState | null;
  result: unknown;
  error: JobError | null;
  /** A dependent's parents not completed yet. */
  waitingFor: number;
  /**
   * A callback's link rather than a dependsOn one: the parent a callback job reports on, or a
   * dependent that is this job's onSuccess / onFailure callback (the admin labels them apart).
   */
  callback: boolean;
}

/** A batch's jobs counted by state, read from the job tables (exact while jobs run anywhere). */
export interface BatchStatus {
  batchId: string;
  total: number;
  pending: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** No job of the batch is pending or running. */
  finished: boolean;
  /** When jobs.batch made it (null for jobs that only share a batchId label). */
  createdAt: Date | null;
  /** When its last job finished (null until then, or without a batch made by jobs.batch). */
  finishedAt: Date | null;
  /** The callbacks given to jobs.batch, by option: the job name each enqueues. */
  callbacks: { onComplete?: string; onSuccess?: string; onFailure?: string };
  /**
   * The id of the job each callback enqueued, by option, once it has: a callback whose condition
   * did not hold (onSuccess when a job failed) never has one. Empty for batches whose callbacks
   * fired before migration 021 recorded them.
   */
  callbackJobs: { onComplete?: string; onSuccess?: string; onFailure?: string };
}

export interface CheckpointItem extends Fenced {
  stateJson: string;
}

/** A lease asked for by `owner` for `ttlMs` (database clock). */
export interface LeaseRequest {
  name: string;
  owner: string;
  ttlMs: number;
}

/** A lease as its holder knows it: by its fencing token. */
export interface LeaseHeld {
  name: string;
  owner: string;
  token: number;
}

/** One tick of a schedule to fire: the job to enqueue, and with skipIfLive the error to record when its previous run is still live. */
export interface ScheduleTick {
  key: string;
  fireAt: number;
  row: NewJobRow;
  skipIfLive: JobError | null;
}

export interface ProgressItem extends Fenced {
  progress: number;
  message: string | null;
}

export interface LogItem extends Fenced {
  attempt: number;
  lines: { at: number; message: string }[];
}

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  queues: string[] | null;
  names: string[];
  concurrency: number;
}

/** A running job whose worker went silent, with what the rescuer needs to decide and to fence its write. */
export interface StalledJob extends Fenced {
  name: string;
  queue: string;
  attempts: number;
  maxAttempts: number;
  workerId: string | null;
  startedAt: Date | null;
  /** The worker's heartbeat when read (epoch ms), null when it has no row: any write since proves it alive. */
  workerHeartbeatAt: number | null;
}

export interface RescuedJob {
  id: string;
  name: string;
  queue: string;
  outcome: 'retry' | 'failed';
}

export interface CancelResult {
  /** The state the job was in when it was cancelled. */
  previous: 'pending' | 'running';
  workerId: string | null;
}

/** What redriving one dead-letter copy did (JobAdmin.jobRedrive). */
export interface RedriveOutcome {
  outcome: 'redriven' | RedriveSkip;
  /** The failed job the copy was made from (null: not a copy, or not known). */
  originalId: string | null;
  /** The copy was pending and is now cancelled. */
  copyCancelled: boolean;
}

export interface StatusCounts {
  live: { state: 'pending' | 'running'; queue: string; count: number }[];
  finished: { state: string; count: number; capped: boolean }[];
}

/** One queue as the admin shows it (live table only; paused queues without jobs included). */
export interface QueueStats {
  queue: string;
  pending: number;
  /** Pending jobs whose run time has come. */
  due: number;
  running: number;
  /** How long the oldest due pending job has waited past its run time (database clock), or null. */
  oldestDueAgeMs: number | null;
  /** When the queue was paused, or null when it is not. */
  pausedAt: Date | null;
}

/** A queue's live figures alone (QueueStats without its paused state). */
export type QueueLive = Omit<QueueStats, 'pausedAt'>;

/** One group of a queue's live jobs (group null: its jobs without a group). */
export interface QueueGroupStats {
  group: string | null;
  pending: number;
  /** Pending jobs whose run time has come. */
  due: number;
  running: number;
  /** Starts of the group in the queue's rate window (null: the queue has no rate limit). */
  starts: number | null;
}

/** A queue's live jobs per group, and the starts its rate window holds. */
export interface QueueGroupCounts {
  /** The busiest groups first (running, then due, then pending). */
  groups: QueueGroupStats[];
  /** Starts of the whole queue in its rate window (null: the queue has no rate limit). */
  starts: number | null;
}

/** Finished jobs per time bucket (buckets without any are absent). */
export interface ThroughputBuckets {
  /** The database's now, in ms: the window ends here. */
  now: number;
  buckets: { start: number; completed: number; failed: number }[];
}

export interface WorkerRecord extends WorkerInfo {
  startedAt: Date;
  heartbeatAt: Date;
}

export interface StoredSchedule extends ScheduleDef {
  enabled: boolean;
  nextRunAt: number | null;
  lastRunAt: number | null;
  lastJobId: string | null;
  runs: number;
}

/** An advisory lock held by a dedicated connection: lost when that connection is. */
export interface SessionLock {
  /** Ask the database whether this session still holds the lock (false also when the connection is gone). */
  stillHeld(): Promise<boolean>;
  /** Called once if the connection drops (the lock is gone with it). */
  onLost(cb: () => void): void;
  release(): Promise<void>;
  /** The backend process holding the lock (tests terminate it). */
  readonly pid: number | null;
}

/** A transaction the library opened on the app's database. */
export interface OpenTransaction {
  /** The driver's own handle inside the transaction (pg: a PoolClient after BEGIN). */
  readonly native: unknown;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

export interface ListenHandle {
  close(): Promise<void>;
}

export interface ListenCallbacks {
  /** A job became due in this queue somewhere. */
  onJob(queue: string): void;
  /** A job was cancelled somewhere; a worker running it should abort it now. */
  onCancel(id: string): void;
  /** The listener (re)connected: notifications may have been missed; poll once. */
  onReconnect(): void;
  onError(err: unknown): void;
}

/** What a store that pushes news of finished jobs tells (see StorePlumbing.listenFinished). */
export interface FinishedCallbacks {
  /** Jobs finished somewhere (which ones is not said): read history now. */
  onFinished(): void;
  /** The listener (re)connected: news may have been missed; read history now. */
  onReconnect(): void;
  onError(err: unknown): void;
}

/** What every store has: its dialect and prefix, migrations, wake-ups, the app transaction, close. */
export interface StorePlumbing {
  readonly dialect: Dialect;
  readonly capabilities: StoreCapabilities;
  readonly prefix: string;
  /** Apply pending migrations under the dialect's lock. Idempotent. */
  migrate(): Promise<void>;
  /**
   * Listen for wake-ups and cancellations from other processes. null: this store cannot listen
   * (PostgreSQL behind a transaction pooler, which drops a LISTEN as soon as its transaction ends):
   * the worker then learns by polling. `stopped` gives up a connection still being opened (its
   * promise rejects): a stop() during a start does not wait for a host that does not answer.
   */
  listen?(cb: ListenCallbacks, stopped?: AbortSignal): Promise<ListenHandle | null>;
  /**
   * A worker is starting: make ready, in the background, what its first claim will need, so that
   * the claim does not wait for it after the listener (a connection, its session's settings). What
   * fails here is met again, and reported, by the call that needs it. `stopped`: the start was
   * given up (a connection still being made is then dropped).
   */
  prepareClaims?(stopped?: AbortSignal): void;
  /**
   * Hear, pushed, that jobs finished in any process (jobs.subscribe, jobs.waitFor), until the
   * handle is closed. Finishing statements push only while some process listens so, anywhere in the
   * database. null (or absent): this store cannot push, and history is polled.
   */
  listenFinished?(cb: FinishedCallbacks): Promise<ListenHandle | null>;
  /**
   * Open a transaction on the app's own database for a request's unit of work (absent on
   * SQLite, whose transactions cannot span an await: there the request's jobs are buffered).
   */
  beginTransaction?(): Promise<OpenTransaction>;
  /** SQLite: whether the app's own handle is inside a transaction (a write on it would join that transaction). */
  appInTransaction?(): boolean;
  clockNow(): Promise<number>;
  close(): Promise<void>;
  /**
   * Drop every connection of the store's own at once, without a word to the server, and each one
   * it opens until `until` settles: for a stop() or close() that gave up on a database that does
   * not answer. What waits on them fails as after a dropped connection. Absent where the store holds
   * no socket (SQLite) or cannot reach its connections (SQL Server's pool).
   */
  sever?(until: Promise<unknown>): void;
  /**
   * Told, after commit, of each queue in which a write of this store made jobs due (a dependent
   * or a serial key's next job released, a callback enqueued, a queue resumed): this process's
   * worker, which no NOTIFY reaches on SQLite and MySQL. Set by the Jobs facade.
   */
  onJobsDue?: (queue: string) => void;
}

/**
 * The hot path: enqueue, claim, and every fenced write of a running attempt. A batch write answers
 * the job ids it applied, so a call never carries two attempts of one job (the worker's writer
 * splits them: lib/worker/writer.ts oneAttemptPerJob).
 */
export interface JobWrites {
  /**
   * Insert jobs (one round trip per chunk). Rows with a refId that matches a live job return that
   * job with existed = true. `tx` is the caller's open transaction (dialect specific).
   */
  jobInsertMany(batch: InsertBatch): Promise<EnqueueResult[]>;
  /** Synchronous enqueue, only when capabilities.syncEnqueue (`tx`, when given, must be the app's own handle). */
  jobInsertManySync?(batch: InsertBatch): EnqueueResult[];
  /** Enqueue rows with workflow (dependsOn, callbacks, a batch): ./portable/flow.ts, in `tx` or a transaction of the store's. */
  jobInsertFlow(batch: InsertBatch): Promise<EnqueueResult[]>;
  /** The same, synchronously (SQLite). */
  jobInsertFlowSync?(batch: InsertBatch): EnqueueResult[];
  /** reserve: commit reserved jobs, in `tx` or a transaction of the store's; answers the ids committed. */
  jobCommitReserved(ids: string[], tx?: unknown): Promise<string[]>;
  /** Cancel up to `limit` reserved jobs whose reservation ran out; answers how many. */
  jobCancelExpiredReservations(limit: number): Promise<number>;
  /**
   * Forget up to `limit` fair groups no enqueue touched for idleMs whose last rank claims have
   * reached (./portable/queues.ts); answers how many. A group enqueued again starts at the turn.
   */
  queueGroupsPrune(req: { idleMs: number; limit: number }): Promise<number>;
  /** Priority aging: one step up for due pending jobs that waited `everyMs` since the last (./portable/aging.ts). */
  jobsAgePriority(req: { everyMs: number; limit: number }): Promise<number>;
  /** Claim due jobs of queues without limits or groups (a managed queue, one with a queues row, is skipped). */
  jobClaim(req: ClaimRequest): Promise<ClaimedJob[]>;
  /** Claim due jobs of one managed queue within its limits, in fair order (./portable/queues.ts). */
  jobClaimManaged(req: ManagedClaimRequest): Promise<ManagedClaim<ClaimedJob>>;
  /** Move completed attempts to history. Returns the ids that were still owned. */
  jobCompleteMany(items: CompleteItem[]): Promise<Set<string>>;
  /**
   * Of these attempts of this worker, the ids history holds as completed by them. A completion
   * whose connection dropped may have committed before it did: written again, it finds nothing to
   * complete, and this tells a completion that landed from a claim that was lost.
   */
  jobCompletedBy(req: AttemptsOf): Promise<Set<string>>;
  /** Record failed attempts: retry later or move to history as failed. */
  jobFailMany(items: FailItem[]): Promise<Set<string>>;
  /**
   * Of these attempts of this worker, the ids whose failure it recorded (retried or failed for
   * good; not a rescue of them): jobCompletedBy's counterpart for a failure written again.
   */
  jobFailedBy(req: AttemptsOf): Promise<Set<string>>;
  /** Return running attempts to pending (snooze, graceful shutdown). */
  jobReleaseMany(items: ReleaseItem[]): Promise<Set<string>>;
  jobProgressMany(items: ProgressItem[]): Promise<Set<string>>;
  logAppendMany(items: LogItem[]): Promise<Set<string>>;
  jobCheckpoint(item: CheckpointItem): Promise<boolean>;
  /**
   * Run `work` inside a transaction and complete the attempt in that same transaction, fenced:
   * commit when the attempt is still owned, roll back (applied = false) when it is not, roll back
   * and rethrow when `work` or `encode` throws.
   */
  jobCompleteInTransaction(run: TransactionalCompletion): Promise<{ applied: boolean; result: unknown }>;
}

/** A handler's database work and the fenced completion of its attempt, to commit together. */
export interface TransactionalCompletion {
  item: Fenced;
  /** The handler, given the transaction's handle (dialect specific). */
  work: (tx: unknown) => unknown;
  /** The result as stored JSON (null for none); throws when it cannot be stored. */
  encode: (result: unknown) => string | null;
  /** Called just before the completion is written (the attempt's buffered logs are flushed first). */
  beforeComplete: () => Promise<void> | void;
  /**
   * The attempt's log lines and progress buffered so far, taken out of the writer. A store whose
   * handler runs inside the write transaction (SQLite) writes them there, before the completion:
   * flushed afterwards, they would find the job already moved to history.
   */
  takeLogs: () => { lines: LogItem | null; progress: ProgressItem | null };
}

/** Liveness and cleanup: heartbeats, stalled jobs, stale workers, retention, the next due job. */
export interface WorkerLiveness {
  /**
   * One write per worker process per interval: refresh the worker's heartbeat (re-registering it
   * when a sweeper removed it) and answer which of its running attempts it still owns.
   */
  workerHeartbeat(worker: WorkerInfo): Promise<Fenced[]>;
  workerRemove(workerId: string): Promise<void>;
  /** Milliseconds since this worker's last heartbeat (database clock), null when it is not registered. */
  workerHeartbeatAge(workerId: string): Promise<number | null>;
  /**
   * Of these workers, those whose row another session holds locked right now (their heartbeats
   * may be waiting behind that lock, so their silence proves nothing), or whose heartbeat is no
   * longer older than stallMs. Empty where rows are not locked one by one (SQLite: a writer holds
   * the whole database, the rescue's write included).
   */
  workersHeld(ids: string[], stallMs: number): Promise<Set<string>>;
  /**
   * Running jobs whose worker sent no heartbeat for stallMs (database clock), at most `limit`.
   * Only a read: the rescuer (lib/maintenance/rescuer.ts) decides and writes through jobFailMany().
   */
  jobStalledList(req: { stallMs: number; limit: number }): Promise<StalledJob[]>;
  /** Forget the workers whose heartbeat is older than stallMs, but those held (see workersHeld), which are not waited for. */
  workerRemoveStale(stallMs: number): Promise<void>;
  /**
   * Delete history rows finished more than olderThanMs ago, at most `limit`. `more`: a later batch
   * of the same round (where whole months are dropped, they were dropped by the round's first).
   */
  historyPrune(req: { olderThanMs: number; limit: number; more?: boolean }): Promise<number>;
  /** Once a retention round, after its history batches: finished batches, unused keys and schedule ticks older than olderThanMs. */
  retentionLeftoversPrune(olderThanMs: number): Promise<void>;
  /**
   * Where history is kept by month: make the current and next month's partitions ahead
   * (PostgreSQL; MySQL/MariaDB and SQL Server once `sqljobs history-partitions` ran), or move the
   * closed months to their files (SQLite, history: 'monthly-files'). Safe to run from several
   * instances at once; absent elsewhere.
   */
  historyUpkeep?(): Promise<void>;
  /**
   * The leader's count of the minutes closed since its last round (and a few before them) into the
   * per-minute counters the throughput chart reads (./portable/throughput.ts); counters older than
   * keepMs go.
   */
  throughputRollup(req: { keepMs: number }): Promise<void>;
  /**
   * Where history is partitioned by a script run out of band (MySQL/MariaDB, SQL Server): the DDL that
   * partitions history by month, or, once it is, makes the current and next month ahead (none when
   * they exist); run too when `apply`.
   */
  historyPartitionScript?(req: { apply: boolean }): Promise<{ text: string }[]>;
  /**
   * Milliseconds until the next pending job for these names becomes due (null: none). Managed
   * queues (their limits decide when their jobs start) count only with `managed: true`.
   */
  jobNextDueIn(req: { names: string[]; queues?: string[]; managed?: boolean }): Promise<number | null>;
}

/** Leases with fencing tokens (jobs.locks, leadership) and the session locks on top of them. */
export interface LeaseStore {
  /**
   * Take the lease `name` for `ttlMs` (database clock) unless another owner holds it unexpired.
   * Returns its fencing token (unchanged when the same owner renews an unexpired lease, greater
   * whenever ownership changes), or null.
   */
  leaseAcquire(req: LeaseRequest): Promise<number | null>;
  /** Extend a lease still held (same owner and token, not expired). */
  leaseRenew(req: LeaseHeld & { ttlMs: number }): Promise<boolean>;
  leaseRelease(req: LeaseHeld): Promise<boolean>;
  /**
   * Where the database has session locks (PostgreSQL pg_try_advisory_lock, MySQL/MariaDB GET_LOCK,
   * SQL Server sp_getapplock), take one on a dedicated connection: null when another session holds
   * it. Absent on SQLite: the lease alone serves.
   */
  sessionLockTry?(name: string): Promise<SessionLock | null>;
  /**
   * Whether session locks work on this store's connections (false: PostgreSQL behind a
   * transaction pooler, where a lock would land on a shared server connection and outlive its
   * holder). Absent: they work wherever sessionLockTry exists. Answered once, then remembered.
   */
  sessionLocksUsable?(): Promise<boolean>;
  /**
   * End the session that holds the named session lock (pg_terminate_backend, KILL), so that a
   * holder which stopped renewing its lease (a paused or hung process whose connection is still
   * open) cannot block failover forever. Returns how many sessions were ended.
   */
  sessionLockEvict?(name: string): Promise<number>;
  /** Who holds leadership `name`, in words (a lease owner, or the session holding the advisory lock / GET_LOCK), or null. */
  leaderDescribe(name: string): Promise<string | null>;
}

/** Recurring schedules. A tick (schedule key, nominal fire time) fires at most once: its row is inserted in the same transaction as the job, under a primary key. */
export interface ScheduleStore {
  /**
   * Create or replace a schedule's definition (its enabled flag, runs and history stay). From code
   * (`codeHash` set) an existing row is replaced only when its stored code hash differs, so an
   * edit made at run time survives restarts until the code changes; a run-time edit (`codeHash`
   * null) always replaces and keeps the stored hash. The next run is recomputed only when the
   * timing changed.
   */
  scheduleUpsert(req: { def: ScheduleDef; nextRunAt: number | null; codeHash: string | null }): Promise<void>;
  scheduleList(): Promise<StoredSchedule[]>;
  scheduleSetEnabled(req: { key: string; enabled: boolean; nextRunAt: number | null }): Promise<boolean>;
  scheduleRemove(key: string): Promise<boolean>;
  /** Enabled schedules whose next run is due, and the database's now (ms). */
  scheduleListDue(): Promise<{ now: number; due: StoredSchedule[] }>;
  /** Fire one tick: null when it was already fired. With skipIfLive (the error to record), a live previous run records the tick as a skipped job. */
  scheduleFire(tick: ScheduleTick): Promise<{ jobId: string; skipped: boolean } | null>;
  /** A run enqueued outside the ticks (trigger): the schedule's last run and job, one more run; its next run unchanged. */
  scheduleRecordRun(req: { key: string; jobId: string }): Promise<void>;
  /** Move next_run_at on from `from` (compare-and-set), disabling the schedule when it ended. */
  scheduleAdvance(req: { key: string; from: number; nextRunAt: number | null }): Promise<void>;
}

/** Reads for the facade, the CLI and the admin. */
export interface JobReads {
  jobGet(id: string): Promise<JobRecord | null>;
  /** A job's parents (dependsOn order, then the job a callback reports on) and the jobs that depend on it. */
  jobLinks(id: string): Promise<{ parents: JobLink[]; dependents: JobLink[] }>;
  batchStatus(batchId: string): Promise<BatchStatus | null>;
  jobList(filter: ListFilter): Promise<ListPage>;
  attemptList(id: string): Promise<AttemptRecord[]>;
  /** A job's lines after afterSeq in order, the first `limit`, or with `last` the latest `limit` (still in order). */
  logList(req: { id: string; afterSeq?: number; limit: number; last?: boolean }): Promise<LogRecord[]>;
  /** For status views: live jobs per state and queue (exact; the hot table is small), finished jobs per state, each counted up to `cap` (capped: true when it reached it). */
  jobCountByState(cap: number): Promise<StatusCounts>;
  workerList(): Promise<WorkerRecord[]>;
  /** Per queue: pending, due, running, oldest due age and paused state. */
  queueList(): Promise<QueueStats[]>;
  /** Per queue with live jobs: pending, due, running and oldest due age, in one statement (metrics read it at each collection). */
  queueLive(): Promise<QueueLive[]>;
  /**
   * One queue's live jobs per group (./portable/reads.ts queueGroupCounts), at most `limit` groups
   * (only `groups` when given), and its starts within `windowMs`, its rate window (null: none).
   */
  queueGroups(req: { queue: string; windowMs: number | null; groups?: string[]; limit: number }): Promise<QueueGroupCounts>;
  /** Completed and failed jobs per bucketMs over the last windowMs (by finished_at, database clock). */
  jobThroughput(req: { windowMs: number; bucketMs: number }): Promise<ThroughputBuckets>;
  /**
   * History per UTC month of finished_at, newest first, for the admin's History view: where each
   * month is kept, its jobs per state and its size on disk where the database tells it.
   * Counts are exact when the month holds fewer than `cap` jobs; a larger month answers the first
   * `cap` (in finish order) or the database's estimate (`estimated: true`), so the view stays fast
   * however large history grows.
   */
  historyMonths(req: { cap: number }): Promise<HistoryMonth[]>;
  /** Jobs finished after `since` (epoch ms, database clock), in finish order, at most `limit`. */
  historyFinishedSince(req: { since: number; limit: number }): Promise<FinishedJob[]>;
}

/** A finished job as jobs.subscribe tells it. */
export interface FinishedJob {
  id: string;
  name: string;
  queue: string;
  state: 'completed' | 'failed' | 'cancelled' | 'skipped';
  attempts: number;
  finishedAt: Date;
  error: JobError | null;
  result: unknown;
}

/** One UTC month of history (./portable/reads.ts, and the partitioned or per-file layouts). */
export interface HistoryMonth {
  /** `YYYY-MM` (UTC). */
  month: string;
  /** The partition or file holding it (null: the one history table). */
  storedIn: string | null;
  /** Finished jobs per terminal state (absent states: 0). */
  counts: Partial<Record<JobState, number>>;
  /** True when a count is the database's estimate or was cut at `cap` (shown as "about" / "at least"). */
  estimated: boolean;
  /** Bytes on disk (partition or file, with its indexes), null where the database does not tell it. */
  bytes: number | null;
  /**
   * Where retention removes the month whole (a partition or a file, perhaps holding earlier months
   * too): the end of what holds it, which goes once that end is past the retention. Null where rows
   * are deleted one by one.
   */
  storedUntil: Date | null;
}

/** Operators' actions. */
export interface JobAdmin {
  jobCancel(id: string): Promise<CancelResult | null>;
  /** Run a failed/cancelled job again, or a pending one now. Returns the new state or null. */
  jobRetry(id: string): Promise<JobState | null>;
  /**
   * Redrive one dead-letter copy, in one transaction: its original, when failed, back to pending
   * as jobRetry moves it; the copy, when still pending, cancelled with `error`.
   */
  jobRedrive(copyId: string, error: JobError): Promise<RedriveOutcome>;
  /** Pause a queue: claims skip its pending jobs until resumeQueue. Idempotent. */
  queuePause(queue: string): Promise<void>;
  /** Resume a paused queue. False when it was not paused. */
  queueResume(queue: string): Promise<boolean>;
  /** The managed queues' settings (./portable/queues.ts). */
  queueSettingsList(): Promise<QueueSettingsRow[]>;
  /** Write a queue's settings (from code with its hash, or a run-time edit with null); false when the stored ones came from the same code. */
  queueSettingsSave(req: { queue: string; settings: StoredQueueSettings; codeHash: string | null }): Promise<boolean>;
  /** Make a pending job due now (run_at = now). False when it is not pending. */
  jobMakeDue(id: string): Promise<boolean>;
  /** Delete pending or finished jobs with their attempts and logs (running jobs are left alone: cancel them first). Returns the ids deleted. */
  jobDeleteMany(ids: string[]): Promise<string[]>;
}

/**
 * Everything a database implements, as the sum of its roles. A consumer takes only the role it
 * uses (the writer JobWrites, the elector and jobs.locks LeaseStore, the scheduler ScheduleStore).
 */
export interface Store extends StorePlumbing, JobWrites, WorkerLiveness, LeaseStore, ScheduleStore, JobReads, JobAdmin {}

/** What a store on a database server is made with: the table prefix and the size of its private pool. */
export interface PooledStoreOptions {
  prefix: string;
  workerPoolSize: number;
}

/** Table prefix: an identifier, validated once, so it can be spliced into SQL text safely. */
export function validatePrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || !/^[a-z_][a-z0-9_]{0,30}$/.test(prefix)) {
    throw new TypeError(
      `tablePrefix must be 1-31 characters of lowercase letters, digits and _, not starting with a digit; got ${JSON.stringify(prefix)}`,
    );
  }
  return prefix;
}

/** Add the paused queues to the live per-queue figures (a paused queue may have no jobs), sorted by queue. */
export function mergeQueueStats(live: QueueLive[], paused: { queue: string; pausedAt: Date }[]): QueueStats[] {
  const byQueue = new Map<string, QueueStats>(live.map((q) => [q.queue, { ...q, pausedAt: null }]));
  for (const p of paused) {
    const q = byQueue.get(p.queue);
    if (q) q.pausedAt = p.pausedAt;
    else byQueue.set(p.queue, { queue: p.queue, pending: 0, due: 0, running: 0, oldestDueAgeMs: null, pausedAt: p.pausedAt });
  }
  return [...byQueue.values()].sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0));
}
