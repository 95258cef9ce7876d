/**
 * PostgreSQL's monthly partitions (migrations 014 and 015): history by the UTC month of
 * finished_at; its trail, logs and attempts, by the UTC month their job was made, which its
 * UUIDv7 id tells (ids sort by their time: a month's ids are a range). Each table has one partition
 * per month, named `<table>_YYYY_MM`, beside `<table>_legacy` (the table from before the
 * migration, from MINVALUE to a month start) and `<table>_default` (where a row goes when its month
 * has no partition yet, so that a write never fails for want of one).
 *
 * The leader makes the current and next month ahead (monthCreate) and retention drops whole months
 * past it: a history month unless a live job may still read one of its rows (monthReferenced), a
 * trail month once no job made that month is left (trailMonthInUse). DDL takes no bound values: the
 * names and bounds written into it come from the validated prefix and from dates, never from input.
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

/** A table partitioned by month, and on what: history on its finish time, logs and attempts on their job's id. */
export interface MonthlyTable {
  name: string;
  column: 'finished_at' | 'job_id';
}

export const historyTable = (t: Tables): MonthlyTable => ({ name: t.history, column: 'finished_at' });
export const trailTables = (t: Tables): MonthlyTable[] => [{ name: t.logs, column: 'job_id' }, { name: t.attempts, column: 'job_id' }];

/** The UTC month `plus` months after the one holding `at`, as a partition of `table`. */
export function monthIn(table: MonthlyTable, at: Date, plus = 0): Month {
  const { key, from, to } = utcMonth(at, plus);
  return { name: `${table.name}_${key.replace('-', '_')}`, from, to };
}

/** A month of history (`<prefix>history_YYYY_MM`). */
export function monthOf(prefix: string, at: Date, plus = 0): Month {
  return monthIn({ name: `${prefix}history`, column: 'finished_at' }, at, plus);
}

/** The first UUID of a millisecond: every UUIDv7 made at or after `at` sorts at or after it. */
export function uuidFloor(at: Date): string {
  const hex = at.getTime().toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8)}-0000-0000-000000000000`;
}

/** The millisecond a UUID bound (or a UUIDv7) stands for. */
export function uuidTime(uuid: string): Date {
  return new Date(parseInt(uuid.slice(0, 8) + uuid.slice(9, 13), 16));
}

/** Whether one of `parts` already holds the start of `month` (the legacy partition covers the months up to its bound). */
export function monthCovered(month: Month, parts: HistoryPartition[]): boolean {
  return parts.some((p) => holds(p, month.from.getTime()));
}

/** Whether a partition other than the default holds the instant `at` (epoch ms). */
export function holds(p: HistoryPartition, at: number): boolean {
  return !p.isDefault && (p.from === null || p.from.getTime() <= at) && p.to !== null && at < p.to.getTime();
}

/** A bound's literal: a timestamptz in explicit UTC (whatever the session's TimeZone), or the first UUID of that instant. */
function bound(table: MonthlyTable, at: Date): string {
  return table.column === 'finished_at' ? `'${at.toISOString().replace('T', ' ').replace('Z', '+00')}'` : `'${uuidFloor(at)}'`;
}

/**
 * A table's partitions with their bounds, read back from the catalog's bound text: a timestamp
 * rendered with its offset (so the cast is exact in any session TimeZone), or a UUID, as text.
 */
export function partitionsList(table: MonthlyTable): Sql {
  const cast = table.column === 'finished_at' ? '::timestamptz' : '';
  const side = (which: string) => `(regexp_match(pg_get_expr(c.relpartbound, c.oid), '${which} \\(''([^'']+)''\\)'))[1]${cast}`;
  return {
    text: `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default, ${side('FROM')} AS from_at, ${side('TO')} AS to_at
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass($1)`,
    values: [table.name],
  };
}

/**
 * The UTC months the default partition holds rows of (column `month`, its first instant): months
 * no leader made in time. Normally none, and then the scan of an empty table. A trail row's month
 * is its job's, from its UUIDv7 (an id of another version stays in the default partition).
 */
export function defaultMonths(table: MonthlyTable): Sql {
  const made = `to_timestamp(('x0000' || substr(job_id::text, 1, 8) || substr(job_id::text, 10, 4))::bit(64)::bigint / 1000.0)`;
  const [at, only] = table.column === 'finished_at' ? ['finished_at', ''] : [made, ` WHERE substr(job_id::text, 15, 1) = '7'`];
  return {
    text: `SELECT DISTINCT date_trunc('month', ${at} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS month FROM ${table.name}_default${only}`,
    values: [],
  };
}

/** The catalog prints a bound in the session's DateStyle and TimeZone: ISO and UTC, so partitionsList reads it back exactly (SQL-style zone abbreviations are ambiguous). */
export function boundsReadable(): Sql {
  return { text: `SELECT set_config('DateStyle', 'ISO, MDY', true), set_config('TimeZone', 'UTC', true)`, values: [] };
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
 * Partition DDL holds ACCESS EXCLUSIVE on history until its transaction ends: a leader stopped in
 * it (SIGSTOP, a debugger, a frozen VM) held every completion and history read for as long. The
 * server ends the transaction's session once it has sent nothing for `ms`.
 */
export function idleLimit(ms: number): Sql {
  return { text: `SET LOCAL idle_in_transaction_session_timeout = '${Math.floor(ms)}ms'`, values: [] };
}

/**
 * Make a month's partition, in one transaction with partitionsLock: created on its own, given the
 * rows the default partition took for that month meanwhile (normally none: only when no leader ran
 * over the month's start), then attached (which checks the range, and that the default holds no
 * more of it: the default is locked first, so no write adds one in between).
 */
export function monthCreate(table: MonthlyTable, m: Month): Sql[] {
  const defaultName = `${table.name}_default`;
  const [from, to] = [bound(table, m.from), bound(table, m.to)];
  const range = `${table.column} >= ${from} AND ${table.column} < ${to}`;
  return [
    { text: `LOCK TABLE ${defaultName} IN ACCESS EXCLUSIVE MODE`, values: [] },
    { text: `CREATE TABLE ${m.name} (LIKE ${table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`, values: [] },
    { text: `WITH moved AS (DELETE FROM ${defaultName} WHERE ${range} RETURNING *) INSERT INTO ${m.name} SELECT * FROM moved`, values: [] },
    { text: `ALTER TABLE ${table.name} ATTACH PARTITION ${m.name} FOR VALUES FROM (${from}) TO (${to})`, values: [] },
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
 * Up to `limit` dependency edges whose child is a job of a history partition about to be dropped
 * (found from the edges, usually few, each probing the partition's key): its logs and attempts are
 * in partitions of their own, dropped with the month their job was made (trailMonthInUse). A job
 * still in the partition is neither live nor finished elsewhere (an id is in one place at a time; a
 * retried job left it), so its edges are its own to lose. Column `n`: how many went (fewer than
 * `limit`: the last batch).
 */
export function monthEdgesDelete(t: Tables, partition: string, limit: number): Sql {
  return {
    text: `WITH gone AS (DELETE FROM ${t.deps} WHERE ctid IN (
        SELECT dp.ctid FROM ${t.deps} dp WHERE EXISTS (SELECT 1 FROM ${partition} h WHERE h.id = dp.child_id) LIMIT $1)
      RETURNING 1)
      SELECT count(*)::int AS n FROM gone`,
    values: [limit],
  };
}

/**
 * Whether a job made within a trail partition's range (from null: since ever) is still live or in
 * history (column `in_use`): its logs and attempts are read with it, and written while it runs or
 * runs again. Both tables answer from their id index (history's per partition).
 */
export function trailMonthInUse(t: Tables, from: Date | null, to: Date): Sql {
  const range = `id < $1::uuid${from === null ? '' : ' AND id >= $2::uuid'}`;
  return {
    text: `SELECT EXISTS (SELECT 1 FROM ${t.jobs} WHERE ${range}) OR EXISTS (SELECT 1 FROM ${t.history} WHERE ${range}) AS in_use`,
    values: from === null ? [uuidFloor(to)] : [uuidFloor(to), uuidFloor(from)],
  };
}

/** Detach a month (run in the transaction that then checks that nothing reads it and drops it, or rolls back). */
export function monthDetach(table: MonthlyTable, partition: string): Sql {
  return { text: `ALTER TABLE ${table.name} DETACH PARTITION ${partition}`, values: [] };
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
