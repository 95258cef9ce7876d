/**
 * How a batch write (completion, failure, release, progress, logs) names the running rows its
 * items own: their ids as an array the planner cannot see into (`ARRAY(SELECT unnest($1))`, so it
 * plans a few probes of the primary key), then the fence on each row. Given the array itself, it
 * costed 250 probes as 250 random reads, chose a scan of a 20,000-row table instead and joined it
 * to the items row by row (14 ms for a batch that takes 1). The fence says `state <> 'pending'` where one would write
 * `state = 'running'` (the same rows: the hot table holds no other state, by its CHECK).
 *
 * Why: `j.state = 'running'` lets the planner read every running row through the partial index
 * on running rows (jobs_running, WHERE state = 'running') and hash-join them to the items, and a
 * hot queue table's statistics nearly always say running rows are few. That index keeps the
 * entries of finished jobs until a vacuum, so each batch cost as much as every job finished
 * before it: a completion read 60 of them per job over a run of 40,000, and with 4 worker
 * processes each job cost PostgreSQL 99 µs of CPU instead of 36 (issue 17; bench/scale-out.ts
 * with SCALEOUT_STATS=1 prints the entries read). `<> 'pending'` implies neither partial index's
 * predicate.
 *
 * Each condition stays a condition of the write itself: a row another transaction changed after
 * this statement's snapshot is checked again, on its newest version, by all of them.
 */
export function ownedRunning(j: string, x: string, ids: string): string {
  return `${j}.id = ANY (ARRAY(SELECT unnest(${ids}))) AND ${j}.id = ${x}.id AND ${j}.token = ${x}.token AND ${j}.state <> 'pending'`;
}
