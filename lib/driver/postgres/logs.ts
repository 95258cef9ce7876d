/**
 * PostgreSQL log lines of running attempts, fenced (a line of an attempt that lost its claim is
 * not written), in the order they were logged. Answers the ids it applied to.
 */
import type { LogItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { ownedRunning } from './owned.ts';

export function logsAppend(t: Tables): (items: LogItem[]) => { text: string; values: unknown[] } {
  const text = `INSERT INTO ${t.logs} (job_id, attempt, at, message)
    SELECT x.id, x.attempt, to_timestamp(x.at / 1000.0), x.message
    FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::float8[], $5::text[]) WITH ORDINALITY AS x(id, token, attempt, at, message, n)
    WHERE EXISTS (SELECT 1 FROM ${t.jobs} j WHERE ${ownedRunning('j', 'x', '$1::uuid[]')})
    ORDER BY x.n
    RETURNING job_id::text AS id`;
  return (items) => {
    const lines = items.flatMap((it) => it.lines.map((l) => ({ ...l, id: it.id, token: it.token, attempt: it.attempt })));
    return { text, values: [lines.map((l) => l.id), lines.map((l) => l.token), lines.map((l) => l.attempt), lines.map((l) => l.at), lines.map((l) => l.message)] };
  };
}
