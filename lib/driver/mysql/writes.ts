/**
 * MySQL/MariaDB fenced writes of one running attempt (there is no UPDATE … FROM a list of
 * values to batch them): release, progress; and the log lines of the attempts still owned.
 */
import type { ProgressItem, ReleaseItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { mysql } from '../portable/dialect.ts';

export function jobRelease(t: Tables, i: ReleaseItem): { text: string; values: unknown[] } {
  return {
    text: `UPDATE ${t.jobs} SET state = 'pending', run_at = ${mysql.now} + INTERVAL ? MICROSECOND, attempts = attempts - ?, token = NULL
     WHERE id = ? AND token = ? AND state = 'running'`,
    values: [i.delayMs * 1000, i.refund ? 1 : 0, i.id, i.token],
  };
}

export function jobSaveProgress(t: Tables, i: ProgressItem): { text: string; values: unknown[] } {
  return {
    text: `UPDATE ${t.jobs} SET progress = ?, progress_message = ? WHERE id = ? AND token = ? AND state = 'running'`,
    values: [i.progress, i.message, i.id, i.token],
  };
}

/** The running rows of these ids, under a shared lock held until their lines are in. */
export function jobsLockShared(t: Tables, ids: string[]): { text: string; values: unknown[] } {
  return { text: `SELECT id, token FROM ${t.jobs} WHERE id IN (?) AND state = 'running' LOCK IN SHARE MODE`, values: [ids] };
}

/** Log lines (job id, attempt, at as UTC text, message), as one multi-row INSERT (mysql2 expands the nested array). */
export function logsInsert(t: Tables, lines: unknown[][]): { text: string; values: unknown[] } {
  return { text: `INSERT INTO ${t.logs} (job_id, attempt, at, message) VALUES ?`, values: [lines] };
}
