/**
 * SQLite failure statements: a retry back to pending after its delay (fenced), and the failed
 * attempt's row (failed-for-good jobs move to history: ./move.ts).
 */
import type { Tables } from '../portable/statement.ts';
import { sqlite } from '../portable/dialect.ts';

export function jobRetryLater(t: Tables): (id: string, token: string, delayMs: number, errorJson: string) => { text: string; values: unknown[] } {
  const text = `UPDATE ${t.jobs} SET state = 'pending', run_at = ${sqlite.now} + ?, error = ?, token = NULL
    WHERE id = ? AND token = ? AND state = 'running'`;
  return (id, token, delayMs, errorJson) => ({ text, values: [delayMs, errorJson, id, token] });
}

/** The attempt's worker is the row's (in history or still live) unless given. */
export function attemptRecord(t: Tables): (jobId: string, attempt: number, workerId: string | null, startedAt: number | null, errorJson: string) => { text: string; values: unknown[] } {
  const text = `INSERT INTO ${t.attempts} (job_id, attempt, worker_id, started_at, finished_at, error)
    VALUES (?, ?, COALESCE(?, (SELECT worker_id FROM ${t.history} WHERE id = ?), (SELECT worker_id FROM ${t.jobs} WHERE id = ?)), ?, ${sqlite.now}, ?)
    ON CONFLICT (job_id, attempt) DO UPDATE SET error = excluded.error, finished_at = excluded.finished_at`;
  return (jobId, attempt, workerId, startedAt, errorJson) => ({ text, values: [jobId, attempt, workerId, jobId, jobId, startedAt, errorJson] });
}
