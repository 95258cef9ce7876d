/**
 * MySQL/MariaDB history partitioned by UTC month on finished_at (`PARTITION BY RANGE
 * COLUMNS(finished_at)`), made by `sqljobs history-partitions` (see the README, "Partitioned
 * history (MySQL/MariaDB, SQL Server)"): one partition a month, `p<YYYY>_<MM>`, holding the rows
 * that finished before the next month's start, and `pfuture` (MAXVALUE) behind them, so that a
 * completion never fails for want of a partition.
 *
 * SQL as pure functions. DDL takes no bound values: the names and bounds written into it come from
 * the validated prefix and from dates, never from input.
 */
import type { Tables } from '../portable/statement.ts';
import type { MonthPartition } from '../monthly.ts';
import type { CatalogPartition } from '../partition-months.ts';

type Sql = { text: string; values: unknown[] };

/** The catch-all partition behind the months (VALUES LESS THAN MAXVALUE). */
export const FUTURE = 'pfuture';

/** A partition of history as information_schema describes it (`to` null: MAXVALUE). */
/** A partition of history (information_schema.PARTITIONS). */
export type MysqlPartition = CatalogPartition;

/** A DATETIME(3) literal of a UTC instant (the column holds UTC; no session time zone applies to a literal). */
function literal(at: Date): string {
  return `'${at.toISOString().slice(0, 23).replace('T', ' ')}'`;
}

/** A bound as information_schema writes it (`'2026-12-01 00:00:00.000'`, or MAXVALUE) as a UTC instant. */
export function parseBound(description: string): Date | null {
  if (description === 'MAXVALUE') return null;
  return new Date(`${description.replace(/'/g, '').replace(' ', 'T')}Z`);
}

/** History's partitions in bound order (none: not partitioned; one row with a null name: not partitioned either). */
export function partitionsList(t: Tables): Sql {
  return {
    text: `SELECT PARTITION_NAME AS name, PARTITION_DESCRIPTION AS bound, TABLE_ROWS AS n, DATA_LENGTH + INDEX_LENGTH AS bytes
      FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL
      ORDER BY PARTITION_ORDINAL_POSITION`,
    values: [t.history],
  };
}

/** The oldest finish in history (column `at`): one step along the finish-time index. */
export function oldestFinish(t: Tables): Sql {
  return { text: `SELECT MIN(finished_at) AS at FROM ${t.history}`, values: [] };
}

/**
 * Partition an unpartitioned history: one partition per month from the oldest finish's month to
 * next month, then pfuture. The key of a partitioned table includes its partition column, so the
 * primary key becomes (id, finished_at) (an id is in one place at a time anyway: every move deletes
 * it where it was, in the same transaction). The server copies the table (ALGORITHM=COPY): reads go
 * on, writes (completions) wait until it is done (LOCK=SHARED).
 */
export function partitionTable(t: Tables, months: MonthPartition[]): Sql {
  const parts = months.map((m) => `PARTITION ${m.name} VALUES LESS THAN (${literal(m.to)})`);
  return {
    text: `ALTER TABLE ${t.history} DROP PRIMARY KEY, ADD PRIMARY KEY (id, finished_at), ALGORITHM = COPY, LOCK = SHARED
      PARTITION BY RANGE COLUMNS(finished_at) (${[...parts, `PARTITION ${FUTURE} VALUES LESS THAN (MAXVALUE)`].join(', ')})`,
    values: [],
  };
}

/**
 * Split months off pfuture (they must follow the last month's bound): the server copies only
 * pfuture's rows (normally none) into the new partitions.
 */
export function monthsSplit(t: Tables, months: MonthPartition[]): Sql {
  const parts = months.map((m) => `PARTITION ${m.name} VALUES LESS THAN (${literal(m.to)})`);
  return {
    text: `ALTER TABLE ${t.history} REORGANIZE PARTITION ${FUTURE} INTO (${[...parts, `PARTITION ${FUTURE} VALUES LESS THAN (MAXVALUE)`].join(', ')})`,
    values: [],
  };
}

/**
 * Whether a live job may still read a row of `partition` (column `referenced`): a parent (any
 * edge) of a live job, which reads it through ctx.parents / ctx.deadLetterOf when it runs, or a job
 * of a batch not finished yet (batchStatus and the batch's callbacks count it). The aliases are
 * those locked by dropLock (under LOCK TABLES each use of a table needs an alias of its own).
 */
export function monthReferenced(t: Tables, partition: string): Sql {
  return {
    text: `SELECT EXISTS (SELECT 1 FROM ${t.deps} dp JOIN ${t.history} PARTITION (${partition}) h ON h.id = dp.parent_id JOIN ${t.jobs} j ON j.id = dp.child_id)
        OR EXISTS (SELECT 1 FROM ${t.batches} bt JOIN ${t.history} PARTITION (${partition}) hb ON hb.batch_id = bt.id WHERE bt.finished_at IS NULL) AS referenced`,
    values: [],
  };
}

/** Up to `limit` ids of a partition after `afterId`, in id order (a page of the jobs whose trail goes first). */
export function monthIds(t: Tables, partition: string, afterId: string | null, limit: number): Sql {
  return {
    text: `SELECT id FROM ${t.history} PARTITION (${partition}) WHERE ? IS NULL OR id > ? ORDER BY id LIMIT ?`,
    values: [afterId, afterId, limit],
  };
}

/**
 * The trail of jobs in a partition about to be dropped: logs, attempts, their own dependency edges
 * and side-index rows. A job still in the partition is neither live nor finished elsewhere (an id is
 * in one place at a time), so its trail is its own to lose.
 */
export function monthTrailDelete(t: Tables, ids: string[]): Sql[] {
  return ([[t.logs, 'job_id'], [t.attempts, 'job_id'], [t.deps, 'child_id'], [t.uniqueJobs, 'job_id'], [t.reservations, 'job_id']] as const)
    .map(([table, key]) => ({ text: `DELETE FROM ${table} WHERE ${key} IN (?)`, values: [ids] }));
}

/**
 * The locks a drop holds while it checks its references and drops: history for writing (waits for
 * every transaction that read it, e.g. an enqueue that locked a finished parent there, so that its
 * edge is seen), and the tables the check reads (their aliases too). A few milliseconds, bounded by
 * lock_wait_timeout while it waits.
 */
export function dropLock(t: Tables): Sql {
  return {
    text: `LOCK TABLES ${t.history} WRITE, ${t.history} AS h WRITE, ${t.history} AS hb WRITE, ${t.deps} AS dp READ, ${t.jobs} AS j READ, ${t.batches} AS bt READ`,
    values: [],
  };
}

export function monthDrop(t: Tables, partition: string): Sql {
  return { text: `ALTER TABLE ${t.history} DROP PARTITION ${partition}`, values: [] };
}
