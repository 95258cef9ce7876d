/**
 * Keys that only some jobs have (a unique or debounce key, a reservation), indexed without a cost
 * to the jobs that do not have them.
 *
 * PostgreSQL, SQLite and SQL Server index them with partial (filtered) indexes: a job whose key is
 * NULL takes no entry. MySQL has no partial index: an index on jobs.unique_key would take an entry
 * for every job, and every plain insert and delete would pay for it. There, a job that has one of
 * these keys also gets a row in a side table (unique_jobs, reservations: migrations/mysql/013),
 * written in the transaction that writes the job, and the lookups start from it.
 *
 * The job's own columns stay the truth: a side row only says where to look, and each lookup
 * checks the job's columns. So a side row left behind (a reservation committed or cancelled, a job
 * deleted) answers nothing; commits and deletes remove theirs, and the leader prunes the rest.
 */
import type { Binder, Statement } from './statement.ts';
import { write } from './statement.ts';
import type { Sql } from './sql.ts';

/** What a new job holds of these keys. */
export interface SideKeys {
  id: string;
  uniqueKey: string | null;
  /** Milliseconds from now that a reservation lasts (null: not reserved). */
  reserveMs: number | null;
}

/** The side rows a new job needs: none where partial indexes exist, or when it has neither key. */
export function sideIndexRows({ d, t }: Sql, job: SideKeys): Statement[] {
  if (d.partialIndexes) return [];
  const rows: Statement[] = [];
  if (job.uniqueKey !== null) {
    rows.push(write(d, (b) => `INSERT INTO ${t.uniqueJobs} (unique_key, job_id) VALUES (${b.text(job.uniqueKey)}, ${b.id(job.id)})`));
  }
  if (job.reserveMs !== null) {
    rows.push(write(d, (b) =>
      `INSERT INTO ${t.reservations} (job_id, reserved_until) VALUES (${b.id(job.id)}, ${d.plusMs(d.now, b.bigint(job.reserveMs))})`));
  }
  return rows;
}

/**
 * `FROM … WHERE …` over the jobs of `table` (live or history, aliased `j`) whose unique key is
 * `key` (a bound placeholder): the key's index, or its side table joined to the jobs. `hint`
 * follows the jobs table (SQL Server's lock hint).
 */
export function jobsWithUniqueKey({ d, t }: Sql, table: string, key: string, hint = ''): string {
  return d.partialIndexes
    ? `${table} j${hint} WHERE j.unique_key = ${key}`
    : `${t.uniqueJobs} u JOIN ${table} j${hint} ON j.id = u.job_id WHERE u.unique_key = ${key}`; // a job's key never changes
}

/** A condition on a live job (alias-free): it is reserved. */
export function isReserved({ d, t }: Sql): string {
  return d.partialIndexes
    ? 'reserved_until IS NOT NULL'
    : `reserved_until IS NOT NULL AND id IN (SELECT job_id FROM ${t.reservations})`;
}

/** Reserved jobs whose reservation ran out, oldest first: the query the leader starts from. */
export function expiredReservations({ d, t }: Sql, b: Binder, limit: number): string {
  return d.partialIndexes
    ? `SELECT ${b.top(limit)}id FROM ${t.jobs} WHERE reserved_until < ${d.now} ORDER BY reserved_until${b.limit(limit)}`
    : `SELECT j.id FROM ${t.reservations} r JOIN ${t.jobs} j ON j.id = r.job_id
       WHERE r.reserved_until < ${d.now} AND j.reserved_until < ${d.now} ORDER BY r.reserved_until${b.limit(limit)}`;
}

/** Side rows whose job no longer needs them (committed, cancelled, finished, deleted): the leader's sweep. */
export function sideIndexPrune({ d, t }: Sql): Statement[] {
  if (d.partialIndexes) return [];
  return [
    write(d, () =>
      `DELETE FROM ${t.reservations} WHERE reserved_until < ${d.now}
       AND NOT EXISTS (SELECT 1 FROM ${t.jobs} j WHERE j.id = ${t.reservations}.job_id AND j.reserved_until IS NOT NULL)`),
  ];
}

/** Side rows of jobs that are gone (deleted, or pruned from history), by id. */
export function sideIndexForget({ d, t }: Sql, ids: string[]): Statement[] {
  if (d.partialIndexes) return [];
  return [t.uniqueJobs, t.reservations].map((table) =>
    write(d, (b) =>
      `DELETE FROM ${table} WHERE job_id ${b.ids(ids)}
       AND NOT EXISTS (SELECT 1 FROM ${t.jobs} WHERE id = ${table}.job_id)
       AND NOT EXISTS (SELECT 1 FROM ${t.history} WHERE id = ${table}.job_id)`));
}

/** A reservation's side row, once committed. */
export function reservationForget({ d, t }: Sql, ids: string[]): Statement[] {
  if (d.partialIndexes) return [];
  return [write(d, (b) => `DELETE FROM ${t.reservations} WHERE job_id ${b.ids(ids)}`)];
}
