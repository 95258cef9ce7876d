/**
 * SQLite enqueue on the app's own handle (so that an enqueue inside the app's db.transaction()
 * joins it): each run of ROWS_PER_INSERT rows without a refId in one statement, every other row
 * on its own. A row whose refId matches a live job is skipped; the store then answers that job's
 * id (jobByRef).
 */
import type { NewJobRow } from '../../model.ts';
import type { Tables } from '../portable/statement.ts';
import { sqlite } from '../portable/dialect.ts';

const COLUMNS = `(id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, created_at, ref_id, tag, batch_id, created_by, meta, user_id, reply_to, args, trace_context)`;
/** One row's placeholders, the clock written as `now` (SQL, or a placeholder). */
const row = (now: string) => `(?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, COALESCE(?, ${now} + ?), ${now}, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
/**
 * Rows per multi-row INSERT in a bulk enqueue: from ~50 on the statement's own cost is paid off
 * (measured); 45 rows bind 990 values, under the 999 a SQLite built with the old default allows.
 */
export const ROWS_PER_INSERT = 45;
/** SQLite's clock, read once for a multi-row statement: two unixepoch() calls per row cost a tenth of a bulk insert. */
export const CLOCK = `SELECT ${sqlite.now}`;

export interface JobInsert {
  /** One row, on SQLite's clock; a row whose refId matches a live job is skipped (changes = 0). */
  text: string;
  values(r: NewJobRow): unknown[];
  /** ROWS_PER_INSERT rows without a refId (nothing they could conflict on), on the clock read by CLOCK. */
  rowsText: string;
  /** Appends the row's values to a multi-row statement's (no array per row). */
  pushValues(into: unknown[], r: NewJobRow, now: number): void;
}

/** The row's values in placeholder order; `now` when the clock is bound. */
function push(into: unknown[], r: NewJobRow, now?: number): void {
  into.push(r.id, r.name, r.queue, r.payloadJson, r.payloadBin, r.priority, r.maxAttempts, r.timeoutMs, r.backoffJson, r.runAt ? r.runAt.getTime() : null);
  if (now === undefined) into.push(r.delayMs);
  else into.push(now, r.delayMs, now);
  into.push(r.refId, r.tag, r.batchId, r.createdBy, r.metaJson, r.userId, r.replyTo, r.argsJson, r.traceContextJson);
}

/** The statements, and the values of one row: the store prepares each text once and binds each row's values. */
export function jobInsert(t: Tables): JobInsert {
  return {
    text: `INSERT INTO ${t.jobs} ${COLUMNS} VALUES ${row(sqlite.now)} ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING`,
    values: (r) => {
      const v: unknown[] = [];
      push(v, r);
      return v;
    },
    rowsText: `INSERT INTO ${t.jobs} ${COLUMNS} VALUES ${Array(ROWS_PER_INSERT).fill(row('?')).join(', ')}`,
    pushValues: push,
  };
}

export function jobByRef(t: Tables): (refId: string | null) => { text: string; values: unknown[] } {
  const text = `SELECT id FROM ${t.jobs} WHERE ref_id = ?`;
  return (refId) => ({ text, values: [refId] });
}
