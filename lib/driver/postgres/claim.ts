/**
 * PostgreSQL claim: the next due jobs, in priority then run time order, locked with FOR UPDATE
 * SKIP LOCKED so concurrent claimers never wait for or take each other's rows, turned running
 * under a fresh token in the same statement.
 */
import type { ClaimRequest } from '../store.ts';
import { CLAIM_COLUMNS } from '../store.ts';
import type { Tables } from '../portable/statement.ts';

/**
 * Run on the claim connection once, when it connects. A queue table's statistics are always stale
 * (it fills and drains between ANALYZE runs); with too few rows estimated, the planner reads every
 * pending row into a bitmap and sorts it on each claim (measured: 170 ms a claim over 200,000
 * pending jobs, against 0.3 ms walking the claim index). A statement rather than a startup
 * parameter: poolers such as PgBouncer refuse startup parameters, and one in session mode resets
 * the session (DISCARD ALL) before its server connection serves another client. Set per claim
 * (SET LOCAL in a transaction of its own) it cost 20 % of PostgreSQL's processing rate in two more
 * round trips.
 */
export const CLAIM_PLANNER = 'SET enable_bitmapscan = off; SET enable_seqscan = off; SET enable_sort = off';

/**
 * The same settings for one transaction, behind a transaction pooler: a session `SET` would stay on
 * the shared server connection and change the plans of whichever client gets it next. Sent with
 * the BEGIN in one message, it adds that round trip and the COMMIT's to each claim.
 */
export const CLAIM_PLANNER_LOCAL = `BEGIN; ${CLAIM_PLANNER.replaceAll('SET ', 'SET LOCAL ')}`;

/**
 * A claimed column as the claim returns it: uuids as text, times as epoch milliseconds (pg parses
 * a timestamptz's text with a regular expression per value: ~1.3 % of a worker's CPU, and its
 * garbage, measured for issue 17).
 */
function returnedColumn(c: string): string {
  if (c === 'id' || c === 'token' || c === 'payload') return `j.${c}::text AS ${c}`; // payload: see SqlDialect.payloadText
  if (c === 'run_at' || c === 'started_at') return `(extract(epoch FROM j.${c}) * 1000)::float8 AS ${c}`;
  return `j.${c}`;
}

export function jobsClaim(t: Tables): (req: ClaimRequest, token: string) => { text: string; values: unknown[] } {
  const returned = CLAIM_COLUMNS.split(', ').map(returnedColumn).join(', ');
  const text = `WITH next AS (
      SELECT id FROM ${t.jobs}
      WHERE state = 'pending' AND run_at <= now() AND name = ANY($1::text[])
        AND ($5::text[] IS NULL OR queue = ANY($5::text[])) AND ($6::text[] IS NULL OR NOT (queue = ANY($6::text[])))
        AND queue NOT IN (SELECT queue FROM ${t.paused}) AND queue NOT IN (SELECT queue FROM ${t.queues})
      ORDER BY priority DESC, run_at, id
      LIMIT $2 FOR UPDATE SKIP LOCKED)
    UPDATE ${t.jobs} j SET state = 'running', token = $3, worker_id = $4, attempts = j.attempts + 1,
      started_at = now(), progress = NULL, progress_message = NULL
    FROM next WHERE j.id = next.id
    RETURNING ${returned}`;
  return (req, token) => ({ text, values: [req.names, req.limit, token, req.workerId, req.queues ?? null, req.excludeQueues ?? null] });
}
