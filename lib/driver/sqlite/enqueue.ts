/**
 * SQLite enqueue, one row per statement on the app's own handle (so that an enqueue inside the
 * app's db.transaction() joins it). A row whose refId matches a live job is skipped; the store
 * then answers that job's id (jobByRef).
 */
import type { NewJobRow } from '../../model.ts';
import type { Tables } from '../portable/statement.ts';
import { sqlite } from '../portable/dialect.ts';

/**
 * The text, and the values of one row: enqueueMany runs the statement once per row, so the store
 * prepares the text once per call and binds each row's values (no per-row lookup or object).
 */
export function jobInsert(t: Tables): { text: string; values(r: NewJobRow): unknown[] } {
  const text = `INSERT INTO ${t.jobs}
    (id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, created_at, ref_id, tag, batch_id, created_by, meta, user_id, reply_to, args, trace_context)
    VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, COALESCE(?, ${sqlite.now} + ?), ${sqlite.now}, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING`;
  return {
    text,
    values: (r) => [r.id, r.name, r.queue, r.payloadJson, r.payloadBin, r.priority, r.maxAttempts, r.timeoutMs, r.backoffJson,
      r.runAt ? r.runAt.getTime() : null, r.delayMs, r.refId, r.tag, r.batchId, r.createdBy, r.metaJson, r.userId, r.replyTo, r.argsJson, r.traceContextJson],
  };
}

export function jobByRef(t: Tables): (refId: string | null) => { text: string; values: unknown[] } {
  const text = `SELECT id FROM ${t.jobs} WHERE ref_id = ?`;
  return (refId) => ({ text, values: [refId] });
}
