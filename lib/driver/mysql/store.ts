/**
 * MySQL 8 / MariaDB 10.6+ (mysql2): all of this dialect's SQL.
 *
 * Enqueue runs on the app's pool (or the caller's connection inside its transaction), so the job
 * commits with the caller's writes. There is no LISTEN/NOTIFY: other processes learn of new jobs
 * by polling, this process is woken in-process after the commit.
 *
 * Everything the worker does runs on a small private pool built from the app pool's settings,
 * with its own session settings: READ COMMITTED (at REPEATABLE READ a claim's gap locks would
 * block concurrent enqueues), UTC, BIGINT as strings and JSON as text. There is no
 * UPDATE ... RETURNING on either server, so a claim is SELECT ... FOR UPDATE SKIP LOCKED then
 * UPDATE ... WHERE id IN (...) in one short transaction, and a fenced move to history locks its
 * rows first, then copies and deletes them.
 *
 * Times are DATETIME(3) UTC from the database clock (UTC_TIMESTAMP(3)); times the library passes
 * in are UTC text, which no connection `timezone` setting can shift.
 */
import { createHash } from 'node:crypto';
import type { Pool as CbPool, PoolConnection as CbPoolConnection } from 'mysql2';
import type { Pool as PromisePool, PoolConnection, ResultSetHeader } from 'mysql2/promise';
import { isValidId, type AttemptRecord, type EnqueueResult, type JobRecord, type JobState, type ListFilter, type ListPage, type LogRecord, type NewJobRow, type JobError } from '../../model.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';
import { checkNotNewer, loadMigrations, splitStatements } from '../migrations.ts';
import { mysql as mysqlDialect } from '../portable/dialect.ts';
import { PortableStore } from '../portable/engine.ts';
import type { Outcome, SqlRunner } from '../portable/statement.ts';
import { holdMysqlConnection, openTransaction, withHeld } from '../held.ts';
import { claimOrder, toAttemptRecord, toClaimedJob, toJobRecord, toLogRecord, toWorkerRecord, withCurrentAttempt, type RowCodec } from '../rows.ts';
import { Params, chunkBy, listLimit, listWhere, statesByTable } from '../sql.ts';
import type {
  CancelResult, ClaimRequest, ClaimedJob, CompleteItem, FailItem, Fenced, LogItem, OpenTransaction, ProgressItem, ReleaseItem,
  QueueStats, SessionLock, StatusCounts, Store, StoreCapabilities, ThroughputBuckets, WorkerRecord,
} from '../store.ts';
import { CLAIM_COLUMNS, mergeQueueStats } from '../store.ts';

const COMMON = `id, name, queue, payload, payload_bin, priority, attempts, max_attempts, timeout_ms, backoff,
  run_at, created_at, started_at, ref_id, tag, batch_id, created_by, meta, progress, progress_message,
  checkpoint, error, worker_id`;
const SUMMARY = `id, name, queue, state, priority, attempts, max_attempts, timeout_ms, run_at, created_at,
  started_at, ref_id, tag, batch_id, created_by, meta, progress, progress_message, checkpoint, error, worker_id`;
const INSERT_COLUMNS = 'id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, created_at, ref_id, tag, batch_id, created_by, meta';
const NOW = 'UTC_TIMESTAMP(3)';
/** Keep each enqueue statement well under the server's default max_allowed_packet (16 MiB). */
const CHUNK_BYTES = 4 * 1024 * 1024;
/** 17 placeholders a row: stay far below the 65,535 placeholder limit. */
const CHUNK_ROWS = 2000;
/** GET_LOCK names: MySQL refuses names over 64 characters. */
const LOCK_NAME_MAX = 64;
/** KILL of a connection that no longer exists. */
const ER_NO_SUCH_THREAD = 1094;
/** The states a finished job can be in (each counted on its own index range). */
const FINISHED_STATES = ['completed', 'failed', 'cancelled', 'skipped'] as const;

type Row = Record<string, unknown>;
/** Anything that runs a statement: the app's pool, a connection of ours or the caller's. */
type Queryable = Pick<PromisePool | PoolConnection, 'query'>;

/** Rows as our private connections return them: Dates parsed as UTC, JSON as text. */
const codec: RowCodec = {
  date: (v) => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(`${String(v).replace(' ', 'T')}Z`)),
  json: (v) => (v === null || v === undefined ? null : typeof v === 'string' ? JSON.parse(v) : v),
};

/** A time the library computed, as UTC text DATETIME(3) reads the same under any session time zone. */
function utc(ms: number | Date): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 23);
}

/**
 * A GET_LOCK name for `name`: MySQL limits names to 64 characters, and lock names compare
 * case-insensitively on some servers and case-sensitively on MariaDB 10.11. Short lowercase names
 * are used as they are; any other name becomes a lowercase readable head plus its SHA-1, so two
 * names that differ only in case never share a lock, on any server.
 */
export function lockName(name: string): string {
  if (name.length <= LOCK_NAME_MAX && /^[a-z0-9_.:\-/]+$/.test(name)) return name;
  const hash = createHash('sha1').update(name, 'utf8').digest('hex');
  const head = name.toLowerCase().replace(/[^a-z0-9_.:\-/]/g, '_').slice(0, LOCK_NAME_MAX - hash.length - 1);
  return `${head}#${hash}`;
}

/** mysql2's callback pool behind either flavour the app may hand us. */
export function callbackPool(db: unknown): CbPool {
  const o = db as { pool?: CbPool; promise?: unknown };
  return (typeof o.promise === 'function' ? db : o.pool) as CbPool;
}

/** The caller's connection as a promise connection (a callback connection has .promise()). */
function promiseConnection(tx: unknown): Queryable | null {
  const o = tx as Record<string, unknown> | null;
  if (!o || typeof o.query !== 'function' || typeof o.beginTransaction !== 'function' || typeof o.execute !== 'function') return null;
  if (typeof o.getConnection === 'function') return null; // a pool: its statements land on any connection
  if ('connection' in o && typeof o.promise !== 'function') return tx as Queryable;
  return typeof o.promise === 'function' ? (o.promise as () => Queryable).call(o) : null;
}

export interface MysqlStoreOptions {
  prefix: string;
  workerPoolSize: number;
}

export class MysqlStore extends PortableStore implements Store {
  readonly dialect = 'mysql' as const;
  readonly capabilities: StoreCapabilities = { notify: false, syncEnqueue: false };
  readonly prefix: string;
  /** The app's pool, promise flavour: enqueues and request transactions. */
  private readonly app: PromisePool;
  /** Claims, outcomes, heartbeats, sweeps, migrations, reads. */
  private readonly own: PromisePool;
  /** Connections that hold a GET_LOCK: checked out for as long as the lock, then destroyed. */
  private readonly lockers: PromisePool;
  /** Whether the server has @@in_transaction (MariaDB) to check a caller's opts.tx with. */
  private canCheckTx = true;

  /** Portable statements (../portable/) on the private pool. */
  protected readonly runner: SqlRunner = {
    run: async (s) => outcome((await this.own.query(s.text, s.values))[0]),
    transaction: (list) => this.transaction(async (c) => {
      const out: Outcome[] = [];
      for (const s of list) out.push(outcome((await c.query(s.text, s.values))[0]));
      return out;
    }),
  };

  constructor(appPool: unknown, opts: MysqlStoreOptions) {
    super(mysqlDialect, opts.prefix);
    this.prefix = opts.prefix;
    const cb = callbackPool(appPool);
    this.app = cb.promise();
    this.own = privatePool(cb, opts.workerPoolSize);
    this.lockers = privatePool(cb, 0);
  }


  private async rows(text: string, values: unknown[] = [], on: Queryable = this.own): Promise<Row[]> {
    const [rows] = await on.query(text, values);
    return rows as Row[];
  }

  private async exec(text: string, values: unknown[] = [], on: Queryable = this.own): Promise<ResultSetHeader> {
    const [res] = await on.query(text, values);
    return res as ResultSetHeader;
  }

  /** One of our connections for `fn` (held: see held.ts); rolled back if `fn` throws, destroyed if it broke. */
  private async onOwnConnection<T>(fn: (c: PoolConnection) => Promise<T>): Promise<T> {
    return withHeld(await holdMysqlConnection(this.own), (c) => c.query('ROLLBACK'), fn);
  }

  /** A short transaction of ours (READ COMMITTED, set on every private connection). */
  private transaction<T>(fn: (c: PoolConnection) => Promise<T>): Promise<T> {
    return this.onOwnConnection(async (c) => {
      await c.query('START TRANSACTION');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    });
  }

  /**
   * START TRANSACTION and a first statement in one round trip (our connections allow several
   * statements per call; the app's never see this): the hot paths pay for round trips.
   */
  private async beginWith(c: PoolConnection, text: string, values: unknown[]): Promise<Row[]> {
    const [results] = await c.query(`START TRANSACTION; ${text}`, values);
    return (results as unknown[])[1] as Row[];
  }

  // ---------------------------------------------------------------- migrations

  /**
   * Under GET_LOCK on one connection of ours: concurrent migrators wait, then see the work done.
   * DDL commits implicitly on these servers, so each file's statements are applied one by one
   * and its version recorded after the last.
   */
  async migrate(): Promise<void> {
    const known = loadMigrations('mysql', this.prefix);
    const held = await holdMysqlConnection(this.own);
    const c = held.conn;
    const name = lockName(`${this.prefix}migrate`);
    let locked = false;
    try {
      const got = await this.rows('SELECT GET_LOCK(?, 60) AS got', [name], c);
      if (Number(got[0].got) !== 1) throw new Error(`sqljobs: could not take the migration lock "${name}" within 60 s (another process is migrating)`);
      locked = true;
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.t.migrations} (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at DATETIME(3) NOT NULL) ENGINE = InnoDB`);
      const applied = (await this.rows(`SELECT version FROM ${this.t.migrations}`, [], c)).map((r) => Number(r.version));
      checkNotNewer('mysql', applied, known);
      for (const m of known) {
        if (applied.includes(m.version)) continue;
        for (const stmt of splitStatements(m.sql)) await c.query(stmt);
        await c.query(`INSERT INTO ${this.t.migrations} (version, name, applied_at) VALUES (?, ?, ${NOW})`, [m.version, m.name]);
      }
    } finally {
      // A lock we could not release goes with its connection.
      if (locked) await this.rows('SELECT RELEASE_LOCK(?) AS r', [name], c).catch((err: unknown) => held.markBroken(err));
      held.release();
    }
  }

  // ---------------------------------------------------------------- enqueue

  async enqueue(rows: NewJobRow[], tx?: unknown): Promise<EnqueueResult[]> {
    let target: Queryable = this.app;
    if (tx !== undefined) target = await this.callerTransaction(tx);
    return this.insertJobs(rows, target);
  }

  /** The caller's opts.tx: a mysql2 connection (either flavour) inside a transaction. */
  private async callerTransaction(tx: unknown): Promise<Queryable> {
    const c = promiseConnection(tx);
    if (!c) throw new TypeError('opts.tx on MySQL/MariaDB must be a mysql2 connection (from pool.getConnection()) inside beginTransaction()');
    if (this.canCheckTx) {
      try {
        const [rows] = await c.query('SELECT @@in_transaction AS t');
        if (Number((rows as Row[])[0].t) === 0) {
          throw new TypeError('opts.tx: the mysql2 connection is not inside a transaction (call beginTransaction() first), so the job would not be part of it');
        }
      } catch (err) {
        if ((err as { errno?: number }).errno !== 1193) throw err;
        this.canCheckTx = false; // MySQL has no @@in_transaction: trust the caller
      }
    }
    return c;
  }

  /**
   * Multi-row INSERT per chunk. A row whose refId matches a live job is left alone
   * (ON DUPLICATE KEY UPDATE with no change) and answered with that job, found by a locking
   * read (it sees the latest committed row even inside the caller's REPEATABLE READ snapshot).
   */
  private async insertJobs(rows: NewJobRow[], on: Queryable): Promise<EnqueueResult[]> {
    const results = new Map<string, EnqueueResult>();
    let todo = rows;
    for (let round = 0; todo.length && round < 5; round++) {
      for (const chunk of chunkBy(todo, (r) => r.bytes, CHUNK_BYTES, CHUNK_ROWS)) {
        const values: unknown[] = [];
        const tuples = chunk.map((r) => {
          values.push(r.id, r.name, r.queue, r.payloadJson, r.payloadBin, r.priority, r.maxAttempts, r.timeoutMs, r.backoffJson,
            r.runAt ? utc(r.runAt) : null, r.delayMs * 1000, r.refId, r.tag, r.batchId, r.createdBy, r.metaJson);
          return `(?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, COALESCE(?, ${NOW} + INTERVAL ? MICROSECOND), ${NOW}, ?, ?, ?, ?, ?)`;
        });
        await this.exec(`INSERT INTO ${this.t.jobs} (${INSERT_COLUMNS}) VALUES ${tuples.join(', ')} ON DUPLICATE KEY UPDATE id = id`, values, on);
        const refs = [...new Set(chunk.filter((r) => r.refId !== null).map((r) => r.refId))];
        const byRef = new Map<string, string>();
        if (refs.length) {
          const live = await this.rows(`SELECT id, ref_id FROM ${this.t.jobs} WHERE ref_id IN (?) LOCK IN SHARE MODE`, [refs], on);
          for (const r of live) byRef.set(r.ref_id as string, r.id as string);
        }
        for (const row of chunk) {
          const holder = row.refId === null ? row.id : byRef.get(row.refId);
          if (holder !== undefined) results.set(row.id, { id: holder, existed: holder !== row.id });
        }
      }
      // A refId whose live job finished between our insert and our look-up is tried again.
      todo = todo.filter((r) => !results.has(r.id));
    }
    if (todo.length) throw new Error(`enqueue: could not settle refId "${todo[0].refId}" after 5 tries (a live job with it kept appearing and finishing)`);
    return rows.map((r) => results.get(r.id)!);
  }

  // ---------------------------------------------------------------- claim and outcomes

  async claim(req: ClaimRequest): Promise<ClaimedJob[]> {
    if (!req.names.length) return [];
    const token = crypto.randomUUID();
    const p = new Params('qmark');
    const where = [`state = 'pending'`, `run_at <= ${NOW}`, `name IN (${p.add(req.names)})`];
    if (req.queues) where.push(req.queues.length ? `queue IN (${p.add(req.queues)})` : 'FALSE');
    if (req.excludeQueues?.length) where.push(`queue NOT IN (${p.add(req.excludeQueues)})`);
    // A plain read: FOR UPDATE does not lock the rows of a subquery, so claims never block one another here.
    where.push(`queue NOT IN (SELECT queue FROM ${this.t.paused})`);
    const picked = await this.onOwnConnection(async (c) => {
      const rows = await this.beginWith(
        c,
        `SELECT ${CLAIM_COLUMNS.replace('token, ', '')}, ${NOW} AS claimed_at FROM ${this.t.jobs} FORCE INDEX (${this.t.jobsClaim})
         WHERE ${where.join(' AND ')} ORDER BY priority DESC, run_at, id LIMIT ${p.add(req.limit)} FOR UPDATE SKIP LOCKED`,
        p.values,
      );
      if (!rows.length) {
        await c.query('COMMIT');
        return rows;
      }
      await c.query(
        `UPDATE ${this.t.jobs} SET state = 'running', token = ?, worker_id = ?, attempts = attempts + 1, started_at = ?,
           progress = NULL, progress_message = NULL WHERE id IN (?); COMMIT`,
        [token, req.workerId, utc(codec.date(rows[0].claimed_at)!), rows.map((r) => r.id)],
      );
      return rows;
    });
    // The rows as the UPDATE left them (started at the claim's clock reading).
    return picked
      .map((r) => toClaimedJob({ ...r, token, attempts: Number(r.attempts) + 1, started_at: r.claimed_at }, codec))
      .sort(claimOrder);
  }

  /** The statement that locks the running rows of these attempts (the ids whose token matches are ours). */
  private lockSql(extra = ''): string {
    return `SELECT id, token${extra} FROM ${this.t.jobs} WHERE id IN (?) AND state = 'running' FOR UPDATE`;
  }

  private owned(rows: Row[], items: Fenced[]): Map<string, Row> {
    const tokens = new Map(items.map((i) => [i.id, i.token]));
    return new Map(rows.filter((r) => tokens.get(r.id as string) === r.token).map((r) => [r.id as string, r]));
  }

  private async lockOwned(c: PoolConnection, items: Fenced[], extra = ''): Promise<Map<string, Row>> {
    return this.owned(await this.rows(this.lockSql(extra), [items.map((i) => i.id)], c), items);
  }

  /**
   * Two statements that copy running jobs of these attempts (fenced by id and token) to history
   * as `state`, each with its own value for `column`, then delete them. The DELETE removes only
   * rows history now holds, so nothing in between can lose a job.
   */
  private moveSql(state: 'completed' | 'failed', column: 'result' | 'error', items: (Fenced & { value: string | null })[]): { text: string; values: unknown[] } {
    const values: unknown[] = [];
    const input = items.map((it, i) => {
      values.push(it.id, it.token, it.value);
      return i === 0 ? 'SELECT ? AS id, ? AS token, ? AS v' : 'SELECT ?, ?, ?';
    });
    const cols = COMMON.split(',').map((s) => s.trim());
    const select = cols.map((col) => (col === 'error' ? (column === 'error' ? 'x.v' : 'NULL') : `j.${col}`)).join(', ');
    values.push(items.map((i) => i.id));
    return {
      text: `INSERT INTO ${this.t.history} (${COMMON}, state, finished_at, result)
       SELECT ${select}, '${state}', ${NOW}, ${column === 'result' ? 'x.v' : 'NULL'}
       FROM ${this.t.jobs} j JOIN (${input.join(' UNION ALL ')}) x ON x.id = j.id AND x.token = j.token WHERE j.state = 'running';
       DELETE j FROM ${this.t.jobs} j JOIN ${this.t.history} h ON h.id = j.id WHERE j.id IN (?)`,
      values,
    };
  }

  /** The rows were locked and ours: anything but all of them moved is a bug worth stopping for. */
  private checkMoved(copied: ResultSetHeader, deleted: ResultSetHeader, expected: number): void {
    if (copied.affectedRows !== expected || deleted.affectedRows !== expected) {
      throw new Error(`sqljobs: moved ${copied.affectedRows} and deleted ${deleted.affectedRows} of ${expected} jobs to history`);
    }
  }

  /** Inside one of our transactions: copy and delete these owned, locked jobs. */
  private async moveToHistory(c: PoolConnection, state: 'completed' | 'failed', column: 'result' | 'error', items: (Fenced & { value: string | null })[]): Promise<void> {
    if (!items.length) return;
    const move = this.moveSql(state, column, items);
    const [results] = await c.query(move.text, move.values);
    const [copied, deleted] = results as ResultSetHeader[];
    this.checkMoved(copied, deleted, items.length);
  }

  /**
   * One round trip: START TRANSACTION, lock the rows, copy the owned ones to history, delete
   * them, COMMIT. The lock tells which attempts were still ours; the copy is fenced by token.
   */
  async complete(items: CompleteItem[]): Promise<Set<string>> {
    if (!items.length) return new Set();
    return this.onOwnConnection(async (c) => {
      const move = this.moveSql('completed', 'result', items.map((i) => ({ ...i, value: i.resultJson })));
      const [results] = await c.query(`START TRANSACTION; ${this.lockSql()}; ${move.text}; COMMIT`, [items.map((i) => i.id), ...move.values]);
      const [, locked, copied, deleted] = results as [unknown, Row[], ResultSetHeader, ResultSetHeader];
      const owned = this.owned(locked, items);
      this.checkMoved(copied, deleted, owned.size);
      return new Set(owned.keys());
    });
  }

  /** Inside a transaction of the caller's (transactional completion): lock, copy, delete, no commit. */
  private async completeIn(c: PoolConnection, items: CompleteItem[]): Promise<Set<string>> {
    const owned = await this.lockOwned(c, items);
    await this.moveToHistory(c, 'completed', 'result', items.filter((i) => owned.has(i.id)).map((i) => ({ ...i, value: i.resultJson })));
    return new Set(owned.keys());
  }

  async fail(items: FailItem[]): Promise<Set<string>> {
    if (!items.length) return new Set();
    return this.transaction((c) => this.failIn(c, items));
  }

  /** Retry later (pending with the error) or fail for good (to history); every failed attempt gets its row. */
  private async failIn(c: PoolConnection, items: Pick<FailItem, 'id' | 'token' | 'attempt' | 'error' | 'retryDelayMs'>[]): Promise<Set<string>> {
    const owned = await this.lockOwned(c, items, ', worker_id, started_at');
    const mine = items.filter((i) => owned.has(i.id));
    if (!mine.length) return new Set();
    for (const i of mine.filter((m) => m.retryDelayMs !== null)) {
      await c.query(
        `UPDATE ${this.t.jobs} SET state = 'pending', run_at = ${NOW} + INTERVAL ? MICROSECOND, error = ?, token = NULL WHERE id = ?`,
        [i.retryDelayMs! * 1000, JSON.stringify(i.error), i.id],
      );
    }
    const values: unknown[] = [];
    for (const i of mine) {
      const row = owned.get(i.id)!;
      values.push(i.id, i.attempt, row.worker_id, row.started_at === null ? null : utc(codec.date(row.started_at)!), JSON.stringify(i.error));
    }
    await c.query(
      `INSERT INTO ${this.t.attempts} (job_id, attempt, worker_id, started_at, finished_at, error)
       VALUES ${mine.map(() => `(?, ?, ?, ?, ${NOW}, ?)`).join(', ')}
       ON DUPLICATE KEY UPDATE error = VALUES(error), finished_at = VALUES(finished_at)`,
      values,
    );
    const dead = mine.filter((m) => m.retryDelayMs === null).map((m) => ({ ...m, value: JSON.stringify(m.error) }));
    await this.moveToHistory(c, 'failed', 'error', dead);
    return new Set(mine.map((m) => m.id));
  }

  async release(items: ReleaseItem[]): Promise<Set<string>> {
    const applied = await Promise.all(
      items.map(async (i) => {
        const res = await this.exec(
          `UPDATE ${this.t.jobs} SET state = 'pending', run_at = ${NOW} + INTERVAL ? MICROSECOND, attempts = attempts - ?, token = NULL
           WHERE id = ? AND token = ? AND state = 'running'`,
          [i.delayMs * 1000, i.refund ? 1 : 0, i.id, i.token],
        );
        return res.affectedRows === 1 ? i.id : null;
      }),
    );
    return new Set(applied.filter((id): id is string => id !== null));
  }

  async saveProgress(items: ProgressItem[]): Promise<Set<string>> {
    const applied = await Promise.all(
      items.map(async (i) => {
        const res = await this.exec(
          `UPDATE ${this.t.jobs} SET progress = ?, progress_message = ? WHERE id = ? AND token = ? AND state = 'running'`,
          [i.progress, i.message, i.id, i.token],
        );
        return res.affectedRows === 1 ? i.id : null;
      }),
    );
    return new Set(applied.filter((id): id is string => id !== null));
  }

  /** Lines of attempts still owned, in order; the ownership check holds a shared lock until they are in. */
  async appendLogs(items: LogItem[]): Promise<Set<string>> {
    if (!items.length) return new Set();
    return this.transaction(async (c) => {
      const rows = await this.rows(`SELECT id, token FROM ${this.t.jobs} WHERE id IN (?) AND state = 'running' LOCK IN SHARE MODE`, [items.map((i) => i.id)], c);
      const live = new Set(rows.map((r) => `${r.id}:${r.token}`));
      const lines = items.filter((i) => live.has(`${i.id}:${i.token}`)).flatMap((i) => i.lines.map((l) => [i.id, i.attempt, utc(l.at), l.message]));
      if (lines.length) await c.query(`INSERT INTO ${this.t.logs} (job_id, attempt, at, message) VALUES ?`, [lines]);
      return new Set(items.filter((i) => live.has(`${i.id}:${i.token}`) && i.lines.length).map((i) => i.id));
    });
  }

  /** `ctx.tx` is a mysql2 promise connection of ours inside the transaction that completes the job. */
  async runTransactional(
    item: Fenced,
    work: (tx: unknown) => unknown,
    encode: (result: unknown) => string | null,
    beforeComplete: () => Promise<void> | void,
  ): Promise<{ applied: boolean; result: unknown }> {
    return this.onOwnConnection(async (c) => {
      await c.query('START TRANSACTION');
      const result = await work(c);
      const resultJson = encode(result);
      await beforeComplete();
      const applied = (await this.completeIn(c, [{ ...item, resultJson }])).has(item.id);
      await c.query(applied ? 'COMMIT' : 'ROLLBACK');
      return { applied, result };
    });
  }

  // ---------------------------------------------------------------- leases

  /** Insert the lease if new, else take it over when ours or expired (locked while we decide). */
  async acquireLease(name: string, owner: string, ttlMs: number): Promise<number | null> {
    return this.transaction(async (c) => {
      const fresh = await this.exec(
        `INSERT IGNORE INTO ${this.t.leases} (name, owner, token, expires_at) VALUES (?, ?, 1, ${NOW} + INTERVAL ? MICROSECOND)`,
        [name, owner, ttlMs * 1000],
        c,
      );
      if (fresh.affectedRows === 1) return 1;
      const [cur] = await this.rows(`SELECT owner, token, expires_at > ${NOW} AS live FROM ${this.t.leases} WHERE name = ? FOR UPDATE`, [name], c);
      const live = Number(cur.live) === 1;
      if (live && cur.owner !== owner) return null;
      const token = live ? Number(cur.token) : Number(cur.token) + 1;
      await c.query(`UPDATE ${this.t.leases} SET owner = ?, token = ?, expires_at = ${NOW} + INTERVAL ? MICROSECOND WHERE name = ?`, [owner, token, ttlMs * 1000, name]);
      return token;
    });
  }



  /**
   * GET_LOCK on a connection checked out for as long as the lock is held (a connection returned to
   * a pool would carry the lock to its next user). Lost when that connection errors or closes;
   * confirmed with IS_USED_LOCK(name) = CONNECTION_ID().
   */
  async trySessionLock(name: string): Promise<SessionLock | null> {
    const key = lockName(`${this.prefix}${name}`);
    const c = await this.lockers.getConnection();
    const raw = (c as unknown as { connection: CbPoolConnection }).connection;
    let lostCb: (() => void) | null = null;
    let gone = false;
    // Not destroyed here: a statement sent before the loss must still be answered (mysql2 fails it
    // as the socket closes; a destroy() first would make it wait forever), and the pool already
    // forgets a connection that ended or failed.
    const drop = () => {
      if (gone) return;
      gone = true;
      lostCb?.();
    };
    raw.on('error', drop);
    raw.on('end', drop);
    try {
      const got = await this.rows('SELECT GET_LOCK(?, 0) AS got', [key], c);
      if (Number(got[0].got) !== 1) {
        gone = true;
        c.destroy();
        return null;
      }
    } catch (err) {
      gone = true;
      c.destroy();
      throw err;
    }
    return {
      pid: raw.threadId ?? null,
      stillHeld: async () => {
        if (gone) return false;
        const rows = await this.rows('SELECT IS_USED_LOCK(?) = CONNECTION_ID() AS held', [key], c).catch(() => null);
        return rows !== null && Number(rows[0].held) === 1;
      },
      onLost: (cb) => {
        lostCb = cb;
        if (gone) cb();
      },
      release: async () => {
        if (gone) return;
        gone = true;
        await c.query('SELECT RELEASE_LOCK(?)', [key]).catch(() => undefined);
        c.destroy();
      },
    };
  }

  /**
   * End the connection holding the leader's GET_LOCK (a leader paused or hung with its connection
   * open): the server releases the lock as that connection ends. KILL takes no placeholder, so the
   * connection id the server reported is checked to be an integer before it is written in.
   * Ending another user's connection needs CONNECTION_ADMIN (MySQL) or SUPER / CONNECTION ADMIN
   * (MariaDB); the app's own user may end its own connections.
   */
  async evictSessionLockHolder(name: string): Promise<number> {
    const [row] = await this.rows('SELECT IS_USED_LOCK(?) AS holder, CONNECTION_ID() AS me', [lockName(`${this.prefix}${name}`)]);
    if (row.holder === null || String(row.holder) === String(row.me)) return 0;
    const id = Number(row.holder);
    if (!Number.isSafeInteger(id) || id <= 0) throw new Error(`sqljobs: IS_USED_LOCK returned ${JSON.stringify(row.holder)}, not a connection id`);
    try {
      await this.exec(`KILL CONNECTION ${id}`);
      return 1;
    } catch (err) {
      if ((err as { errno?: number }).errno === ER_NO_SUCH_THREAD) return 0; // it ended on its own meanwhile
      throw new Error(`cannot end MySQL/MariaDB connection ${id}, which holds the leader lock (ending another user's connection needs CONNECTION_ADMIN or SUPER): ${(err as Error).message}`, { cause: err });
    }
  }

  // ---------------------------------------------------------------- schedules

  /**
   * One INSERT ... ON DUPLICATE KEY UPDATE. Its assignments run left to right and each sees the
   * columns as the earlier ones left them, so every condition must read the old row: each
   * assignment carries the code-hash guard, next_run_at (which compares the timing columns) comes
   * first and code_hash (which the guard reads) last.
   */
  async upsertSchedule(d: ScheduleDef, nextRunAt: number | null, codeHash: string | null): Promise<void> {
    const at = (ms: number | null) => (ms === null ? null : utc(ms));
    const replace = '(VALUES(code_hash) IS NULL OR NOT (code_hash <=> VALUES(code_hash)))';
    const timingChanged = `(NOT (cron <=> VALUES(cron)) OR NOT (timezone <=> VALUES(timezone)) OR NOT (every_ms <=> VALUES(every_ms))
      OR NOT (start_at <=> VALUES(start_at)) OR next_run_at IS NULL)`;
    const defined = ['name', 'cron', 'timezone', 'every_ms', 'start_at', 'end_at', 'max_runs', 'payload', 'options', 'overlap', 'missed'];
    await this.exec(
      `INSERT INTO ${this.t.schedules} (\`key\`, ${defined.join(', ')}, next_run_at, code_hash, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${NOW})
       ON DUPLICATE KEY UPDATE
         next_run_at = IF(${replace} AND ${timingChanged}, VALUES(next_run_at), next_run_at),
         ${defined.map((c) => `${c} = IF(${replace}, VALUES(${c}), ${c})`).join(', ')},
         updated_at = IF(${replace}, ${NOW}, updated_at),
         code_hash = COALESCE(VALUES(code_hash), code_hash)`,
      [d.key, d.name, d.cron, d.timezone, d.everyMs, at(d.startAt), at(d.endAt), d.maxRuns, d.payloadJson, d.optionsJson, d.overlap, d.missed, at(nextRunAt), codeHash],
    );
  }

  async fireSchedule(key: string, fireAt: number, row: NewJobRow, skipIfLive: JobError | null): Promise<{ jobId: string; skipped: boolean } | null> {
    return this.transaction(async (c) => {
      const tick = await this.exec(`INSERT IGNORE INTO ${this.t.ticks} (schedule_key, fire_at, job_id) VALUES (?, ?, ?)`, [key, utc(fireAt), row.id], c);
      if (tick.affectedRows !== 1) return null;
      const live = skipIfLive !== null && row.refId ? (await this.rows(`SELECT 1 FROM ${this.t.jobs} WHERE ref_id = ? LOCK IN SHARE MODE`, [row.refId], c)).length === 1 : false;
      if (live) {
        await c.query(
          `INSERT INTO ${this.t.history} (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at, tag, batch_id, created_by, meta, error)
           VALUES (?, ?, ?, 'skipped', ?, ?, 0, ?, ?, ${NOW}, ${NOW}, ?, ?, ?, ?, ?)`,
          [row.id, row.name, row.queue, row.payloadJson, row.priority, row.maxAttempts, utc(fireAt), row.tag, row.batchId, row.createdBy, row.metaJson,
            JSON.stringify(skipIfLive)],
        );
      } else {
        await this.insertJobs([row], c);
      }
      await c.query(`UPDATE ${this.t.schedules} SET last_run_at = ?, last_job_id = ?, runs = runs + 1 WHERE \`key\` = ?`, [utc(fireAt), row.id, key]);
      return { jobId: row.id, skipped: live };
    });
  }

  async dbNow(): Promise<number> {
    return codec.date((await this.rows(`SELECT ${NOW} AS now`))[0].now)!.getTime();
  }

  // ---------------------------------------------------------------- status

  async statusCounts(cap: number): Promise<StatusCounts> {
    const live = await this.rows(`SELECT state, queue, COUNT(*) AS count FROM ${this.t.jobs} GROUP BY state, queue ORDER BY queue, state`);
    // Each state counted on its own (state, id) index range, up to cap: never a full count of history.
    const finished = await this.rows(
      FINISHED_STATES.map(() => `SELECT ? AS state, COUNT(*) AS count FROM
        (SELECT 1 FROM ${this.t.history} FORCE INDEX (${this.t.historyState}) WHERE state = ? LIMIT ?) capped`).join(' UNION ALL '),
      FINISHED_STATES.flatMap((state) => [state, state, cap]),
    );
    return {
      live: live.map((r) => ({ state: r.state as 'pending' | 'running', queue: r.queue as string, count: Number(r.count) })),
      finished: finished.filter((r) => Number(r.count) > 0).map((r) => ({ state: r.state as string, count: Number(r.count), capped: Number(r.count) >= cap })),
    };
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    return (await this.rows(`SELECT * FROM ${this.t.workers} ORDER BY started_at`)).map((r) => toWorkerRecord(r, codec));
  }

  async leaderInfo(name: string): Promise<string | null> {
    const [row] = await this.rows('SELECT IS_USED_LOCK(?) AS holder', [lockName(`${this.prefix}${name}`)]);
    if (row.holder === null) return null;
    const [proc] = await this.rows('SELECT HOST AS host FROM information_schema.PROCESSLIST WHERE ID = ?', [row.holder]).catch(() => [] as Row[]);
    return `MySQL connection ${row.holder}${proc?.host ? ` from ${proc.host}` : ''} (GET_LOCK)`;
  }

  // ---------------------------------------------------------------- reads and admin verbs

  async get(id: string): Promise<JobRecord | null> {
    const rows = await this.rows(
      `SELECT ${COMMON}, state, CAST(NULL AS DATETIME(3)) AS finished_at, NULL AS result FROM ${this.t.jobs} WHERE id = ?
       UNION ALL
       SELECT ${COMMON}, state, finished_at, result FROM ${this.t.history} WHERE id = ?`,
      [id, id],
    );
    return rows.length ? toJobRecord(rows[0], codec) : null;
  }

  async list(filter: ListFilter): Promise<ListPage> {
    const limit = listLimit(filter);
    const { live, history } = statesByTable(filter);
    const p = new Params('qmark');
    const cols = filter.includePayload ? `${SUMMARY}, payload, payload_bin` : SUMMARY;
    const parts: string[] = [];
    if (live) {
      parts.push(`(SELECT ${cols}, CAST(NULL AS DATETIME(3)) AS finished_at${filter.includePayload ? ', NULL AS result' : ''} FROM ${this.t.jobs}
        ${listWhere(filter, live, 2, p, utc)} ORDER BY id DESC LIMIT ${p.add(limit)})`);
    }
    if (history) {
      parts.push(`(SELECT ${cols}, finished_at${filter.includePayload ? ', result' : ''} FROM ${this.t.history}
        ${listWhere(filter, history, 4, p, utc)} ORDER BY id DESC LIMIT ${p.add(limit)})`);
    }
    const rows = await this.rows(`SELECT * FROM (${parts.join(' UNION ALL ')}) page ORDER BY id DESC LIMIT ${p.add(limit)}`, p.values);
    const items = rows.map((r) => toJobRecord(r, codec));
    return { items, nextCursor: items.length === limit ? items[items.length - 1].id : null };
  }

  async attempts(id: string): Promise<AttemptRecord[]> {
    const rows = await this.rows(`SELECT * FROM ${this.t.attempts} WHERE job_id = ? ORDER BY attempt`, [id]);
    return withCurrentAttempt(rows.map((r) => toAttemptRecord(r, codec)), await this.get(id));
  }

  async logs(id: string, opts: { afterSeq?: number; limit: number }): Promise<LogRecord[]> {
    const rows = await this.rows(`SELECT seq, attempt, at, message FROM ${this.t.logs} WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?`, [id, opts.afterSeq ?? 0, opts.limit]);
    return rows.map((r) => toLogRecord(r, codec));
  }

  async cancel(id: string): Promise<CancelResult | null> {
    return this.transaction(async (c) => {
      const [job] = await this.rows(`SELECT state, worker_id FROM ${this.t.jobs} WHERE id = ? FOR UPDATE`, [id], c);
      if (!job) return null;
      await c.query(
        `INSERT INTO ${this.t.history} (${COMMON}, state, finished_at, result) SELECT ${COMMON}, 'cancelled', ${NOW}, NULL FROM ${this.t.jobs} WHERE id = ?`,
        [id],
      );
      await c.query(`DELETE FROM ${this.t.jobs} WHERE id = ?`, [id]);
      return { previous: job.state as 'pending' | 'running', workerId: (job.worker_id as string | null) ?? null };
    });
  }

  async retry(id: string): Promise<JobState | null> {
    const now = await this.exec(`UPDATE ${this.t.jobs} SET run_at = ${NOW} WHERE id = ? AND state = 'pending'`, [id]);
    if (now.affectedRows === 1) return 'pending';
    try {
      return await this.transaction(async (c) => {
        const found = await this.rows(`SELECT id FROM ${this.t.history} WHERE id = ? FOR UPDATE`, [id], c);
        if (!found.length) return null;
        await c.query(
          `INSERT INTO ${this.t.jobs} (${COMMON}, state)
           SELECT id, name, queue, payload, payload_bin, priority, attempts, GREATEST(max_attempts, attempts + 1), timeout_ms, backoff,
             ${NOW}, created_at, NULL, ref_id, tag, batch_id, created_by, meta, NULL, NULL, checkpoint, error, NULL, 'pending'
           FROM ${this.t.history} WHERE id = ?`,
          [id],
        );
        await c.query(`DELETE FROM ${this.t.history} WHERE id = ?`, [id]);
        return 'pending' as const;
      });
    } catch (err) {
      if ((err as { errno?: number }).errno === 1062) throw new Error(`cannot retry job ${id}: a live job with the same refId exists`);
      throw err;
    }
  }

  async pruneHistory(olderThanMs: number, limit: number): Promise<number> {
    return this.transaction(async (c) => {
      const rows = await this.rows(
        `SELECT id FROM ${this.t.history} WHERE finished_at < ${NOW} - INTERVAL ? MICROSECOND LIMIT ? FOR UPDATE SKIP LOCKED`,
        [olderThanMs * 1000, limit],
        c,
      );
      if (!rows.length) return 0;
      const ids = rows.map((r) => r.id);
      await c.query(`DELETE FROM ${this.t.logs} WHERE job_id IN (?)`, [ids]);
      await c.query(`DELETE FROM ${this.t.attempts} WHERE job_id IN (?)`, [ids]);
      return (await this.exec(`DELETE FROM ${this.t.history} WHERE id IN (?)`, [ids], c)).affectedRows;
    });
  }

  // ---------------------------------------------------------------- admin verbs

  async pauseQueue(queue: string): Promise<void> {
    await this.exec(`INSERT INTO ${this.t.paused} (queue, paused_at) VALUES (?, ${NOW}) ON DUPLICATE KEY UPDATE queue = queue`, [queue]);
  }

  async resumeQueue(queue: string): Promise<boolean> {
    return (await this.exec(`DELETE FROM ${this.t.paused} WHERE queue = ?`, [queue])).affectedRows === 1;
  }

  /** UTC_TIMESTAMP(3) is read once per statement: every row compares with the same now. */
  async queueStats(): Promise<QueueStats[]> {
    const [live, paused] = await Promise.all([
      this.rows(`SELECT queue, SUM(state = 'pending') AS pending, SUM(state = 'pending' AND run_at <= ${NOW}) AS due, SUM(state = 'running') AS running,
          TIMESTAMPDIFF(MICROSECOND, MIN(CASE WHEN state = 'pending' AND run_at <= ${NOW} THEN run_at END), ${NOW}) / 1000 AS oldest
        FROM ${this.t.jobs} FORCE INDEX (${this.t.jobsQueue}) GROUP BY queue`),
      this.rows(`SELECT queue, paused_at FROM ${this.t.paused}`),
    ]);
    return mergeQueueStats(
      live.map((r) => ({
        queue: r.queue as string, pending: Number(r.pending), due: Number(r.due), running: Number(r.running),
        oldestDueAgeMs: r.oldest === null ? null : Math.round(Number(r.oldest)), pausedAt: null,
      })),
      paused.map((r) => ({ queue: r.queue as string, pausedAt: codec.date(r.paused_at)! })),
    );
  }

  /** Epoch milliseconds from DATETIME(3) UTC without UNIX_TIMESTAMP, which follows the session time zone. */
  async throughput(windowMs: number, bucketMs: number): Promise<ThroughputBuckets> {
    const epochMs = (col: string) => `TIMESTAMPDIFF(MICROSECOND, '1970-01-01', ${col}) DIV 1000`;
    const rows = await this.rows(
      `SELECT t.now, b.start, b.completed, b.failed FROM (SELECT ${epochMs(NOW)} AS now) t LEFT JOIN (
         SELECT ${epochMs('finished_at')} DIV ? * ? AS start, SUM(state = 'completed') AS completed, SUM(state = 'failed') AS failed
         FROM ${this.t.history} FORCE INDEX (${this.t.historyFinished})
         WHERE finished_at > ${NOW} - INTERVAL ? MICROSECOND GROUP BY 1) b ON TRUE
       ORDER BY b.start`,
      [bucketMs, bucketMs, windowMs * 1000],
    );
    const buckets = rows.filter((r) => r.start !== null).map((r) => ({ start: Number(r.start), completed: Number(r.completed), failed: Number(r.failed) }));
    return { now: Number(rows[0].now), buckets };
  }

  async makeDue(id: string): Promise<boolean> {
    return (await this.exec(`UPDATE ${this.t.jobs} SET run_at = ${NOW} WHERE id = ? AND state = 'pending'`, [id])).affectedRows === 1;
  }

  /**
   * One transaction: pending jobs (locked, so no claim takes them meanwhile) and finished ones,
   * then their logs and attempts. Only well-formed ids are sent (the id columns are ASCII).
   */
  async deleteJobs(ids: string[]): Promise<string[]> {
    const wanted = [...new Set(ids.filter(isValidId))];
    if (!wanted.length) return [];
    const gone = await this.transaction(async (c) => {
      const live = (await this.rows(`SELECT id FROM ${this.t.jobs} WHERE id IN (?) AND state = 'pending' FOR UPDATE`, [wanted], c)).map((r) => r.id);
      const finished = (await this.rows(`SELECT id FROM ${this.t.history} WHERE id IN (?) FOR UPDATE`, [wanted], c)).map((r) => r.id);
      const all = [...live, ...finished] as string[];
      if (!all.length) return all;
      if (live.length) await c.query(`DELETE FROM ${this.t.jobs} WHERE id IN (?)`, [live]);
      if (finished.length) await c.query(`DELETE FROM ${this.t.history} WHERE id IN (?)`, [finished]);
      await c.query(`DELETE FROM ${this.t.logs} WHERE job_id IN (?)`, [all]);
      await c.query(`DELETE FROM ${this.t.attempts} WHERE job_id IN (?)`, [all]);
      return all;
    });
    const deleted = new Set(gone);
    return wanted.filter((id) => deleted.has(id));
  }

  /** A connection from the app's pool inside START TRANSACTION; released once, on commit or rollback. */
  async beginTransaction(): Promise<OpenTransaction> {
    return openTransaction(await holdMysqlConnection(this.app), (c, sql) => c.query(sql), 'START TRANSACTION');
  }

  async close(): Promise<void> {
    await Promise.all([this.own.end(), this.lockers.end()]);
  }
}

/** MySQL answers rows for a SELECT and a result header (affected rows) for a write. */
function outcome(res: unknown): Outcome {
  if (Array.isArray(res)) return { rows: res as Row[], changes: res.length };
  return { rows: [], changes: (res as ResultSetHeader).affectedRows };
}

/**
 * A pool of our own with the app pool's connection settings (server, credentials, TLS) and our
 * session settings, made with the app's own mysql2 classes (never an import of ours).
 * `size` 0: no limit (the lock pool, whose connections are each held by one lock).
 */
function privatePool(app: CbPool, size: number): PromisePool {
  const base = (app as unknown as { config: { connectionConfig: Record<string, unknown> } }).config;
  const cc = base.connectionConfig;
  const options: Record<string, unknown> = {
    host: cc.host, port: cc.port, socketPath: cc.socketPath, localAddress: cc.localAddress, user: cc.user, password: cc.password,
    database: cc.database, ssl: cc.ssl, connectTimeout: cc.connectTimeout, charsetNumber: cc.charsetNumber, authPlugins: cc.authPlugins,
    stream: cc.stream, enableKeepAlive: true,
    // Our reading of rows: UTC dates, exact BIGINTs, JSON text on MySQL as on MariaDB.
    timezone: 'Z', supportBigNumbers: true, bigNumberStrings: true, jsonStrings: true, dateStrings: false, typeCast: true,
    // Hot paths send START TRANSACTION or COMMIT along with a statement (values are still escaped by mysql2).
    multipleStatements: true,
    connectionLimit: size, maxIdle: size === 0 ? 0 : size, idleTimeout: 30_000,
  };
  for (const k of Object.keys(options)) if (options[k] === undefined) delete options[k];
  const PoolConfig = base.constructor as new (o: unknown) => unknown;
  const PoolCtor = app.constructor as new (o: { config: unknown }) => CbPool;
  const pool = new PoolCtor({ config: new PoolConfig(options) });
  pool.on('connection', (conn) => {
    // Queued before any statement of ours on this connection.
    conn.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
    conn.query("SET time_zone = '+00:00'");
  });
  return pool.promise();
}
