/**
 * PostgreSQL completion: the owned running rows (fenced by id, token and state, and without
 * workflow to run: flow = 0, see ../portable/flow.ts; found by primary key, ./owned.ts) deleted
 * and copied to history as completed, in one statement. Answers the ids it moved.
 */
import type { CompleteItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { sharedColumns } from '../columns.ts';
import { byOwnedTid, ownedRows } from './owned.ts';

export function jobsComplete(t: Tables): (items: Pick<CompleteItem, 'id' | 'token' | 'resultJson'>[]) => { text: string; values: unknown[] } {
  const text = `WITH ${ownedRows(t, 'unnest($1::uuid[], $2::uuid[], $3::json[]) AS x(id, token, result)', 'j.flow = 0')},
    done AS (DELETE FROM ${t.jobs} j WHERE ${byOwnedTid('j')} RETURNING j.*)
    INSERT INTO ${t.history} (${sharedColumns()}, state, finished_at, result)
    SELECT ${sharedColumns((c) => `done.${c}`, { error: 'NULL' })}, 'completed', now(), owned.result FROM done JOIN owned ON owned.id = done.id
    RETURNING id::text AS id`;
  return (items) => ({ text, values: [items.map((i) => i.id), items.map((i) => i.token), items.map((i) => i.resultJson)] });
}
