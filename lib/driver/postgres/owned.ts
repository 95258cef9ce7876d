/**
 * The running rows a batch of attempts still owns, each found by its primary key. The batch writes
 * (completion, failure, release, progress, logs) join their items to these rows, then write them by
 * ctid.
 *
 * Why not `j.id = x.id AND j.token = x.token AND j.state = 'running'` in the write itself: that
 * condition lets the planner read every running row through the partial index on running rows
 * (jobs_worker, WHERE state = 'running') and hash-join them, and the statistics of a hot queue
 * table nearly always say there are few. That index keeps the entries of finished jobs until a
 * vacuum, so a completion read 60 of them per job over a run of 40,000, and with 4 worker
 * processes each job cost PostgreSQL 99 µs of CPU instead of 36 (issue 17; bench/scale-out.ts with
 * SCALEOUT_STATS=1 prints the entries read). A LATERAL lookup with LIMIT 1 cannot be flattened
 * into such a join: each item is one probe of the primary key, whatever the statistics say.
 *
 * Writing by ctid keeps the fence: a row another transaction changed after this statement's
 * snapshot (a rescue, a cancel) has a new ctid, so the recheck PostgreSQL makes of it fails and it
 * is left alone.
 */
import type { Tables } from '../portable/statement.ts';

/**
 * `items`: a FROM item naming its columns `x(id, token, ...)`; the CTE's rows are `tid` and every
 * column of x. `also`: a further condition on the owned row `j` (e.g. no workflow to run).
 */
export function ownedRows(t: Tables, items: string, also = ''): string {
  return `owned AS MATERIALIZED (
      SELECT o.tid, x.* FROM ${items}
      CROSS JOIN LATERAL (
        SELECT j.ctid AS tid FROM ${t.jobs} j WHERE j.id = x.id AND j.token = x.token AND j.state = 'running'${also ? ` AND ${also}` : ''} LIMIT 1) o)`;
}

/** The owned rows of the CTE above (those `where` keeps), as a condition on the written table's ctid. */
export function byOwnedTid(alias: string, where = ''): string {
  return `${alias}.ctid = ANY (ARRAY(SELECT tid FROM owned${where ? ` WHERE ${where}` : ''}))`;
}
