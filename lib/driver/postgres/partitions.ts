/**
 * PostgreSQL history partitions (migration 014): one per UTC month on finished_at, named
 * `<prefix>history_YYYY_MM`, beside `<prefix>history_legacy` (the table from before 014, from
 * MINVALUE to a month start) and `<prefix>history_default` (where a finished job goes when its month
 * has no partition yet, so that a completion never fails for want of one).
 *
 * The leader makes the current and next month ahead (monthCreate) and retention drops whole months
 * past it (monthDrop) unless a live job may still read one of their rows (monthReferenced). DDL
 * takes no bound values: the names and bounds written into it come from the validated prefix and
 * from dates, never from input.
 */
import type { Tables } from '../portable/statement.ts';
import { utcMonth } from '../month.ts';

type Sql = { text: string; values: unknown[] };

/** A partition of history, as the catalog describes it (bounds null: MINVALUE, or DEFAULT). */
export interface HistoryPartition {
  name: string;
  isDefault: boolean;
  from: Date | null;
  to: Date | null;
}

/** A UTC month: its partition's name and bounds. */
export interface Month {
  name: string;
  from: Date;
  to: Date;
}

/** The UTC month `plus` months after the one holding `at`. */
export function monthOf(prefix: string, at: Date, plus = 0): Month {
  const { key, from, to } = utcMonth(at, plus);
  return { name: `${prefix}history_${key.replace('-', '_')}`, from, to };
}

/** Whether one of `parts` already holds the start of `month` (the legacy partition covers the months up to its bound). */
export function monthCovered(month: Month, parts: HistoryPartition[]): boolean {
  const at = month.from.getTime();
  return parts.some((p) => !p.isDefault && (p.from === null || p.from.getTime() <= at) && p.to !== null && at < p.to.getTime());
}

/** A timestamptz literal for a bound: explicit UTC, whatever the session's TimeZone. */
function bound(at: Date): string {
  return `'${at.toISOString().replace('T', ' ').replace('Z', '+00')}'`;
}

/**
 * History's partitions with their bounds, read back from the catalog's bound text (rendered with
 * its offset, so the cast is exact in any session TimeZone).
 */
export function partitionsList(t: Tables): Sql {
  return {
    text: `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default,
        (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS from_at,
        (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS to_at
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass($1)`,
    values: [t.history],
  };
}

/**
 * The UTC months the default partition holds rows of (column `month`, its first instant): months
 * no leader made in time. Normally none, and then the scan of an empty table.
 */
export function defaultMonths(defaultName: string): Sql {
  return {
    text: `SELECT DISTINCT date_trunc('month', finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS month FROM ${defaultName}`,
    values: [],
  };
}

/** Partition DDL of one prefix takes turns (two leaders, or a leader and a start). */
export function partitionsLock(prefix: string): Sql {
  return { text: 'SELECT pg_advisory_xact_lock(hashtext($1))', values: [`${prefix}history_partitions`] };
}

/**
 * A lock wait for partition DDL queues every completion behind it (a waiting ACCESS EXCLUSIVE
 * request blocks later ones): give up early instead, and try again next round.
 */
export function lockTimeout(ms: number): Sql {
  return { text: `SET LOCAL lock_timeout = '${Math.floor(ms)}ms'`, values: [] };
}

/**
 * Make a month's partition, in one transaction with partitionsLock: created on its own, given the
 * rows the default partition took for that month meanwhile (normally none: only when no leader ran
 * over the month's start), then attached (which checks the range, and that the default holds no
 * more of it: the default is locked first, so no completion adds one in between).
 */
export function monthCreate(t: Tables, defaultName: string, m: Month): Sql[] {
  const range = `finished_at >= ${bound(m.from)} AND finished_at < ${bound(m.to)}`;
  return [
    { text: `LOCK TABLE ${defaultName} IN ACCESS EXCLUSIVE MODE`, values: [] },
    { text: `CREATE TABLE ${m.name} (LIKE ${t.history} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`, values: [] },
    { text: `WITH moved AS (DELETE FROM ${defaultName} WHERE ${range} RETURNING *) INSERT INTO ${m.name} SELECT * FROM moved`, values: [] },
    { text: `ALTER TABLE ${t.history} ATTACH PARTITION ${m.name} FOR VALUES FROM (${bound(m.from)}) TO (${bound(m.to)})`, values: [] },
  ];
}

/**
 * Whether a live job may still read a row of `partition`: it is a parent (any edge: dependency,
 * callback, dead letter) of a job still live, whose ctx.parents / ctx.deadLetterOf reads it when it
 * runs; or it is a job of a batch not finished yet (batchStatus and the batch's callbacks count its
 * finished jobs). Column `referenced`.
 */
export function monthReferenced(t: Tables, partition: string): Sql {
  return {
    text: `SELECT EXISTS (SELECT 1 FROM ${t.jobs} j JOIN ${t.deps} dp ON dp.child_id = j.id JOIN ${partition} h ON h.id = dp.parent_id)
        OR EXISTS (SELECT 1 FROM ${t.batches} bt JOIN ${partition} h ON h.batch_id = bt.id WHERE bt.finished_at IS NULL) AS referenced`,
    values: [],
  };
}

/**
 * The trail of up to `limit` jobs of a partition about to be dropped (ids after `afterId`, in id
 * order): their logs, attempts and dependency edges. A job still in the partition is neither live
 * nor finished elsewhere (an id is in one place at a time; a retried job left it), so its trail is
 * its own to lose. Answers the last id looked at and how many (fewer than `limit`: the end).
 */
export function monthTrailDelete(t: Tables, partition: string, afterId: string | null, limit: number): Sql {
  return {
    text: `WITH page AS (SELECT id FROM ${partition} WHERE $1::uuid IS NULL OR id > $1::uuid ORDER BY id LIMIT $2),
      logs AS (DELETE FROM ${t.logs} WHERE job_id IN (SELECT id FROM page)),
      attempts AS (DELETE FROM ${t.attempts} WHERE job_id IN (SELECT id FROM page)),
      deps AS (DELETE FROM ${t.deps} WHERE child_id IN (SELECT id FROM page))
      SELECT max(id::text) AS last, count(*)::int AS n FROM page`,
    values: [afterId, limit],
  };
}

/** Detach a month (run in the transaction that then checks monthReferenced and drops it, or rolls back). */
export function monthDetach(t: Tables, partition: string): Sql {
  return { text: `ALTER TABLE ${t.history} DETACH PARTITION ${partition}`, values: [] };
}

export function monthDrop(partition: string): Sql {
  return { text: `DROP TABLE ${partition}`, values: [] };
}

/**
 * Each partition's size on disk (with its indexes and TOAST), row estimate (reltuples: -1 when
 * never analyzed) and, from ANALYZE's most common values, the share of each state: the History view
 * estimates a large month from these instead of counting it.
 */
export function partitionsStats(t: Tables): Sql {
  return {
    text: `SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes, c.reltuples AS rows,
        s.most_common_vals::text::text[] AS states, s.most_common_freqs AS shares
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      LEFT JOIN pg_stats s ON s.schemaname = (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace) AND s.tablename = c.relname AND s.attname = 'state'
      WHERE i.inhparent = to_regclass($1)`,
    values: [t.history],
  };
}
