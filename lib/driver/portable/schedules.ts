/**
 * Recurring schedules: listing, the due ones, enabling, removing and moving the next run on are
 * the same statements on every database. Defining a schedule (an upsert whose conditions differ)
 * and firing a tick (the tick, the job and the schedule in one transaction) are spelled per
 * dialect (lib/driver/<dialect>/).
 *
 * `key` is a reserved word in MySQL and SQL Server (d.col); `enabled` is a boolean stored as
 * 0/1, boolean or bit (compared with d.true, bound with b.bool); times are bound with b.time.
 */
import { read, write, type Statement } from './statement.ts';
import type { Sql } from './sql.ts';

export function schedulesList({ d, t }: Sql): Statement {
  return read(d, () => `SELECT *, ${d.payloadText('payload')} AS payload_text FROM ${t.schedules} ORDER BY ${d.col('key')}`);
}

/** Enabled schedules whose next run is due, each with the database's now (db_now) it was compared with. */
export function schedulesDue({ d, t }: Sql): Statement {
  return read(d, () => `SELECT *, ${d.payloadText('payload')} AS payload_text, ${d.now} AS db_now FROM ${t.schedules} WHERE enabled = ${d.true} AND next_run_at <= ${d.now}`);
}

/** Enable or disable a schedule, moving its next run when one is given. Changes one row when the schedule exists. */
export function scheduleSetEnabled({ d, t }: Sql, k: { key: string; enabled: boolean; nextRunAt: number | null }): Statement {
  const key = d.col('key');
  return write(d, (b) =>
    `UPDATE ${t.schedules} SET enabled = ${b.bool(k.enabled)}, next_run_at = COALESCE(${b.time(k.nextRunAt)}, next_run_at), updated_at = ${d.now}${d.output('inserted', [key])}
     WHERE ${key} = ${b.text(k.key)}${d.returning([key])}`, true);
}

/** A schedule's fired ticks: removed with it (scheduleRemove), in the same transaction. */
export function scheduleTicksRemove({ d, t }: Sql, key: string): Statement {
  return write(d, (b) => `DELETE FROM ${t.ticks} WHERE schedule_key = ${b.text(key)}`);
}

/** Remove a schedule (after its ticks: scheduleTicksRemove). Changes one row when it existed. */
export function scheduleRemove({ d, t }: Sql, key: string): Statement {
  const col = d.col('key');
  return write(d, (b) => `DELETE FROM ${t.schedules}${d.output('deleted', [col])} WHERE ${col} = ${b.text(key)}${d.returning([col])}`, true);
}

/**
 * Move the next run on from `from`: a compare-and-set, so a next run moved meanwhile (an edit,
 * another leader) is not overwritten. A schedule without a next run has ended, and is disabled.
 */
export function scheduleAdvance({ d, t }: Sql, k: { key: string; from: number; nextRunAt: number | null }): Statement {
  return write(d, (b) =>
    `UPDATE ${t.schedules} SET next_run_at = ${b.time(k.nextRunAt)}${k.nextRunAt === null ? `, enabled = ${b.bool(false)}` : ''}
     WHERE ${d.col('key')} = ${b.text(k.key)} AND next_run_at = ${b.time(k.from)}`);
}

/** A run outside the ticks (trigger now): counted as the schedule's last run, its next run left as it was. */
export function scheduleRecordRun({ d, t }: Sql, k: { key: string; jobId: string }): Statement {
  return write(d, (b) =>
    `UPDATE ${t.schedules} SET last_run_at = ${d.now}, last_job_id = ${b.id(k.jobId)}, runs = runs + 1 WHERE ${d.col('key')} = ${b.text(k.key)}`);
}

/**
 * A tick's transaction waits at most TICK_LOCK_WAIT_MS for its row, and a session that holds one
 * and goes silent (a leader SIGSTOPped, a VM paused mid-tick) is ended by the server after
 * TICK_IDLE_MS: its successor's tick for the same slot waited on the held key for as long as the
 * pause lasted, and every schedule behind it in the round with it. The tick that timed out is
 * tried again next round.
 */
export const TICK_LOCK_WAIT_MS = 2_000;
export const TICK_IDLE_MS = 10_000;
