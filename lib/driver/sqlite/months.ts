/**
 * SQLite history in one file per UTC month (`history: 'monthly-files'`; names and SQL in
 * ./month-files.ts).
 *
 * Design. A finished job is first written where it is today: main's history table, in the one
 * transaction that moves it out of the live table. A month's rows go to that month's file once the
 * month has closed (the leader's hourly upkeep), in batches, each batch copied into the file in one
 * transaction and then removed from main in another. Why not write each completion straight into
 * its month's file (an attached database, or a TEMP VIEW over all of them with INSTEAD OF triggers
 * so that every portable statement keeps working)?
 *  - SQLite in WAL mode does not make a transaction atomic across attached files: a crash between
 *    the two commits could leave a job both live and finished, and it would run again. Main keeps
 *    the move atomic; the roll to a file is idempotent instead (copy, then remove what the file
 *    holds; a row copied twice is ignored, one left in both places is resolved the next round).
 *  - Writes through a view's INSTEAD OF triggers are not counted by sqlite3_changes(), on which
 *    fenced completion, retry and prune rely; a view takes no INDEXED BY; ATTACH is refused inside
 *    a transaction, where the app's handle often is when the month turns; a handle attaches at most
 *    10 files (better-sqlite3's SQLITE_MAX_ATTACHED), fewer than two years of months.
 *  - The hot path stays as it is: the worker's handle never attaches a file, so a completion never
 *    locks one, and every statement that reads history for a live job (dependencies, batches,
 *    unique keys, enqueue on the app's handle or an ORM's) reads main, where those rows stay: a row
 *    a live job may read (the parent of a live job, a job of an unfinished batch) is not moved
 *    until no live job reads it.
 * Reads across months (get, list, counts, the History view, batchStatus) run on a handle per month
 * file, kept open, with the main file attached to it (a handle attaches at most 10 files, and
 * attaching one per read costs more than the read), so a closed month's file is only ever read,
 * except by retention, and can be copied away while the app runs. The upkeep (move, retention,
 * restore) attaches one file at a time to a handle of its own on the main file. A file is
 * written in rollback-journal mode, never WAL: once its month's roll committed, the file alone is
 * complete. Retention deletes whole files (with their jobs' logs, attempts and edges, kept in main)
 * once their month ended before the cutoff, and rows one by one only in the month straddling it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type BetterSqlite3 from 'better-sqlite3';
import type { Tables, Statement } from '../portable/statement.ts';
import { utcMonth, type UtcMonth } from '../month.ts';
import {
  MonthFileNames, historyColumns, historySchema, historyTableIn, mainNewestBefore, monthBatchCounts, monthReferenced, monthRestoreCopy, monthRestoreRemove, monthRollCopy, monthRollDedupe, monthRollPick, monthRollRemove,
  monthStateCounts, monthTables, monthTrailDelete, monthTrailPage, type MonthFile,
} from './month-files.ts';
import { isBusy, retryBusy, retryBusySync } from './busy.ts';
import { prepared } from './prepared.ts';
import { sqlite } from '../portable/dialect.ts';
import { historyPrune, historyPrunePick } from '../portable/admin.ts';

type DB = BetterSqlite3.Database;
type Row = Record<string, unknown>;

/** A month file's own handle, for reads: its rows for a statement (prepared once per text). */
interface Reader {
  db: DB;
  /** The file's inode when opened: another one under the name means the file was replaced. */
  ino: number;
  rows(s: Statement): Row[];
}

/**
 * History rows moved to a month's file per transaction: each of its statements holds main's write
 * lock and the leader's event loop (40 to 80 ms for 1,000 rows on a loaded machine, bench/sqlite-months.ts).
 */
const ROLL_BATCH = 1000;
/** Jobs whose logs, attempts and edges are deleted per statement before their file goes. */
const TRAIL_BATCH = 1000;

export class MonthFiles {
  readonly names: MonthFileNames;
  private closed = false;
  /** A handle per month file, for reads (see reader()). */
  private readonly readers = new Map<string, Reader>();

  /** `db`: a handle of its own on the main file (never the worker's nor the app's), closed with this. */
  constructor(
    private readonly db: DB,
    private readonly t: Tables,
    private readonly mainFile: string,
    prefix: string,
  ) {
    this.names = new MonthFileNames(mainFile, prefix);
  }

  /** The month files there are now, newest first (another instance's retention may delete one at any time; its reader is closed). */
  list(): MonthFile[] {
    const found = fs.readdirSync(this.names.dir).map((e) => this.names.parse(e)).filter((f): f is MonthFile => f !== null);
    const present = new Set(found.map((f) => f.file));
    for (const file of this.readers.keys()) if (!present.has(file)) this.forget(file);
    return found.sort((a, b) => b.month.from.getTime() - a.month.from.getTime());
  }

  close(): void {
    this.closed = true;
    for (const reader of this.readers.values()) reader.db.close();
    this.readers.clear();
    if (this.db.open) this.db.close();
  }

  // ---------------------------------------------------------------- reads

  /**
   * `perFile` on each of `files` in turn, on the file's reader, until it answers something (then
   * that), or on all of them (then every answer). A file deleted meanwhile is skipped.
   */
  private eachFile<T>(files: MonthFile[], perFile: (reader: Reader, f: MonthFile) => T | undefined, firstOnly = false): T[] {
    const answers: T[] = [];
    for (const f of files) {
      const answer = inFile(f.file, () => {
        const reader = this.reader(f.file);
        return reader && perFile(reader, f);
      });
      if (answer === undefined || answer === null) continue;
      answers.push(answer);
      if (firstOnly) break;
    }
    return answers;
  }

  /**
   * The reader of a month's file: a handle on it, kept open, where the main file is attached as
   * `jobs` (the file's history table resolves first; the live tables a statement names, from main):
   * every history statement runs there as written, its text prepared once. Opened again when the
   * file was replaced; none when it is gone or holds no history table yet.
   */
  private reader(file: string): Reader | null {
    const stat = fs.statSync(file, { throwIfNoEntry: false });
    let reader = this.readers.get(file);
    if (reader && reader.ino !== stat?.ino) {
      this.forget(file);
      reader = undefined;
    }
    if (reader || !stat) return reader ?? null;
    const Ctor = this.db.constructor as new (file: string, o?: object) => DB;
    const db = new Ctor(file, { fileMustExist: true, timeout: 20 });
    const stmts = new Map<string, BetterSqlite3.Statement>();
    const rows = (s: Statement) => prepared(stmts, db, s.text).all(...s.values) as Row[];
    if (!rows(historyTableIn(this.t, 'main')).length) {
      db.close();
      return null;
    }
    // A small page cache each: a file is read by index, a page at a time, and there are many
    // (main's tables are read here only for a dead letter's or a link's edge).
    db.pragma('cache_size = -1024');
    db.prepare('ATTACH DATABASE ? AS jobs').run(this.mainFile);
    db.pragma('jobs.cache_size = -256');
    reader = { db, ino: stat.ino, rows };
    this.readers.set(file, reader);
    return reader;
  }

  /** Close a file's reader (before the file is deleted: some systems refuse to delete an open file). */
  private forget(file: string): void {
    this.readers.get(file)?.db.close();
    this.readers.delete(file);
  }

  /**
   * Attach a month's file as `alias`; false when it is gone or holds no history table. (better-sqlite3
   * opens no URI filenames, so no `mode=ro`: ATTACH would make a file deleted meanwhile again, empty,
   * and an empty one holds no table: skipped here, deleted by retention with its month.)
   */
  private attach(file: string, alias: string): boolean {
    if (!fs.existsSync(file)) return false;
    this.db.prepare(`ATTACH DATABASE ? AS ${alias}`).run(file);
    if (this.rows(historyTableIn(this.t, alias)).length) return true;
    this.detach(alias);
    return false;
  }

  private detach(alias: string): void {
    this.db.prepare(`DETACH DATABASE ${alias}`).run();
  }

  private rows(s: Statement): Row[] {
    return this.db.prepare(s.text).all(...s.values) as Row[];
  }

  private run(s: Statement): number {
    return this.db.prepare(s.text).run(...s.values).changes;
  }

  /** Reads are retried while another process writes a file or main (rare: WAL readers are not blocked). */
  private read<T>(fn: () => T): Promise<T> {
    return retryBusy(fn, () => this.closed);
  }

  /**
   * The first row `byFile` answers in a file, newest month first (a job just finished is most likely
   * in the newest). Synchronous, for an enqueue (a file is busy only while a move or retention commits).
   */
  findJob(byFile: (tables: Tables) => Statement): Row | null {
    const s = byFile(this.t);
    return retryBusySync(() => this.eachFile(this.list(), (r) => r.rows(s)[0], true)[0] ?? null);
  }

  /** The rows `byFile` answers in every file (newest month first). */
  async fromEach(byFile: (tables: Tables) => Statement): Promise<Row[][]> {
    const s = byFile(this.t);
    return this.read(() => this.eachFile(this.list(), (r) => r.rows(s)));
  }

  /** Per file: its month, name, size on disk (with its journal, if one is left) and what `byFile` answers there. */
  async describeEach(byFile: (tables: Tables, month: UtcMonth) => Statement): Promise<{ month: UtcMonth; file: string; bytes: number; rows: Row[] }[]> {
    return this.read(() =>
      this.eachFile(this.list(), (r, f) => ({ month: f.month, file: path.basename(f.file), bytes: fileBytes(f.file), rows: r.rows(byFile(this.t, f.month)) })));
  }

  /**
   * Finished jobs per state across the files, newest first, each state counted up to what `left`
   * allows it (a state no longer counted once it reached that; the files left unread once all did).
   */
  async countStates(left: Map<string, number>): Promise<Map<string, number>> {
    const counted = new Map<string, number>();
    return this.read(() => {
      for (const f of this.list()) {
        const caps = [...left].map(([state, cap]): [string, number] => [state, cap - (counted.get(state) ?? 0)]).filter(([, cap]) => cap > 0);
        if (!caps.length) break;
        for (const r of inFile(f.file, () => this.reader(f.file)?.rows(monthStateCounts(this.t, caps))) ?? []) {
          counted.set(String(r.state), (counted.get(String(r.state)) ?? 0) + Number(r.count));
        }
      }
      return counted;
    });
  }

  /** A batch's finished jobs by state in every file. */
  async batchCounts(batchId: string): Promise<Row[]> {
    return (await this.fromEach((t) => monthBatchCounts(t, batchId))).flat();
  }

  /**
   * Jobs among `ids` kept in a file go back to main's history, where an operator's action (retry,
   * delete) or a new dependent's enqueue finds them as it finds any finished job; the next upkeep
   * moves back those still finished and read by no live job. Synchronous (an enqueue on SQLite writes
   * before it returns): a busy file or main is waited for, briefly and rarely.
   */
  restore(ids: string[]): void {
    for (const f of this.list()) {
      if (!inFile(f.file, () => this.attach(f.file, 'restore'))) continue;
      try {
        // A file made before a migration that added a history column gets it first: rows copy back as they are.
        retryBusySync(() => this.syncColumns('restore'));
        retryBusySync(() => this.transaction(() => this.run(monthRestoreCopy(this.t, 'restore', ids)), true));
        // Also when nothing was copied: main may hold the job already (a copy back cut short before this removal).
        retryBusySync(() => this.transaction(() => this.run(monthRestoreRemove(this.t, 'restore', ids)), false));
      } finally {
        this.detach('restore');
      }
    }
  }

  // ---------------------------------------------------------------- upkeep

  /**
   * Move every closed month's rows from main to its file (a month before the one holding `nowMs`,
   * the database clock), oldest first. Answers the files written.
   */
  async roll(nowMs: number): Promise<string[]> {
    const current = utcMonth(new Date(nowMs));
    const written: string[] = [];
    for (const month of await this.closedMonthsInMain(current)) {
      await yieldToEventLoop();
      if (await this.rollMonth(month)) written.push(path.basename(this.names.of(month.from).file));
    }
    return written;
  }

  /** The months before `current` that main's history still holds rows of, oldest first (one step back along the finish-time index each). */
  private async closedMonthsInMain(current: UtcMonth): Promise<UtcMonth[]> {
    const months: UtcMonth[] = [];
    for (let before = current.from.getTime(); ;) {
      const [row] = await this.read(() => this.rows(mainNewestBefore(this.t, before)));
      if (row?.at == null) break;
      const month = utcMonth(new Date(Number(row.at)));
      months.unshift(month);
      before = month.from.getTime();
    }
    return months;
  }

  /** One month's rows not read by a live job, batch by batch, to its file (made when missing). True when any moved. */
  private async rollMonth(month: UtcMonth): Promise<boolean> {
    const { file } = this.names.of(month.from);
    const pick = monthRollPick(this.t, month, ROLL_BATCH);
    if (!(await this.read(() => this.rows(pick))).length) return false;
    this.create(file);
    await yieldToEventLoop();
    if (!this.attach(file, 'roll')) return false;
    try {
      this.syncColumns('roll');
      for (;;) {
        const ids = (await this.read(() => this.rows(pick))).map((r) => String(r.id));
        if (!ids.length) break;
        await yieldToEventLoop();
        await this.write(() => this.run(monthRollCopy(this.t, 'roll', ids)), false);
        await yieldToEventLoop();
        await this.write(() => this.run(monthRollRemove(this.t, 'roll', ids)), true);
        await yieldToEventLoop();
        if (ids.length < ROLL_BATCH) break;
      }
      await this.write(() => this.run(monthRollDedupe(this.t, 'roll', month)), false);
    } finally {
      this.detach('roll');
    }
    return true;
  }

  /** fn in a transaction on this handle: IMMEDIATE when it writes main (its write lock first), else deferred (the file alone is written). */
  private write<T>(fn: () => T, writesMain: boolean): Promise<T> {
    return retryBusy(() => this.transaction(fn, writesMain), () => this.closed);
  }

  private transaction<T>(fn: () => T, writesMain: boolean): T {
    const tx = this.db.transaction(fn);
    return writesMain ? tx.immediate() : tx.deferred();
  }

  /** A month's file, made as main's history table is (columns and indexes), in rollback-journal mode. */
  private create(file: string): void {
    const ddl = this.rows(historySchema(this.t)).map((r) => String(r.sql));
    const Ctor = this.db.constructor as new (file: string, o?: object) => DB;
    const fresh = new Ctor(file, { timeout: 5000 });
    try {
      fresh.pragma('journal_mode = DELETE');
      fresh.transaction(() => {
        // Another instance may have made it meanwhile: IF NOT EXISTS on each.
        for (const sql of ddl) fresh.exec(sql.replace(/^CREATE (UNIQUE )?(TABLE|INDEX) /i, 'CREATE $1$2 IF NOT EXISTS '));
      }).immediate();
    } finally {
      fresh.close();
    }
  }

  /** Columns main's history gained since the file was made (a later migration) are added to it, so that rows copy as they are. */
  private syncColumns(alias: string): void {
    const columns = (schema: string) => this.rows(historyColumns(this.t, schema));
    const have = new Set(columns(alias).map((c) => String(c.name)));
    for (const c of columns('main')) {
      if (have.has(String(c.name))) continue;
      const dflt = c.dflt === null ? '' : ` DEFAULT ${String(c.dflt)}`;
      this.db.exec(`ALTER TABLE ${alias}.${this.t.history} ADD COLUMN ${String(c.name)} ${String(c.type)}${c.nn ? ' NOT NULL' : ''}${dflt}`);
    }
  }

  /**
   * Retention: delete the files whose month ended before the cutoff (`olderThanMs` before the
   * database's `nowMs`), oldest first, unless a live job reads one of their rows; then at most
   * `limit` rows finished before it in the file of the month straddling it (with their trail).
   * Answers the files deleted and the rows deleted.
   */
  async prune({ nowMs, olderThanMs, limit }: { nowMs: number; olderThanMs: number; limit: number }): Promise<{ deleted: string[]; rows: number }> {
    const cutoff = nowMs - olderThanMs;
    const files = this.list().reverse();
    const deleted: string[] = [];
    // A file that cannot be read is said (by the round's error) after the others were done: it held up every later month.
    let unreadable: unknown = null;
    for (const f of files.filter((f) => f.month.to.getTime() <= cutoff)) {
      try {
        if (await this.drop(f.file)) deleted.push(path.basename(f.file));
      } catch (err) {
        if (isBusy(err)) throw err;
        unreadable ??= err;
      }
    }
    const straddling = files.find((f) => f.month.from.getTime() < cutoff && cutoff < f.month.to.getTime());
    const pruned = straddling && limit > 0 ? await this.pruneRows(straddling.file, olderThanMs, limit).catch((err: unknown) => {
      throw fileError(straddling.file, err);
    }) : 0;
    if (unreadable) throw unreadable;
    return { deleted, rows: pruned };
  }

  /** At most `limit` rows finished before the cutoff in the month's file straddling it, with their trail. */
  private async pruneRows(file: string, olderThanMs: number, limit: number): Promise<number> {
    if (!this.attach(file, 'retention')) return 0;
    try {
      const sql = { d: sqlite, t: monthTables(this.t, 'retention') };
      const ids = (await this.read(() => this.rows(historyPrunePick(sql, { olderThanMs, limit })))).map((r) => String(r.id));
      if (!ids.length) return 0;
      return await this.write(() => historyPrune(sql, { olderThanMs, ids }).map((s) => this.run(s))[0], true);
    } finally {
      this.detach('retention');
    }
  }

  /** One file: its jobs' trail first (in batches), then the file, unless a live job reads one of its rows. */
  private async drop(file: string): Promise<boolean> {
    if (fs.existsSync(file) && inFile(file, () => this.attach(file, 'expired'))) {
      try {
        if (!(await this.dropTrail())) return false;
      } finally {
        this.detach('expired');
      }
    }
    this.forget(file);
    for (const suffix of ['', '-journal', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
    return true;
  }

  /** The trail of the jobs in the file attached as `expired`, unless a live job reads one of them (then false). */
  private async dropTrail(): Promise<boolean> {
    if ((await this.read(() => this.rows(monthReferenced(this.t, 'expired'))))[0].referenced) return false;
    for (let after: string | null = null; ;) {
      const ids: string[] = (await this.read(() => this.rows(monthTrailPage(this.t, 'expired', after, TRAIL_BATCH)))).map((r) => String(r.id));
      if (ids.length) await this.write(() => monthTrailDelete(this.t, ids).forEach((s) => this.run(s)), true);
      if (ids.length < TRAIL_BATCH) return true;
      after = ids[ids.length - 1];
      await yieldToEventLoop();
    }
  }
}

/**
 * Let the app's requests and timers run between batches: each batch's statements are synchronous,
 * and an await on a promise already settled does not leave the microtask queue.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Bytes on disk of a month's file with what SQLite keeps beside it (a journal or WAL left over); 0 when it is gone. */
function fileBytes(file: string): number {
  return ['', '-journal', '-wal'].reduce((sum, suffix) => sum + (fs.statSync(file + suffix, { throwIfNoEntry: false })?.size ?? 0), 0);
}

/**
 * `fn` on a month's file, an error it meets said with the file's name (a corrupt file had every
 * history read and retention fail with SQLite's words alone). Busy is left as it is: retried.
 */
function inFile<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fileError(file, err);
  }
}

function fileError(file: string, err: unknown): unknown {
  if (isBusy(err) || (err as { sqljobsFile?: string })?.sqljobsFile) return err;
  const code = String((err as { code?: unknown })?.code ?? '');
  const said = (err as Error)?.message ?? String(err);
  // Only a file SQLite cannot read is blamed: an error of main's met meanwhile (a full disk) is only placed.
  const e = new Error(
    /^SQLITE_(CORRUPT|NOTADB|CANTOPEN)/.test(code)
      ? `sqljobs: the history file ${path.basename(file)} cannot be used (${said}): restore it from a backup, or move it out of ${path.dirname(file)} to leave its month out`
      : `sqljobs: on the history file ${path.basename(file)}: ${said}`,
    { cause: err },
  );
  Object.assign(e, { code: (err as { code?: unknown })?.code, sqljobsFile: file });
  return e;
}
