/**
 * SQL Server history partitioned by UTC month on finished_at, made by `sqljobs history-partitions`
 * (README, "Partitioned history (MySQL/MariaDB, SQL Server)"): a partition function
 * `<prefix>history_months` (RANGE RIGHT on DATETIME2(3), one boundary per month start, from the
 * oldest finished job's month to the end of next month) and its scheme `<prefix>history_months_scheme`.
 * Partition 1 holds what finished before the first month (nothing, once made), the last one what
 * finishes after next month (a completion never fails for want of a partition).
 *
 * Retention empties a month with TRUNCATE TABLE … WITH (PARTITIONS (n)), which needs every index
 * aligned with the scheme (the script rebuilds them all on it), then merges its lower boundary away.
 * Not exercised against a live server here (none runs in this project's tests): the statements are
 * checked as text in test/mssql/.
 *
 * DDL takes bound values only where T-SQL allows a variable (SPLIT / MERGE RANGE); the names and
 * bounds written into the rest come from the validated prefix and from dates.
 */
import type { Tables } from '../portable/statement.ts';
import type { MonthPartition, PartitionBounds } from '../monthly.ts';
import type { Stmt } from './tsql.ts';

/** A partition as sys.partitions describes it: its number, bounds (null: unbounded), row count and pages used by all its indexes, in bytes. */
export interface MssqlPartition extends PartitionBounds {
  number: number;
  from: Date | null;
  rows: number;
  bytes: number;
}

/** The nonclustered indexes of history as migrations/mssql leave them (the script rebuilds each aligned; test/mssql checks the list against the migrations). */
export const HISTORY_INDEXES: { name: string; columns: string; where?: string }[] = [
  { name: 'history_finished', columns: 'finished_at, state' },
  { name: 'history_state', columns: 'state, id' },
  { name: 'history_ref', columns: 'ref_id', where: 'ref_id IS NOT NULL' },
  { name: 'history_tag', columns: 'tag, id', where: 'tag IS NOT NULL' },
  { name: 'history_batch', columns: 'batch_id, id', where: 'batch_id IS NOT NULL' },
  { name: 'history_name', columns: 'name, id' },
  { name: 'history_queue', columns: 'queue, id' },
  { name: 'history_user', columns: 'user_id, id', where: 'user_id IS NOT NULL' },
  { name: 'history_unique', columns: 'unique_key, created_at', where: 'unique_key IS NOT NULL' },
];

export function partitionNames(prefix: string): { fn: string; scheme: string } {
  return { fn: `${prefix}history_months`, scheme: `${prefix}history_months_scheme` };
}

/** A DATETIME2(3) literal of a UTC instant (ISO 8601: read the same whatever the session's language and date format). */
function literal(at: Date): string {
  return `'${at.toISOString().slice(0, 23)}'`;
}

/** History's partitions with their bounds (none: not partitioned), from the clustered index. */
export function partitionsList(t: Tables): Stmt {
  const bound = (alias: string) => `CONVERT(VARCHAR(23), CAST(${alias}.value AS DATETIME2(3)), 126)`;
  return {
    // Sizes from sys.allocation_units (a catalog view: no VIEW DATABASE STATE needed, unlike sys.dm_db_partition_stats).
    text: `SELECT p.partition_number AS n, ${bound('lo')} AS from_at, ${bound('hi')} AS to_at, p.rows,
        (SELECT SUM(a.used_pages) FROM sys.partitions ap JOIN sys.allocation_units a ON a.container_id = ap.partition_id
          WHERE ap.object_id = p.object_id AND ap.partition_number = p.partition_number) * 8192 AS bytes
      FROM sys.partitions p
      JOIN sys.indexes i ON i.object_id = p.object_id AND i.index_id = p.index_id
      JOIN sys.partition_schemes ps ON ps.data_space_id = i.data_space_id
      LEFT JOIN sys.partition_range_values lo ON lo.function_id = ps.function_id AND lo.boundary_id = p.partition_number - 1
      LEFT JOIN sys.partition_range_values hi ON hi.function_id = ps.function_id AND hi.boundary_id = p.partition_number
      WHERE p.object_id = OBJECT_ID(@p1) AND p.index_id IN (0, 1)
      ORDER BY p.partition_number`,
    params: [{ name: 'p1', type: 'nvarchar', value: t.history }],
  };
}

/** A bound as partitionsList answers it (`2026-12-01T00:00:00.000`), as a UTC instant. */
export function parseBound(v: unknown): Date | null {
  return v == null ? null : new Date(`${String(v)}Z`);
}

export function oldestFinish(t: Tables): Stmt {
  return { text: `SELECT MIN(finished_at) AS at FROM ${t.history}`, params: [] };
}

/**
 * Partition an unpartitioned history: the function and scheme, the primary key made clustered on
 * (id, finished_at) on the scheme (a partitioned unique index includes the partition column), and
 * every nonclustered index rebuilt aligned. Rebuilds the table: offline (history locked) unless
 * the edition allows ONLINE = ON (see the README).
 */
export function partitionTable(t: Tables, prefix: string, months: MonthPartition[]): Stmt[] {
  const { fn, scheme } = partitionNames(prefix);
  const bounds = [months[0].from, ...months.map((m) => m.to)].map(literal).join(', ');
  const on = `ON ${scheme} (finished_at)`;
  return [
    { text: `CREATE PARTITION FUNCTION ${fn} (DATETIME2(3)) AS RANGE RIGHT FOR VALUES (${bounds})`, params: [] },
    { text: `CREATE PARTITION SCHEME ${scheme} AS PARTITION ${fn} ALL TO ([PRIMARY])`, params: [] },
    {
      text: `DECLARE @pk SYSNAME = (SELECT name FROM sys.key_constraints WHERE parent_object_id = OBJECT_ID(@p1) AND type = 'PK');
EXEC (N'ALTER TABLE ${t.history} DROP CONSTRAINT ' + QUOTENAME(@pk))`,
      params: [{ name: 'p1', type: 'nvarchar', value: t.history }],
    },
    { text: `ALTER TABLE ${t.history} ADD CONSTRAINT ${t.history}_pkey PRIMARY KEY CLUSTERED (id, finished_at) ${on}`, params: [] },
    ...HISTORY_INDEXES.map((i) => ({
      text: `CREATE INDEX ${prefix}${i.name} ON ${t.history} (${i.columns})${i.where ? ` WHERE ${i.where}` : ''} WITH (DROP_EXISTING = ON) ${on}`,
      params: [],
    })),
  ];
}

/** Split months off the last partition (its rows past each new boundary move; normally none). */
export function monthsSplit(prefix: string, months: MonthPartition[]): Stmt[] {
  const { fn, scheme } = partitionNames(prefix);
  return months.flatMap((m) => [
    { text: `ALTER PARTITION SCHEME ${scheme} NEXT USED [PRIMARY]`, params: [] },
    { text: `ALTER PARTITION FUNCTION ${fn}() SPLIT RANGE (@p1)`, params: [{ name: 'p1', type: 'datetime2', value: m.to }] },
  ]);
}

/** A month's rows by its bounds (a range the optimizer eliminates partitions with). */
function inMonth(alias: string): string {
  return `${alias}.finished_at >= @from AND ${alias}.finished_at < @to`;
}

function monthParams(p: MssqlPartition): Stmt['params'] {
  return [{ name: 'from', type: 'datetime2', value: p.from }, { name: 'to', type: 'datetime2', value: p.to }];
}

/** Whether a live job may still read a row of the month: a parent of a live job, or a job of an unfinished batch (column `referenced`). */
function referencedQuery(t: Tables): string {
  return `SELECT CASE WHEN EXISTS (SELECT 1 FROM ${t.deps} dp JOIN ${t.history} h ON h.id = dp.parent_id AND ${inMonth('h')} JOIN ${t.jobs} j ON j.id = dp.child_id)
      OR EXISTS (SELECT 1 FROM ${t.batches} bt JOIN ${t.history} h ON h.batch_id = bt.id AND ${inMonth('h')} WHERE bt.finished_at IS NULL)
    THEN 1 ELSE 0 END AS referenced`;
}

export function monthReferenced(t: Tables, p: MssqlPartition): Stmt {
  return { text: referencedQuery(t), params: monthParams(p) };
}

export function monthIds(t: Tables, p: MssqlPartition, afterId: string | null, limit: number): Stmt {
  return {
    text: `SELECT TOP (@limit) id FROM ${t.history} h WHERE ${inMonth('h')} AND (@after IS NULL OR id > @after) ORDER BY id`,
    params: [...monthParams(p), { name: 'after', type: 'char36', value: afterId }, { name: 'limit', type: 'int', value: limit }],
  };
}

/** The trail of a month's jobs (logs, attempts, their own dependency edges), ids as one JSON array. */
export function monthTrailDelete(t: Tables, ids: string[]): Stmt {
  const list = `(SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@ids))`;
  return {
    text: [[t.logs, 'job_id'], [t.attempts, 'job_id'], [t.deps, 'child_id']].map(([table, key]) => `DELETE FROM ${table} WHERE ${key} IN ${list};`).join('\n'),
    params: [{ name: 'ids', type: 'nvarchar(max)', value: JSON.stringify(ids) }],
  };
}

/**
 * Check and drop in one transaction (answers column `dropped`): history locked exclusively first,
 * without waiting (NOWAIT: error 1222 when a transaction holds a lock there, e.g. an enqueue that
 * locked a finished parent, whose edge the check must see; a session setting such as LOCK_TIMEOUT
 * would stay on the pooled connection), the references checked, then the partition truncated and
 * its lower boundary merged away (it is empty: nothing moves).
 */
export function monthDrop(t: Tables, prefix: string, p: MssqlPartition): Stmt {
  const { fn } = partitionNames(prefix);
  if (!Number.isSafeInteger(p.number) || p.number < 2) throw new Error(`sqljobs: partition number ${p.number} is not a month of history`);
  return {
    text: `BEGIN TRY
BEGIN TRANSACTION;
SELECT TOP (0) id FROM ${t.history} WITH (TABLOCKX, HOLDLOCK, NOWAIT);
DECLARE @dropped BIT = 0;
IF NOT EXISTS (SELECT 1 FROM (${referencedQuery(t)}) r WHERE r.referenced = 1)
BEGIN
  TRUNCATE TABLE ${t.history} WITH (PARTITIONS (${p.number}));
  ALTER PARTITION FUNCTION ${fn}() MERGE RANGE (@from);
  SET @dropped = 1;
END
SELECT @dropped AS dropped;
COMMIT;
END TRY
BEGIN CATCH
  IF @@TRANCOUNT > 0 ROLLBACK;
  THROW;
END CATCH;`,
    params: monthParams(p),
  };
}

/** Partition DDL of a prefix takes turns: a transaction-owned app lock, not waited for (answers column `got`, negative: held elsewhere). */
export function partitionsLock(prefix: string): Stmt {
  return {
    text: `DECLARE @r INT; EXEC @r = sp_getapplock @Resource = @res, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 0; SELECT @r AS got;`,
    params: [{ name: 'res', type: 'nvarchar', value: `${prefix}history_partitions` }],
  };
}
