/**
 * SQLite: a finished job moves to history (completed, or failed for good) as INSERT … SELECT of
 * the owned running row without workflow to run (flow = 0: ../portable/flow.ts), then DELETE, both
 * in the caller's transaction. By rowid when the claim
 * told it (an integer key instead of the text id index), still fenced by id and token.
 */
import type { Fenced } from '../store.ts';
import type { JobState } from '../../model.ts';
import type { Tables } from '../portable/statement.ts';
import { sharedColumns } from '../columns.ts';
import { sqlite } from '../portable/dialect.ts';

type Move = (item: Fenced, state: JobState, error: string | null, result: string | null) => { copy: { text: string; values: unknown[] }; remove: { text: string; values: unknown[] } };

export function jobMoveToHistory(t: Tables): Move {
  const texts = (by: 'id' | 'rowid') => ({
    copy: `INSERT INTO ${t.history} (${sharedColumns()}, state, finished_at, result)
      SELECT ${sharedColumns(undefined, { error: '?' })}, ?, ${sqlite.now}, ? FROM ${t.jobs}
      WHERE ${by} = ? AND id = ? AND token = ? AND state = 'running' AND flow = 0`,
    remove: `DELETE FROM ${t.jobs} WHERE ${by} = ?`,
  });
  const byId = texts('id');
  const byRowid = texts('rowid');
  return (item, state, error, result) => {
    const key = item.rowid ?? item.id;
    const text = item.rowid === undefined ? byId : byRowid;
    return { copy: { text: text.copy, values: [error, state, result, key, item.id, item.token] }, remove: { text: text.remove, values: [key] } };
  };
}

/**
 * Many completions at once (the worker's batch): one INSERT … SELECT of the owned running rows
 * named in a JSON array of [rowid, id, token, result], then one DELETE of the same rows, both in
 * the caller's transaction (which nothing else writes meanwhile). Fenced as the single move: a
 * row whose token changed (rescued, cancelled) matches neither. Answers the ids moved. Two
 * statements per batch instead of two per job: the per-statement cost was about a third of a
 * completion's.
 */
export function jobsMoveCompleted(t: Tables): { copy: string; remove: string; values(items: (Fenced & { resultJson: string | null })[]): [string] } {
  const owned = `${t.jobs} j JOIN json_each(?) w ON j.rowid = w.value ->> 0 AND j.id = w.value ->> 1 AND j.token = w.value ->> 2
    WHERE j.state = 'running' AND j.flow = 0`;
  return {
    copy: `INSERT INTO ${t.history} (${sharedColumns()}, state, finished_at, result)
      SELECT ${sharedColumns((c) => `j.${c}`, { error: 'NULL' })}, 'completed', ${sqlite.now}, w.value ->> 3 FROM ${owned}
      RETURNING id`,
    remove: `DELETE FROM ${t.jobs} WHERE rowid IN (SELECT j.rowid FROM ${owned})`,
    values: (items) => [JSON.stringify(items.map((it) => [it.rowid, it.id, it.token, it.resultJson]))],
  };
}
