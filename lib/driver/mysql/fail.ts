/**
 * MySQL/MariaDB failure statements, run on rows the store has locked and found owned: a retry
 * back to pending after its delay, and every failed attempt's row (failed-for-good jobs then
 * move to history: ./move.ts).
 */
import type { FailItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { mysql } from '../portable/dialect.ts';

export function jobRetryLater(t: Tables, item: Pick<FailItem, 'id' | 'error'>, delayMs: number): { text: string; values: unknown[] } {
  return {
    text: `UPDATE ${t.jobs} SET state = 'pending', run_at = ${mysql.now} + INTERVAL ? MICROSECOND, error = ?, token = NULL WHERE id = ?`,
    values: [delayMs * 1000, JSON.stringify(item.error), item.id],
  };
}

/** One row per failed attempt (job id, attempt, worker, started at as UTC text, error JSON). */
export function attemptsRecord(t: Tables, rows: [string, number, unknown, string | null, string][]): { text: string; values: unknown[] } {
  return {
    text: `INSERT INTO ${t.attempts} (job_id, attempt, worker_id, started_at, finished_at, error)
     VALUES ${rows.map(() => `(?, ?, ?, ?, ${mysql.now}, ?)`).join(', ')}
     ON DUPLICATE KEY UPDATE error = VALUES(error), finished_at = VALUES(finished_at)`,
    values: rows.flat(),
  };
}
