/** PostgreSQL progress of running attempts, fenced, many in one statement. Answers the ids it applied to. */
import type { ProgressItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { ownedRunning } from './owned.ts';

export function jobsSaveProgress(t: Tables): (items: ProgressItem[]) => { text: string; values: unknown[] } {
  const text = `UPDATE ${t.jobs} j SET progress = x.progress, progress_message = x.message
    FROM unnest($1::uuid[], $2::uuid[], $3::real[], $4::text[]) AS x(id, token, progress, message)
    WHERE ${ownedRunning('j', 'x', '$1::uuid[]')} RETURNING j.id::text AS id`;
  return (items) => ({ text, values: [items.map((i) => i.id), items.map((i) => i.token), items.map((i) => i.progress), items.map((i) => i.message)] });
}
