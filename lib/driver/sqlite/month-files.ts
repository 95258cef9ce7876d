/**
 * SQLite monthly history files (`history: 'monthly-files'`): their names, and the statements that
 * fill, read and drop them (the upkeep itself is ./months.ts).
 *
 * Names, beside the main file: the main file's name without its last extension, then
 * `.history-YYYY-MM.db` (UTC month of finished_at); a table prefix other than the default comes
 * before `history`. `app.db` → `app.history-2026-12.db`, `data/jobs` (no extension) →
 * `data/jobs.history-2026-12.db`, `app.sqlite3` with prefix `billing_` →
 * `app.billing_history-2026-12.db`. Each file holds one table named as the main file's history
 * table (`<prefix>history`), with the same columns and indexes.
 *
 * A file is attached to a handle under an alias (see ./months.ts) and every statement here names
 * its table through that alias; the live tables (jobs, deps, batches, logs, attempts) stay in main.
 */
import path from 'node:path';
import type { Tables } from '../portable/statement.ts';
import { read, write, type Statement } from '../portable/statement.ts';
import { sqlite } from '../portable/dialect.ts';
import { utcMonth, type UtcMonth } from '../month.ts';

const DEFAULT_PREFIX = 'sqljobs_';

/** One month's file: where it is, and the UTC month it holds. */
export interface MonthFile {
  file: string;
  month: UtcMonth;
}

/** How the month files of one main file and prefix are named. */
export class MonthFileNames {
  readonly dir: string;
  private readonly stem: string;
  private readonly pattern: RegExp;

  constructor(mainFile: string, prefix: string) {
    const resolved = path.resolve(mainFile);
    this.dir = path.dirname(resolved);
    const base = path.basename(resolved);
    const ext = path.extname(base);
    const table = prefix === DEFAULT_PREFIX ? 'history' : `${prefix}history`;
    this.stem = `${ext ? base.slice(0, -ext.length) : base}.${table}-`;
    this.pattern = new RegExp(`^${escapeRegExp(this.stem)}(\\d{4})-(\\d{2})\\.db$`);
  }

  /** The file of the UTC month holding `at`. */
  of(at: Date): MonthFile {
    const month = utcMonth(at);
    return { file: path.join(this.dir, `${this.stem}${month.key}.db`), month };
  }

  /** The month a directory entry is the file of, or null when it is none of ours. */
  parse(entry: string): MonthFile | null {
    const m = this.pattern.exec(entry);
    if (!m) return null;
    const month = Number(m[2]);
    if (month < 1 || month > 12) return null;
    return this.of(new Date(Date.UTC(Number(m[1]), month - 1, 1)));
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The tables as seen from a handle where a month file is attached as `alias`: history is the file's. */
export function monthTables(t: Tables, alias: string): Tables {
  return { ...t, history: `${alias}.${t.history}` };
}

/** The DDL of main's history table and its indexes, to make a month file alike (table first). */
export function historySchema(t: Tables): Statement {
  return read(sqlite, (b) =>
    `SELECT sql FROM main.sqlite_schema WHERE tbl_name = ${b.text(t.history)} AND sql IS NOT NULL ORDER BY type = 'table' DESC, name`);
}

/**
 * Not read by any live job: not the parent (any edge: dependency, callback, dead letter) of a job
 * still live, whose ctx.parents / ctx.deadLetterOf reads it when it runs, nor a job of a batch not
 * finished yet (batchStatus and the batch's callbacks count its finished jobs). `h` is the row.
 */
function unreferenced(t: Tables): string {
  return `NOT EXISTS (SELECT 1 FROM main.${t.deps} dp JOIN main.${t.jobs} j ON j.id = dp.child_id WHERE dp.parent_id = h.id)
    AND NOT EXISTS (SELECT 1 FROM main.${t.batches} bt WHERE bt.id = h.batch_id AND bt.finished_at IS NULL)`;
}

/** Up to `limit` ids of main's history rows that finished in `month` and no live job reads: the next ones to move to its file. */
export function monthRollPick(t: Tables, month: UtcMonth, limit: number): Statement {
  return read(sqlite, (b) =>
    `SELECT h.id FROM main.${t.history} h
     WHERE h.finished_at >= ${b.time(month.from.getTime())} AND h.finished_at < ${b.time(month.to.getTime())} AND ${unreferenced(t)}
     LIMIT ${b.int(limit)}`);
}

/**
 * Copy the picked rows into the month's file (its own transaction: the file alone is written).
 * A row already there (a copy whose removal from main did not commit) is left as it is.
 */
export function monthRollCopy(t: Tables, alias: string, ids: string[]): Statement {
  return write(sqlite, (b) => `INSERT OR IGNORE INTO ${alias}.${t.history} SELECT * FROM main.${t.history} WHERE id ${b.ids(ids)}`);
}

/**
 * Then remove from main those the file holds, unless a live job came to read one meanwhile (main
 * alone is written: SQLite in WAL mode does not make one transaction atomic across files).
 */
export function monthRollRemove(t: Tables, alias: string, ids: string[]): Statement {
  return write(sqlite, (b) =>
    `DELETE FROM main.${t.history} AS h WHERE h.id ${b.ids(ids)} AND EXISTS (SELECT 1 FROM ${alias}.${t.history} m WHERE m.id = h.id) AND ${unreferenced(t)}`);
}

/** Rows kept in main after their copy (a live job came to read them): the file's copy goes, so each job is in one place. */
export function monthRollDedupe(t: Tables, alias: string, month: UtcMonth): Statement {
  return write(sqlite, (b) =>
    `DELETE FROM ${alias}.${t.history} WHERE id IN (SELECT id FROM main.${t.history}
       WHERE finished_at >= ${b.time(month.from.getTime())} AND finished_at < ${b.time(month.to.getTime())})`);
}

/** Whether a live job reads a row of the attached file (column `referenced`): then retention keeps the file. */
export function monthReferenced(t: Tables, alias: string): Statement {
  return read(sqlite, () => `SELECT EXISTS (SELECT 1 FROM ${alias}.${t.history} h WHERE NOT (${unreferenced(t)})) AS referenced`);
}

/**
 * The trail of up to `limit` jobs of a file about to be deleted (ids after `afterId`, in id order):
 * their logs, attempts and dependency edges, which stay in main. Answers the ids looked at.
 */
export function monthTrailPage(t: Tables, alias: string, afterId: string | null, limit: number): Statement {
  return read(sqlite, (b) => `SELECT id FROM ${alias}.${t.history} WHERE id > ${b.text(afterId ?? '')} ORDER BY id LIMIT ${b.int(limit)}`);
}

export function monthTrailDelete(t: Tables, ids: string[]): Statement[] {
  return ([[t.logs, 'job_id'], [t.attempts, 'job_id'], [t.deps, 'child_id']] as const).map(([table, key]) =>
    write(sqlite, (b) => `DELETE FROM main.${table} WHERE ${key} ${b.ids(ids)}`));
}

/** A batch's finished jobs in an attached file (`t` from monthTables), by state (as ../portable/flow.ts batchCounts' history half). */
export function monthBatchCounts(t: Tables, batchId: string): Statement {
  return read(sqlite, (b) => `SELECT state, COUNT(*) AS n FROM ${t.history} WHERE batch_id = ${b.text(batchId)} GROUP BY state`);
}

/** The newest finish in main's history before `before` (column `at`): one step back along the finish-time index. */
export function mainNewestBefore(t: Tables, before: number): Statement {
  return read(sqlite, (b) => `SELECT MAX(finished_at) AS at FROM main.${t.history} WHERE finished_at < ${b.time(before)}`);
}

/** The history table's columns in `schema` (main, or a file's alias): name, type, nn (NOT NULL), dflt. */
export function historyColumns(t: Tables, schema: string): Statement {
  return read(sqlite, (b) => `SELECT name, type, "notnull" AS nn, dflt_value AS dflt FROM pragma_table_info(${b.text(t.history)}, ${b.text(schema)})`);
}

/** A row when the file attached as `alias` holds the history table. */
export function historyTableIn(t: Tables, alias: string): Statement {
  return read(sqlite, (b) => `SELECT 1 FROM ${alias}.sqlite_schema WHERE type = 'table' AND name = ${b.text(t.history)}`);
}

/** Jobs of the attached file copied back into main's history (operators act on finished jobs there: retry, delete). */
export function monthRestoreCopy(t: Tables, alias: string, ids: string[]): Statement {
  return write(sqlite, (b) => `INSERT OR IGNORE INTO main.${t.history} SELECT * FROM ${alias}.${t.history} WHERE id ${b.ids(ids)}`);
}

/** Then out of the file, those main now holds. */
export function monthRestoreRemove(t: Tables, alias: string, ids: string[]): Statement {
  return write(sqlite, (b) => `DELETE FROM ${alias}.${t.history} WHERE id ${b.ids(ids)} AND id IN (SELECT id FROM main.${t.history})`);
}

/**
 * A file's finished jobs per state, each counted on its (state, id) index range up to its own cap
 * (what the files read before it left to count), as ../portable/reads.ts jobsFinishedCounts.
 */
export function monthStateCounts(t: Tables, caps: [string, number][]): Statement {
  return read(sqlite, (b) =>
    caps.map(([state, cap]) =>
      `SELECT ${b.text(state)} AS state, COUNT(*) AS count FROM (
         SELECT 1 FROM ${t.history} INDEXED BY ${t.historyState} WHERE state = ${b.text(state)} LIMIT ${b.int(cap)})`).join('\nUNION ALL\n'));
}

/** Which of `ids` main holds, live or finished (column `id`). */
export function mainJobsKnown(t: Tables, ids: string[]): Statement {
  return read(sqlite, (b) => `SELECT id FROM main.${t.jobs} WHERE id ${b.ids(ids)} UNION ALL SELECT id FROM main.${t.history} WHERE id ${b.ids(ids)}`);
}

/** A job's parents by any edge (dependency, callback, dead letter), column `id`. */
export function parentIds(t: Tables, childId: string): Statement {
  return read(sqlite, (b) => `SELECT parent_id AS id FROM main.${t.deps} WHERE child_id = ${b.text(childId)}`);
}

/**
 * The newest job of a file (`t` as the file's reader sees it) that holds a unique key in one of
 * `states`, created within `forMs` when given (column `id`), as ../portable/flow.ts looks in history.
 */
export function monthUniqueHolder(t: Tables, key: string, states: string[], forMs: number | null): Statement {
  return read(sqlite, (b) =>
    `SELECT id FROM ${t.history} WHERE unique_key = ${b.text(key)} AND state ${b.in(states)}${forMs === null ? '' : ` AND created_at > ${sqlite.plusMs(sqlite.now, b.bigint(-forMs))}`}
     ORDER BY created_at DESC LIMIT 1`);
}
