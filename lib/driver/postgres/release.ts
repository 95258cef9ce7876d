/**
 * PostgreSQL release: owned running attempts back to pending after a delay (snooze, graceful
 * shutdown), the attempt refunded when asked; a job due at once wakes the other processes.
 */
import type { ReleaseItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { ownedRunning } from './owned.ts';

export function jobsRelease(t: Tables): (items: ReleaseItem[], channel: string) => { text: string; values: unknown[] } {
  const text = `WITH back AS (
      UPDATE ${t.jobs} j SET state = 'pending', run_at = now() + x.delay_ms * interval '1 millisecond',
        attempts = j.attempts - x.refund, token = NULL
      FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::int[]) AS x(id, token, delay_ms, refund)
      WHERE ${ownedRunning('j', 'x', '$1::uuid[]')}
      RETURNING j.id, j.queue, x.delay_ms),
    wake AS (SELECT pg_notify($5, queue) FROM (SELECT DISTINCT queue FROM back WHERE delay_ms = 0) q)
    SELECT id::text AS id, (SELECT count(*) FROM wake) AS woke FROM back`;
  return (items, channel) => ({
    text,
    values: [items.map((i) => i.id), items.map((i) => i.token), items.map((i) => i.delayMs), items.map((i) => (i.refund ? 1 : 0)), channel],
  });
}
