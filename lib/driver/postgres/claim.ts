/**
 * PostgreSQL claim: the next due jobs, in priority then run time order, locked with FOR UPDATE
 * SKIP LOCKED so concurrent claimers never wait for or take each other's rows, turned running
 * under a fresh token in the same statement. Runs on a connection planned to walk the claim index
 * (see the store's `claimer`).
 */
import type { ClaimRequest } from '../store.ts';
import { CLAIM_COLUMNS } from '../store.ts';
import type { Tables } from '../portable/statement.ts';

export function jobsClaim(t: Tables): (req: ClaimRequest, token: string) => { text: string; values: unknown[] } {
  const returned = CLAIM_COLUMNS.split(', ').map((c) => (c === 'id' || c === 'token' ? `j.${c}::text AS ${c}` : `j.${c}`)).join(', ');
  const text = `WITH next AS (
      SELECT id FROM ${t.jobs}
      WHERE state = 'pending' AND run_at <= now() AND name = ANY($1::text[])
        AND ($5::text[] IS NULL OR queue = ANY($5::text[])) AND ($6::text[] IS NULL OR NOT (queue = ANY($6::text[])))
        AND queue NOT IN (SELECT queue FROM ${t.paused})
      ORDER BY priority DESC, run_at, id
      LIMIT $2 FOR UPDATE SKIP LOCKED)
    UPDATE ${t.jobs} j SET state = 'running', token = $3, worker_id = $4, attempts = j.attempts + 1,
      started_at = now(), progress = NULL, progress_message = NULL
    FROM next WHERE j.id = next.id
    RETURNING ${returned}`;
  return (req, token) => ({ text, values: [req.names, req.limit, token, req.workerId, req.queues ?? null, req.excludeQueues ?? null] });
}
