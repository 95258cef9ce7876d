/**
 * Liveness: a worker's heartbeat and the sweeps that find silent workers and their stalled jobs,
 * the next-due probe a worker sleeps on, and a running attempt's checkpoint. The same statements
 * on every database, over the dialect's fragments (./dialect.ts).
 */
import { read, write, type Statement } from './statement.ts';
import type { Sql } from './sql.ts';
import type { Fenced, WorkerInfo } from '../store.ts';
import { WORKER_LOST } from '../../model.ts';

/**
 * Refresh a worker's heartbeat, registering it again when a sweeper removed it. Dated when written
 * (wallNow): one that waited behind another session's lock must not land already old.
 */
export function workerHeartbeat({ d, t }: Sql, w: WorkerInfo): Statement {
  return write(d, (b) =>
    d.upsert(t.workers, 'id', [
      ['id', b.text(w.id)],
      ['host', b.text(w.host)],
      ['pid', b.int(w.pid)],
      ['queues', b.longText(w.queues ? JSON.stringify(w.queues) : null)],
      ['names', b.longText(JSON.stringify(w.names))],
      ['concurrency', b.int(w.concurrency)],
      ['started_at', d.now],
      ['heartbeat_at', d.wallNow],
    ], `heartbeat_at = ${d.wallNow}`));
}

/** The running attempts this worker still owns (one it lost, to a rescue or a cancel, is absent). */
export function jobsOwnedBy({ d, t }: Sql, workerId: string): Statement {
  return read(d, (b) => `SELECT id, token FROM ${t.jobs} WHERE worker_id = ${b.text(workerId)} AND state = 'running'`);
}

/**
 * Of these attempts of one worker, the jobs history holds as completed (their attempt numbers
 * answered beside them): no other attempt of that worker can have completed a job at the same
 * number, as a later claim counts one more and the refunds that lower it end attempts that
 * complete nothing.
 */
export function jobsCompletedBy({ d, t }: Sql, k: { workerId: string; ids: string[] }): Statement {
  return read(d, (b) => `SELECT id, attempts FROM ${t.history} WHERE id ${b.ids(k.ids)} AND worker_id = ${b.text(k.workerId)} AND state = 'completed'`);
}

/**
 * Of these jobs, the attempts one worker recorded as failed (retried or failed for good), their
 * attempt numbers answered beside them. Not those the rescuer recorded for that worker: the rescue
 * and the worker's own failure are fenced by the same claim, so only one of them writes the
 * attempt, and the rescue's error is named WorkerLost and has no stack (an Error a handler throws
 * has one, whatever its name).
 */
export function jobsFailedBy({ d, t }: Sql, k: { workerId: string; ids: string[] }): Statement {
  return read(d, (b) => `SELECT job_id AS id, attempt AS attempts FROM ${t.attempts}
    WHERE job_id ${b.ids(k.ids)} AND worker_id = ${b.text(k.workerId)}
      AND (COALESCE(${b.jsonText('error', 'name')}, '') <> ${b.text(WORKER_LOST)} OR ${b.jsonText('error', 'stack')} IS NOT NULL)`);
}

export function workerRemove({ d, t }: Sql, workerId: string): Statement {
  return write(d, (b) => `DELETE FROM ${t.workers} WHERE id = ${b.text(workerId)}`);
}

/** Milliseconds since this worker's last heartbeat (database clock); no row when it is not registered. */
export function workerHeartbeatAge({ d, t }: Sql, workerId: string): Statement {
  return read(d, (b) => `SELECT ${d.msBetween(d.now, 'heartbeat_at')} AS age FROM ${t.workers} WHERE id = ${b.text(workerId)}`);
}

/**
 * Of these workers, those whose row this statement can lock at once and that are still silent: a
 * row another session holds locked (a heartbeat of that worker may be waiting behind it) is
 * skipped, not waited for. The lock ends with the statement. See WorkerLiveness.workersHeld.
 */
export function workersLockable({ d, t }: Sql, ids: string[], stallMs: number, lock: { hint: string; suffix: string }): Statement {
  // Still silent, as the row is once locked: a heartbeat written since the caller looked is alive.
  return read(d, (b) => `SELECT id FROM ${t.workers}${lock.hint} WHERE id ${b.in(ids)} AND heartbeat_at <= ${d.plusMs(d.now, b.bigint(-stallMs))}${lock.suffix}`);
}

/** Of these workers, those registered (read without locking). */
export function workersFound({ d, t }: Sql, ids: string[]): Statement {
  return read(d, (b) => `SELECT id FROM ${t.workers} WHERE id ${b.in(ids)}`);
}

/**
 * Forget the workers whose heartbeat is older than stallMs (database clock); with `ids`, only
 * those of them, reached by primary key: a scan would wait for a row another session holds
 * locked (InnoDB locks the rows a DELETE reads, matching or not).
 */
export function workersRemoveStale({ d, t }: Sql, stallMs: number, ids?: string[]): Statement {
  // Bound in the order of the text (positional placeholders): the ids first.
  return write(d, (b) => `DELETE FROM ${t.workers} WHERE ${ids ? `id ${b.in(ids)} AND ` : ''}heartbeat_at <= ${d.plusMs(d.now, b.bigint(-stallMs))}`);
}

/** The workers whose heartbeat is older than stallMs (database clock), read without locking. */
export function workersStale({ d, t }: Sql, stallMs: number): Statement {
  return read(d, (b) => `SELECT id FROM ${t.workers} WHERE heartbeat_at <= ${d.plusMs(d.now, b.bigint(-stallMs))}`);
}

/**
 * Running jobs whose worker sent no heartbeat for stallMs (database clock), at most `limit`.
 * Only a read: the rescuer decides and writes through jobFailMany().
 */
export function jobsStalled({ d, t }: Sql, k: { stallMs: number; limit: number }): Statement {
  return read(d, (b) => {
    const since = d.plusMs(d.now, b.bigint(-k.stallMs));
    // Bound after the clause above: TOP (SQL Server, named parameters) comes first in the text, LIMIT (positional elsewhere) last.
    const limit = b.int(k.limit);
    // The worker's heartbeat as read (NULL: no row), so that a second look can tell a worker that
    // wrote anything since, even a heartbeat dated when it was sent; in id order, so that two
    // looks at a batch of many read the same jobs.
    return `SELECT ${d.top(limit)}j.id, j.token, j.name, j.queue, j.attempts, j.max_attempts, j.worker_id, j.started_at,
       (SELECT w.heartbeat_at FROM ${t.workers} w WHERE w.id = j.worker_id) AS worker_heartbeat_at FROM ${t.jobs} j
     WHERE j.state = 'running' AND NOT EXISTS (
       SELECT 1 FROM ${t.workers} w WHERE w.id = j.worker_id AND w.heartbeat_at > ${since})
     ORDER BY j.id${d.limit(limit)}`;
  });
}

/**
 * Milliseconds from the database's now until the earliest pending job with one of these names
 * (in one of these queues, when given) is due: negative when it already is, NULL when there is
 * none. Paused queues are skipped, as claims skip them.
 */
export function jobsNextDue({ d, t }: Sql, k: { names: string[]; queues?: string[]; managed?: boolean }): Statement {
  return read(d, (b) =>
    `SELECT ${d.msBetween('MIN(run_at)', d.now)} AS due FROM ${t.jobs}
     WHERE state = 'pending' AND name ${b.in(k.names)}${k.queues ? ` AND queue ${b.in(k.queues)}` : ''}
       AND queue NOT IN (SELECT queue FROM ${t.paused})${k.managed ? '' : ` AND queue NOT IN (SELECT queue FROM ${t.queues})`}`);
}

/** Save a running attempt's checkpoint, fenced by its claim. Changes one row when it applied. */
export function jobSaveCheckpoint({ d, t }: Sql, item: Fenced, stateJson: string): Statement {
  return write(d, (b) =>
    `UPDATE ${t.jobs} SET ${d.col('checkpoint')} = ${b.longText(stateJson)}${d.output('inserted', ['id'])}
     WHERE id = ${b.id(item.id)} AND token = ${b.id(item.token)} AND state = 'running'${d.returning(['id'])}`, true);
}
