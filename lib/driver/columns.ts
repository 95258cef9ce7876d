/**
 * The columns the live table and the history table share, in one order, so that moving a job
 * between them is INSERT … SELECT. SQL Server writes `checkpoint` delimited (a reserved word there).
 */
export const SHARED_COLUMNS = [
  'id', 'name', 'queue', 'payload', 'payload_bin', 'priority', 'attempts', 'max_attempts', 'timeout_ms', 'backoff',
  'run_at', 'created_at', 'started_at', 'ref_id', 'tag', 'batch_id', 'created_by', 'meta', 'progress', 'progress_message',
  'checkpoint', 'error', 'worker_id', 'user_id', 'reply_to', 'args', 'trace_context',
  'flow', 'callbacks', 'callback_batch', 'unique_key', 'serial_key', 'group_key',
] as const;

/** SHARED_COLUMNS as a list, each passed through `col` (a dialect's delimiter), with `replace` swapping some for expressions. */
export function sharedColumns(col: (c: string) => string = (c) => c, replace: Partial<Record<(typeof SHARED_COLUMNS)[number], string>> = {}): string {
  return SHARED_COLUMNS.map((c) => replace[c] ?? col(c)).join(', ');
}
