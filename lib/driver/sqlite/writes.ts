/** SQLite fenced writes of one running attempt: release, progress, and its log lines (only while owned). */
import type { Fenced, ProgressItem, ReleaseItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { sqlite } from '../portable/dialect.ts';

type Built<A extends unknown[]> = (...args: A) => { text: string; values: unknown[] };

export function jobRelease(t: Tables): Built<[ReleaseItem]> {
  const text = `UPDATE ${t.jobs} SET state = 'pending', run_at = ${sqlite.now} + ?, attempts = attempts - ?, token = NULL
    WHERE id = ? AND token = ? AND state = 'running'`;
  return (i) => ({ text, values: [i.delayMs, i.refund ? 1 : 0, i.id, i.token] });
}

export function jobSaveProgress(t: Tables): Built<[ProgressItem]> {
  const text = `UPDATE ${t.jobs} SET progress = ?, progress_message = ? WHERE id = ? AND token = ? AND state = 'running'`;
  return (i) => ({ text, values: [i.progress, i.message, i.id, i.token] });
}

export function jobOwned(t: Tables): Built<[Fenced]> {
  const text = `SELECT 1 FROM ${t.jobs} WHERE id = ? AND token = ? AND state = 'running'`;
  return (i) => ({ text, values: [i.id, i.token] });
}

export function logInsert(t: Tables): Built<[string, number, number, string]> {
  const text = `INSERT INTO ${t.logs} (job_id, attempt, at, message) VALUES (?, ?, ?, ?)`;
  return (jobId, attempt, at, message) => ({ text, values: [jobId, attempt, at, message] });
}
