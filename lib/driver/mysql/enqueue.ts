/**
 * MySQL/MariaDB enqueue: a multi-row INSERT per chunk. A row whose refId matches a live job is
 * left alone (ON DUPLICATE KEY UPDATE with no change); the store then finds that job with
 * jobsByRef, a locking read (it sees the latest committed row even inside the caller's
 * REPEATABLE READ snapshot).
 */
import type { NewJobRow } from '../../model.ts';
import type { Tables } from '../portable/statement.ts';
import { mysql } from '../portable/dialect.ts';

const INSERT_COLUMNS = 'id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, created_at, ref_id, tag, batch_id, created_by, meta, user_id, reply_to, args, trace_context';
const NOW = mysql.now;

export function jobsInsert(t: Tables, rows: NewJobRow[]): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const tuples = rows.map((r) => {
    values.push(r.id, r.name, r.queue, r.payloadJson, r.payloadBin, r.priority, r.maxAttempts, r.timeoutMs, r.backoffJson,
      r.runAt ? mysql.time(r.runAt.getTime()) : null, r.delayMs * 1000, r.refId, r.tag, r.batchId, r.createdBy, r.metaJson,
      r.userId, r.replyTo, r.argsJson, r.traceContextJson);
    return `(?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, COALESCE(?, ${NOW} + INTERVAL ? MICROSECOND), ${NOW}, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
  });
  return { text: `INSERT INTO ${t.jobs} (${INSERT_COLUMNS}) VALUES ${tuples.join(', ')} ON DUPLICATE KEY UPDATE id = id`, values };
}

/** The live jobs holding these refIds, read with a shared lock. */
export function jobsByRef(t: Tables, refs: string[]): { text: string; values: unknown[] } {
  // One placeholder per ref: a caller's SqlTransaction may send it through execute(), which does not expand arrays.
  return { text: `SELECT id, ref_id FROM ${t.jobs} WHERE ref_id IN (${refs.map(() => '?').join(', ')}) LOCK IN SHARE MODE`, values: refs };
}
