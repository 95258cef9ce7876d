/**
 * The claim as a named (prepared) statement: the server parses and plans it once per connection
 * instead of on every call. Planning was about half of the claim's time in the database (EXPLAIN
 * ANALYZE medians over 300 rounds of 10 jobs: 0.32 ms planning + 0.36 ms execution), and it grows
 * with every index on the jobs table, partial ones included (their predicates are checked at each
 * planning). The batch writes are not prepared: their best plan depends on the batch's size (see
 * PostgresStore.ids).
 *
 * Only on connections that keep their server session: behind a transaction pooler each
 * transaction may run on another server connection, where the statement was never prepared.
 */
import { createHash } from 'node:crypto';

export interface NamedQuery {
  name: string;
  text: string;
  values: unknown[];
}

/** Names by text: a name always stands for one text (pg refuses a name reused with another). */
const names = new Map<string, string>();

export function prepared(q: { text: string; values: unknown[] }): NamedQuery {
  let name = names.get(q.text);
  if (name === undefined) {
    name = `sqljobs_${createHash('sha1').update(q.text).digest('hex').slice(0, 24)}`;
    names.set(q.text, name);
  }
  return { name, text: q.text, values: q.values };
}

/**
 * A pooler swapped the server connection under a client of ours: the server lacks a statement the
 * client prepared (26000), or already has one by that name, prepared by another client (42P05).
 */
export function preparedStatementLost(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '26000' || code === '42P05';
}
