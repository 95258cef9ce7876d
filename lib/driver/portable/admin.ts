/**
 * The operators' actions (cancel, retry, run now, pause and resume a queue, delete) and the
 * retention prune, written once for every database. A verb that moves rows is several statements
 * run in one transaction (PortableStore runs them): each is guarded so that it does the right thing
 * whatever the ones before it found, and the store decides from their outcomes afterwards.
 *
 * Rows about to move are read first with a lock (`d.lockHint`, `d.forUpdate`), so a claim cannot
 * take a job being cancelled or deleted meanwhile (claims skip locked rows).
 */
import { read, write, type Outcome, type Statement, type Steps } from './statement.ts';
import { finishJobs, lockFinishedSerialKey, lockSerialLines, reopenFlow, type FlowOutcome } from './flow.ts';
import { lockGroups, rankInGroup, saveGroupRanks } from './queues.ts';
import { deadLetterOf } from './reads.ts';
import { jobsWithUniqueKey, sideIndexForget } from './side-index.ts';
import type { CancelResult, RedriveOutcome } from '../store.ts';
import type { RedriveSkip } from '../../model.ts';
import type { Sql } from './sql.ts';
import type { SqlDialect } from './dialect.ts';
import { sharedColumns } from '../columns.ts';

/** The columns both job tables share (../columns.ts), as this dialect writes them. */
function shared(d: SqlDialect): string {
  return sharedColumns(d.col);
}

/**
 * A finished job as it goes back to pending: due now, its last run's traces cleared, and at least
 * one attempt left (max_attempts raised to attempts + 1 when it ran out).
 */
function retried(d: SqlDialect): string {
  const again = {
    max_attempts: 'CASE WHEN max_attempts > attempts THEN max_attempts ELSE attempts + 1 END',
    run_at: d.now,
    started_at: 'NULL',
    progress: 'NULL',
    progress_message: 'NULL',
    worker_id: 'NULL',
  } as const;
  return sharedColumns(d.col, again);
}

// ---------------------------------------------------------------- cancel

/**
 * Cancel a live job, in one transaction: read under a lock (no row: nothing to cancel), then to
 * history as cancelled with its workflow (../portable/flow.ts: its waiting dependents cancelled,
 * its onFailure enqueued, its batch counting it). Answers its state before and its worker.
 */
export function* cancelJob(sql: Sql, id: string): Steps<FlowOutcome<CancelResult | null>> {
  const { d, t } = sql;
  yield* lockSerialLines(sql, [id]);
  const job = ((yield read(d, (b) => `SELECT state, worker_id FROM ${t.jobs}${d.lockHint} WHERE id = ${b.id(id)}${d.forUpdate}`)) as Outcome).rows[0];
  if (!job) return { value: null, wake: new Set() };
  const { wake } = yield* finishJobs(sql, [{ id, state: 'cancelled' }]);
  return { value: { previous: job.state as CancelResult['previous'], workerId: (job.worker_id as string | null) ?? null }, wake };
}

// ---------------------------------------------------------------- run now, retry

/** A pending job becomes due now (not one waiting for its parents); answers its queue where the database can (to wake its workers). */
export function jobMakeDue({ d, t }: Sql, id: string): Statement {
  return write(d, (b) =>
    `UPDATE ${t.jobs} SET run_at = ${d.now}${d.output('inserted', ['queue'])}
     WHERE id = ${b.id(id)} AND state = 'pending' AND parents_left = 0${d.returning(['queue'])}`, true);
}

/**
 * Retry, in one transaction: a pending job becomes due now (the first, as jobMakeDue); a finished
 * one, read under a lock (the second answers its queue, and what reopenWorkflow needs: no row, no
 * such job), goes back to pending (moveBack) and, once moved, has its workflow reopened.
 */
export function jobRetry(sql: Sql, id: string): Statement[] {
  return [jobMakeDue(sql, id), finishedLocked(sql, id), ...moveBack(sql, id)];
}

/** A finished job read under a lock before it moves back: its queue (to wake), state, flow bits, batch and serial key. */
function finishedLocked({ d, t }: Sql, id: string): Statement {
  return read(d, (b) => `SELECT queue, state, flow, batch_id, serial_key, group_key, priority FROM ${t.history}${d.lockHint} WHERE id = ${b.id(id)}${d.forUpdate}`);
}

/**
 * A finished job back to pending unless a live job holds its refId (refIds are unique among live
 * jobs), then out of history only once it is live again: the second changes one row when it moved.
 */
function moveBack(sql: Sql, id: string): Statement[] {
  const { d, t } = sql;
  return [
    write(d, (b) =>
      `INSERT INTO ${t.jobs} (${shared(d)}, state)
       SELECT ${retried(d)}, 'pending' FROM ${t.history} h
       WHERE h.id = ${b.id(id)} AND NOT EXISTS (SELECT 1 FROM ${t.jobs} j WHERE j.ref_id = h.ref_id)`),
    write(d, (b) => `DELETE FROM ${t.history} WHERE id = ${b.id(id)} AND EXISTS (SELECT 1 FROM ${t.jobs} WHERE id = ${b.id(id)})`),
  ];
}

/**
 * A job moved back from history (its row as finishedLocked read it): its dependencies, batch and
 * serial key taken up again (./flow.ts reopenFlow), and a grouped job ranked anew in its group (the
 * rank is not kept in history; rank 0 would put it ahead of every group).
 */
export function* reopenWorkflow(sql: Sql, id: string, previous: Record<string, unknown>): Steps<void> {
  const text = (v: unknown) => (v == null ? null : String(v));
  if (previous.group_key != null) yield* rerank(sql, id, { queue: String(previous.queue), groupKey: String(previous.group_key), priority: Number(previous.priority) });
  if (Number(previous.flow) === 0 && previous.serial_key == null) return;
  yield* reopenFlow(sql, id, { state: String(previous.state), flow: Number(previous.flow), batchId: text(previous.batch_id), serialKey: text(previous.serial_key) });
}

function* rerank(sql: Sql, id: string, job: { queue: string; groupKey: string; priority: number }): Steps<void> {
  const { d, t } = sql;
  const ranks = yield* lockGroups(sql, [job]);
  const rank = yield* rankInGroup(sql, ranks, job);
  yield* saveGroupRanks(sql, ranks);
  yield write(d, (b) => `UPDATE ${t.jobs} SET fair_rank = ${b.bigint(rank)} WHERE id = ${b.id(id)}`);
}

// ---------------------------------------------------------------- redrive

/**
 * Redrive one dead-letter copy (jobs.redriveDeadLetters), in one transaction: the copy is read
 * under a lock, then its original; a failed original goes back to pending as a retry would move
 * it, and the copy, if still pending, is cancelled with `errorJson` (a running or finished copy is
 * left as it is). Two redrives of one original take turns on its history row: the second finds it
 * live. Answers what was done, and the queues to wake.
 */
export function* redriveCopy(sql: Sql, copyId: string, errorJson: string): Steps<FlowOutcome<RedriveOutcome>> {
  const copy = yield* readCopy(sql, copyId);
  const originalId = copy?.originalId ?? null;
  const skip = (outcome: RedriveSkip): FlowOutcome<RedriveOutcome> => ({ value: { outcome, originalId, copyCancelled: false }, wake: new Set() });
  if (!copy) return skip('notFound');
  if (originalId === null) return skip('notDeadLetter');
  const moved = yield* retryFailed(sql, originalId);
  if (typeof moved !== 'string') return skip(moved.skip);
  const wake = new Set([moved]);
  if (copy.state !== 'pending') return { value: { outcome: 'redriven', originalId, copyCancelled: false }, wake };
  const cancelled = yield* finishJobs(sql, [{ id: copyId, state: 'cancelled', errorJson }]);
  for (const q of cancelled.wake) wake.add(q);
  return { value: { outcome: 'redriven', originalId, copyCancelled: cancelled.value.has(copyId) }, wake };
}

/** A job's state and the original it is a dead-letter copy of (null: not a copy): live under a lock, else finished; null when unknown. */
function* readCopy(sql: Sql, id: string): Steps<{ state: string; originalId: string | null } | null> {
  const { d, t } = sql;
  const live = ((yield read(d, (b) => `SELECT state, ${deadLetterOf(sql, t.jobs)} AS original FROM ${t.jobs}${d.lockHint} WHERE id = ${b.id(id)}${d.forUpdate}`)) as Outcome).rows[0];
  const row = live ?? ((yield read(d, (b) => `SELECT state, ${deadLetterOf(sql, t.history)} AS original FROM ${t.history} WHERE id = ${b.id(id)}`)) as Outcome).rows[0];
  return row ? { state: String(row.state), originalId: row.original == null ? null : String(row.original) } : null;
}

/**
 * Move a failed job back to pending, as a retry does (its workflow reopened). Answers its queue,
 * or why not: live (already redriven or retried), not failed, gone (deleted or pruned), or a live
 * job holds its refId.
 */
function* retryFailed(sql: Sql, id: string): Steps<string | { skip: RedriveSkip }> {
  const { d, t } = sql;
  yield* lockFinishedSerialKey(sql, id);
  const row = ((yield finishedLocked(sql, id)) as Outcome).rows[0];
  if (!row) {
    const live = ((yield read(d, (b) => `SELECT id FROM ${t.jobs} WHERE id = ${b.id(id)}`)) as Outcome).rows.length > 0;
    return { skip: live ? 'originalLive' : 'originalGone' };
  }
  if (row.state !== 'failed') return { skip: 'originalNotFailed' };
  let deleted: Outcome | undefined;
  for (const s of moveBack(sql, id)) deleted = (yield s) as Outcome;
  if (deleted?.changes !== 1) return { skip: 'retryRefused' };
  yield* reopenWorkflow(sql, id, row);
  return String(row.queue);
}

// ---------------------------------------------------------------- queues

/**
 * Idempotent: inserts only when the queue is not paused (SQL Server's lock hint serialises two
 * pausers; elsewhere the primary key refuses the second, which the store takes as paused).
 */
export function queuePause({ d, t }: Sql, queue: string): Statement {
  return write(d, (b) =>
    `INSERT INTO ${t.paused} (queue, paused_at) SELECT q.queue, ${d.now} FROM (SELECT ${b.text(queue)} AS queue) q
     WHERE NOT EXISTS (SELECT 1 FROM ${t.paused} p${d.lockHint} WHERE p.queue = q.queue)`);
}

/** Changes one row when the queue was paused. */
export function queueResume({ d, t }: Sql, queue: string): Statement {
  return write(d, (b) =>
    `DELETE FROM ${t.paused}${d.output('deleted', ['queue'])} WHERE queue = ${b.text(queue)}${d.returning(['queue'])}`, true);
}

// ---------------------------------------------------------------- delete

/**
 * What deleting a job deletes with it: the logs and attempts of those among `ids` that are in
 * neither table any more (run after their rows were deleted, in the same transaction). A job
 * still there (running, or retried meanwhile) keeps its own.
 */
function jobsDeleteTrail(sql: Sql, ids: string[]): Statement[] {
  const { d, t } = sql;
  return [
    ...([[t.logs, 'job_id'], [t.attempts, 'job_id'], [t.deps, 'child_id']] as const).map(([table, key]) =>
      write(d, (b) =>
        `DELETE FROM ${table} WHERE ${key} ${b.ids(ids)}
         AND NOT EXISTS (SELECT 1 FROM ${t.jobs} WHERE id = ${table}.${key})
         AND NOT EXISTS (SELECT 1 FROM ${t.history} WHERE id = ${table}.${key})`)),
    ...sideIndexForget(sql, ids),
  ];
}

/**
 * Delete pending (never running) and finished jobs with their trail, in one transaction. The
 * first two read them under a lock (a claim cannot take a pending one meanwhile) and answer the
 * ids deleted: the pending ones, then the finished ones.
 */
export function jobsDelete(sql: Sql, ids: string[]): Statement[] {
  const { d, t } = sql;
  return [
    read(d, (b) => `SELECT id, name, queue, flow, callbacks, batch_id, serial_key FROM ${t.jobs}${d.byKey}${d.lockHint} WHERE id ${b.ids(ids)} AND state = 'pending'${d.forUpdate}`),
    read(d, (b) => `SELECT id FROM ${t.history}${d.lockHint} WHERE id ${b.ids(ids)}${d.forUpdate}`),
    write(d, (b) => `${d.deleteByKey(t.jobs)} WHERE id ${b.ids(ids)} AND state = 'pending'`),
    write(d, (b) => `DELETE FROM ${t.history} WHERE id ${b.ids(ids)}`),
    ...jobsDeleteTrail(sql, ids),
  ];
}

// ---------------------------------------------------------------- retention

export interface PruneAge {
  /** Finished more than this long ago (database clock). */
  olderThanMs: number;
}

/**
 * Up to `limit` finished jobs older than the retention: answers their ids. With `since` (epoch ms),
 * only those finished since then: PostgreSQL prunes by row only the month that straddles the
 * cutoff, older months go whole (or stay whole while a live job reads them).
 */
export function historyPrunePick(sql: Sql, k: PruneAge & { limit: number; since?: number }): Statement {
  const { d, t } = sql;
  return read(d, (b) => {
    const cutoff = d.plusMs(d.now, b.bigint(-k.olderThanMs));
    const since = k.since === undefined ? '' : ` AND finished_at >= ${b.time(k.since)}`;
    // Bound after the cutoff: TOP (SQL Server, named parameters) comes first in the text, LIMIT (positional elsewhere) last.
    const limit = b.int(k.limit);
    // Named where a planner would otherwise walk another index whole (MySQL, with the correlated check below).
    return `SELECT ${d.top(limit)}id FROM ${t.history}${d.useIndex(t.historyFinished)} WHERE finished_at < ${cutoff}${since} AND ${noLiveReader(sql, t.history)}${d.limit(limit)}`;
  });
}

/**
 * No live job may still read this finished job: none depends on it (any edge: dependency,
 * callback, dead letter), whose ctx.parents / ctx.deadLetterOf reads it when it runs, and its
 * batch, if any, has finished (batchStatus and the batch's callbacks count its finished jobs).
 * Retention keeps such a job past its age until it is no longer read.
 */
function noLiveReader({ t }: Sql, table: string): string {
  return `NOT EXISTS (SELECT 1 FROM ${t.deps} dp JOIN ${t.jobs} j ON j.id = dp.child_id WHERE dp.parent_id = ${table}.id)
    AND NOT EXISTS (SELECT 1 FROM ${t.batches} bt WHERE bt.id = ${table}.batch_id AND bt.finished_at IS NULL)`;
}

/**
 * Lock the picked jobs before they are deleted (the pick ran outside the transaction): an enqueue
 * that depends on one locks it too, so the delete, a later statement, sees that enqueue's edge.
 */
export function historyPruneLock({ d, t }: Sql, ids: string[]): Statement {
  return read(d, (b) => `SELECT id FROM ${t.history}${d.lockHint} WHERE id ${b.ids(ids)}${d.forUpdate}`);
}

/**
 * Prune the picked jobs, in one transaction: those still older than the retention (one retried
 * and finished again meanwhile is not; the first counts them), with their trail.
 */
export function historyPrune(sql: Sql, k: PruneAge & { ids: string[] }): Statement[] {
  const { d, t } = sql;
  return [
    write(d, (b) => `DELETE FROM ${t.history} WHERE id ${b.ids(k.ids)} AND finished_at < ${d.plusMs(d.now, b.bigint(-k.olderThanMs))} AND ${noLiveReader(sql, t.history)}`),
    ...jobsDeleteTrail(sql, k.ids),
  ];
}

/**
 * What retention removes besides finished jobs: batches, unique/debounce/serial keys and schedule
 * ticks past it. Once a round, after its history batches (each of these tables is read whole or
 * by a range: run with every batch of 1,000 pruned jobs, a million-row keys table was scanned
 * again each time), each statement on its own, none reading history.
 */
export function retentionLeftovers(sql: Sql, k: PruneAge): Statement[] {
  const { d, t } = sql;
  return [
    // Batches that finished before the retention go with their jobs (batchStatus then finds none).
    write(d, (b) => `DELETE FROM ${t.batches} WHERE finished_at < ${d.plusMs(d.now, b.bigint(-k.olderThanMs))}`),
    // Unique/debounce keys not used since then and held by no live job, and serial keys whose last
    // job is gone (a later enqueue makes the row again). A serial key's row whose last job still
    // waits (delayed past the retention) stays: without it the key's next job would not wait.
    write(d, (b) =>
      `DELETE FROM ${t.keys} WHERE touched_at < ${d.plusMs(d.now, b.bigint(-k.olderThanMs))}
       AND NOT EXISTS (SELECT 1 FROM ${jobsWithUniqueKey(sql, t.jobs, `${t.keys}.${d.col('key')}`)})
       AND NOT EXISTS (SELECT 1 FROM ${t.jobs} tj WHERE tj.id = ${t.keys}.tail_id)`),
    // Schedules' ticks from before then (by their index, migration 022): each schedule's next run
    // is past them, so none of those slots is looked at again.
    write(d, (b) => `DELETE FROM ${t.ticks} WHERE fire_at < ${d.plusMs(d.now, b.bigint(-k.olderThanMs))}`),
  ];
}
