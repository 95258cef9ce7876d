/**
 * PostgreSQL failure: each owned running attempt either goes back to pending after its delay
 * (retry) or to history as failed (no delay: failed for good), and the attempt is recorded, in
 * one statement. Answers the ids it applied to.
 */
import type { FailItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { ownedRunning } from './owned.ts';
import { sharedColumns } from '../columns.ts';

export function jobsFail(t: Tables): (items: FailItem[], channel: string) => { text: string; values: unknown[] } {
  const text = `WITH x AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::json[], $5::bigint[]) AS x(id, token, attempt, err, delay_ms)),
    retry AS (
      UPDATE ${t.jobs} j SET state = 'pending', run_at = now() + x.delay_ms * interval '1 millisecond', error = x.err, token = NULL
      FROM x WHERE x.delay_ms IS NOT NULL AND ${ownedRunning('j', 'x', '$1::uuid[]')}
      RETURNING j.id, j.queue, j.worker_id, j.started_at, x.attempt, x.err, x.delay_ms),
    -- A job due again at once (a rescue, a zero backoff) wakes the other processes' workers at commit.
    wake AS (SELECT pg_notify($6, queue) FROM (SELECT DISTINCT queue FROM retry WHERE delay_ms = 0) q),
    dead AS (
      DELETE FROM ${t.jobs} j USING x
      WHERE x.delay_ms IS NULL AND ${ownedRunning('j', 'x', '$1::uuid[]')} AND j.flow = 0
      RETURNING j.*, x.err AS new_error, x.attempt AS failed_attempt),
    moved AS (
      INSERT INTO ${t.history} (${sharedColumns()}, state, finished_at, result)
      SELECT ${sharedColumns(undefined, { error: 'new_error' })}, 'failed', now(), NULL FROM dead
      RETURNING id),
    recorded AS (
      INSERT INTO ${t.attempts} (job_id, attempt, worker_id, started_at, finished_at, error)
      SELECT id, attempt, worker_id, started_at, now(), err FROM retry
      UNION ALL SELECT id, failed_attempt, worker_id, started_at, now(), new_error FROM dead
      ON CONFLICT (job_id, attempt) DO UPDATE SET error = excluded.error, finished_at = excluded.finished_at)
    SELECT r.id::text AS id FROM retry r CROSS JOIN (SELECT count(*) FROM wake) w UNION ALL SELECT id::text FROM moved`;
  return (items, channel) => ({
    text,
    values: [
      items.map((i) => i.id),
      items.map((i) => i.token),
      items.map((i) => i.attempt),
      items.map((i) => JSON.stringify(i.error)),
      items.map((i) => i.retryDelayMs),
      channel,
    ],
  });
}
