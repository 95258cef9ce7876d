/**
 * SQLite (better-sqlite3): all of this dialect's SQL.
 *
 * Two handles: the app's own `Database`, used only for enqueue so that an enqueue inside the
 * app's synchronous `db.transaction()` joins it; and our own handle on the same file for
 * everything the worker does, so its statements never join an app transaction. A `:memory:`
 * database cannot be opened twice, so there the app's handle does both (single-handle mode).
 *
 * better-sqlite3 is synchronous and its busy handler blocks the event loop, so our handle has a
 * short busy_timeout and SQLITE_BUSY is retried asynchronously.
 */
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { EnqueueResult, JobState, NewJobRow } from '../../model.ts';
import { checkNotNewer, loadMigrations } from '../migrations.ts';
import { describeTx, isBetterSqlite } from '../detect.ts';
import { ACCEPTED_TX, openCallerTx, runnerQuery } from '../orm/caller.ts';
import { claimOrder, claimedFromColumns, textCodec } from '../rows.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';
import { sqlite as sqliteDialect } from '../portable/dialect.ts';
import { PortableStore } from '../portable/engine.ts';
import { CLOCK, jobByRef, jobInsert, ROWS_PER_INSERT } from './enqueue.ts';
import { jobsClaim } from './claim.ts';
import { jobMoveToHistory, jobsMoveCompleted } from './move.ts';
import { attemptRecord, jobRetryLater } from './fail.ts';
import { jobOwned, jobRelease, jobSaveProgress, logInsert } from './writes.ts';
import { retryBusy, retryBusySync } from './busy.ts';
import { MonthFiles } from './months.ts';
import { mainJobsKnown, monthUniqueHolder, parentIds } from './month-files.ts';
import { prepared } from './prepared.ts';
import { utcMonth } from '../month.ts';
import type { HistoryLayout } from '../../options.ts';
import { TERMINAL_STATES, type JobError, type JobRecord, type ListFilter, type ListPage } from '../../model.ts';
import { listLimit, statesByTable } from '../sql.ts';
import { toJobRecord } from '../rows.ts';
import { historyMonthCounts, jobGet, jobsList } from '../portable/reads.ts';
import { throughputRead, type ThroughputRead } from '../portable/throughput.ts';
import { drive, driveSync, type Outcome, type SqlRunner, type Statement, type Steps } from '../portable/statement.ts';
import { insertWithFlow, jobDependents, jobParents } from '../portable/flow.ts';
import type {
  ClaimedJob, ClaimRequest, CompleteItem, FailItem, Fenced, InsertBatch, LeaseRequest, LogItem, ProgressItem,
  HistoryMonth, RedriveOutcome, ReleaseItem, ScheduleTick, Store, StoreCapabilities, TransactionalCompletion,
} from '../store.ts';

type DB = BetterSqlite3.Database;
type Stmt = BetterSqlite3.Statement;

const NOW = sqliteDialect.now;


export interface SqliteStoreOptions {
  prefix: string;
  /** Put the database file in WAL mode (a property of the file). Default true. */
  wal: boolean;
  /** One history table, or one file per month beside the database file (./months.ts). Default 'table'. */
  history?: HistoryLayout;
}

export class SqliteStore extends PortableStore implements Store {
  /**
   * Outcomes wait up to 10 ms (1,000 at most) while jobs keep finishing: a transaction rewrites
   * every page it touches into the WAL, about 50 pages (tables and indexes) for a batch of 70
   * completions, so 250 in one wrote less than half the WAL per job (measured for issue 17).
   * Claims ahead are sized by handler time, which that wait would otherwise shrink to tens.
   */
  readonly capabilities: StoreCapabilities = {
    notify: false,
    syncEnqueue: true,
    outcomeBatch: { windowMs: 10, max: 1000 },
    claimAheadByHandlerTime: true,
  };
  private readonly own: DB;
  private readonly singleHandle: boolean;
  private readonly stmts = new Map<string, Stmt>();
  private readonly appStmts = new Map<string, Stmt>();
  /** Statements in raw mode (rows as arrays): the claim's wide rows. */
  private readonly rawStmts = new Map<string, Stmt>();
  private closed = false;
  /** History's monthly files (history: 'monthly-files'), or null: one history table. */
  private readonly months: MonthFiles | null = null;
  /** Monthly files only: closed months to their files (the leader, hourly). */
  readonly historyUpkeep?: () => Promise<void>;

  /** Portable statements (../portable/) on our handle: prepared once per text; writes in BEGIN IMMEDIATE, SQLITE_BUSY retried. */
  protected readonly runner: SqlRunner = {
    run: (s) => {
      const st = this.q(s.text);
      return st.readonly ? this.read(() => outcome(st, s)) : this.write(() => outcome(st, s));
    },
    transaction: (list) => this.write(() => list.map((s) => outcome(this.q(s.text), s))),
    // BEGIN IMMEDIATE takes the write lock first, so a busy retry happens before any step ran.
    within: (steps) => this.write(() => driveSync(steps, (s) => outcome(this.q(s.text), s))),
  };

  /** Workflow steps on an async ORM's transaction (Knex, Kysely, Prisma on SQLite), or in one of ours. */
  protected async withinCaller<T>(tx: unknown, steps: Steps<T>): Promise<T> {
    if (tx === undefined) return this.runner.within(steps);
    const caller = await openCallerTx(tx);
    if ('native' in caller) {
      const db = this.callerDatabase(caller.native);
      return driveSync(steps, (s) => outcome(this.prepareOn(db, s.text), s));
    }
    return drive(steps, async (s) => {
      const rows = await runnerQuery(caller, s.text, s.values);
      return { rows, changes: rows.length };
    });
  }

  /** Workflow enqueue, synchronously, on the app's handle or the Database a caller's transaction runs on (joined as a savepoint, or its own). */
  jobInsertFlowSync({ rows, tx, batches }: InsertBatch): EnqueueResult[] {
    const db = tx === undefined ? this.app : this.callerDatabase(tx);
    if (this.months && !db.inTransaction) this.restoreReadByEnqueue(rows);
    return db.transaction(() => driveSync(insertWithFlow(this, rows, batches), (s) => outcome(this.prepareOn(db, s.text), s)).value)();
  }

  override async jobInsertFlow(batch: InsertBatch): Promise<EnqueueResult[]> {
    if (batch.tx === undefined || isBetterSqlite(batch.tx)) return this.jobInsertFlowSync(batch);
    const caller = await openCallerTx(batch.tx);
    if ('native' in caller) return this.jobInsertFlowSync({ ...batch, tx: caller.native });
    return super.jobInsertFlow(batch);
  }

  /**
   * Jobs that new jobs' enqueue reads in history and a month's file keeps go back to main's history
   * first, where the enqueue's workflow reads them: the parents they name (the upkeep then leaves
   * them while a dependent waits), and the newest holder of a unique key they take with finished
   * states (the next upkeep moves it back). Not inside a transaction of the app's: it may hold the
   * write lock this needs (there they are unknown).
   */
  private restoreReadByEnqueue(rows: NewJobRow[]): void {
    const inCall = new Set(rows.map((r) => r.id));
    const parents = rows.flatMap((r) => r.dependsOn.filter((p) => !inCall.has(p)));
    const holders = rows.map((r) => this.uniqueHolderInFiles(r)).filter((id): id is string => id !== null);
    this.restoreMissing([...new Set([...parents, ...holders])]);
  }

  /** The job of a month's file that holds a row's unique key in one of its finished states, if any. */
  private uniqueHolderInFiles(r: NewJobRow): string | null {
    if (r.dedupe?.kind !== 'unique' || r.uniqueKey === null) return null;
    const finished = r.dedupe.states.filter((s) => TERMINAL_STATES.includes(s));
    if (!finished.length) return null;
    const { uniqueKey: key, dedupe: { forMs } } = r;
    const row = this.months!.findJob((t) => monthUniqueHolder(t, key, finished, forMs));
    return row ? String(row.id) : null;
  }

  /** Those of `ids` that main holds neither live nor finished, back from the month files that keep them. */
  private restoreMissing(ids: string[]): void {
    if (!ids.length || !this.months) return;
    const lookup = mainJobsKnown(this.t, ids);
    const known = new Set((this.q(lookup.text).all(...lookup.values) as { id: string }[]).map((r) => r.id));
    const missing = ids.filter((id) => !known.has(id));
    if (missing.length) this.months.restore(missing);
  }

  /** A statement prepared on `db`: ours, the app's, or another handle on our file. */
  private prepareOn(db: DB, sql: string): Stmt {
    return db === this.own ? this.q(sql) : db === this.app ? this.qa(sql) : prepared(foreignStatements(db), db, sql);
  }

  /** The hot statements, one file each, their text built once per prefix. */
  private readonly hot = {
    insert: jobInsert(this.t),
    byRef: jobByRef(this.t),
    claim: jobsClaim(this.t),
    move: jobMoveToHistory(this.t),
    moveCompleted: jobsMoveCompleted(this.t),
    retryLater: jobRetryLater(this.t),
    attempt: attemptRecord(this.t),
    release: jobRelease(this.t),
    progress: jobSaveProgress(this.t),
    owned: jobOwned(this.t),
    log: logInsert(this.t),
  };

  constructor(private readonly app: DB, opts: SqliteStoreOptions) {
    super(sqliteDialect, opts.prefix);
    this.singleHandle = app.memory || !app.name || app.name === ':memory:';
    if (this.singleHandle) {
      this.own = app;
    } else {
      const Ctor = app.constructor as new (file: string, o?: object) => DB;
      this.own = new Ctor(app.name, { timeout: 20 });
      if (opts.wal) {
        retryBusySync(() => {
          if (String(this.own.pragma('journal_mode', { simple: true })) !== 'wal') this.own.pragma('journal_mode = WAL');
        });
      }
      // Per connection: durable at checkpoints, fast commits (the WAL keeps committed data across a crash of the process).
      this.own.pragma('synchronous = NORMAL');
      // SQLite's own default page cache (2 MiB), not better-sqlite3's 16: the worker's writes touch the
      // right edges of a few indexes and the claim index's left edge. Same throughput, also under a
      // 300,000-job backlog (bench/at-scale.ts), and 8 MB less peak RSS (issue 17).
      this.own.pragma('cache_size = -2000');
    }
    this.migrateSync();
    if (opts.history === 'monthly-files') {
      if (this.singleHandle) {
        throw new TypeError(`createJobs: history: 'monthly-files' needs a database file (the months are files beside it); db is an in-memory database`);
      }
      const Ctor = app.constructor as new (file: string, o?: object) => DB;
      this.months = new MonthFiles(new Ctor(app.name, { timeout: 20 }), this.t, app.name, opts.prefix);
      this.historyUpkeep = async () => {
        await this.months!.roll(await this.clockNow());
      };
    }
  }


  /** A statement on our handle, prepared once per text (the hot statements' texts are built once). */
  private q(sql: string): Stmt {
    return prepared(this.stmts, this.own, sql);
  }

  private qRaw(sql: string): Stmt {
    return prepared(this.rawStmts, this.own, sql, true);
  }

  /** A cached statement on the app's handle (enqueue joins the app's transaction). */
  private qa(sql: string): Stmt {
    return prepared(this.appStmts, this.app, sql);
  }

  /** fn inside BEGIN IMMEDIATE ... COMMIT on our handle (prepared once; no wrapper built per call). */
  private immediate<T>(fn: () => T): T {
    if (this.own.inTransaction) return fn();
    this.q('BEGIN IMMEDIATE').run();
    try {
      const out = fn();
      this.q('COMMIT').run();
      return out;
    } catch (err) {
      if (this.own.inTransaction) this.q('ROLLBACK').run();
      throw err;
    }
  }

  /** Run fn in an IMMEDIATE transaction on our handle, retrying SQLITE_BUSY without blocking the loop. */
  private write<T>(fn: () => T): Promise<T> {
    return retryBusy(() => this.immediate(fn), () => this.closed);
  }

  private read<T>(fn: () => T): Promise<T> {
    return retryBusy(fn, () => this.closed);
  }

  // ---------------------------------------------------------------- migrations

  /** BEGIN IMMEDIATE serialises concurrent migrators on the file; the loser sees the versions applied. */
  private migrateSync(): void {
    retryBusySync(() => this.migrateOnce());
  }

  private migrateOnce(): void {
    const known = loadMigrations('sqlite', this.prefix);
    const db = this.own;
    db.exec(`CREATE TABLE IF NOT EXISTS ${this.t.migrations} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
    const appliedNow = () => (db.prepare(`SELECT version FROM ${this.t.migrations}`).all() as { version: number }[]).map((r) => r.version);
    if (known.every((m) => appliedNow().includes(m.version))) return checkNotNewer('sqlite', appliedNow(), known);
    const run = db.transaction(() => {
      const applied = appliedNow();
      checkNotNewer('sqlite', applied, known);
      for (const m of known) {
        if (applied.includes(m.version)) continue;
        db.exec(m.sql);
        db.prepare(`INSERT INTO ${this.t.migrations} (version, name, applied_at) VALUES (?, ?, ${NOW})`).run(m.version, m.name);
      }
    });
    run.immediate();
  }

  async migrate(): Promise<void> {
    this.migrateSync();
  }

  // ---------------------------------------------------------------- enqueue

  /**
   * Synchronous: `tx` is a better-sqlite3 Database inside a transaction (the app's own, or the one
   * an ORM's transaction runs on), or nothing (the app's handle).
   */
  jobInsertManySync({ rows, tx }: InsertBatch): EnqueueResult[] {
    const db = tx === undefined ? this.app : this.callerDatabase(tx);
    const prepare = (sql: string) => (db === this.app ? this.qa(sql) : prepared(foreignStatements(db), db, sql));
    const insert = this.hot.insert;
    const insertOne = prepare(insert.text);
    const one = (r: NewJobRow): EnqueueResult => {
      if (insertOne.run(...insert.values(r)).changes === 1) return { id: r.id, existed: false };
      const byRef = this.hot.byRef(r.refId);
      const row = prepare(byRef.text).get(...byRef.values) as { id: string };
      return { id: row.id, existed: true };
    };
    if (rows.length === 1 && !rows[0].refId) return [one(rows[0])];
    // Joins the open transaction (as a savepoint) or opens its own.
    return db.transaction(() => {
      let now: number | undefined;
      const results = new Array<EnqueueResult>(rows.length);
      for (let i = 0; i < rows.length; ) {
        const run = withoutRef(rows, i, ROWS_PER_INSERT);
        if (run < ROWS_PER_INSERT) {
          // A shorter run (then a row with a refId, or the end), or that row itself: one by one.
          for (const end = i + Math.max(run, 1); i < end; i++) results[i] = one(rows[i]);
          continue;
        }
        now ??= prepare(CLOCK).pluck().get() as number;
        const values: unknown[] = [];
        for (let j = i; j < i + run; j++) {
          insert.pushValues(values, rows[j], now);
          results[j] = { id: rows[j].id, existed: false };
        }
        prepare(insert.rowsText).run(values);
        i += run;
      }
      return results;
    })();
  }

  /** The caller's opts.tx as a Database: the app's handle, or another one on our file inside a transaction. */
  private callerDatabase(tx: unknown): DB {
    if (tx === this.app) return this.app;
    if (!isBetterSqlite(tx)) {
      throw new TypeError(`opts.tx on SQLite must be the better-sqlite3 Database given to createJobs, used inside its db.transaction() callback, ${ACCEPTED_TX}; got ${describeTx(tx)}`);
    }
    if (this.singleHandle || path.resolve(tx.name) !== path.resolve(this.app.name)) {
      throw new TypeError(`opts.tx: the transaction runs on another database (${tx.name}) than the one given to createJobs (${this.app.name})`);
    }
    if (!tx.inTransaction) throw new TypeError('opts.tx: the better-sqlite3 Database is not inside a transaction, so the job would not be part of it');
    return tx;
  }

  /** An ORM transaction that runs asynchronously (Knex, Kysely, Prisma): resolved first, then written on its connection. */
  async jobInsertMany({ rows, tx }: InsertBatch): Promise<EnqueueResult[]> {
    if (tx === undefined || isBetterSqlite(tx)) return this.jobInsertManySync({ rows, tx });
    const caller = await openCallerTx(tx);
    if ('native' in caller) return this.jobInsertManySync({ rows, tx: caller.native });
    const results: EnqueueResult[] = [];
    for (const r of rows) {
      await runnerQuery(caller, this.hot.insert.text, this.hot.insert.values(r));
      if (!r.refId) {
        results.push({ id: r.id, existed: false });
        continue;
      }
      const byRef = this.hot.byRef(r.refId);
      const [holder] = await runnerQuery(caller, byRef.text, byRef.values);
      results.push({ id: String(holder.id), existed: holder.id !== r.id });
    }
    return results;
  }

  appInTransaction(): boolean {
    return this.app.inTransaction;
  }

  // ---------------------------------------------------------------- claim and outcomes

  async jobClaim(req: ClaimRequest): Promise<ClaimedJob[]> {
    const claim = this.hot.claim(req, crypto.randomUUID());
    // Rows as arrays, decoded straight into claimed jobs (no record of 21 keys per row first).
    const rows = await this.write(() => this.qRaw(claim.text).all(...claim.values) as unknown[][]);
    return rows.map((r) => claimedFromColumns(r, textCodec)).sort(claimOrder);
  }

  /** One owned running job to history, in the caller's transaction; `error` replaces the last error (null on success). */
  private moveToHistory(item: Fenced, state: JobState, error: string | null, result: string | null): boolean {
    const move = this.hot.move(item, state, error, result);
    if (this.q(move.copy.text).run(...move.copy.values).changes !== 1) return false;
    this.q(move.remove.text).run(...move.remove.values);
    return true;
  }

  protected async completeFast(items: CompleteItem[]): Promise<Set<string>> {
    // Every claim tells the rowid; an item without one (none today) takes the single move.
    if (items.some((it) => it.rowid === undefined)) {
      return this.write(() => new Set(items.filter((it) => this.moveToHistory(it, 'completed', null, it.resultJson)).map((it) => it.id)));
    }
    const { copy, remove, values } = this.hot.moveCompleted;
    const bound = values(items);
    return this.write(() => {
      const moved = this.q(copy).all(...bound) as { id: string }[];
      if (moved.length) this.q(remove).run(...bound);
      return new Set(moved.map((r) => r.id));
    });
  }

  protected async failFast(items: FailItem[]): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      for (const it of items) {
        const err = JSON.stringify(it.error);
        let ok: boolean;
        if (it.retryDelayMs === null) {
          ok = this.moveToHistory(it, 'failed', err, null);
        } else {
          const retry = this.hot.retryLater(it.id, it.token, it.retryDelayMs, err);
          ok = this.q(retry.text).run(...retry.values).changes === 1;
        }
        if (!ok) continue;
        this.recordAttempt(it.id, it.attempt, null, it.startedAt?.getTime() ?? null, err);
        done.add(it.id);
      }
      return done;
    });
  }

  private recordAttempt(jobId: string, attempt: number, workerId: string | null, startedAt: number | null, errorJson: string): void {
    const record = this.hot.attempt(jobId, attempt, workerId, startedAt, errorJson);
    this.q(record.text).run(...record.values);
  }

  /** One fenced single-row statement per item, all in one write transaction; answers the ids it changed. */
  private eachFenced<I extends Fenced>(items: I[], build: (item: I) => { text: string; values: unknown[] }): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      for (const it of items) {
        const q = build(it);
        if (this.q(q.text).run(...q.values).changes === 1) done.add(it.id);
      }
      return done;
    });
  }

  async jobReleaseMany(items: ReleaseItem[]): Promise<Set<string>> {
    return this.eachFenced(items, this.hot.release);
  }

  async jobProgressMany(items: ProgressItem[]): Promise<Set<string>> {
    return this.eachFenced(items, this.hot.progress);
  }

  async logAppendMany(items: LogItem[]): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      for (const it of items) {
        const owned = this.hot.owned(it);
        if (!this.q(owned.text).get(...owned.values)) continue;
        this.insertLines(it);
        done.add(it.id);
      }
      return done;
    });
  }

  /**
   * better-sqlite3 cannot hold a transaction across an await, so a transactional handler runs
   * synchronously inside BEGIN IMMEDIATE on our handle, and the completion joins it.
   */
  async jobCompleteInTransaction({ item, work, encode, beforeComplete, takeLogs }: TransactionalCompletion): Promise<{ applied: boolean; result: unknown }> {
    await beforeComplete();
    try {
      const done = await this.write(() => {
        const result = work(this.own);
        if (result !== null && typeof (result as PromiseLike<unknown>)?.then === 'function') {
          throw new TypeError('a transactional handler on SQLite must be synchronous: better-sqlite3 cannot hold a transaction across an await');
        }
        const resultJson = encode(result);
        // What the handler logged goes in with its completion (fenced by it: a lost attempt's lines roll back).
        this.writeTakenLogs(takeLogs());
        if (!item.flow && this.moveToHistory(item, 'completed', null, resultJson)) return { applied: true, result, flow: null };
        const flow = driveSync(this.completionSteps(item, resultJson), (s) => outcome(this.q(s.text), s));
        if (!flow.value.has(item.id)) throw new NotOwned();
        return { applied: true, result, flow };
      });
      // After commit: what the completion released (a dependent, a serial key's next job) is due now.
      if (done.flow) await this.withWake(done.flow);
      return { applied: done.applied, result: done.result };
    } catch (err) {
      if (err instanceof NotOwned) return { applied: false, result: undefined };
      throw err;
    }
  }

  /** An attempt's log lines, in the write transaction under way (its ownership checked by the caller). */
  private insertLines(item: LogItem): void {
    for (const line of item.lines) {
      const insert = this.hot.log(item.id, item.attempt, line.at, line.message);
      this.q(insert.text).run(...insert.values);
    }
  }

  /** A transactional handler's lines and progress, inside its write transaction. */
  private writeTakenLogs({ lines, progress }: { lines: LogItem | null; progress: ProgressItem | null }): void {
    if (lines) this.insertLines(lines);
    if (progress) {
      const q = this.hot.progress(progress);
      this.q(q.text).run(...q.values);
    }
  }

  // ---------------------------------------------------------------- leases

  async leaseAcquire({ name, owner, ttlMs }: LeaseRequest): Promise<number | null> {
    const row = await this.write(
      () =>
        this.q(`INSERT INTO ${this.t.leases} (name, owner, token, expires_at) VALUES (?, ?, 1, ${NOW} + ?)
          ON CONFLICT (name) DO UPDATE SET
            token = CASE WHEN owner = excluded.owner AND expires_at > ${NOW} THEN token ELSE token + 1 END,
            owner = excluded.owner, expires_at = excluded.expires_at
          WHERE owner = excluded.owner OR expires_at <= ${NOW}
          RETURNING token`).get(name, owner, ttlMs) as { token: number } | undefined,
    );
    return row ? Number(row.token) : null;
  }

  // ---------------------------------------------------------------- schedules

  async scheduleUpsert({ def: d, nextRunAt, codeHash }: { def: ScheduleDef; nextRunAt: number | null; codeHash: string | null }): Promise<void> {
    await this.write(() =>
      this.q(`INSERT INTO ${this.t.schedules} (key, name, cron, timezone, every_ms, start_at, end_at, max_runs, payload, options, overlap, missed, next_run_at, code_hash, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${NOW})
          ON CONFLICT (key) DO UPDATE SET name = excluded.name, cron = excluded.cron, timezone = excluded.timezone,
            every_ms = excluded.every_ms, start_at = excluded.start_at, end_at = excluded.end_at, max_runs = excluded.max_runs,
            payload = excluded.payload, options = excluded.options, overlap = excluded.overlap, missed = excluded.missed,
            next_run_at = CASE WHEN cron IS NOT excluded.cron OR timezone IS NOT excluded.timezone OR every_ms IS NOT excluded.every_ms
              OR start_at IS NOT excluded.start_at OR next_run_at IS NULL THEN excluded.next_run_at ELSE next_run_at END,
            code_hash = COALESCE(excluded.code_hash, code_hash), updated_at = excluded.updated_at
          WHERE excluded.code_hash IS NULL OR code_hash IS NOT excluded.code_hash`)
        .run(d.key, d.name, d.cron, d.timezone, d.everyMs, d.startAt, d.endAt, d.maxRuns, d.payloadJson, d.optionsJson, d.overlap, d.missed, nextRunAt, codeHash),
    );
  }

  async scheduleFire({ key, fireAt, row, skipIfLive }: ScheduleTick): Promise<{ jobId: string; skipped: boolean } | null> {
    return this.write(() => {
      const tick = this.q(`INSERT INTO ${this.t.ticks} (schedule_key, fire_at, job_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`).run(key, fireAt, row.id);
      if (tick.changes !== 1) return null;
      const live = skipIfLive !== null && row.refId ? this.q(`SELECT 1 FROM ${this.t.jobs} WHERE ref_id = ?`).get(row.refId) : undefined;
      if (live) {
        this.q(`INSERT INTO ${this.t.history} (id, name, queue, state, payload, payload_bin, priority, attempts, max_attempts, run_at, created_at, finished_at, tag, batch_id, created_by, meta, error, user_id, reply_to, args)
            VALUES (?, ?, ?, 'skipped', ?, NULL, ?, 0, ?, ?, ${NOW}, ${NOW}, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(row.id, row.name, row.queue, row.payloadJson, row.priority, row.maxAttempts, fireAt, row.tag, row.batchId, row.createdBy, row.metaJson,
            JSON.stringify(skipIfLive), row.userId, row.replyTo, row.argsJson);
      } else {
        this.insertOwn(row);
      }
      this.q(`UPDATE ${this.t.schedules} SET last_run_at = ?, last_job_id = ?, runs = runs + 1 WHERE key = ?`).run(fireAt, row.id, key);
      return { jobId: row.id, skipped: !!live };
    });
  }

  /** An enqueue on our own handle, inside a transaction of ours (schedules). */
  private insertOwn(r: NewJobRow): void {
    this.q(this.hot.insert.text).run(...this.hot.insert.values(r));
  }

  // ---------------------------------------------------------------- status

  async leaderDescribe(name: string): Promise<string | null> {
    const row = await this.read(() => this.q(`SELECT owner, expires_at - ${NOW} AS left_ms FROM ${this.t.leases} WHERE name = ? AND expires_at > ${NOW}`).get(name) as { owner: string; left_ms: number } | undefined);
    return row ? `${row.owner} (lease, ${row.left_ms} ms left)` : null;
  }

  // ---------------------------------------------------------------- history across monthly files

  /**
   * Main, then the files, then main again: a job moves to its month's file by a copy there and
   * then a delete from main, and back (a retry, a redrive) by a copy to main and then a delete from
   * the file, each its own commit. A get between main and the files missed a job coming back
   * (an attacker: 7 in 250,000 gets during retries of a month); the second look at main finds it.
   */
  override async jobGet(id: string): Promise<JobRecord | null> {
    const found = await super.jobGet(id);
    if (found || !this.months) return found;
    const row = this.months.findJob((t) => jobGet({ d: this.d, t }, { id }));
    return row ? toJobRecord(row, this.d.codec) : super.jobGet(id);
  }

  /**
   * Main's page merged with each file's (every source walks its id index from the cursor; newest
   * first, cut to the limit), main read again after the files (as jobGet: a job coming back from
   * its file between the two reads was in neither).
   */
  override async jobList(filter: ListFilter): Promise<ListPage> {
    const page = await super.jobList(filter);
    const { history } = statesByTable(filter);
    if (!this.months || !history) return page;
    const fromFiles = await this.months.fromEach((t) => jobsList({ d: this.d, t }, { ...filter, state: undefined, states: history }));
    const again = await super.jobList(filter);
    // Main's last, so that it wins over a file's copy of the same job (a move or restore cut short by a crash).
    const byId = new Map([...fromFiles.flat().map((r) => toJobRecord(r, this.d.codec)), ...page.items, ...again.items].map((j) => [j.id, j]));
    const limit = listLimit(filter);
    const items = [...byId.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).slice(0, limit);
    return { items, nextCursor: items.length === limit ? items[items.length - 1].id : null };
  }

  /** Per state, main's count up to `cap`, then the files' (newest first) up to what main left of it. */
  protected override async finishedCounts(cap: number): Promise<Record<string, unknown>[]> {
    const main = await super.finishedCounts(cap);
    if (!this.months) return main;
    const counts = new Map(main.map((r) => [String(r.state), Number(r.count)]));
    const more = await this.months.countStates(new Map([...counts].map(([state, n]) => [state, cap - n])));
    return [...counts].map(([state, n]) => ({ state, count: n + (more.get(state) ?? 0) }));
  }

  protected override async batchCountRows(batchId: string): Promise<Record<string, unknown>[]> {
    const main = await super.batchCountRows(batchId);
    return this.months ? [...main, ...(await this.months.batchCounts(batchId))] : main;
  }

  /**
   * The files' buckets beside main's (a window reaching back past the month's start; each file answers
   * from its finish-time index). Not within the counted minutes: main's counters hold those already
   * (counted while the finishes were in main, or, by a recount after the move, with the files).
   */
  protected override async throughputElsewhere(k: ThroughputRead): Promise<Record<string, unknown>[][]> {
    return this.months ? this.months.fromEach((t) => throughputRead({ d: this.d, t }, k, { counters: false })) : [];
  }

  /** Edges to jobs kept in month files: each row from where the other job is (main, else the newest file that holds it). */
  protected override async linkRows(id: string): Promise<Record<string, unknown>[][]> {
    const [parents, dependents] = await super.linkRows(id);
    if (!this.months || [...parents, ...dependents].every((r) => r.name != null)) return [parents, dependents];
    const found = (rows: Record<string, unknown>[], key: string, fromFiles: Record<string, unknown>[][]) =>
      rows.map((r) => (r.name != null ? r : (fromFiles.flat().find((f) => f[key] === r[key] && f.name != null) ?? r)));
    return [
      found(parents, 'parent_id', await this.months.fromEach((t) => jobParents({ d: this.d, t }, id))),
      found(dependents, 'child_id', await this.months.fromEach((t) => jobDependents({ d: this.d, t }, id))),
    ];
  }

  /** One entry per month file (its name, size on disk), and the months main still holds (the current one, rows kept for a live job). */
  override async historyMonths(req: { cap: number }): Promise<HistoryMonth[]> {
    const main = await super.historyMonths(req);
    if (!this.months) return main;
    const mainFile = path.basename(this.app.name);
    const files = await this.months.describeEach((t, m) => historyMonthCounts({ d: this.d, t }, { from: m.from.getTime(), to: m.to.getTime(), cap: req.cap }));
    const months = new Map<string, HistoryMonth>(main.map((m) => [m.month, { ...m, storedIn: mainFile }]));
    for (const f of files) {
      const counts: Partial<Record<JobState, number>> = { ...months.get(f.month.key)?.counts };
      for (const r of f.rows) counts[r.state as JobState] = (counts[r.state as JobState] ?? 0) + Number(r.n);
      const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
      months.set(f.month.key, { month: f.month.key, storedIn: f.file, counts, estimated: total >= req.cap, bytes: f.bytes, storedUntil: f.month.to });
    }
    return [...months.values()].sort((a, b) => (a.month < b.month ? 1 : -1));
  }

  /**
   * A finished job a month's file keeps comes back to main first, then is retried as any other
   * (./months.ts restore). Also when main holds it: a copy back cut short between its two commits
   * leaves the job in both places, and the restore takes the file's copy out, so that it does not
   * outlive the retry as a stale finished record.
   */
  override async jobRetry(id: string): Promise<JobState | null> {
    this.months?.restore([id]);
    return super.jobRetry(id);
  }

  /** A dead-letter copy's original (its parent) that a month's file keeps comes back to main first, where the redrive reads it. */
  override async jobRedrive(copyId: string, error: JobError): Promise<RedriveOutcome> {
    if (this.months) {
      const lookup = parentIds(this.t, copyId);
      const parents = this.q(lookup.text).all(...lookup.values) as { id: string }[];
      this.months.restore([copyId, ...parents.map((p) => p.id)]);
    }
    return super.jobRedrive(copyId, error);
  }

  /** As jobRetry: every id back from the files first, so that no file keeps a copy of a deleted job. */
  override async jobDeleteMany(ids: string[]): Promise<string[]> {
    this.months?.restore(ids);
    return super.jobDeleteMany(ids);
  }

  /** Whole files past the retention first, then rows one by one in main and in the file of the month straddling the cutoff. */
  override async historyPrune(req: { olderThanMs: number; limit: number; since?: number }): Promise<number> {
    if (!this.months) return super.historyPrune(req);
    const nowMs = await this.clockNow();
    // In main, only the straddling month's rows go one by one: an older row there is one a live job
    // read when its month was moved; once no job reads it, the next upkeep moves it to its month's file.
    const since = utcMonth(new Date(nowMs - req.olderThanMs)).from.getTime();
    const pruned = await super.historyPrune({ ...req, since });
    const { rows } = await this.months.prune({ nowMs, olderThanMs: req.olderThanMs, limit: req.limit - pruned });
    return pruned + rows;
  }

  async close(): Promise<void> {
    this.months?.close();
    this.closed = true;
    if (!this.singleHandle && this.own.open) this.own.close();
  }
}

/** Statements prepared on Databases an ORM opened (its transactions' connections), dropped with them. */
const foreignCaches = new WeakMap<DB, Map<string, Stmt>>();
function foreignStatements(db: DB): Map<string, Stmt> {
  let cache = foreignCaches.get(db);
  if (!cache) foreignCaches.set(db, (cache = new Map()));
  return cache;
}


function outcome(st: Stmt, s: Statement): Outcome {
  if (st.reader) {
    const rows = st.all(...s.values) as Record<string, unknown>[];
    return { rows, changes: rows.length };
  }
  return { rows: [], changes: st.run(...s.values).changes };
}

/** Rolls back a transactional completion whose attempt is no longer owned. */
class NotOwned extends Error {}

/** How many rows from `from` on, up to `max`, have no refId (they can share one multi-row INSERT). */
function withoutRef(rows: NewJobRow[], from: number, max: number): number {
  let n = 0;
  while (n < max && from + n < rows.length && !rows[from + n].refId) n++;
  return n;
}
