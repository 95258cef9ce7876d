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
import type BetterSqlite3 from 'better-sqlite3';
import type { EnqueueResult, JobRecord, JobState, ListFilter, ListPage, NewJobRow, AttemptRecord, LogRecord, JobError } from '../../model.ts';
import { checkNotNewer, loadMigrations } from '../migrations.ts';
import { claimOrder, textCodec, toAttemptRecord, toClaimedJob, toJobRecord, toLogRecord, toWorkerRecord, withCurrentAttempt } from '../rows.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';
import { sqlite as sqliteDialect } from '../portable/dialect.ts';
import { PortableStore } from '../portable/engine.ts';
import type { Outcome, SqlRunner, Statement } from '../portable/statement.ts';
import { Params, listLimit, listWhere, statesByTable } from '../sql.ts';
import { CLAIM_COLUMNS, mergeQueueStats } from '../store.ts';
import type {
  CancelResult, ClaimRequest, ClaimedJob, CompleteItem, FailItem, Fenced, LogItem, ProgressItem,
  QueueStats, ReleaseItem, StatusCounts, Store, ThroughputBuckets, StoreCapabilities, WorkerRecord,
} from '../store.ts';

type DB = BetterSqlite3.Database;
type Stmt = BetterSqlite3.Statement;

const NOW = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/** Columns both tables share, in one order, so a move between them is INSERT ... SELECT. */
const COMMON = `id, name, queue, payload, payload_bin, priority, attempts, max_attempts, timeout_ms, backoff,
  run_at, created_at, started_at, ref_id, tag, batch_id, created_by, meta, progress, progress_message,
  checkpoint, error, worker_id`;
const SUMMARY = `id, name, queue, state, priority, attempts, max_attempts, timeout_ms, run_at, created_at,
  started_at, ref_id, tag, batch_id, created_by, meta, progress, progress_message, checkpoint, error, worker_id`;

export interface SqliteStoreOptions {
  prefix: string;
  /** Put the database file in WAL mode (a property of the file). Default true. */
  wal: boolean;
}

export class SqliteStore extends PortableStore implements Store {
  readonly dialect = 'sqlite' as const;
  readonly capabilities: StoreCapabilities = { notify: false, syncEnqueue: true };
  readonly prefix: string;
  private readonly own: DB;
  private readonly singleHandle: boolean;
  private readonly stmts = new Map<string, Stmt>();
  private readonly appStmts = new Map<string, Stmt>();
  private closed = false;

  /** Portable statements (../portable/) on our handle: prepared once per text; writes in BEGIN IMMEDIATE, SQLITE_BUSY retried. */
  protected readonly runner: SqlRunner = {
    run: (s) => {
      const st = this.q(s.text);
      return st.readonly ? this.read(() => outcome(st, s)) : this.write(() => outcome(st, s));
    },
    transaction: (list) => this.write(() => list.map((s) => outcome(this.q(s.text), s))),
  };

  constructor(private readonly app: DB, opts: SqliteStoreOptions) {
    super(sqliteDialect, opts.prefix);
    this.prefix = opts.prefix;
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
    }
    this.migrateSync();
  }


  /** A cached statement on our handle. */
  private q(sql: string): Stmt {
    return this.k(sql, () => sql);
  }

  /** A cached statement on the app's handle (enqueue joins the app's transaction). */
  private qa(key: string, build: () => string): Stmt {
    let s = this.appStmts.get(key);
    if (!s) {
      s = this.app.prepare(build());
      this.appStmts.set(key, s);
    }
    return s;
  }

  /** A cached statement whose SQL is built only once (hot paths: no string building per call). */
  private k(key: string, build: () => string): Stmt {
    let s = this.stmts.get(key);
    if (!s) {
      s = this.own.prepare(build());
      this.stmts.set(key, s);
    }
    return s;
  }

  /** fn inside BEGIN IMMEDIATE ... COMMIT on our handle (prepared once; no wrapper built per call). */
  private immediate<T>(fn: () => T): T {
    if (this.own.inTransaction) return fn();
    this.k('begin', () => 'BEGIN IMMEDIATE').run();
    try {
      const out = fn();
      this.k('commit', () => 'COMMIT').run();
      return out;
    } catch (err) {
      if (this.own.inTransaction) this.k('rollback', () => 'ROLLBACK').run();
      throw err;
    }
  }

  /** Run fn in an IMMEDIATE transaction on our handle, retrying SQLITE_BUSY without blocking the loop. */
  private async write<T>(fn: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return this.immediate(fn);
      } catch (err) {
        if (!isBusy(err) || attempt > 2000 || this.closed) throw err;
        await busyPause(attempt);
      }
    }
  }

  private async read<T>(fn: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err) || attempt > 2000 || this.closed) throw err;
        await busyPause(attempt);
      }
    }
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

  enqueueSync(rows: NewJobRow[], tx?: unknown): EnqueueResult[] {
    if (tx !== undefined && tx !== this.app) {
      throw new TypeError('opts.tx on SQLite must be the better-sqlite3 Database given to createJobs, used inside its db.transaction() callback');
    }
    const insert = this.qa('insert', () => `INSERT INTO ${this.t.jobs}
      (id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, created_at, ref_id, tag, batch_id, created_by, meta)
      VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, COALESCE(?, ${NOW} + ?), ${NOW}, ?, ?, ?, ?, ?)
      ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING`);
    const existing = this.qa('existing', () => `SELECT id FROM ${this.t.jobs} WHERE ref_id = ?`);
    const one = (r: NewJobRow): EnqueueResult => {
      const info = insert.run(
        r.id, r.name, r.queue, r.payloadJson, r.payloadBin, r.priority, r.maxAttempts, r.timeoutMs, r.backoffJson,
        r.runAt ? r.runAt.getTime() : null, r.delayMs, r.refId, r.tag, r.batchId, r.createdBy, r.metaJson,
      );
      if (info.changes === 1) return { id: r.id, existed: false };
      const row = existing.get(r.refId) as { id: string };
      return { id: row.id, existed: true };
    };
    if (rows.length === 1 && !rows[0].refId) return [one(rows[0])];
    // Joins the app's open transaction (as a savepoint) or opens its own.
    return this.app.transaction(() => rows.map(one))();
  }

  async enqueue(rows: NewJobRow[], tx?: unknown): Promise<EnqueueResult[]> {
    return this.enqueueSync(rows, tx);
  }

  appInTransaction(): boolean {
    return this.app.inTransaction;
  }

  // ---------------------------------------------------------------- claim and outcomes

  async claim(req: ClaimRequest): Promise<ClaimedJob[]> {
    const token = crypto.randomUUID();
    const key = `claim:${!!req.queues}:${!!req.excludeQueues}`;
    const build = () => {
    let queueFilter = req.queues ? `AND queue IN (SELECT value FROM json_each(?))` : '';
    if (req.excludeQueues) queueFilter += ` AND queue NOT IN (SELECT value FROM json_each(?))`;
    return `UPDATE ${this.t.jobs} SET state = 'running', token = ?, worker_id = ?, attempts = attempts + 1,
        started_at = ${NOW}, progress = NULL, progress_message = NULL
      WHERE rowid IN (SELECT rowid FROM ${this.t.jobs} INDEXED BY ${this.t.jobsClaim}
        WHERE state = 'pending' AND run_at <= ${NOW} AND name IN (SELECT value FROM json_each(?)) ${queueFilter}
          AND queue NOT IN (SELECT queue FROM ${this.t.paused})
        ORDER BY priority DESC, run_at, rowid LIMIT ?)
      RETURNING ${CLAIM_COLUMNS}, rowid AS rowid_`;
    };
    const args: unknown[] = [token, req.workerId, JSON.stringify(req.names)];
    if (req.queues) args.push(JSON.stringify(req.queues));
    if (req.excludeQueues) args.push(JSON.stringify(req.excludeQueues));
    args.push(req.limit);
    const rows = await this.write(() => this.k(key, build).all(...args) as Record<string, unknown>[]);
    return rows.map((r) => toClaimedJob(r, textCodec)).sort(claimOrder);
  }

  /** INSERT ... SELECT of one owned running job into history, then DELETE: the move is one transaction. `error` replaces the last error (null on success). */
  private moveToHistory(item: Fenced, state: JobState, error: string | null, result: string | null): boolean {
    // By rowid when the claim told us it (an integer key instead of the text id index), still fenced by id and token.
    const by = item.rowid === undefined ? 'id' : 'rowid';
    const key = item.rowid ?? item.id;
    const info = this.k(`move:${by}`, () => `INSERT INTO ${this.t.history} (${COMMON}, state, finished_at, result)
        SELECT ${COMMON.replace(/\berror\b/, '?')}, ?, ${NOW}, ? FROM ${this.t.jobs}
        WHERE ${by} = ? AND id = ? AND token = ? AND state = 'running'`).run(error, state, result, key, item.id, item.token);
    if (info.changes !== 1) return false;
    this.k(`delete:${by}`, () => `DELETE FROM ${this.t.jobs} WHERE ${by} = ?`).run(key);
    return true;
  }

  async complete(items: CompleteItem[]): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      for (const it of items) if (this.moveToHistory(it, 'completed', null, it.resultJson)) done.add(it.id);
      return done;
    });
  }

  async fail(items: FailItem[]): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      for (const it of items) {
        const err = JSON.stringify(it.error);
        let ok: boolean;
        if (it.retryDelayMs === null) {
          ok = this.moveToHistory(it, 'failed', err, null);
        } else {
          ok = this.q(`UPDATE ${this.t.jobs} SET state = 'pending', run_at = ${NOW} + ?, error = ?, token = NULL
              WHERE id = ? AND token = ? AND state = 'running'`).run(it.retryDelayMs, err, it.id, it.token).changes === 1;
        }
        if (!ok) continue;
        this.recordAttempt(it.id, it.attempt, null, it.startedAt?.getTime() ?? null, err);
        done.add(it.id);
      }
      return done;
    });
  }

  private recordAttempt(jobId: string, attempt: number, workerId: string | null, startedAt: number | null, errorJson: string): void {
    this.q(`INSERT INTO ${this.t.attempts} (job_id, attempt, worker_id, started_at, finished_at, error)
        VALUES (?, ?, COALESCE(?, (SELECT worker_id FROM ${this.t.history} WHERE id = ?), (SELECT worker_id FROM ${this.t.jobs} WHERE id = ?)), ?, ${NOW}, ?)
        ON CONFLICT (job_id, attempt) DO UPDATE SET error = excluded.error, finished_at = excluded.finished_at`)
      .run(jobId, attempt, workerId, jobId, jobId, startedAt, errorJson);
  }

  async release(items: ReleaseItem[]): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      const stmt = this.q(`UPDATE ${this.t.jobs} SET state = 'pending', run_at = ${NOW} + ?, attempts = attempts - ?, token = NULL
          WHERE id = ? AND token = ? AND state = 'running'`);
      for (const it of items) if (stmt.run(it.delayMs, it.refund ? 1 : 0, it.id, it.token).changes === 1) done.add(it.id);
      return done;
    });
  }

  async saveProgress(items: ProgressItem[]): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      const stmt = this.q(`UPDATE ${this.t.jobs} SET progress = ?, progress_message = ? WHERE id = ? AND token = ? AND state = 'running'`);
      for (const it of items) if (stmt.run(it.progress, it.message, it.id, it.token).changes === 1) done.add(it.id);
      return done;
    });
  }

  async appendLogs(items: LogItem[]): Promise<Set<string>> {
    return this.write(() => {
      const done = new Set<string>();
      const owned = this.q(`SELECT 1 FROM ${this.t.jobs} WHERE id = ? AND token = ? AND state = 'running'`);
      const insert = this.q(`INSERT INTO ${this.t.logs} (job_id, attempt, at, message) VALUES (?, ?, ?, ?)`);
      for (const it of items) {
        if (!owned.get(it.id, it.token)) continue;
        for (const line of it.lines) insert.run(it.id, it.attempt, line.at, line.message);
        done.add(it.id);
      }
      return done;
    });
  }

  /**
   * better-sqlite3 cannot hold a transaction across an await, so a transactional handler runs
   * synchronously inside BEGIN IMMEDIATE on our handle, and the completion joins it.
   */
  async runTransactional(
    item: Fenced,
    work: (tx: unknown) => unknown,
    encode: (result: unknown) => string | null,
    beforeComplete: () => Promise<void> | void,
  ): Promise<{ applied: boolean; result: unknown }> {
    await beforeComplete();
    try {
      return await this.write(() => {
        const result = work(this.own);
        if (result !== null && typeof (result as PromiseLike<unknown>)?.then === 'function') {
          throw new TypeError('a transactional handler on SQLite must be synchronous: better-sqlite3 cannot hold a transaction across an await');
        }
        if (!this.moveToHistory(item, 'completed', null, encode(result))) throw new NotOwned();
        return { applied: true, result };
      });
    } catch (err) {
      if (err instanceof NotOwned) return { applied: false, result: undefined };
      throw err;
    }
  }

  // ---------------------------------------------------------------- leases

  async acquireLease(name: string, owner: string, ttlMs: number): Promise<number | null> {
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

  async upsertSchedule(d: ScheduleDef, nextRunAt: number | null, codeHash: string | null): Promise<void> {
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

  async fireSchedule(key: string, fireAt: number, row: NewJobRow, skipIfLive: JobError | null): Promise<{ jobId: string; skipped: boolean } | null> {
    return this.write(() => {
      const tick = this.q(`INSERT INTO ${this.t.ticks} (schedule_key, fire_at, job_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`).run(key, fireAt, row.id);
      if (tick.changes !== 1) return null;
      const live = skipIfLive !== null && row.refId ? this.q(`SELECT 1 FROM ${this.t.jobs} WHERE ref_id = ?`).get(row.refId) : undefined;
      if (live) {
        this.q(`INSERT INTO ${this.t.history} (id, name, queue, state, payload, payload_bin, priority, attempts, max_attempts, run_at, created_at, finished_at, tag, batch_id, created_by, meta, error)
            VALUES (?, ?, ?, 'skipped', ?, NULL, ?, 0, ?, ?, ${NOW}, ${NOW}, ?, ?, ?, ?, ?)`)
          .run(row.id, row.name, row.queue, row.payloadJson, row.priority, row.maxAttempts, fireAt, row.tag, row.batchId, row.createdBy, row.metaJson,
            JSON.stringify(skipIfLive));
      } else {
        this.insertOwn(row);
      }
      this.q(`UPDATE ${this.t.schedules} SET last_run_at = ?, last_job_id = ?, runs = runs + 1 WHERE key = ?`).run(fireAt, row.id, key);
      return { jobId: row.id, skipped: !!live };
    });
  }

  /** An enqueue on our own handle, inside a transaction of ours (schedules). */
  private insertOwn(r: NewJobRow): void {
    this.k('insertOwn', () => `INSERT INTO ${this.t.jobs}
        (id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, created_at, ref_id, tag, batch_id, created_by, meta)
        VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, COALESCE(?, ${NOW} + ?), ${NOW}, ?, ?, ?, ?, ?)
        ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING`)
      .run(r.id, r.name, r.queue, r.payloadJson, r.payloadBin, r.priority, r.maxAttempts, r.timeoutMs, r.backoffJson,
        r.runAt ? r.runAt.getTime() : null, r.delayMs, r.refId, r.tag, r.batchId, r.createdBy, r.metaJson);
  }

  async dbNow(): Promise<number> {
    return this.read(() => (this.q(`SELECT ${NOW} AS now`).get() as { now: number }).now);
  }

  // ---------------------------------------------------------------- status

  async statusCounts(cap: number): Promise<StatusCounts> {
    return this.read(() => {
      const live = this.q(`SELECT state, queue, COUNT(*) AS count FROM ${this.t.jobs} GROUP BY state, queue ORDER BY queue, state`).all() as StatusCounts['live'];
      // Each state counted on its own (state, id) index range, up to cap: never a full count of history.
      const finished = this.q(`SELECT s.state, (SELECT COUNT(*) FROM (SELECT 1 FROM ${this.t.history} INDEXED BY ${this.t.historyState} WHERE state = s.state LIMIT ?)) AS count
        FROM (SELECT 'completed' AS state UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled' UNION ALL SELECT 'skipped') s`).all(cap) as { state: string; count: number }[];
      return { live, finished: finished.filter((r) => r.count > 0).map((r) => ({ ...r, capped: r.count >= cap })) };
    });
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    const rows = await this.read(() => this.q(`SELECT * FROM ${this.t.workers} ORDER BY started_at`).all() as Record<string, unknown>[]);
    return rows.map((r) => toWorkerRecord(r, textCodec));
  }

  async leaderInfo(name: string): Promise<string | null> {
    const row = await this.read(() => this.q(`SELECT owner, expires_at - ${NOW} AS left_ms FROM ${this.t.leases} WHERE name = ? AND expires_at > ${NOW}`).get(name) as { owner: string; left_ms: number } | undefined);
    return row ? `${row.owner} (lease, ${row.left_ms} ms left)` : null;
  }

  // ---------------------------------------------------------------- reads and admin verbs

  async get(id: string): Promise<JobRecord | null> {
    return this.read(() => {
      const live = this.q(`SELECT *, NULL AS finished_at FROM ${this.t.jobs} WHERE id = ?`).get(id) as Record<string, unknown> | undefined;
      const row = live ?? (this.q(`SELECT * FROM ${this.t.history} WHERE id = ?`).get(id) as Record<string, unknown> | undefined);
      return row ? toJobRecord(row, textCodec) : null;
    });
  }

  async list(filter: ListFilter): Promise<ListPage> {
    const limit = listLimit(filter);
    const { live, history } = statesByTable(filter);
    const p = new Params('qmark');
    const cols = filter.includePayload ? `${SUMMARY}, payload, payload_bin` : SUMMARY;
    const parts: string[] = [];
    if (live) {
      parts.push(`SELECT * FROM (SELECT ${cols}, NULL AS finished_at${filter.includePayload ? ', NULL AS result' : ''} FROM ${this.t.jobs}
        ${listWhere(filter, live, 2, p, (d) => d.getTime())} ORDER BY id DESC LIMIT ${p.add(limit)})`);
    }
    if (history) {
      parts.push(`SELECT * FROM (SELECT ${cols}, finished_at${filter.includePayload ? ', result' : ''} FROM ${this.t.history}
        ${listWhere(filter, history, 4, p, (d) => d.getTime())} ORDER BY id DESC LIMIT ${p.add(limit)})`);
    }
    const sql = `${parts.join(' UNION ALL ')} ORDER BY id DESC LIMIT ${p.add(limit)}`;
    const rows = await this.read(() => this.q(sql).all(...p.values) as Record<string, unknown>[]);
    const items = rows.map((r) => toJobRecord(r, textCodec));
    return { items, nextCursor: items.length === limit ? items[items.length - 1].id : null };
  }

  async attempts(id: string): Promise<AttemptRecord[]> {
    const rows = await this.read(() => this.q(`SELECT * FROM ${this.t.attempts} WHERE job_id = ? ORDER BY attempt`).all(id) as Record<string, unknown>[]);
    return withCurrentAttempt(rows.map((r) => toAttemptRecord(r, textCodec)), await this.get(id));
  }

  async logs(id: string, opts: { afterSeq?: number; limit: number }): Promise<LogRecord[]> {
    const rows = await this.read(
      () => this.q(`SELECT * FROM ${this.t.logs} WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?`).all(id, opts.afterSeq ?? 0, opts.limit) as Record<string, unknown>[],
    );
    return rows.map((r) => toLogRecord(r, textCodec));
  }

  async cancel(id: string): Promise<CancelResult | null> {
    return this.write(() => {
      const row = this.q(`SELECT state, worker_id FROM ${this.t.jobs} WHERE id = ?`).get(id) as { state: 'pending' | 'running'; worker_id: string | null } | undefined;
      if (!row) return null;
      this.q(`INSERT INTO ${this.t.history} (${COMMON}, state, finished_at, result)
          SELECT ${COMMON}, 'cancelled', ${NOW}, NULL FROM ${this.t.jobs} WHERE id = ?`).run(id);
      this.q(`DELETE FROM ${this.t.jobs} WHERE id = ?`).run(id);
      return { previous: row.state, workerId: row.worker_id };
    });
  }

  async retry(id: string): Promise<JobState | null> {
    return this.write(() => {
      const live = this.q(`UPDATE ${this.t.jobs} SET run_at = ${NOW} WHERE id = ? AND state = 'pending'`).run(id);
      if (live.changes === 1) return 'pending' as const;
      const hist = this.q(`SELECT ref_id FROM ${this.t.history} WHERE id = ?`).get(id) as { ref_id: string | null } | undefined;
      if (!hist) return null;
      if (hist.ref_id && this.q(`SELECT 1 FROM ${this.t.jobs} WHERE ref_id = ?`).get(hist.ref_id)) {
        throw new Error(`cannot retry job ${id}: a live job with refId "${hist.ref_id}" exists`);
      }
      this.q(`INSERT INTO ${this.t.jobs} (${COMMON}, state)
          SELECT id, name, queue, payload, payload_bin, priority, attempts, MAX(max_attempts, attempts + 1), timeout_ms, backoff,
            ${NOW}, created_at, NULL, ref_id, tag, batch_id, created_by, meta, NULL, NULL, checkpoint, error, NULL, 'pending'
          FROM ${this.t.history} WHERE id = ?`).run(id);
      this.q(`DELETE FROM ${this.t.history} WHERE id = ?`).run(id);
      return 'pending' as const;
    });
  }

  async pruneHistory(olderThanMs: number, limit: number): Promise<number> {
    return this.write(() => {
      const ids = (this.q(`SELECT id FROM ${this.t.history} WHERE finished_at < ${NOW} - ? LIMIT ?`).all(olderThanMs, limit) as { id: string }[]).map((r) => r.id);
      if (!ids.length) return 0;
      const list = JSON.stringify(ids);
      for (const table of [this.t.logs, this.t.attempts]) this.q(`DELETE FROM ${table} WHERE job_id IN (SELECT value FROM json_each(?))`).run(list);
      return this.q(`DELETE FROM ${this.t.history} WHERE id IN (SELECT value FROM json_each(?))`).run(list).changes;
    });
  }

  // ---------------------------------------------------------------- admin verbs

  async pauseQueue(queue: string): Promise<void> {
    await this.write(() => this.q(`INSERT INTO ${this.t.paused} (queue, paused_at) VALUES (?, ${NOW}) ON CONFLICT (queue) DO NOTHING`).run(queue));
  }

  async resumeQueue(queue: string): Promise<boolean> {
    return this.write(() => this.q(`DELETE FROM ${this.t.paused} WHERE queue = ?`).run(queue).changes === 1);
  }

  async queueStats(): Promise<QueueStats[]> {
    return this.read(() => {
      const live = this.q(`SELECT queue, SUM(state = 'pending') AS pending, SUM(state = 'pending' AND run_at <= now) AS due,
          SUM(state = 'running') AS running, now - MIN(CASE WHEN state = 'pending' AND run_at <= now THEN run_at END) AS oldest
        FROM ${this.t.jobs} INDEXED BY ${this.t.jobsQueue}, (SELECT ${NOW} AS now) GROUP BY queue`).all() as Record<string, number | string | null>[];
      const paused = this.q(`SELECT queue, paused_at FROM ${this.t.paused}`).all() as { queue: string; paused_at: number }[];
      return mergeQueueStats(
        live.map((r) => ({ queue: String(r.queue), pending: Number(r.pending), due: Number(r.due), running: Number(r.running), oldestDueAgeMs: r.oldest === null ? null : Number(r.oldest), pausedAt: null })),
        paused.map((r) => ({ queue: r.queue, pausedAt: new Date(r.paused_at) })),
      );
    });
  }

  async throughput(windowMs: number, bucketMs: number): Promise<ThroughputBuckets> {
    return this.read(() => {
      const now = (this.q(`SELECT ${NOW} AS now`).get() as { now: number }).now;
      const buckets = this.q(`SELECT (finished_at / CAST(? AS INTEGER)) * CAST(? AS INTEGER) AS start, SUM(state = 'completed') AS completed, SUM(state = 'failed') AS failed
        FROM ${this.t.history} INDEXED BY ${this.t.historyFinished} WHERE finished_at > ? GROUP BY 1 ORDER BY 1`)
        .all(bucketMs, bucketMs, now - windowMs) as ThroughputBuckets['buckets'];
      return { now, buckets };
    });
  }

  async makeDue(id: string): Promise<boolean> {
    return this.write(() => this.q(`UPDATE ${this.t.jobs} SET run_at = ${NOW} WHERE id = ? AND state = 'pending'`).run(id).changes === 1);
  }

  async deleteJobs(ids: string[]): Promise<string[]> {
    return this.write(() => {
      const deleted: string[] = [];
      for (const id of ids) {
        const live = this.q(`DELETE FROM ${this.t.jobs} WHERE id = ? AND state = 'pending'`).run(id).changes;
        const finished = live ? 0 : this.q(`DELETE FROM ${this.t.history} WHERE id = ?`).run(id).changes;
        if (!live && !finished) continue;
        for (const table of [this.t.logs, this.t.attempts]) this.q(`DELETE FROM ${table} WHERE job_id = ?`).run(id);
        deleted.push(id);
      }
      return deleted;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (!this.singleHandle && this.own.open) this.own.close();
  }
}

/**
 * Start-up only (createJobs is synchronous on SQLite): retry SQLITE_BUSY with short synchronous
 * waits, for up to 30 s, while other processes open or migrate the same file.
 */
function retryBusySync<T>(fn: () => T): T {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err) || attempt > 3000) throw err;
      Atomics.wait(pause, 0, 0, 5 + Math.random() * 10);
    }
  }
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

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Wait before retrying SQLITE_BUSY. Short and flat at first so that processes sharing a file
 * take turns fairly (a growing backoff lets the process that holds the lock keep winning it);
 * longer only when the lock stays busy for a long time.
 */
function busyPause(attempt: number): Promise<void> {
  return sleep(attempt < 200 ? 1 + Math.random() * 4 : 20 + Math.random() * 30);
}

