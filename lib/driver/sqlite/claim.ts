/**
 * SQLite claim: one UPDATE … RETURNING over the next due jobs, found through the claim index by
 * rowid (writers are serialised by the database lock, so no row locking is needed). The rowid
 * comes back so the outcome can find the row by its integer key.
 */
import type { ClaimRequest } from '../store.ts';
import { CLAIM_COLUMNS } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { sqlite } from '../portable/dialect.ts';

export function jobsClaim(t: Tables): (req: ClaimRequest, token: string) => { text: string; values: unknown[] } {
  // Four texts (with or without a queue list, with or without excluded queues), each built once.
  const texts = new Map<string, string>();
  const build = (queues: boolean, exclude: boolean) => {
    let queueFilter = queues ? `AND queue IN (SELECT value FROM json_each(?))` : '';
    if (exclude) queueFilter += ` AND queue NOT IN (SELECT value FROM json_each(?))`;
    return `UPDATE ${t.jobs} SET state = 'running', token = ?, worker_id = ?, attempts = attempts + 1,
        started_at = ${sqlite.now}, progress = NULL, progress_message = NULL
      WHERE rowid IN (SELECT rowid FROM ${t.jobs} INDEXED BY ${t.jobsClaim}
        WHERE state = 'pending' AND run_at <= ${sqlite.now} AND name IN (SELECT value FROM json_each(?)) ${queueFilter}
          AND queue NOT IN (SELECT queue FROM ${t.paused}) AND queue NOT IN (SELECT queue FROM ${t.queues})
        ORDER BY priority DESC, run_at, rowid LIMIT ?)
      RETURNING ${CLAIM_COLUMNS}, rowid AS rowid_`;
  };
  return (req, token) => {
    const key = `${!!req.queues}:${!!req.excludeQueues}`;
    let text = texts.get(key);
    if (text === undefined) texts.set(key, (text = build(!!req.queues, !!req.excludeQueues)));
    const values: unknown[] = [token, req.workerId, JSON.stringify(req.names)];
    if (req.queues) values.push(JSON.stringify(req.queues));
    if (req.excludeQueues) values.push(JSON.stringify(req.excludeQueues));
    values.push(req.limit);
    return { text, values };
  };
}
