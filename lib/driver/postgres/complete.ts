/**
 * PostgreSQL completion: the owned running rows (fenced by id, token and state, and without
 * workflow to run: flow = 0, see ../portable/flow.ts) deleted and
 * copied to history as completed, in one statement. Answers the ids it moved.
 */
import type { CompleteItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { ownedRunning } from './owned.ts';
import { sharedColumns } from '../columns.ts';

export function jobsComplete(t: Tables): (items: Pick<CompleteItem, 'id' | 'token' | 'resultJson'>[]) => { text: string; values: unknown[] } {
  const text = `WITH done AS (
      DELETE FROM ${t.jobs} j USING unnest($1::uuid[], $2::uuid[], $3::json[]) AS x(id, token, result)
      WHERE ${ownedRunning('j', 'x', '$1::uuid[]')} AND j.flow = 0
      RETURNING j.*, x.result AS new_result)
    INSERT INTO ${t.history} (${sharedColumns()}, state, finished_at, result)
    SELECT ${sharedColumns(undefined, { error: 'NULL' })}, 'completed', now(), new_result FROM done
    RETURNING id::text AS id`;
  return (items) => ({ text, values: [items.map((i) => i.id), items.map((i) => i.token), items.map((i) => i.resultJson)] });
}
