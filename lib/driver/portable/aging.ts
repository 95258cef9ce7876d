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
 * Raise these jobs, still pending (a claim may have taken one meanwhile), by every step they have
 * waited since the last one (or since they became due), each step dated everyMs after the one
 * before, not at the round's now: the cadence stays one step per everyMs of waiting however late
 * or seldom a round runs, and a round that comes late (a new leader, a slow database) catches a
 * job up in one write instead of a step per round.
 */
export function jobsRaise({ d, t }: Sql, ids: string[], everyMs: number): Statement {
  return write(d, (b) => {
    const base = 'COALESCE(aged_at, run_at)';
    // A value is bound where it is written (MariaDB's placeholders are positional): built at each use, in text order.
    const steps = () => d.intDiv(`(${d.epochMs(d.now)} - ${d.epochMs(base)})`, b.bigint(everyMs));
    return `UPDATE ${t.jobs} SET priority = CASE WHEN priority + ${steps()} < ${MAX_PRIORITY} THEN priority + ${steps()} ELSE ${MAX_PRIORITY} END,
       aged_at = ${d.plusMs(base, `${steps()} * ${b.bigint(everyMs)}`)}
     WHERE id ${b.ids(ids)} AND state = 'pending' AND ${base} <= ${d.plusMs(d.now, b.bigint(-everyMs))}`;
  });
}
