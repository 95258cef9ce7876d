/**
 * The verbs whose statement is the same on every database, written once over the dialect's
 * fragments (./dialect.ts) and run by the dialect's runner. A dialect's store extends this class
 * and writes only what its database does differently (Oban's engines: override what differs).
 */
import type { AttemptRecord, JobError, JobRecord, JobState, ListFilter, ListPage, LogRecord } from '../../model.ts';
import { isValidId } from '../../model.ts';
import { isDuplicateKey } from '../errors.ts';
import { claimOrder, toClaimedJob, toAttemptRecord, toJobRecord, toLogRecord, toStalledJob, toStoredSchedule, toWorkerRecord, withCurrentAttempt } from '../rows.ts';
import { listLimit, statesByTable } from '../sql.ts';
import { mergeQueueStats, type Dialect } from '../store.ts';
import type {
  AttemptsOf, BatchStatus, CancelResult, CheckpointItem, ClaimedJob, CompleteItem, FailItem, Fenced, FinishedJob, HistoryMonth, InsertBatch, JobLink, LeaseHeld, QueueGroupCounts, QueueLive, QueueStats, RedriveOutcome,
  StalledJob, StatusCounts, StoredSchedule, ThroughputBuckets, WorkerInfo, WorkerRecord,
} from '../store.ts';
import type { EnqueueResult } from '../../model.ts';
import { sideIndexPrune } from './side-index.ts';
import { CALLBACK_EDGE, afterRemoved, batchCounts, lockFinishedSerialKey, lockSerialLines, batchRow, commitReserved, finishJobs, reservationsExpired, insertWithFlow, jobDependents, jobParents, type BatchCallbackJobs, type FinishItem, type FlowOutcome, type StoredCallbacks } from './flow.ts';
import type { SqlDialect } from './dialect.ts';
import type { Sql } from './sql.ts';
import { utcMonth, type UtcMonth } from '../month.ts';
import { tables, type Outcome, type SqlRunner, type Statement, type Steps, type Tables } from './statement.ts';
import { cancelJob, historyPrune, historyPruneLock, historyPrunePick, jobMakeDue, jobRetry, jobsDelete, queuePause, queueResume, redriveCopy, reopenWorkflow, retentionLeftovers } from './admin.ts';
import { leaseRelease, leaseRenew } from './leases.ts';
import { jobsRaise, jobsToAge } from './aging.ts';
import { claimManaged, groupForget, idleGroups, queueSettingsList, saveQueueSettings, toQueueSettingsRow, type ManagedClaim, type ManagedClaimRequest, type QueueSettingsRow, type StoredQueueSettings } from './queues.ts';
import {
  clockNow, historyFinishedSince, historyMonthCounts, historyNewestBefore, jobAttempts, jobGet, jobLogs, jobsFinishedCounts, jobsList, jobsLiveCounts, queueGroupCounts, queueStartsInWindow, queuesPaused, queuesStats,
  workersList, type GroupCountsQuery,
} from './reads.ts';
import {
  MINUTE_MS, RECOUNT_MS, ROLLUP_AFRESH_MS, SETTLE_MS, minuteCount, sumBuckets, throughputCounters, throughputCoverage, throughputForget, throughputLast, throughputRead,
  throughputSave, type MinuteCount, type ThroughputBucket, type ThroughputRead,
} from './throughput.ts';
import { scheduleAdvance, scheduleRecordRun, scheduleRemove, scheduleSetEnabled, scheduleTicksRemove, schedulesDue, schedulesList } from './schedules.ts';
import { jobSaveCheckpoint, jobsCompletedBy, jobsFailedBy, jobsNextDue, jobsOwnedBy, jobsStalled, workerHeartbeat, workerHeartbeatAge, workerRemove, workersFound, workersLockable, workersRemoveStale, workersStale } from './workers.ts';

/** The months of history the admin's History view lists (newest first). */
const HISTORY_MONTHS_SHOWN = 36;

export abstract class PortableStore implements Sql {
  readonly dialect: Dialect;
  readonly t: Tables;
  /** Runs statements on the store's own connections; set by the dialect's constructor. */
  protected abstract readonly runner: SqlRunner;
  /**
   * Runs the heartbeat. Pooled dialects give it a connection of its own: queued behind writes
   * that wait on job rows another session locks (checkpoints, outcomes, log lines, each holding a
   * pooled connection), a live worker's heartbeat went unwritten past stallTimeout and its jobs
   * were rescued and run again. Lease renewals stay on the pool: behind a heartbeat held by a lock
   * on the workers table, the leader would lose its lease too.
   */
  protected get livenessRunner(): SqlRunner {
    return this.runner;
  }

  constructor(
    readonly d: SqlDialect,
    readonly prefix: string,
  ) {
    this.dialect = d.name;
    this.t = tables(prefix);
  }

  // ---------------------------------------------------------------- outcomes

  /** The dialect's completion of jobs without workflow (flow = 0), fenced by token: one statement or transaction. */
  protected abstract completeFast(items: CompleteItem[]): Promise<Set<string>>;
  /** The dialect's failure of attempts: retried later, or failed for good when flow = 0. */
  protected abstract failFast(items: FailItem[]): Promise<Set<string>>;

  /**
   * Jobs without workflow complete through the dialect's statement; the others, and those it did
   * not apply (a dependent was enqueued while the job ran, or the claim was lost), through the
   * flow transaction, which is fenced by token too.
   */
  async jobCompleteMany(items: CompleteItem[]): Promise<Set<string>> {
    const plain = items.filter((i) => !i.flow);
    const applied = plain.length ? await this.completeFast(plain) : new Set<string>();
    const rest = items.filter((i) => !applied.has(i.id));
    if (rest.length) {
      for (const id of await this.finishWithFlow(rest.map((i) => ({ id: i.id, token: i.token, state: 'completed' as const, resultJson: i.resultJson })))) applied.add(id);
    }
    return applied;
  }

  async jobFailMany(items: FailItem[]): Promise<Set<string>> {
    const plain = items.filter((i) => !i.flow || i.retryDelayMs !== null);
    const applied = plain.length ? await this.failFast(plain) : new Set<string>();
    const rest = items.filter((i) => !applied.has(i.id) && i.retryDelayMs === null);
    if (rest.length) {
      const finish = rest.map((i) => ({
        id: i.id, token: i.token, state: 'failed' as const, errorJson: JSON.stringify(i.error), attempt: { number: i.attempt, startedAt: i.startedAt },
      }));
      for (const id of await this.finishWithFlow(finish)) applied.add(id);
    }
    return applied;
  }

  /** Finish jobs with their workflow in one transaction of ours, then wake the queues that have a job due because of it. */
  protected async finishWithFlow(items: FinishItem[]): Promise<Set<string>> {
    return this.withWake(await this.runner.within(finishJobs(this, items)));
  }

  /** A transactional completion the dialect's statement did not apply (a job with workflow): these steps, on the handler's connection. */
  protected completionSteps(item: Fenced, resultJson: string | null): Steps<FlowOutcome<Set<string>>> {
    return finishJobs(this, [{ id: item.id, token: item.token, state: 'completed', resultJson }]);
  }

  /** After commit: wake the workers of the queues the flow made a job due in. */
  protected async withWake<T>(out: FlowOutcome<T>): Promise<T> {
    for (const q of out.wake) await this.jobsDue(q);
    return out.value;
  }

  onJobsDue?: (queue: string) => void;

  /** Jobs of `queue` became due: tell this process's worker, then the others (announceJobs). */
  private async jobsDue(queue: string): Promise<void> {
    this.onJobsDue?.(queue);
    await this.announceJobs(queue);
  }

  // ---------------------------------------------------------------- workflows

  /**
   * Enqueue rows that depend on others, carry callbacks or make a batch: in the caller's
   * transaction (`tx`), or in one of ours. Each dialect runs the steps on the right connection.
   */
  async jobInsertFlow(batch: InsertBatch): Promise<EnqueueResult[]> {
    return this.withWake(await this.withinCaller(batch.tx, insertWithFlow(this, batch.rows, batch.batches)));
  }

  /** Commit reserved jobs (in the caller's transaction, or one of ours); answers the ids committed. */
  async jobCommitReserved(ids: string[], tx?: unknown): Promise<string[]> {
    const wanted = [...new Set(ids.filter(isValidId))];
    if (!wanted.length) return [];
    return this.withWake(await this.withinCaller(tx, commitReserved(this, wanted)));
  }

  /** Cancel up to `limit` reservations that ran out, each with its workflow; answers how many. */
  async jobCancelExpiredReservations(limit: number): Promise<number> {
    for (const s of sideIndexPrune(this)) await this.runner.run(s);
    const { rows } = await this.runner.run(reservationsExpired(this, limit));
    let cancelled = 0;
    for (const r of rows) if (await this.jobCancel(String(r.id))) cancelled++;
    return cancelled;
  }

  /** Priority aging: raise up to `limit` due pending jobs that waited `everyMs` since their last raise; answers how many. */
  async jobsAgePriority({ everyMs, limit }: { everyMs: number; limit: number }): Promise<number> {
    let raised = 0;
    for (const fresh of [true, false]) {
      const ids = (await this.runner.run(jobsToAge(this, { everyMs, limit, fresh }))).rows.map((r) => String(r.id));
      if (ids.length) raised += (await this.runner.run(jobsRaise(this, ids, everyMs))).changes;
    }
    return raised;
  }

  // ---------------------------------------------------------------- managed queues

  async jobClaimManaged(req: ManagedClaimRequest): Promise<ManagedClaim<ClaimedJob>> {
    if (!req.names.length) return { rows: [], heldBy: null, retryInMs: null };
    const claim = await this.withinClaim(claimManaged(this, req, crypto.randomUUID()));
    return { ...claim, rows: claim.rows.map((r) => toClaimedJob(r, this.d.codec)).sort(claimOrder) };
  }

  /** A managed claim's transaction (PostgreSQL plans it as its claims: see postgres/store.ts). */
  protected withinClaim<T>(steps: Steps<T>): Promise<T> {
    return this.runner.within(steps);
  }

  async queueGroupsPrune({ idleMs, limit }: { idleMs: number; limit: number }): Promise<number> {
    const idle = (await this.runner.run(idleGroups(this, { idleMs, limit }))).rows;
    let forgotten = 0;
    for (const r of idle) forgotten += (await this.runner.run(groupForget(this, { queue: String(r.queue), group: String(r.group_key), idleMs }))).changes;
    return forgotten;
  }

  async queueSettingsList(): Promise<QueueSettingsRow[]> {
    return (await this.runner.run(queueSettingsList(this))).rows.map((r) => toQueueSettingsRow(r, this.d.codec.date));
  }

  async queueSettingsSave(req: { queue: string; settings: StoredQueueSettings; codeHash: string | null }): Promise<boolean> {
    return this.runner.within(saveQueueSettings(this, req.queue, req.settings, req.codeHash));
  }

  /** Steps in the caller's open transaction `tx`, or (undefined) in one of ours. */
  protected abstract withinCaller<T>(tx: unknown, steps: Steps<T>): Promise<T>;

  /** A job's edges, each with the other job's name and state where it is live or finished (rows of jobParents, jobDependents). */
  protected linkRows(id: string): Promise<Record<string, unknown>[][]> {
    return Promise.all([this.rowsOf(jobParents(this, id)), this.rowsOf(jobDependents(this, id))]);
  }

  async jobLinks(id: string): Promise<{ parents: JobLink[]; dependents: JobLink[] }> {
    const [parents, dependents] = await this.linkRows(id);
    return {
      parents: parents.map((r) => ({
        id: String(r.parent_id), name: r.name == null ? null : String(r.name), state: r.state == null ? null : (String(r.state) as JobLink['state']),
        result: this.d.codec.json(r.result) ?? null, error: (this.d.codec.json(r.error) as JobLink['error']) ?? null, waitingFor: 0,
        callback: Number(r.position) === CALLBACK_EDGE,
      })),
      dependents: dependents.map((r) => ({
        id: String(r.child_id), name: r.name == null ? null : String(r.name), state: r.state == null ? null : (String(r.state) as JobLink['state']),
        result: this.d.codec.json(r.result) ?? null, error: (this.d.codec.json(r.error) as JobLink['error']) ?? null, waitingFor: r.parents_left == null ? 0 : Number(r.parents_left),
        callback: Number(r.position) === CALLBACK_EDGE,
      })),
    };
  }

  /** A batch's jobs per state, live and finished (rows: state, n). */
  protected batchCountRows(batchId: string): Promise<Record<string, unknown>[]> {
    return this.rowsOf(batchCounts(this, batchId));
  }

  async batchStatus(batchId: string): Promise<BatchStatus | null> {
    const [counts, made] = await Promise.all([this.batchCountRows(batchId), this.rowsOf(batchRow(this, batchId))]);
    const n = { pending: 0, running: 0, completed: 0, failed: 0, cancelled: 0 };
    for (const r of counts) {
      const state = String(r.state) === 'skipped' ? 'cancelled' : (String(r.state) as keyof typeof n);
      n[state] += Number(r.n);
    }
    const total = n.pending + n.running + n.completed + n.failed + n.cancelled;
    const row = made[0];
    if (!row && total === 0) return null;
    const callbacks = row ? ((this.d.codec.json(row.callbacks) as StoredCallbacks | null) ?? {}) : {};
    return {
      batchId,
      total,
      ...n,
      finished: n.pending + n.running === 0,
      createdAt: row ? this.d.codec.date(row.created_at) : null,
      finishedAt: row ? this.d.codec.date(row.finished_at) : null,
      callbacks: Object.fromEntries((['onComplete', 'onSuccess', 'onFailure'] as const).flatMap((k) => (callbacks[k] ? [[k, callbacks[k]!.name]] : []))),
      callbackJobs: row ? ((this.d.codec.json(row.callback_jobs) as BatchCallbackJobs | null) ?? {}) : {},
    };
  }

  // ---------------------------------------------------------------- liveness

  /** Two statements, not one transaction: which attempts the worker still owns does not depend on its beat. */
  async workerHeartbeat(w: WorkerInfo): Promise<Fenced[]> {
    const liveness = this.livenessRunner;
    await liveness.run(workerHeartbeat(this, w));
    const { rows } = await liveness.run(jobsOwnedBy(this, w.id));
    return rows.map((r) => ({ id: String(r.id), token: String(r.token) }));
  }

  jobCompletedBy(req: AttemptsOf): Promise<Set<string>> {
    return this.attemptsFound(jobsCompletedBy, req);
  }

  jobFailedBy(req: AttemptsOf): Promise<Set<string>> {
    return this.attemptsFound(jobsFailedBy, req);
  }

  /** The ids of the attempts asked for that the statement finds (it answers each job's id and attempt number). */
  private async attemptsFound(find: (sql: Sql, k: { workerId: string; ids: string[] }) => Statement, req: AttemptsOf): Promise<Set<string>> {
    if (!req.attempts.length) return new Set();
    const { rows } = await this.runner.run(find(this, { workerId: req.workerId, ids: req.attempts.map((a) => a.id) }));
    const found = new Set(rows.map((r) => `${String(r.id)}:${Number(r.attempts)}`));
    return new Set(req.attempts.filter((a) => found.has(`${a.id}:${a.attempt}`)).map((a) => a.id));
  }

  async workerRemove(workerId: string): Promise<void> {
    await this.runner.run(workerRemove(this, workerId));
  }

  async workerHeartbeatAge(workerId: string): Promise<number | null> {
    const age = (await this.runner.run(workerHeartbeatAge(this, workerId))).rows[0]?.age;
    return age === null || age === undefined ? null : Number(age);
  }

  async workersHeld(ids: string[], stallMs: number): Promise<Set<string>> {
    const lock = this.d.skipLocked;
    if (!ids.length || !lock) return new Set();
    const found = (await this.runner.run(workersFound(this, ids))).rows.map((r) => String(r.id));
    if (!found.length) return new Set();
    const lockable = new Set((await this.runner.run(workersLockable(this, found, stallMs, lock))).rows.map((r) => String(r.id)));
    return new Set(found.filter((id) => !lockable.has(id)));
  }

  async jobStalledList({ stallMs, limit }: { stallMs: number; limit: number }): Promise<StalledJob[]> {
    const { rows } = await this.runner.run(jobsStalled(this, { stallMs, limit }));
    return rows.map((r) => toStalledJob(r, this.d.codec));
  }

  /** Where rows are locked one by one, only the stale rows no other session holds, reached by key: a scan would wait for a held one. */
  async workerRemoveStale(stallMs: number): Promise<void> {
    const lock = this.d.skipLocked;
    if (!lock) return void (await this.runner.run(workersRemoveStale(this, stallMs)));
    const stale = (await this.runner.run(workersStale(this, stallMs))).rows.map((r) => String(r.id));
    if (!stale.length) return;
    const free = (await this.runner.run(workersLockable(this, stale, stallMs, lock))).rows.map((r) => String(r.id));
    if (free.length) await this.runner.run(workersRemoveStale(this, stallMs, free));
  }

  async jobNextDueIn(req: { names: string[]; queues?: string[]; managed?: boolean }): Promise<number | null> {
    const due = (await this.runner.run(jobsNextDue(this, req))).rows[0]?.due;
    // Whole milliseconds, never negative: a job already due is due now.
    return due === null || due === undefined ? null : Math.max(0, Math.ceil(Number(due)));
  }

  async jobCheckpoint(item: CheckpointItem): Promise<boolean> {
    return (await this.runner.run(jobSaveCheckpoint(this, item, item.stateJson))).changes === 1;
  }

  // ---------------------------------------------------------------- schedules

  async scheduleList(): Promise<StoredSchedule[]> {
    return (await this.runner.run(schedulesList(this))).rows.map((r) => toStoredSchedule(r, this.d.codec));
  }

  /** One round trip when a schedule is due (the rows carry the clock they were compared with), a second for the clock when none is. */
  async scheduleListDue(): Promise<{ now: number; due: StoredSchedule[] }> {
    const { rows } = await this.runner.run(schedulesDue(this));
    const now = rows.length ? this.d.codec.date(rows[0].db_now)!.getTime() : await this.clockNow();
    return { now, due: rows.map((r) => toStoredSchedule(r, this.d.codec)) };
  }

  async scheduleSetEnabled({ key, enabled, nextRunAt }: { key: string; enabled: boolean; nextRunAt: number | null }): Promise<boolean> {
    return (await this.runner.run(scheduleSetEnabled(this, { key, enabled, nextRunAt }))).changes === 1;
  }

  /** The schedule and its ticks, in one transaction. */
  async scheduleRemove(key: string): Promise<boolean> {
    const [, removed] = await this.runner.transaction([scheduleTicksRemove(this, key), scheduleRemove(this, key)]);
    return removed.changes === 1;
  }

  async scheduleRecordRun(req: { key: string; jobId: string }): Promise<void> {
    await this.runner.run(scheduleRecordRun(this, req));
  }

  async scheduleAdvance({ key, from, nextRunAt }: { key: string; from: number; nextRunAt: number | null }): Promise<void> {
    await this.runner.run(scheduleAdvance(this, { key, from, nextRunAt }));
  }

  // ---------------------------------------------------------------- leases

  async leaseRenew(lease: LeaseHeld & { ttlMs: number }): Promise<boolean> {
    return (await this.runner.run(leaseRenew(this, lease))).changes === 1;
  }

  async leaseRelease(lease: LeaseHeld): Promise<boolean> {
    return (await this.runner.run(leaseRelease(this, lease))).changes === 1;
  }

  // ---------------------------------------------------------------- reads

  protected async rowsOf(s: Statement): Promise<Record<string, unknown>[]> {
    return (await this.runner.run(s)).rows;
  }

  async jobGet(id: string): Promise<JobRecord | null> {
    const [row] = await this.rowsOf(jobGet(this, { id }));
    return row ? toJobRecord(row, this.d.codec) : null;
  }

  async jobList(filter: ListFilter): Promise<ListPage> {
    const limit = listLimit(filter);
    const { live, history } = statesByTable(filter);
    if (!live && !history) return { items: [], nextCursor: null }; // no state asked for (or none a reserved job has): no job, and no table to read
    const byMonth = (filter.finishedAfter !== undefined || filter.finishedBefore !== undefined) && (await this.historyInMonthPartitions());
    const items = (await this.rowsOf(jobsList(this, filter, { historyInMonthPartitions: byMonth }))).map((r) => toJobRecord(r, this.d.codec));
    return { items, nextCursor: items.length === limit ? items[items.length - 1].id : null };
  }

  /** Whether history is partitioned by month where list statements must know it (MySQL/MariaDB after history-partitions). */
  protected async historyInMonthPartitions(): Promise<boolean> {
    return false;
  }

  async attemptList(id: string): Promise<AttemptRecord[]> {
    const rows = await this.rowsOf(jobAttempts(this, { id }));
    return withCurrentAttempt(rows.map((r) => toAttemptRecord(r, this.d.codec)), await this.jobGet(id));
  }

  async logList({ id, afterSeq, limit, last }: { id: string; afterSeq?: number; limit: number; last?: boolean }): Promise<LogRecord[]> {
    const rows = await this.rowsOf(jobLogs(this, { id, afterSeq: afterSeq ?? 0, limit, last: last === true }));
    const lines = rows.map((r) => toLogRecord(r, this.d.codec));
    return last ? lines.reverse() : lines;
  }

  async workerList(): Promise<WorkerRecord[]> {
    return (await this.rowsOf(workersList(this))).map((r) => toWorkerRecord(r, this.d.codec));
  }

  async clockNow(): Promise<number> {
    const [row] = await this.rowsOf(clockNow(this));
    return this.d.codec.date(row.now)!.getTime();
  }

  /** Counts come back as numbers, or as text where they are BIGINT or DECIMAL (pg, mysql2). */
  async jobCountByState(cap: number): Promise<StatusCounts> {
    const [live, finished] = await Promise.all([this.rowsOf(jobsLiveCounts(this)), this.finishedCounts(cap)]);
    return {
      live: live.map((r) => ({ state: r.state as 'pending' | 'running', queue: String(r.queue), count: Number(r.count) })),
      finished: finished
        .map((r) => ({ state: String(r.state), count: Number(r.count) }))
        .filter((r) => r.count > 0)
        .map((r) => ({ ...r, capped: r.count >= cap })),
    };
  }

  /** History's jobs per terminal state (rows: state, count), each counted up to `cap`. */
  protected finishedCounts(cap: number): Promise<Record<string, unknown>[]> {
    return this.rowsOf(jobsFinishedCounts(this, { cap }));
  }

  async queueList(): Promise<QueueStats[]> {
    const [live, paused] = await Promise.all([this.queueLive(), this.rowsOf(queuesPaused(this))]);
    return mergeQueueStats(live, paused.map((r) => ({ queue: String(r.queue), pausedAt: this.d.codec.date(r.paused_at)! })));
  }

  async queueLive(): Promise<QueueLive[]> {
    return (await this.rowsOf(queuesStats(this))).map((r) => ({
      queue: String(r.queue),
      pending: Number(r.pending),
      due: Number(r.due),
      running: Number(r.running),
      oldestDueAgeMs: r.oldest === null || r.oldest === undefined ? null : Math.max(0, Math.round(Number(r.oldest))),
    }));
  }

  /** Two reads, not one transaction: figures for a page, each exact when it was read. */
  async queueGroups(req: GroupCountsQuery): Promise<QueueGroupCounts> {
    const [rows, window] = await Promise.all([
      // No group asked for: none to count (an empty IN list is not spelled alike everywhere).
      req.groups?.length === 0 ? [] : this.rowsOf(queueGroupCounts(this, req)),
      req.windowMs === null ? null : this.rowsOf(queueStartsInWindow(this, { queue: req.queue, windowMs: req.windowMs })),
    ]);
    return {
      groups: rows.map((r) => ({
        group: r.group_key == null ? null : String(r.group_key),
        pending: Number(r.pending), due: Number(r.due), running: Number(r.running),
        starts: req.windowMs === null ? null : Number(r.starts),
      })),
      starts: window ? Number(window[0]?.n ?? 0) : null,
    };
  }

  /**
   * Completed and failed per bucket over the last windowMs: from the leader's per-minute counters
   * where they cover minutes of the window without a gap and the buckets hold whole minutes, from
   * history before and after what they hold (./throughput.ts).
   */
  async jobThroughput({ windowMs, bucketMs }: { windowMs: number; bucketMs: number }): Promise<ThroughputBuckets> {
    const [c] = await this.rowsOf(throughputCoverage(this, { windowMs }));
    const now = Number(c.now);
    const [first, last, n] = [Number(c.first), Number(c.last), Number(c.n)];
    const usable = n > 0 && bucketMs % MINUTE_MS === 0 && last - first === (n - 1) * MINUTE_MS;
    const counted = usable ? { from: first, to: Number(c.counted_to) } : null;
    const counts = await this.throughputCounts({ from: now - windowMs, to: null, bucketMs, counted });
    return { now, buckets: [...counts.values()].sort((a, b) => a.start - b.start) };
  }

  /** Completed and failed per bucket start, as `k` reads them. */
  private async throughputCounts(k: ThroughputRead): Promise<Map<number, ThroughputBucket>> {
    const [main, elsewhere] = await Promise.all([this.rowsOf(throughputRead(this, k)), this.throughputElsewhere(k)]);
    return sumBuckets([main, ...elsewhere]);
  }

  /** The buckets of finished jobs kept outside the history table (SQLite's month files): none here. */
  protected async throughputElsewhere(_k: ThroughputRead): Promise<Record<string, unknown>[][]> {
    return [];
  }

  /**
   * The leader's round (./throughput.ts), counting until SETTLE_MS ago: while the minute counted
   * last is still open, what finished in it since is added; once it closed, the minutes from it (or
   * RECOUNT_MS back, for finishes that committed late) to the open one are counted whole. A first
   * round, or the first after a leader-less hour, counts the last hour afresh. Counters older than
   * keepMs go.
   */
  async throughputRollup({ keepMs }: { keepMs: number }): Promise<void> {
    const [r] = await this.rowsOf(throughputLast(this));
    const now = Number(r.now);
    const upTo = now - SETTLE_MS;
    const open = Math.floor(upTo / MINUTE_MS) * MINUTE_MS;
    const last = r.start_ms == null ? null : minuteCount(r);
    if (last !== null && last.start >= open) return this.throughputAdd(last, upTo);
    const afresh = last === null || last.start < open - ROLLUP_AFRESH_MS;
    const from = afresh ? open - ROLLUP_AFRESH_MS : Math.min(last.start, open - RECOUNT_MS);
    const [counts, saved] = await Promise.all([
      this.throughputCounts({ from, to: upTo, bucketMs: MINUTE_MS, counted: null }),
      afresh ? [] : this.rowsOf(throughputCounters(this, { from, to: open + MINUTE_MS })),
    ]);
    const was = new Map(saved.map((row) => [Number(row.start_ms), minuteCount(row)]));
    const writes = afresh ? [throughputForget(this, { before: null })] : [];
    for (let start = from; start <= open; start += MINUTE_MS) {
      const count = { ...(counts.get(start) ?? { start, completed: 0, failed: 0 }), countedTo: start === open ? upTo : start + MINUTE_MS };
      const w = was.get(start);
      if (!w || w.completed !== count.completed || w.failed !== count.failed || w.countedTo !== count.countedTo) writes.push(throughputSave(this, count));
    }
    writes.push(throughputForget(this, { before: now - keepMs }));
    await this.runner.transaction(writes);
  }

  /** The open minute's counters: what finished since they were counted added (nothing written when nothing did). */
  private async throughputAdd(open: MinuteCount, upTo: number): Promise<void> {
    if (open.countedTo >= upTo) return;
    const added = (await this.throughputCounts({ from: open.countedTo, to: upTo, bucketMs: MINUTE_MS, counted: null })).get(open.start);
    if (!added) return;
    await this.runner.run(throughputSave(this, { start: open.start, completed: open.completed + added.completed, failed: open.failed + added.failed, countedTo: upTo }));
  }

  async historyMonths({ cap }: { cap: number }): Promise<HistoryMonth[]> {
    return this.walkHistoryMonths({ cap }, () => false);
  }

  /**
   * One history table: walk its months newest first along the finish-time index (each step finds
   * the newest finish before the month just counted, so empty months cost nothing), at most
   * HISTORY_MONTHS_SHOWN of them, each counted up to `cap` rows, but for those `estimated` names
   * (flagged estimated, no count: the caller has a better figure than a capped count).
   */
  protected async walkHistoryMonths({ cap }: { cap: number }, estimated: (month: UtcMonth) => boolean): Promise<HistoryMonth[]> {
    const months: HistoryMonth[] = [];
    for (let before: number | null = null; months.length < HISTORY_MONTHS_SHOWN; ) {
      const at = this.d.codec.date((await this.rowsOf(historyNewestBefore(this, { before })))[0]?.at);
      if (!at) break;
      const month = utcMonth(at);
      months.push(estimated(month) ? { month: month.key, storedIn: null, counts: {}, estimated: true, bytes: null, storedUntil: null } : await this.monthCounted(month, cap));
      before = month.from.getTime();
    }
    return months;
  }

  private async monthCounted(month: UtcMonth, cap: number): Promise<HistoryMonth> {
    const rows = await this.rowsOf(historyMonthCounts(this, { from: month.from.getTime(), to: month.to.getTime(), cap }));
    const counts = Object.fromEntries(rows.map((r) => [String(r.state), Number(r.n)]));
    const total = rows.reduce((sum, r) => sum + Number(r.n), 0);
    return { month: month.key, storedIn: null, counts, estimated: total >= cap, bytes: null, storedUntil: null };
  }

  async historyFinishedSince(req: { since: number; limit: number }): Promise<FinishedJob[]> {
    return (await this.rowsOf(historyFinishedSince(this, req))).map((r) => ({
      id: String(r.id), name: String(r.name), queue: String(r.queue), state: r.state as FinishedJob['state'], attempts: Number(r.attempts),
      finishedAt: this.d.codec.date(r.finished_at)!, error: (this.d.codec.json(r.error) as JobError | null) ?? null, result: this.d.codec.json(r.result) ?? null,
    }));
  }

  // ---------------------------------------------------------------- operators' actions

  /** Wake the workers of `queue` in every process (PostgreSQL: NOTIFY); nothing where workers poll. */
  protected async announceJobs(_queue: string): Promise<void> {}

  /** Tell the worker running job `id`, in whichever process, that it was cancelled (PostgreSQL: NOTIFY); elsewhere it learns so from its heartbeat. */
  protected async announceCancel(_id: string): Promise<void> {}

  /** Announce the queues of the rows a statement answered (where it cannot answer rows, there is no NOTIFY either). */
  private async announceQueues(rows: Outcome['rows']): Promise<void> {
    for (const row of rows) await this.jobsDue(String(row.queue));
  }

  /** A live job to history as cancelled, with its workflow (dependents cancelled, onFailure, batch), in one transaction. */
  async jobCancel(id: string): Promise<CancelResult | null> {
    const cancelled = await this.withWake(await this.runner.within(cancelJob(this, id)));
    if (!cancelled) return null;
    if (cancelled.previous === 'running') await this.announceCancel(id);
    return cancelled;
  }

  async jobMakeDue(id: string): Promise<boolean> {
    const due = await this.runner.run(jobMakeDue(this, id));
    await this.announceQueues(due.rows);
    return due.changes === 1;
  }

  async jobRetry(id: string): Promise<JobState | null> {
    const [due, finished, , moved] = await this.retrying(id);
    if (due.changes === 1) {
      await this.announceQueues(due.rows);
      return 'pending';
    }
    if (!finished.rows.length) return null;
    if (moved.changes !== 1) throw this.refIdTaken(id);
    await this.announceQueues(finished.rows);
    return 'pending';
  }

  /** The retry statements, then (a finished job that moved) its workflow reopened, in one transaction. */
  private async retrying(id: string): Promise<Outcome[]> {
    const sql: Sql = this;
    function* steps(): Steps<Outcome[]> {
      yield* lockFinishedSerialKey(sql, id);
      const outcomes: Outcome[] = [];
      for (const s of jobRetry(sql, id)) outcomes.push((yield s) as Outcome);
      const previous = outcomes[1].rows[0];
      if (previous && outcomes[3].changes === 1) yield* reopenWorkflow(sql, id, previous);
      return outcomes;
    }
    try {
      return await this.runner.within(steps());
    } catch (err) {
      // A job with its refId was enqueued after the guard looked: the unique index refused the move.
      if (isDuplicateKey(err)) throw this.refIdTaken(id);
      throw err;
    }
  }

  /** Redrive one dead-letter copy (./admin.ts redriveCopy); a retry the original's refId or its parents refuse is a skip, not an error. */
  async jobRedrive(copyId: string, error: JobError): Promise<RedriveOutcome> {
    try {
      return await this.withWake(await this.runner.within(redriveCopy(this, copyId, JSON.stringify(error))));
    } catch (err) {
      if (isDuplicateKey(err) || (err instanceof Error && err.message.startsWith('cannot retry job'))) {
        return { outcome: 'retryRefused', originalId: null, copyCancelled: false };
      }
      throw err;
    }
  }

  private refIdTaken(id: string): Error {
    return new Error(`cannot retry job ${id}: a live job with the same refId exists`);
  }

  async queuePause(queue: string): Promise<void> {
    try {
      await this.runner.run(queuePause(this, queue));
    } catch (err) {
      if (!isDuplicateKey(err)) throw err; // paused by another caller meanwhile
    }
  }

  async queueResume(queue: string): Promise<boolean> {
    const resumed = (await this.runner.run(queueResume(this, queue))).changes === 1;
    if (resumed) await this.jobsDue(queue);
    return resumed;
  }

  /**
   * Only well-formed ids are sent: the id columns are ASCII on MySQL, a uuid on PostgreSQL, and
   * SQL Server's CAST to CHAR(36) would cut a longer string down to some other job's id.
   */
  async jobDeleteMany(ids: string[]): Promise<string[]> {
    const wanted = [...new Set(ids.filter(isValidId))];
    if (!wanted.length) return [];
    const sql: Sql = this;
    // A deleted pending job is cancelled as far as its workflow goes: its waiting dependents are
    // cancelled, its batch counts it, its onFailure is enqueued (in the same transaction).
    function* steps(): Steps<FlowOutcome<Set<string>>> {
      const before = yield* lockSerialLines(sql, wanted);
      const outcomes: Outcome[] = [];
      for (const s of jobsDelete(sql, wanted)) outcomes.push((yield s) as Outcome);
      const [live, finished] = outcomes;
      const withFlow = live.rows.filter((r) => Number(r.flow) !== 0 || r.serial_key != null);
      const wake = withFlow.length ? yield* afterRemoved(sql, withFlow, before) : new Set<string>();
      return { value: new Set([...live.rows, ...finished.rows].map((r) => String(r.id))), wake };
    }
    const deleted = await this.withWake(await this.runner.within(steps()));
    return wanted.filter((id) => deleted.has(id));
  }

  /** Pick the old jobs, then delete them with their trail in one transaction (MySQL picks inside it: see its store). */
  async historyPrune({ olderThanMs, limit, since }: { olderThanMs: number; limit: number; since?: number }): Promise<number> {
    const picked = await this.runner.run(historyPrunePick(this, { olderThanMs, limit, since }));
    const ids = picked.rows.map((r) => String(r.id));
    if (!ids.length) return 0;
    const [, pruned] = await this.runner.transaction([historyPruneLock(this, ids), ...historyPrune(this, { olderThanMs, ids })]);
    return pruned.changes;
  }

  /** Once a retention round: batches, keys and ticks past the retention, each statement alone. */
  async retentionLeftoversPrune(olderThanMs: number): Promise<void> {
    for (const statement of retentionLeftovers(this, { olderThanMs })) await this.runner.run(statement);
  }
}
