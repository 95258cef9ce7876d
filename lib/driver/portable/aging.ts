/**
 * Priority aging (createJobs({ priorityAging: { everyMs } })): the leader raises a due pending
 * job's priority by one for each `everyMs` it has waited, so a flood of higher priorities cannot
 * starve it. Claims stay as they are (index-driven on priority); the jobs to raise are found by
 * their own indexes (migration 011): never raised and due for `everyMs`, or raised `everyMs` ago.
 */
import { read, write, type Statement } from './statement.ts';
import type { Sql } from './sql.ts';

/** The highest priority enqueue accepts: aging stops there. */
export const MAX_PRIORITY = 1_000_000;

/** Up to `limit` jobs due for a raise, never raised (`fresh`) or raised before. */
export function jobsToAge({ d, t }: Sql, k: { everyMs: number; limit: number; fresh: boolean }): Statement {
  return read(d, (b) => {
    const top = b.top(k.limit);
    const since = d.plusMs(d.now, b.bigint(-k.everyMs));
    const waited = k.fresh ? `aged_at IS NULL AND run_at <= ${since}` : `aged_at <= ${since}`;
    return `SELECT ${top}id FROM ${t.jobs} WHERE state = 'pending' AND ${waited} AND priority < ${MAX_PRIORITY}${b.limit(k.limit)}`;
  });
}

/**
 * One step up for these jobs, still pending (a claim may have taken one meanwhile). The step is
 * dated everyMs after the last one (or after the job became due), not at the round's now: the
 * cadence stays one step per everyMs of waiting however late a round runs.
 */
export function jobsRaise({ d, t }: Sql, ids: string[], everyMs: number): Statement {
  return write(d, (b) =>
    `UPDATE ${t.jobs} SET priority = priority + 1, aged_at = ${d.plusMs('COALESCE(aged_at, run_at)', b.bigint(everyMs))}
     WHERE id ${b.ids(ids)} AND state = 'pending'`);
}
