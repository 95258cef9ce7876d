/**
 * SQL Server claim: the next due jobs by priority then run time, taken for this claimer under a
 * fresh token in one statement.
 */
import type { ClaimRequest } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { NOW, type Stmt } from './tsql.ts';

const CLAIMED = ['id', 'token', 'name', 'queue', 'payload', 'payload_bin', 'priority', 'attempts', 'max_attempts', 'timeout_ms', 'backoff', 'run_at', 'started_at', '[checkpoint]', 'user_id', 'reply_to', 'args', 'flow', 'callback_batch', 'trace_context'];


/**
 * Claim through an updatable CTE: UPDLOCK takes the rows for this claimer, READPAST skips rows
 * another claimer holds (no waiting, no double claim), ROWLOCK keeps the locks to those rows.
 * With READ_COMMITTED_SNAPSHOT on, READCOMMITTEDLOCK makes the scan a locking read.
 */
export function jobsClaim(t: Tables, req: ClaimRequest, token: string, readCommittedSnapshot: boolean): Stmt {
  const hints = readCommittedSnapshot ? 'UPDLOCK, READPAST, ROWLOCK, READCOMMITTEDLOCK' : 'UPDLOCK, READPAST, ROWLOCK';
  const list = (p: string) => `(SELECT CAST(value AS NVARCHAR(200)) FROM OPENJSON(${p}))`;
  return {
    text: `WITH next AS (
SELECT TOP (@limit) * FROM ${t.jobs} WITH (${hints})
WHERE state = 'pending' AND run_at <= ${NOW} AND name IN ${list('@names')}
  AND (@queues IS NULL OR queue IN ${list('@queues')}) AND (@exclude IS NULL OR queue NOT IN ${list('@exclude')})
  AND queue NOT IN (SELECT queue FROM ${t.paused}) AND queue NOT IN (SELECT queue FROM ${t.queues})
ORDER BY priority DESC, run_at, id)
UPDATE next SET state = 'running', token = @token, worker_id = @worker, attempts = attempts + 1,
started_at = ${NOW}, progress = NULL, progress_message = NULL
OUTPUT ${CLAIMED.map((c) => `inserted.${c}`).join(', ')};`,
    params: [
      { name: 'limit', type: 'int', value: req.limit },
      { name: 'names', type: 'nvarchar(max)', value: JSON.stringify(req.names) },
      { name: 'queues', type: 'nvarchar(max)', value: req.queues ? JSON.stringify(req.queues) : null },
      { name: 'exclude', type: 'nvarchar(max)', value: req.excludeQueues ? JSON.stringify(req.excludeQueues) : null },
      { name: 'token', type: 'char36', value: token },
      { name: 'worker', type: 'nvarchar', value: req.workerId },
    ],
  };
}
