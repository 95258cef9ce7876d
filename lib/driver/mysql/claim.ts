/**
 * MySQL/MariaDB claim, in two statements of one short transaction (there is no UPDATE …
 * RETURNING): pick the next due jobs with FOR UPDATE SKIP LOCKED, reading the clock once, then
 * turn exactly those running under a fresh token.
 */
import type { ClaimRequest } from '../store.ts';
import { CLAIM_COLUMNS } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { Params } from '../sql.ts';
import { mysql } from '../portable/dialect.ts';

const NOW = mysql.now;
/** The claim's columns but the two it answers itself: the new token, and started_at (the clock reading, claimed_at). */
const PICK_COLUMNS = CLAIM_COLUMNS.replace('token, ', '').replace('started_at, ', '');

/** The due jobs to claim, locked; `claimed_at` is the clock reading the UPDATE then writes. */
export function jobsClaimPick(t: Tables, req: ClaimRequest): { text: string; values: unknown[] } {
  const p = new Params('qmark');
  const where = [`state = 'pending'`, `run_at <= ${NOW}`, `name IN (${p.add(req.names)})`];
  if (req.queues) where.push(req.queues.length ? `queue IN (${p.add(req.queues)})` : 'FALSE');
  if (req.excludeQueues?.length) where.push(`queue NOT IN (${p.add(req.excludeQueues)})`);
  // A plain read: FOR UPDATE does not lock the rows of a subquery, so claims never block one another here.
  where.push(`queue NOT IN (SELECT queue FROM ${t.paused})`, `queue NOT IN (SELECT queue FROM ${t.queues})`);
  return {
    text: `SELECT ${PICK_COLUMNS}, ${NOW} AS claimed_at FROM ${t.jobs} FORCE INDEX (${t.jobsClaim})
     WHERE ${where.join(' AND ')} ORDER BY priority DESC, run_at, id LIMIT ${p.add(req.limit)} FOR UPDATE SKIP LOCKED`,
    values: p.values,
  };
}

/** The picked jobs, running under `token`, then COMMIT (one round trip). */
export function jobsClaimTake(t: Tables, ids: string[], token: string, workerId: string, claimedAt: Date): { text: string; values: unknown[] } {
  return {
    text: `UPDATE ${t.jobs} SET state = 'running', token = ?, worker_id = ?, attempts = attempts + 1, started_at = ?,
       progress = NULL, progress_message = NULL WHERE id IN (?); COMMIT`,
    values: [token, workerId, mysql.time(claimedAt.getTime()), ids],
  };
}
