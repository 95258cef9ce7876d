/**
 * What differs between the four databases in the statements that are otherwise the same: how
 * "now" is written, millisecond arithmetic, placeholders, how a value list, a row limit and a
 * "which rows did this change" clause are spelled, and how times and booleans are bound and read
 * back. The portable statements (this folder) are written once over these fragments; a dialect
 * writes a statement of its own only where its database really differs (lib/driver/<dialect>/).
 *
 * A fragment uses each argument once, so positional placeholders (`?`) keep their order; only
 * SQL Server, whose parameters are named, repeats one.
 */
import type { Dialect } from '../store.ts';
import { nativeCodec, textCodec, type RowCodec } from '../rows.ts';

/** Columns and the value expressions inserted into them, in order. */
export type ColumnValues = [column: string, value: string][];

export interface SqlDialect {
  readonly name: Dialect;
  /** The database clock, as an expression of the column type times are stored in. */
  readonly now: string;
  /**
   * The clock when the statement runs. PostgreSQL's now() is the transaction's start: a claim that
   * waited for a lock would date its starts in the past (statement_timestamp() there).
   */
  readonly statementNow: string;
  /** The placeholder of the n-th value (1-based). */
  placeholder(n: number): string;
  /** `time` plus `ms` milliseconds (`ms` an integer expression; negative goes back). */
  plusMs(time: string, ms: string): string;
  /** Milliseconds from `earlier` to `later`, as a number. */
  msBetween(later: string, earlier: string): string;
  /** A time computed by the library (epoch ms), as this database binds it. */
  time(ms: number | null): unknown;
  /** A boolean, as this database binds it. */
  bool(b: boolean): unknown;
  /** The literal a boolean column is compared with for true. */
  readonly true: string;
  /** A column name, delimited when it is a reserved word here (`key`, `checkpoint`). */
  col(name: string): string;
  /** `TOP (n) ` right after SELECT/DELETE (SQL Server); empty elsewhere. */
  top(n: string): string;
  /** ` LIMIT n` at the end of a SELECT (everywhere but SQL Server). */
  limit(n: string): string;
  /** SQL Server's ` OUTPUT inserted.c, …` (after SET, before WHERE); empty elsewhere. */
  output(rows: 'inserted' | 'deleted', columns: string[]): string;
  /** ` RETURNING c, …` at the end (PostgreSQL, SQLite); empty elsewhere. */
  returning(columns: string[]): string;
  /** Whether output()/returning() give rows here; without them (MySQL) a write reports its affected-row count. */
  readonly returnsRows: boolean;
  /** SQL Server's table hint (after the table name) that keeps the rows a read finds locked for update until commit; empty elsewhere. */
  readonly lockHint: string;
  /**
   * After a table name, in a locking read or a write of rows named by a list of ids: find them by
   * the primary key (MySQL ` FORCE INDEX (PRIMARY)`); empty elsewhere. MySQL/MariaDB plans such a
   * list as a scan of a small table, and a scan that locks waits for every row another transaction
   * holds locked, rows it does not want included: a claim in a process frozen before its COMMIT
   * (MariaDB's pick keeps the pending rows it scanned locked) would hold up every completion,
   * failure and rescue until that process resumed.
   */
  readonly byKey: string;
  /** The start of a DELETE of rows a list of ids names, by the primary key as byKey says (MySQL: the multi-table form, the one that takes an index hint). */
  deleteByKey(table: string): string;
  /** SQL Server's table hint that skips rows another transaction holds locked (an uncommitted insert) instead of waiting; empty elsewhere (their reads do not wait). */
  readonly readPast: string;
  /** ` FOR UPDATE` at the end of a SELECT whose rows stay locked until commit (PostgreSQL, MySQL); empty elsewhere. */
  readonly forUpdate: string;
  /**
   * Insert `row`, or apply `set` to the row already under `key`: ON CONFLICT … DO UPDATE
   * (PostgreSQL, SQLite), ON DUPLICATE KEY UPDATE (MySQL), MERGE (SQL Server). `set` reads only
   * the old row and constants: each database names the inserted values differently.
   */
  upsert(table: string, key: string, row: ColumnValues, set: string): string;
  /** `IN (…)` over a list bound as one parameter (the placeholder `p` is bound with listValue()). */
  inList(p: string): string;
  /** A list of strings as inList() binds it. */
  listValue(values: string[]): unknown;
  /** `IN (…)` over job ids bound as one parameter (with listValue()), typed as the id columns are so that their index is used. */
  inIds(p: string): string;
  /** How rows come back: times and JSON. */
  readonly codec: RowCodec;
  /**
   * A payload column as a read selects it: as text, so that a stored JSON null is told from SQL
   * NULL (no payload). pg parses a json column itself and answers null for both.
   */
  payloadText(col: string): string;
  /**
   * The clock when the expression is evaluated, after any lock its statement waited for: a
   * heartbeat held behind another session's lock is dated when it is written, not when it was
   * sent (PostgreSQL's now() and MySQL's UTC_TIMESTAMP() are the statement's start). SQL Server's
   * SYSUTCDATETIME() is the statement's start too, and has no per-row form.
   */
  readonly wallNow: string;
  /**
   * A SELECT's table and ending that lock its rows, skipping those another session holds instead
   * of waiting (FOR UPDATE SKIP LOCKED; SQL Server's UPDLOCK, READPAST); null where rows are not
   * locked one by one (SQLite).
   */
  readonly skipLocked: { hint: string; suffix: string } | null;
  /**
   * After a table name: the index a read must use where this planner would otherwise scan the
   * table or sort (SQLite ` INDEXED BY i`, MySQL ` FORCE INDEX (i)`); empty elsewhere.
   */
  useIndex(index: string): string;
  /**
   * After a table name: indexes a read must not use where this planner would pick one that reads
   * far more than another (MySQL ` IGNORE INDEX (…)`, `PRIMARY` for the primary key; empty where
   * the planner weighs them by cost).
   */
  ignoreIndexes(indexes: string[]): string;
  /** A NULL of the column type times (`time`) or JSON documents (`json`) are stored in (a union's other half has the column). */
  nullAs(type: 'time' | 'json'): string;
  /** A bound JSON text where the database would not infer its type (a select list feeding a JSON column). */
  json(p: string): string;
  /** Epoch milliseconds of a time, as an integer. */
  epochMs(time: string): string;
  /** Integer division of two integer expressions (truncated). */
  intDiv(a: string, b: string): string;
  /** The string at one key of the JSON object in `column` (NULL without the key), the key bound at `p` as jsonKey() spells it. */
  jsonText(column: string, p: string): string;
  /**
   * A key as jsonText() binds it: the key itself where the database looks a key up as it is, or a
   * JSON path whose one step quotes it where it takes paths (so `.`, `*`, `$` in a key are text).
   */
  jsonKey(key: string): string;
  /**
   * The last key of an order among equal run times: the job id (time-ordered, so enqueue order),
   * or SQLite's rowid, which ends every SQLite index for free where the text id would widen it.
   */
  readonly insertionOrder: string;
  /**
   * Whether an index can hold only the rows a condition picks (PostgreSQL, SQLite, SQL Server's
   * filtered indexes). Without (MySQL), the keys only some jobs have (a unique key, a reservation)
   * are indexed in side tables that hold rows for those jobs alone (see sideIndex.ts), so that a
   * job without them pays no index entry for them.
   */
  readonly partialIndexes: boolean;
  /**
   * Whether jobs_queue indexes running jobs too (SQLite, MySQL, SQL Server). Where it holds
   * pending rows only (PostgreSQL: migration 020, so a claim writes no entry there), a queue's
   * running jobs are read from jobs_running, and a read of one queue's jobs in both states reads
   * each state from its own index.
   */
  readonly queueIndexHoldsRunning: boolean;
}

const RESERVED: Record<Dialect, Set<string>> = {
  sqlite: new Set(),
  postgres: new Set(),
  mysql: new Set(['key']),
  mssql: new Set(['key', 'checkpoint']),
};

const none = () => '';

const columns = (row: ColumnValues) => row.map(([c]) => c).join(', ');
const values = (row: ColumnValues) => row.map(([, v]) => v).join(', ');

/** INSERT … followed by the clause that turns a duplicate key into an update. */
function insert(table: string, row: ColumnValues, onDuplicate: string): string {
  return `INSERT INTO ${table} (${columns(row)}) VALUES (${values(row)}) ${onDuplicate}`;
}

/**
 * The JSON path of one object key: `$."key"`, the key escaped as a JSON string is (quotes,
 * backslashes, control characters), which SQLite's and MySQL's paths read back to the key.
 */
export function jsonKeyPath(key: string): string {
  return `$.${JSON.stringify(key)}`;
}

const asIs = (key: string) => key;

/** Columns as a read selects them: delimited where the dialect needs it, the payload as text (see payloadText). */
export function selectColumns(d: SqlDialect, names: readonly string[]): string {
  return names.map((c) => (c === 'payload' ? `${d.payloadText(c)} AS ${c}` : d.col(c))).join(', ');
}

/** The spelling most of the databases share; each dialect below overrides what it writes otherwise. */
const common = {
  col: (c: string) => c,
  payloadText: asIs,
  skipLocked: { hint: '', suffix: ' FOR UPDATE SKIP LOCKED' },
  top: none,
  limit: (n: string) => ` LIMIT ${n}`,
  output: none,
  returning: (cols: string[]) => ` RETURNING ${cols.join(', ')}`,
  returnsRows: true,
  lockHint: '',
  byKey: '',
  deleteByKey: (table: string) => `DELETE FROM ${table}`,
  readPast: '',
  useIndex: none,
  ignoreIndexes: none,
  intDiv: (a: string, b: string) => `(${a} / ${b})`,
  insertionOrder: 'id',
  partialIndexes: true,
  queueIndexHoldsRunning: true,
  jsonKey: jsonKeyPath,
} satisfies Partial<SqlDialect>;

export const sqlite: SqlDialect = {
  ...common,
  name: 'sqlite',
  insertionOrder: 'rowid',
  now: "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
  statementNow: "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
  // A statement runs once it has the database's write lock: its clock is already the write's.
  wallNow: "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
  skipLocked: null,
  placeholder: () => '?',
  plusMs: (time, ms) => `(${time} + ${ms})`,
  msBetween: (later, earlier) => `(${later} - ${earlier})`,
  time: (ms) => ms,
  bool: (b) => (b ? 1 : 0),
  true: '1',
  // A write transaction (BEGIN IMMEDIATE) holds the database's write lock: no row lock to take.
  forUpdate: '',
  upsert: (table, key, row, set) => insert(table, row, `ON CONFLICT (${key}) DO UPDATE SET ${set}`),
  inList: (p) => `IN (SELECT value FROM json_each(${p}))`,
  listValue: (v) => JSON.stringify(v),
  inIds: (p) => `IN (SELECT value FROM json_each(${p}))`,
  codec: textCodec,
  useIndex: (i) => ` INDEXED BY ${i}`,
  nullAs: () => 'NULL',
  json: (p) => p,
  jsonText: (column, p) => `json_extract(${column}, ${p})`,
  epochMs: (time) => time,
  // better-sqlite3 binds numbers as REAL: the cast keeps the division integral.
  intDiv: (a, b) => `(${a} / CAST(${b} AS INTEGER))`,
};

export const postgres: SqlDialect = {
  ...common,
  name: 'postgres',
  queueIndexHoldsRunning: false,
  now: 'now()',
  statementNow: 'statement_timestamp()',
  wallNow: 'clock_timestamp()',
  placeholder: (n) => `$${n}`,
  plusMs: (time, ms) => `(${time} + ${ms} * interval '1 millisecond')`,
  msBetween: (later, earlier) => `(EXTRACT(EPOCH FROM (${later} - ${earlier})) * 1000)::float8`,
  time: (ms) => (ms === null ? null : new Date(ms)),
  bool: (b) => b,
  true: 'true',
  forUpdate: ' FOR UPDATE',
  upsert: (table, key, row, set) => insert(table, row, `ON CONFLICT (${key}) DO UPDATE SET ${set}`),
  inList: (p) => `= ANY(${p}::text[])`,
  listValue: (v) => v,
  // The id columns are uuid: a text[] would not compare with them.
  inIds: (p) => `= ANY(${p}::uuid[])`,
  codec: nativeCodec,
  payloadText: (col) => `${col}::text`,
  nullAs: (type) => (type === 'time' ? 'NULL::timestamptz' : 'NULL::json'),
  json: (p) => `CAST(${p} AS json)`,
  // ->> looks the key up as given (no path); the cast picks the text form of the operator over the integer (array index) one.
  jsonText: (column, p) => `(${column} ->> CAST(${p} AS text))`,
  jsonKey: asIs,
  epochMs: (time) => `floor(EXTRACT(EPOCH FROM ${time}) * 1000)::bigint`,
};

/** UTC text: DATETIME(3) reads it the same under any session time zone. */
export function utc(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 23);
}

export const mysql: SqlDialect = {
  ...common,
  name: 'mysql',
  partialIndexes: false,
  now: 'UTC_TIMESTAMP(3)',
  statementNow: 'UTC_TIMESTAMP(3)',
  // SYSDATE() is read when evaluated (UTC_TIMESTAMP() once per statement), in the session's zone.
  wallNow: "CONVERT_TZ(SYSDATE(3), @@session.time_zone, '+00:00')",
  placeholder: () => '?',
  plusMs: (time, ms) => `(${time} + INTERVAL (${ms}) * 1000 MICROSECOND)`,
  msBetween: (later, earlier) => `(TIMESTAMPDIFF(MICROSECOND, ${earlier}, ${later}) / 1000)`,
  time: (ms) => (ms === null ? null : utc(ms)),
  bool: (b) => (b ? 1 : 0),
  true: '1',
  col: (c) => (RESERVED.mysql.has(c) ? `\`${c}\`` : c),
  returning: none,
  returnsRows: false,
  forUpdate: ' FOR UPDATE',
  byKey: ' FORCE INDEX (PRIMARY)',
  deleteByKey: (table) => `DELETE ${table} FROM ${table} FORCE INDEX (PRIMARY)`,
  upsert: (table, _key, row, set) => insert(table, row, `ON DUPLICATE KEY UPDATE ${set}`),
  // mysql2 expands an array bound to one `?` into a list; an empty list is bound as NULL (matches nothing).
  inList: (p) => `IN (${p})`,
  listValue: (v) => (v.length ? v : null),
  inIds: (p) => `IN (${p})`,
  codec: {
    date: (v) => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(`${String(v).replace(' ', 'T')}Z`)),
    json: textCodec.json,
  },
  useIndex: (i) => ` FORCE INDEX (${i})`,
  ignoreIndexes: (indexes) => (indexes.length ? ` IGNORE INDEX (${indexes.join(', ')})` : ''),
  nullAs: (type) => (type === 'time' ? 'CAST(NULL AS DATETIME(3))' : 'NULL'),
  json: (p) => p,
  // Not JSON_VALUE: MySQL 8's returns at most VARCHAR(512) unless told otherwise (RETURNING, which MariaDB lacks).
  jsonText: (column, p) => `JSON_UNQUOTE(JSON_EXTRACT(${column}, ${p}))`,
  // From DATETIME(3) UTC without UNIX_TIMESTAMP, which follows the session time zone.
  epochMs: (time) => `(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', ${time}) DIV 1000)`,
  intDiv: (a, b) => `(${a} DIV ${b})`,
};

export const mssql: SqlDialect = {
  ...common,
  name: 'mssql',
  now: 'SYSUTCDATETIME()',
  statementNow: 'SYSUTCDATETIME()',
  wallNow: 'SYSUTCDATETIME()',
  skipLocked: { hint: ' WITH (UPDLOCK, ROWLOCK, READPAST)', suffix: '' },
  placeholder: (n) => `@p${n}`,
  // DATEADD takes an INT: a BIGINT of milliseconds is split into days and the rest.
  plusMs: (time, ms) => `DATEADD(millisecond, (${ms}) % 86400000, DATEADD(day, (${ms}) / 86400000, ${time}))`,
  msBetween: (later, earlier) => `DATEDIFF_BIG(millisecond, ${earlier}, ${later})`,
  time: (ms) => (ms === null ? null : new Date(ms)),
  bool: (b) => b,
  true: '1',
  col: (c) => (RESERVED.mssql.has(c) ? `[${c}]` : c),
  top: (n) => `TOP (${n}) `,
  limit: none,
  output: (rows, cols) => ` OUTPUT ${cols.map((c) => `${rows}.${c}`).join(', ')}`,
  returning: none,
  returnsRows: true,
  // HOLDLOCK: a row that is not there yet stays absent (key-range lock) until commit.
  lockHint: ' WITH (UPDLOCK, HOLDLOCK)',
  readPast: ' WITH (READPAST)',
  forUpdate: '',
  // MERGE under HOLDLOCK (a plain MERGE lets two sessions both insert a new key), ended by the ';' MERGE requires; the key's parameters appear twice.
  upsert: (table, key, row, set) => `MERGE ${table} WITH (HOLDLOCK) AS t USING (SELECT ${keyColumns(key, row)}) AS s ON ${keyMatch(key)}
WHEN MATCHED THEN UPDATE SET ${set}
WHEN NOT MATCHED THEN INSERT (${columns(row)}) VALUES (${values(row)});`,
  inList: (p) => `IN (SELECT CAST(value AS NVARCHAR(200)) FROM OPENJSON(${p}))`,
  listValue: (v) => JSON.stringify(v),
  // The id columns' own type: compared with NVARCHAR, the CHAR(36) column would be the side converted.
  inIds: (p) => `IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(${p}))`,
  codec: { date: nativeCodec.date, json: textCodec.json },
  useIndex: none,
  nullAs: (type) => (type === 'time' ? 'CAST(NULL AS DATETIME2(3))' : 'CAST(NULL AS NVARCHAR(MAX))'),
  json: (p) => p,
  // OPENJSON compares the decoded key itself, where a JSON_VALUE path would depend on how its parser reads escapes in a quoted key.
  jsonText: (column, p) => `(SELECT value FROM OPENJSON(${column}) WHERE [key] = ${p})`,
  jsonKey: asIs,
  // DATEDIFF_BIG: DATEDIFF's INT overflows after 24 days of milliseconds.
  epochMs: (time) => `DATEDIFF_BIG(millisecond, CAST('19700101' AS DATETIME2(3)), ${time})`,
};

/** A MERGE source's key columns (`key` is one column or several, comma-separated) with their values from `row`. */
function keyColumns(key: string, row: ColumnValues): string {
  const values = new Map(row);
  return key.split(/,\s*/).map((k) => `${values.get(k)} AS ${k}`).join(', ');
}

function keyMatch(key: string): string {
  return key.split(/,\s*/).map((k) => `t.${k} = s.${k}`).join(' AND ');
}

export const DIALECTS: Record<Dialect, SqlDialect> = { sqlite, postgres, mysql, mssql };
