/**
 * PostgreSQL enqueue: any number of jobs in one statement, from one JSON array parameter. Rows
 * whose refId matches a live job are skipped and answered with that job's id; the wake-up NOTIFY
 * is part of the same statement, so it is delivered when the caller's transaction commits.
 */
import type { NewJobRow } from '../../model.ts';
import type { Tables } from '../portable/statement.ts';

/** The enqueue input record: one JSON array parameter for any number of jobs. */
const INPUT = `id uuid, name text, queue text, payload json, payload_b64 text, priority int, max_attempts int,
  timeout_ms int, backoff json, run_at timestamptz, delay_ms bigint, ref_id text, tag text, batch_id text,
  created_by text, meta json, user_id text, reply_to text, args json, trace_context text, null_payload boolean`;

/** In the error the guard raises, to tell it from any other. */
export const NOT_IN_TRANSACTION = 'sqljobs: opts.tx is not inside a transaction';

/**
 * Raises an error unless the statement runs inside a transaction block. Checked by the server as
 * the statement runs, not by the client before it is sent: an enqueue that was not awaited may be
 * queued on the caller's connection behind the ROLLBACK that ended its transaction, and would
 * then commit on its own. A statement sent as one simple Query message in autocommit starts its
 * own transaction, so the two clocks are equal; inside a block the statement started after
 * BEGIN's round trip. (With the extended protocol the statement clock moves on at each message,
 * so the guarded statement carries its values as literals and is sent without parameters.) The
 * error text is built from a stable function, so that the planner cannot fold the cast.
 */
const IN_TRANSACTION_BLOCK = `(CASE WHEN statement_timestamp() = transaction_timestamp()
  THEN (statement_timestamp()::text || ' ${NOT_IN_TRANSACTION}')::int END) IS NULL`;

/** The guard alone, for statements on a caller's opts.tx that cannot carry it (workflow steps). */
export const IN_TRANSACTION_GUARD = `SELECT 1 WHERE ${IN_TRANSACTION_BLOCK}`;

/**
 * Answers (id, ref): ref NULL for an inserted row, else the refId of the live job it matched.
 * `inCallerTransaction`: the statement runs on a caller's opts.tx and refuses to run outside one.
 */
export function jobsEnqueue(t: Tables, { inCallerTransaction = false } = {}): (rows: NewJobRow[], channel: string) => { text: string; values: unknown[] } {
  const guard = inCallerTransaction ? ` WHERE ${IN_TRANSACTION_BLOCK}` : '';
  const text = `WITH input AS (SELECT * FROM json_to_recordset($1::json) AS x(${INPUT})${guard}),
    ins AS (
      INSERT INTO ${t.jobs} (id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, ref_id, tag, batch_id, created_by, meta, user_id, reply_to, args, trace_context)
      SELECT id, name, queue, 'pending', CASE WHEN null_payload THEN 'null'::json ELSE payload END, decode(payload_b64, 'base64'), priority, max_attempts, timeout_ms, backoff,
        COALESCE(run_at, now() + delay_ms * interval '1 millisecond'), ref_id, tag, batch_id, created_by, meta, user_id, reply_to, args, trace_context
      FROM input
      ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING
      RETURNING id, queue, run_at <= now() AS due),
    wake AS (SELECT pg_notify($2, queue) FROM (SELECT DISTINCT queue FROM ins WHERE due) q)
    SELECT id::text AS id, NULL::text AS ref, (SELECT count(*) FROM wake)::text AS woke FROM ins
    UNION ALL
    SELECT j.id::text, j.ref_id, '0' FROM ${t.jobs} j JOIN input i ON j.ref_id = i.ref_id
    WHERE i.ref_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = i.id)`;
  if (!inCallerTransaction) return (rows, channel) => ({ text, values: [inputJson(rows), channel] });
  return (rows, channel) => ({
    // Replacement functions: in a replacement string, `$$`, `$&`, `$'` and `$\`` in the data would be patterns.
    text: text.replace('$1::json', () => `${literal(inputJson(rows))}::json`).replace('pg_notify($2,', () => `pg_notify(${literal(channel)},`),
    values: [],
  });
}

/** A string as an SQL literal (as pg's escapeLiteral: quotes doubled; with backslashes, an E'' string with them doubled). */
export function literal(s: string): string {
  const quoted = s.replaceAll("'", "''");
  return s.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/**
 * The rows as the JSON array json_to_recordset reads: JSON fields spliced as the JSON text they
 * already are. It reads a field's JSON null as SQL NULL, which is no payload: a null payload is
 * flagged (null_payload) and stored as JSON null.
 */
export function inputJson(rows: NewJobRow[]): string {
  const q = JSON.stringify;
  return `[${rows
    .map(
      (r) =>
        `{"id":"${r.id}","name":${q(r.name)},"queue":${q(r.queue)},"payload":${r.payloadJson ?? 'null'},` +
        `"payload_b64":${r.payloadBin ? q(r.payloadBin.toString('base64')) : 'null'},"priority":${r.priority},` +
        `"max_attempts":${r.maxAttempts},"timeout_ms":${r.timeoutMs},"backoff":${r.backoffJson ?? 'null'},` +
        `"run_at":${r.runAt ? q(r.runAt.toISOString()) : 'null'},"delay_ms":${r.delayMs},"ref_id":${q(r.refId)},` +
        `"tag":${q(r.tag)},"batch_id":${q(r.batchId)},"created_by":${q(r.createdBy)},"meta":${r.metaJson ?? 'null'},` +
        `"user_id":${q(r.userId)},"reply_to":${q(r.replyTo)},"args":${r.argsJson ?? 'null'},"trace_context":${q(r.traceContextJson)}` +
        `${r.payloadJson === 'null' ? ',"null_payload":true' : ''}}`,
    )
    .join(',')}]`;
}
