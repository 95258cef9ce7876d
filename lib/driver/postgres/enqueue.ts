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
  created_by text, meta json`;

/** Answers (id, ref): ref NULL for an inserted row, else the refId of the live job it matched. */
export function jobsEnqueue(t: Tables): (rows: NewJobRow[], channel: string) => { text: string; values: unknown[] } {
  const text = `WITH input AS (SELECT * FROM json_to_recordset($1::json) AS x(${INPUT})),
    ins AS (
      INSERT INTO ${t.jobs} (id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, ref_id, tag, batch_id, created_by, meta)
      SELECT id, name, queue, 'pending', payload, decode(payload_b64, 'base64'), priority, max_attempts, timeout_ms, backoff,
        COALESCE(run_at, now() + delay_ms * interval '1 millisecond'), ref_id, tag, batch_id, created_by, meta
      FROM input
      ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING
      RETURNING id, queue, run_at <= now() AS due),
    wake AS (SELECT pg_notify($2, queue) FROM (SELECT DISTINCT queue FROM ins WHERE due) q)
    SELECT id::text AS id, NULL::text AS ref, (SELECT count(*) FROM wake)::text AS woke FROM ins
    UNION ALL
    SELECT j.id::text, j.ref_id, '0' FROM ${t.jobs} j JOIN input i ON j.ref_id = i.ref_id
    WHERE i.ref_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = i.id)`;
  return (rows, channel) => ({ text, values: [inputJson(rows), channel] });
}

/** The rows as the JSON array json_to_recordset reads: JSON fields spliced as the JSON text they already are. */
export function inputJson(rows: NewJobRow[]): string {
  const q = JSON.stringify;
  return `[${rows
    .map(
      (r) =>
        `{"id":"${r.id}","name":${q(r.name)},"queue":${q(r.queue)},"payload":${r.payloadJson ?? 'null'},` +
        `"payload_b64":${r.payloadBin ? q(r.payloadBin.toString('base64')) : 'null'},"priority":${r.priority},` +
        `"max_attempts":${r.maxAttempts},"timeout_ms":${r.timeoutMs},"backoff":${r.backoffJson ?? 'null'},` +
        `"run_at":${r.runAt ? q(r.runAt.toISOString()) : 'null'},"delay_ms":${r.delayMs},"ref_id":${q(r.refId)},` +
        `"tag":${q(r.tag)},"batch_id":${q(r.batchId)},"created_by":${q(r.createdBy)},"meta":${r.metaJson ?? 'null'}}`,
    )
    .join(',')}]`;
}
