/**
 * SQL Server enqueue: a chunk of jobs from one JSON parameter (OPENJSON), refIds settled in the
 * same batch. Pure: the store (./store.ts) runs it.
 */
import type { NewJobRow } from '../../model.ts';
import type { Tables } from '../portable/statement.ts';
import { ID, NOW, addMs, fromEpoch, type Stmt } from './tsql.ts';


/**
 * Insert the chunk, skipping rows whose refId matches a live job (or an earlier row of the
 * chunk). UPDLOCK + HOLDLOCK on the refId probe hold the key range until commit, so two
 * enqueuers of one refId serialise instead of both inserting; the unique index is the backstop.
 * Answers (id, ref): ref NULL for an inserted row, else the refId of the live job it matched.
 */
export function jobsEnqueue(t: Tables, rows: NewJobRow[]): Stmt {
  const jobs = t.jobs;
  return {
    text: `DECLARE @input TABLE (ord INT, id ${ID}, name NVARCHAR(200), queue NVARCHAR(200), payload NVARCHAR(MAX), payload_b64 VARCHAR(MAX),
priority INT, max_attempts INT, timeout_ms INT, backoff NVARCHAR(MAX), run_at_ms BIGINT, delay_ms BIGINT, ref_id NVARCHAR(500),
tag NVARCHAR(500), batch_id NVARCHAR(500), created_by NVARCHAR(500), meta NVARCHAR(MAX),
user_id NVARCHAR(255), reply_to NVARCHAR(2000), args NVARCHAR(MAX), trace_context NVARCHAR(2000));
INSERT INTO @input SELECT * FROM OPENJSON(@rows) WITH (ord INT '$.ord', id CHAR(36) '$.id', name NVARCHAR(200) '$.name', queue NVARCHAR(200) '$.queue',
payload NVARCHAR(MAX) '$.payload', payload_b64 VARCHAR(MAX) '$.payload_b64', priority INT '$.priority', max_attempts INT '$.max_attempts',
timeout_ms INT '$.timeout_ms', backoff NVARCHAR(MAX) '$.backoff', run_at_ms BIGINT '$.run_at_ms', delay_ms BIGINT '$.delay_ms',
ref_id NVARCHAR(500) '$.ref_id', tag NVARCHAR(500) '$.tag', batch_id NVARCHAR(500) '$.batch_id', created_by NVARCHAR(500) '$.created_by',
meta NVARCHAR(MAX) '$.meta', user_id NVARCHAR(255) '$.user_id', reply_to NVARCHAR(2000) '$.reply_to', args NVARCHAR(MAX) '$.args',
trace_context NVARCHAR(2000) '$.trace_context');
DECLARE @ins TABLE (id ${ID});
INSERT INTO ${jobs} (id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, ref_id, tag, batch_id, created_by, meta, user_id, reply_to, args, trace_context)
OUTPUT inserted.id INTO @ins
SELECT i.id, i.name, i.queue, 'pending', i.payload,
CAST(N'' AS XML).value('xs:base64Binary(sql:column("i.payload_b64"))', 'VARBINARY(MAX)'),
i.priority, i.max_attempts, i.timeout_ms, i.backoff,
COALESCE(${fromEpoch('i.run_at_ms')}, ${addMs(NOW, 'i.delay_ms')}), i.ref_id, i.tag, i.batch_id, i.created_by, i.meta, i.user_id, i.reply_to, i.args, i.trace_context
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY ref_id ORDER BY ord) AS rn FROM @input) i
WHERE i.ref_id IS NULL OR (i.rn = 1 AND NOT EXISTS (SELECT 1 FROM ${jobs} j WITH (UPDLOCK, HOLDLOCK) WHERE j.ref_id = i.ref_id));
SELECT id, CAST(NULL AS NVARCHAR(500)) AS ref FROM @ins
UNION ALL
SELECT j.id, j.ref_id FROM ${jobs} j JOIN @input i ON j.ref_id = i.ref_id WHERE NOT EXISTS (SELECT 1 FROM @ins n WHERE n.id = i.id);`,
    params: [{ name: 'rows', type: 'nvarchar(max)', value: inputJson(rows) }],
  };
}

/** The enqueue input as JSON: payloads and other JSON fields travel as strings of JSON text. */
function inputJson(rows: NewJobRow[]): string {
  return JSON.stringify(
    rows.map((r, ord) => ({
      ord,
      id: r.id,
      name: r.name,
      queue: r.queue,
      payload: r.payloadJson,
      payload_b64: r.payloadBin ? r.payloadBin.toString('base64') : null,
      priority: r.priority,
      max_attempts: r.maxAttempts,
      timeout_ms: r.timeoutMs,
      backoff: r.backoffJson,
      run_at_ms: r.runAt ? r.runAt.getTime() : null,
      delay_ms: r.delayMs,
      ref_id: r.refId,
      tag: r.tag,
      batch_id: r.batchId,
      created_by: r.createdBy,
      meta: r.metaJson,
      user_id: r.userId,
      reply_to: r.replyTo,
      args: r.argsJson,
      trace_context: r.traceContextJson,
    })),
  );
}
