/**
 * SQLite enqueue on the app's own handle (so that an enqueue inside the app's db.transaction()
 * joins it): rows without a refId ROWS_PER_INSERT to a statement, the others one by one. A row
 * whose refId matches a live job is skipped; the store then answers that job's id (jobByRef).
 */
import type { NewJobRow } from '../../model.ts';
import type { Tables } from '../portable/statement.ts';

const COLUMNS = `(id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, created_at, ref_id, tag, batch_id, created_by, meta, user_id, reply_to, args, trace_context)`;
/**
 * One row's placeholders. The clock is bound (\`now\`), not written as unixepoch(): the process
 * and SQLite read the same clock on this machine, and two unixepoch() calls per row cost a tenth
 * of a bulk insert.
 */
const ROW = `(?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, COALESCE(?, ? + ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
/** Rows per multi-row INSERT in a bulk enqueue: past ~50 the statement's own cost is paid off (measured). */
export const ROWS_PER_INSERT = 50;

export interface JobInsert {
  /** One row; a row whose refId matches a live job is skipped (changes = 0). */
  text: string;
  /** ROWS_PER_INSERT rows without a refId (nothing they could conflict on): one statement. */
  rowsText: string;
  values(r: NewJobRow, now: number): unknown[];
  /** Appends the row's values to a multi-row statement's (no array per row). */
  pushValues(into: unknown[], r: NewJobRow, now: number): void;
}

/** The statements, and the values of one row: the store prepares each text once and binds each row's values. */
export function jobInsert(t: Tables): JobInsert {
  const pushValues = (into: unknown[], r: NewJobRow, now: number): void => {
    into.push(r.id, r.name, r.queue, r.payloadJson, r.payloadBin, r.priority, r.maxAttempts, r.timeoutMs, r.backoffJson,
      r.runAt ? r.runAt.getTime() : null, now, r.delayMs, now, r.refId, r.tag, r.batchId, r.createdBy, r.metaJson, r.userId, r.replyTo, r.argsJson, r.traceContextJson);
  };
  return {
    text: `INSERT INTO ${t.jobs} ${COLUMNS} VALUES ${ROW} ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING`,
    rowsText: `INSERT INTO ${t.jobs} ${COLUMNS} VALUES ${Array(ROWS_PER_INSERT).fill(ROW).join(', ')}`,
    values: (r, now) => {
      const v: unknown[] = [];
      pushValues(v, r, now);
      return v;
    },
    pushValues,
  };
}

export function jobByRef(t: Tables): (refId: string | null) => { text: string; values: unknown[] } {
  const text = `SELECT id FROM ${t.jobs} WHERE ref_id = ?`;
  return (refId) => ({ text, values: [refId] });
}
