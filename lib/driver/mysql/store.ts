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
import type { Socket } from 'node:net';
import type { Pool as CbPool, PoolConnection as CbPoolConnection } from 'mysql2';
import type { Pool as PromisePool, PoolConnection, ResultSetHeader } from 'mysql2/promise';
import type { EnqueueResult, NewJobRow } from '../../model.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';
import { checkNotNewer, loadMigrations } from '../migrations.ts';
import { applyMigrations } from './migrate.ts';
import { severSocket } from '../errors.ts';
import { mysql as mysqlDialect, utc } from '../portable/dialect.ts';
import { PortableStore } from '../portable/engine.ts';
import type { FlowOutcome } from '../portable/flow.ts';
import { drive, type Outcome, type SqlRunner, type Statement, type Tables, type Steps } from '../portable/statement.ts';
import { historyPrune, historyPrunePick } from '../portable/admin.ts';
import { MysqlHistoryMonths } from './months.ts';
import { withSessionLimits } from './session-limits.ts';
import { historyMonthsOfPartitions } from '../partition-months.ts';
import { jobsByRef, jobsInsert } from './enqueue.ts';
import { jobsClaimPick, jobsClaimTake } from './claim.ts';
import { jobsLockRunning, jobsMoveToHistory } from './move.ts';
import { attemptsRecord, jobRetryLater } from './fail.ts';
import { jobRelease, jobSaveProgress, logsAppendOwned } from './writes.ts';
import { describeCallerTx, describeTx } from '../detect.ts';
import { ACCEPTED_TX, openCallerTx, runnerQuery } from '../orm/caller.ts';
import { takeSessionLock } from '../session-lock.ts';
import { HeldConnection, holdMysqlConnection, openTransaction, withHeld } from '../held.ts';
import { claimOrder, toClaimedJob } from '../rows.ts';
import { chunkBy, settleEnqueue } from '../sql.ts';
import { QueryWatchdog, recordIdentity } from './watchdog.ts';
import { settlesWithin } from '../../wait.ts';
import type {
  ClaimedJob, ClaimRequest, CompleteItem, FailItem, Fenced, InsertBatch, LeaseRequest, LogItem,
  HistoryMonth, OpenTransaction, PooledStoreOptions, ProgressItem, ReleaseItem, ScheduleTick, SessionLock, Store,
  StoreCapabilities, TransactionalCompletion,
} from '../store.ts';
import { TICK_IDLE_MS, TICK_LOCK_WAIT_MS } from '../portable/schedules.ts';

const NOW = mysqlDialect.now;
/** Keep each enqueue statement well under the server's default max_allowed_packet (16 MiB). */
const CHUNK_BYTES = 4 * 1024 * 1024;
/** 17 placeholders a row: stay far below the 65,535 placeholder limit. */
const CHUNK_ROWS = 2000;
/** A completion's statement text per job besides its result (its id three times, its token, the SELECT around them). */
const COMPLETE_ROW_BYTES = 200;
/** GET_LOCK names: MySQL refuses names over 64 characters. */
const LOCK_NAME_MAX = 64;
/** KILL of a connection that no longer exists. */
const ER_NO_SUCH_THREAD = 1094;

type Row = Record<string, unknown>;
/** Anything that runs a statement: the app's pool, a connection of ours or the caller's. */
type Queryable = Pick<PromisePool | PoolConnection, 'query'>;

/** Rows as our private connections return them: Dates parsed as UTC, JSON as text. */
const codec = mysqlDialect.codec;

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

/**
 * The app's side of a MySQL store: where enqueue and a request's transaction run (the app's mysql2
 * pool, or the pool of an ORM that owns one), and the pool whose settings our private pools copy.
 */
export interface MysqlAppSide {
  /** A callback pool whose config our private pools copy (never connected when it is only a template). */
  readonly template: CbPool;
  query(text: string, values: unknown[]): Promise<unknown>;
  hold(): Promise<HeldConnection<PoolConnection>>;
}

/** The app's mysql2 pool (either flavour) as the app side. */
export function mysqlAppSide(appPool: unknown): MysqlAppSide {
  const cb = callbackPool(appPool);
  const app = cb.promise();
  return { template: cb, query: (text, values) => app.query(text, values), hold: () => holdMysqlConnection(app) };
}

export class MysqlStore extends PortableStore implements Store {
  readonly capabilities: StoreCapabilities = { notify: false, syncEnqueue: false, claimAheadByHandlerTime: true };
  /** Enqueues and request transactions. */
  private readonly app: MysqlAppSide;
  /** Claims, outcomes, heartbeats, sweeps, migrations, reads. */
  private readonly own: PromisePool;
  /** Connections that hold a GET_LOCK: checked out for as long as the lock, then destroyed. */
  private readonly lockers: PromisePool;
  /** The heartbeat's connection (see PortableStore.livenessRunner), made at the first heartbeat. */
  private liveness: PromisePool | null = null;
  private closed = false;
  /** Whether the server has @@in_transaction (MariaDB) to check a caller's opts.tx with. */
  private canCheckTx = true;
  /** Bounds the wait for our queries of several statements (./watchdog.ts). */
  readonly watchdog: QueryWatchdog;

  /** Portable statements (../portable/) on the private pool. */
  protected readonly runner: SqlRunner = {
    run: async (s) => outcome((await this.own.query(s.text, s.values))[0]),
    transaction: (list) => this.transaction((c) => runOn(c, list)),
    within: (steps) => this.transaction((c) => drive(steps, async (s) => outcome((await c.query(s.text, s.values))[0]))),
  };

  protected override get livenessRunner(): SqlRunner {
    if (this.closed) return this.runner; // no new connection after close(): the ended pool says so
    this.liveness ??= privatePool(this.app.template, 1);
    const liveness = this.liveness;
    return { ...this.runner, run: async (s) => outcome((await liveness.query(s.text, s.values))[0]) };
  }

  /** Workflow steps in the caller's transaction (a mysql2 connection or an ORM's), or in one of ours. */
  protected async withinCaller<T>(tx: unknown, steps: Steps<T>): Promise<T> {
    if (tx === undefined) return this.runner.within(steps);
    const on = await this.callerTransaction(tx);
    return drive(steps, async (s) => outcome((await on.query(s.text, s.values))[0]));
  }

  constructor(app: unknown, opts: PooledStoreOptions) {
    super(mysqlDialect, opts.prefix);
    this.app = isAppSide(app) ? app : mysqlAppSide(app);
    this.own = privatePool(this.app.template, opts.workerPoolSize);
    this.lockers = privatePool(this.app.template, 0);
    this.watchdog = new QueryWatchdog(this.lockers);
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
    const results = await this.watchdog.query(c, `START TRANSACTION; ${text}`, values);
    return (results as unknown[])[1] as Row[];
  }

  // ---------------------------------------------------------------- migrations

  /**
   * Under GET_LOCK on one connection of ours: concurrent migrators wait, then see the work done.
   * DDL commits implicitly on these servers: ./migrate.ts applies each file statement by statement
   * and takes up one cut half way where it stopped.
   */
  async migrate(): Promise<void> {
    const held = await holdMysqlConnection(this.own);
    const migration: Migrating = { conn: held.conn, locked: false, done: Promise.resolve() };
    migration.done = this.migrateOn(held, migration).finally(() => {
      if (this.migrating === migration) this.migrating = null;
    });
    this.migrating = migration;
    return migration.done;
  }

  private async migrateOn(held: HeldConnection<PoolConnection>, migration: Migrating): Promise<void> {
    const known = loadMigrations('mysql', this.prefix);
    const c = held.conn;
    const name = lockName(`${this.prefix}migrate`);
    try {
      const got = await this.rows('SELECT GET_LOCK(?, 60) AS got', [name], c);
      if (Number(got[0].got) !== 1) throw new Error(`sqljobs: could not take the migration lock "${name}" within 60 s (another process is migrating)`);
      migration.locked = true;
      // Made only when missing: an app whose user may read and write the tables but not create any runs on a schema its owner migrated.
      const present = await this.rows('SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?', [this.t.migrations], c);
      if (Number(present[0]?.n) === 0) {
        await c.query(`CREATE TABLE IF NOT EXISTS ${this.t.migrations} (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at DATETIME(3) NOT NULL) ENGINE = InnoDB`);
      }
      const applied = (await this.rows(`SELECT version FROM ${this.t.migrations}`, [], c)).map((r) => Number(r.version));
      checkNotNewer('mysql', applied, known);
      await applyMigrations(c, this.t, known.filter((m) => !applied.includes(m.version)));
    } finally {
      // A lock we could not release goes with its connection.
      if (migration.locked) await this.rows('SELECT RELEASE_LOCK(?) AS r', [name], c).catch((err: unknown) => held.markBroken(err));
      held.release();
    }
  }

  /** The migration under way on a connection of ours, if any (see close()). */
  private migrating: Migrating | null = null;

  /**
   * Before the pools end: a migration applying statements is waited for a while (cut, it would be
   * taken up by the next migrate(), but its caller would fail); one still waiting for another
   * process's migration lock has done nothing, and its connection is dropped at once (mysql2's
   * end() would wait for the GET_LOCK).
   */
  private async migrationLeftOff(): Promise<void> {
    const m = this.migrating;
    if (!m) return;
    if (m.locked && (await settlesWithin(m.done, MIGRATION_WAIT_MS))) return;
    severSocket((m.conn as unknown as { connection: { stream?: Socket } }).connection.stream);
    await m.done.catch(() => undefined);
  }

  // ---------------------------------------------------------------- enqueue

  async jobInsertMany({ rows, tx }: InsertBatch): Promise<EnqueueResult[]> {
    let target: Queryable = this.app as unknown as Queryable;
    if (tx !== undefined) target = await this.callerTransaction(tx);
    return this.insertJobs(rows, target);
  }

  /** The caller's opts.tx: a mysql2 connection (either flavour) inside a transaction, or an ORM's transaction. */
  private async callerTransaction(tx: unknown): Promise<Queryable> {
    const caller = await openCallerTx(tx);
    if ('runner' in caller) return { query: async (text: string, values: unknown[]) => [await runnerQuery(caller, text, values)] } as unknown as Queryable;
    const c = promiseConnection(caller.native);
    if (!c) throw new TypeError(`opts.tx on MySQL/MariaDB must be a mysql2 connection (from pool.getConnection()) inside beginTransaction(), ${ACCEPTED_TX}; got ${describeCallerTx(tx, caller.native)}`);
    if (this.canCheckTx) {
      try {
        const [rows] = await c.query('SELECT @@in_transaction AS t');
        if (Number((rows as Row[])[0].t) === 0) {
          const what = caller.native === tx ? 'the mysql2 connection' : describeTx(tx);
          throw new TypeError(`opts.tx: ${what} is not inside a transaction (call beginTransaction() first, or it has ended), so the job would not be part of it`);
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
    return settleEnqueue(rows, CHUNK_BYTES, CHUNK_ROWS, async (chunk) => {
      const insert = jobsInsert(this.t, chunk);
      await this.exec(insert.text, insert.values, on);
      const refs = [...new Set(chunk.flatMap((r) => (r.refId === null ? [] : [r.refId])))];
      const byRef = new Map<string, string>();
      if (refs.length) {
        const live = jobsByRef(this.t, refs);
        for (const r of await this.rows(live.text, live.values, on)) byRef.set(r.ref_id as string, r.id as string);
      }
      // Inserted: the row holds its refId (or has none). Matched: another live job holds it. Neither
      // (that job finished meanwhile): left out, and tried again.
      return chunk.flatMap((row) => {
        const holder = row.refId === null ? row.id : byRef.get(row.refId);
        if (holder === undefined) return [];
        return [holder === row.id ? { id: row.id, ref: null } : { id: holder, ref: row.refId }];
      });
    });
  }

  // ---------------------------------------------------------------- claim and outcomes

  async jobClaim(req: ClaimRequest): Promise<ClaimedJob[]> {
    if (!req.names.length) return [];
    const token = crypto.randomUUID();
    const pick = jobsClaimPick(this.t, req);
    const picked = await this.onOwnConnection(async (c) => {
      const rows = await this.beginWith(c, pick.text, pick.values);
      if (!rows.length) {
        await c.query('COMMIT');
        return rows;
      }
      const take = jobsClaimTake(this.t, rows.map((r) => r.id as string), token, req.workerId, codec.date(rows[0].claimed_at)!);
      await c.query(take.text, take.values);
      return rows;
    });
    // The rows as the UPDATE left them (started at the claim's clock reading), set in place: a claim brings hundreds.
    for (const r of picked) {
      r.token = token;
      r.attempts = Number(r.attempts) + 1;
      r.started_at = r.claimed_at;
    }
    return picked.map((r) => toClaimedJob(r, codec)).sort(claimOrder);
  }

  private owned(rows: Row[], items: Fenced[]): Map<string, Row> {
    const tokens = new Map(items.map((i) => [i.id, i.token]));
    return new Map(rows.filter((r) => tokens.get(r.id as string) === r.token).map((r) => [r.id as string, r]));
  }

  private async lockOwned(c: PoolConnection, items: Fenced[], extra = ''): Promise<Map<string, Row>> {
    const lock = jobsLockRunning(this.t, items.map((i) => i.id), extra);
    return this.owned(await this.rows(lock.text, lock.values, c), items);
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
    const move = jobsMoveToHistory(this.t, state, column, items);
    const results = await this.watchdog.query(c, move.text, move.values);
    const [copied, deleted] = results as ResultSetHeader[];
    this.checkMoved(copied, deleted, items.length);
  }

  /**
   * One round trip: START TRANSACTION, lock the rows, copy the owned ones to history, delete
   * them, COMMIT. The lock tells which attempts were still ours; the copy is fenced by token.
   * Results are up to maxOutputBytes each and a claim brings hundreds of jobs: a batch larger than
   * a packet goes in several round trips, each within it, of one transaction (a batch retried
   * after an error finds none of it applied).
   */
  protected async completeFast(items: CompleteItem[]): Promise<Set<string>> {
    if (!items.length) return new Set();
    const size = (i: CompleteItem) => COMPLETE_ROW_BYTES + (i.resultJson?.length ?? 0);
    let chunks = chunkBy(items, size, CHUNK_BYTES, CHUNK_ROWS);
    // Several round trips lock in id order across them, as every other batch of ours locks its rows
    // (eachFenced): a completion locking B, then A in its next round trip, deadlocked with a batch
    // locking A, then B. One chunk's locking read takes its rows in key order already.
    if (chunks.length > 1) chunks = chunkBy([...items].sort(byId), size, CHUNK_BYTES, CHUNK_ROWS);
    return this.onOwnConnection(async (c) => {
      const applied = new Set<string>();
      for (const [n, chunk] of chunks.entries()) {
        const lock = jobsLockRunning(this.t, chunk.map((i) => i.id));
        const move = jobsMoveToHistory(this.t, 'completed', 'result', chunk.map((i) => ({ ...i, value: i.resultJson })));
        const begin = n === 0 ? 'START TRANSACTION; ' : '';
        const commit = n === chunks.length - 1 ? '; COMMIT' : '';
        const results = await this.watchdog.query(c, `${begin}${lock.text}; ${move.text}${commit}`, [...lock.values, ...move.values]);
        const [locked, copied, deleted] = (results as unknown[]).slice(begin ? 1 : 0) as [Row[], ResultSetHeader, ResultSetHeader];
        const owned = withoutFlow(this.owned(locked, chunk));
        this.checkMoved(copied, deleted, owned.size);
        for (const id of owned.keys()) applied.add(id);
      }
      return applied;
    });
  }

  /** Inside a transaction of the caller's (transactional completion): lock, copy, delete, no commit. */
  private async completeIn(c: PoolConnection, items: CompleteItem[]): Promise<Set<string>> {
    const owned = withoutFlow(await this.lockOwned(c, items));
    await this.moveToHistory(c, 'completed', 'result', items.filter((i) => owned.has(i.id)).map((i) => ({ ...i, value: i.resultJson })));
    return new Set(owned.keys());
  }

  protected async failFast(items: FailItem[]): Promise<Set<string>> {
    if (!items.length) return new Set();
    return this.transaction((c) => this.failIn(c, items));
  }

  /** Retry later (pending with the error) or fail for good (to history); every failed attempt gets its row. */
  private async failIn(c: PoolConnection, items: Pick<FailItem, 'id' | 'token' | 'attempt' | 'error' | 'retryDelayMs'>[]): Promise<Set<string>> {
    const owned = await this.lockOwned(c, items, ', worker_id, started_at');
    // A job with workflow to run fails for good through the flow transaction (../portable/flow.ts).
    const mine = items.filter((i) => owned.has(i.id) && (i.retryDelayMs !== null || Number(owned.get(i.id)!.flow) === 0));
    if (!mine.length) return new Set();
    for (const i of mine) {
      if (i.retryDelayMs === null) continue;
      const retry = jobRetryLater(this.t, i, i.retryDelayMs);
      await c.query(retry.text, retry.values);
    }
    const record = attemptsRecord(this.t, mine.map((i) => {
      const row = owned.get(i.id)!;
      return [i.id, i.attempt, row.worker_id, row.started_at === null ? null : utc(codec.date(row.started_at)!.getTime()), JSON.stringify(i.error)];
    }));
    await c.query(record.text, record.values);
    const dead = mine.filter((m) => m.retryDelayMs === null).map((m) => ({ ...m, value: JSON.stringify(m.error) }));
    await this.moveToHistory(c, 'failed', 'error', dead);
    return new Set(mine.map((m) => m.id));
  }

  /**
   * One fenced statement per item (no UPDATE … FROM a list of values here), all in one
   * transaction and one round trip; answers the ids whose statement changed rows. All or nothing:
   * the writer answers a refused batch by sending its items one by one, which would write again
   * any item already committed (a log line twice, a release reported not applied). Items go in
   * id order, the order a completion locks its rows in, so the two do not deadlock.
   */
  private async eachFenced<I extends Fenced>(items: I[], build: (t: Tables, item: I) => { text: string; values: unknown[] }): Promise<Set<string>> {
    if (!items.length) return new Set();
    const ordered = [...items].sort(byId);
    const statements = ordered.map((i) => build(this.t, i));
    // Round trips of at most CHUNK_BYTES each, in the one transaction: a batch of large progress
    // messages in one packet passed the server's max_allowed_packet (16 MiB by default), and the
    // server dropped the connection, losing every item of it, again at each flush.
    const parts = chunkBy(statements, statementBytes, CHUNK_BYTES, Infinity);
    const results = await this.onOwnConnection(async (c) => {
      const answered: ResultSetHeader[] = [];
      for (const [n, part] of parts.entries()) {
        const text = [...(n === 0 ? ['START TRANSACTION'] : []), ...part.map((q) => q.text), ...(n === parts.length - 1 ? ['COMMIT'] : [])].join(';\n');
        const out = (await this.watchdog.query(c, text, part.flatMap((q) => q.values))) as ResultSetHeader | ResultSetHeader[];
        const each = Array.isArray(out) ? out : [out]; // one statement alone answers one result, not a list
        answered.push(...each.slice(n === 0 ? 1 : 0, n === parts.length - 1 ? -1 : undefined));
      }
      return answered;
    });
    if (results.length !== ordered.length) throw new Error(`sqljobs: ${ordered.length} fenced statements answered ${results.length} results`);
    return new Set(ordered.filter((_, n) => results[n].affectedRows > 0).map((i) => i.id));
  }

  async jobReleaseMany(items: ReleaseItem[]): Promise<Set<string>> {
    return this.eachFenced(items, jobRelease);
  }

  async jobProgressMany(items: ProgressItem[]): Promise<Set<string>> {
    return this.eachFenced(items, jobSaveProgress);
  }

  /** Lines of attempts still owned, in order: one statement per attempt, which holds no lock past itself (./writes.ts). */
  async logAppendMany(items: LogItem[]): Promise<Set<string>> {
    return this.eachFenced(items.filter((i) => i.lines.length), logsAppendOwned);
  }

  /** `ctx.tx` is a mysql2 promise connection of ours inside the transaction that completes the job. */
  async jobCompleteInTransaction({ item, work, encode, beforeComplete }: TransactionalCompletion): Promise<{ applied: boolean; result: unknown }> {
    return this.onOwnConnection(async (c) => {
      await c.query('START TRANSACTION');
      const result = await work(c);
      const resultJson = encode(result);
      await beforeComplete();
      let applied = !item.flow && (await this.completeIn(c, [{ ...item, resultJson }])).has(item.id);
      let flow: FlowOutcome<Set<string>> | null = null;
      if (!applied) {
        flow = await drive(this.completionSteps(item, resultJson), async (s) => outcome((await c.query(s.text, s.values))[0]));
        applied = flow.value.has(item.id);
      }
      await c.query(applied ? 'COMMIT' : 'ROLLBACK');
      if (applied && flow) await this.withWake(flow);
      return { applied, result };
    });
  }

  // ---------------------------------------------------------------- leases

  /**
   * Take the lease over when ours or expired, locked while we decide; insert it if new. The row is
   * locked for update before anything else: an INSERT IGNORE meeting the existing key takes a
   * shared lock, and two takers holding it, each asking for the exclusive one, deadlocked.
   */
  async leaseAcquire({ name, owner, ttlMs }: LeaseRequest): Promise<number | null> {
    return this.transaction(async (c) => {
      const [cur] = await this.rows(`SELECT owner, token, expires_at > ${NOW} AS live FROM ${this.t.leases} WHERE name = ? FOR UPDATE`, [name], c);
      if (!cur) {
        const fresh = await this.exec(
          `INSERT IGNORE INTO ${this.t.leases} (name, owner, token, expires_at) VALUES (?, ?, 1, ${NOW} + INTERVAL ? MICROSECOND)`,
          [name, owner, ttlMs * 1000],
          c,
        );
        // Not inserted: another taker created it since our read, and holds it now.
        return fresh.affectedRows === 1 ? 1 : null;
      }
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
  async sessionLockTry(name: string): Promise<SessionLock | null> {
    const key = lockName(`${this.prefix}${name}`);
    const c = await this.lockers.getConnection();
    const raw = (c as unknown as { connection: CbPoolConnection }).connection;
    return takeSessionLock({
      onDrop: (cb) => {
        raw.on('error', cb);
        raw.on('end', cb);
      },
      take: async () => Number((await this.rows('SELECT GET_LOCK(?, 0) AS got', [key], c))[0].got) === 1,
      check: async () => {
        const rows = await this.rows('SELECT IS_USED_LOCK(?) = CONNECTION_ID() AS held', [key], c).catch(() => null);
        return rows !== null && Number(rows[0].held) === 1;
      },
      unlock: async () => {
        await c.query('SELECT RELEASE_LOCK(?)', [key]);
      },
      close: async () => c.destroy(),
      closeOnLoss: false,
      pid: () => raw.threadId ?? null,
    });
  }

  /**
   * End the connection holding the leader's GET_LOCK (a leader paused or hung with its connection
   * open): the server releases the lock as that connection ends. KILL takes no placeholder, so the
   * connection id the server reported is checked to be an integer before it is written in.
   * Ending another user's connection needs CONNECTION_ADMIN (MySQL) or SUPER / CONNECTION ADMIN
   * (MariaDB); the app's own user may end its own connections.
   */
  async sessionLockEvict(name: string): Promise<number> {
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
  async scheduleUpsert({ def: d, nextRunAt, codeHash }: { def: ScheduleDef; nextRunAt: number | null; codeHash: string | null }): Promise<void> {
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

  async scheduleFire({ key, fireAt, row, skipIfLive }: ScheduleTick): Promise<{ jobId: string; skipped: boolean } | null> {
    // Limits as on PostgreSQL (see TICK_LOCK_WAIT_MS there), set on this connection for the tick's
    // transaction and put back after it: the server closes a connection idle past wait_timeout,
    // in a transaction or not.
    return this.onOwnConnection((c) =>
      withSessionLimits((sql) => c.query(sql), { innodb_lock_wait_timeout: TICK_LOCK_WAIT_MS / 1000, wait_timeout: TICK_IDLE_MS / 1000 }, () =>
        this.fireTick(c, { key, fireAt, row, skipIfLive })));
  }

  private async fireTick(c: PoolConnection, { key, fireAt, row, skipIfLive }: ScheduleTick): Promise<{ jobId: string; skipped: boolean } | null> {
    await c.query('START TRANSACTION');
    const out = await (async () => {
      const tick = await this.exec(`INSERT IGNORE INTO ${this.t.ticks} (schedule_key, fire_at, job_id) VALUES (?, ?, ?)`, [key, utc(fireAt), row.id], c);
      if (tick.affectedRows !== 1) return null;
      const live = skipIfLive !== null && row.refId ? (await this.rows(`SELECT 1 FROM ${this.t.jobs} WHERE ref_id = ? LOCK IN SHARE MODE`, [row.refId], c)).length === 1 : false;
      if (live) {
        await c.query(
          `INSERT INTO ${this.t.history} (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at, tag, batch_id, created_by, meta, error, user_id, reply_to, args)
           VALUES (?, ?, ?, 'skipped', ?, ?, 0, ?, ?, ${NOW}, ${NOW}, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [row.id, row.name, row.queue, row.payloadJson, row.priority, row.maxAttempts, utc(fireAt), row.tag, row.batchId, row.createdBy, row.metaJson,
            JSON.stringify(skipIfLive), row.userId, row.replyTo, row.argsJson],
        );
      } else {
        await this.insertJobs([row], c);
      }
      await c.query(`UPDATE ${this.t.schedules} SET last_run_at = ?, last_job_id = ?, runs = runs + 1 WHERE \`key\` = ?`, [utc(fireAt), row.id, key]);
      return { jobId: row.id, skipped: live };
    })();
    await c.query('COMMIT');
    return out;
  }

  // ---------------------------------------------------------------- status

  async leaderDescribe(name: string): Promise<string | null> {
    const [row] = await this.rows('SELECT IS_USED_LOCK(?) AS holder', [lockName(`${this.prefix}${name}`)]);
    if (row.holder === null) return null;
    const [proc] = await this.rows('SELECT HOST AS host FROM information_schema.PROCESSLIST WHERE ID = ?', [row.holder]).catch(() => [] as Row[]);
    return `MySQL connection ${row.holder}${proc?.host ? ` from ${proc.host}` : ''} (GET_LOCK)`;
  }

  // ---------------------------------------------------------------- history partitions and retention

  /** Partitioned history (./months.ts): nothing is done on an unpartitioned one but finding that out. */
  private readonly months = new MysqlHistoryMonths(
    {
      query: (text, values) => this.rows(text, values),
      onConnection: (fn) => this.onOwnConnection((c) => fn((text, values) => this.rows(text, values, c))),
      now: async () => codec.date((await this.rows(`SELECT ${NOW} AS now`))[0].now)!,
      lock: async (q, name) => Number((await q('SELECT GET_LOCK(?, 0) AS got', [lockName(`${this.prefix}${name}`)]))[0].got) === 1,
      unlock: async (q, name) => void (await q('SELECT RELEASE_LOCK(?)', [lockName(`${this.prefix}${name}`)])),
    },
    this.t,
  );

  async historyUpkeep(): Promise<void> {
    await this.months.ensureAhead();
  }

  historyPartitionScript(req: { apply: boolean }): Promise<{ text: string }[]> {
    return this.months.script(req);
  }

  /** Whether `sqljobs history-partitions` partitioned history. */
  async historyPartitioned(): Promise<boolean> {
    return (await this.months.list()).length > 0;
  }

  /** A month's job list reads its partition in id order there, the finish-time index on one table. */
  protected override historyInMonthPartitions(): Promise<boolean> {
    return this.historyPartitioned();
  }

  /** Partitioned: each month where it is kept, with its size and the engine's row estimate where a count is capped. */
  override async historyMonths(req: { cap: number }): Promise<HistoryMonth[]> {
    const months = await super.historyMonths(req);
    const parts = await this.months.list();
    return parts.length ? historyMonthsOfPartitions(months, parts) : months;
  }

  /**
   * On a partitioned history, whole months past the retention are dropped first (./months.ts), and
   * rows are pruned one by one only after the newest expired month. The pick is inside the prune's
   * transaction, FOR UPDATE SKIP LOCKED: two pruners (or a prune and a delete) never wait on each
   * other's rows.
   */
  override async historyPrune({ olderThanMs, limit }: { olderThanMs: number; limit: number }): Promise<number> {
    const { expiredUntil } = await this.months.dropExpired(olderThanMs);
    return this.transaction(async (c) => {
      const pick = historyPrunePick(this, { olderThanMs, limit, since: expiredUntil?.getTime() });
      const [picked] = await runOn(c, [{ ...pick, text: `${pick.text} FOR UPDATE SKIP LOCKED` }]);
      const ids = picked.rows.map((r) => String(r.id));
      if (!ids.length) return 0;
      const [rows] = await runOn(c, historyPrune(this, { olderThanMs, ids }));
      return rows.changes;
    });
  }

  /** A connection from the app's pool inside START TRANSACTION; released once, on commit or rollback. */
  async beginTransaction(): Promise<OpenTransaction> {
    return openTransaction(await this.app.hold(), (c, sql) => c.query(sql), 'START TRANSACTION', undefined, (c) => this.stillInTransaction(c));
  }

  /**
   * Before a request's COMMIT: whether its transaction is still open. A deadlock rolls back the
   * whole transaction; the app may have caught the error and answered 2xx, and COMMIT would then
   * commit nothing, silently. MariaDB tells (@@in_transaction); MySQL cannot, and is trusted.
   */
  private async stillInTransaction(c: PoolConnection): Promise<boolean> {
    if (!this.canCheckTx) return true;
    try {
      const [rows] = await c.query('SELECT @@in_transaction AS t');
      return Number((rows as Row[])[0].t) !== 0;
    } catch (err) {
      if ((err as { errno?: number }).errno !== 1193) throw err;
      this.canCheckTx = false;
      return true;
    }
  }

  private pools(): PromisePool[] {
    return this.liveness ? [this.own, this.lockers, this.liveness] : [this.own, this.lockers];
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.migrationLeftOff();
    const pools = this.pools();
    const conns = pools.flatMap(poolConnections);
    await Promise.all(pools.map((pool) => pool.end()));
    // mysql2's end() is done once its QUITs are written; a server that does not answer never closes
    // its side, and the sockets would keep the process alive. The goodbye is sent: ours close now.
    for (const conn of conns) conn.stream?.destroy();
  }

  /**
   * Every connection of our pools dropped (see Store.sever), connecting ones too. mysql2's end()
   * queues its QUIT behind a statement that never answers, and its destroy() only half-closes the
   * socket (a stopped server never closes its side): the socket itself is destroyed, which fails
   * what waits on it.
   */
  sever(until: Promise<unknown>): void {
    const severAll = () => {
      for (const pool of this.pools()) for (const conn of poolConnections(pool)) severSocket(conn.stream);
    };
    severAll();
    // Until `until` settles, connections opened since (a shutdown step that gave up opens new ones) are dropped too.
    const sweeping = setInterval(severAll, SEVER_SWEEP_MS).unref();
    const done = () => clearInterval(sweeping);
    until.then(done, done);
  }
}

/** What a statement weighs in its packet: its text and its values as sent (strings and buffers count; the rest is small). */
function statementBytes(q: { text: string; values: unknown[] }): number {
  let bytes = q.text.length;
  for (const v of q.values) bytes += typeof v === 'string' ? Buffer.byteLength(v) : Buffer.isBuffer(v) ? v.length : 16;
  return bytes;
}

/** A migration on one of our connections: `locked` once it holds the migration lock and applies statements. */
interface Migrating {
  conn: PoolConnection;
  locked: boolean;
  done: Promise<void>;
}

/** How long close() waits for a migration applying statements (within the 5 s Jobs.close gives the store). */
const MIGRATION_WAIT_MS = 4_000;

/** How often connections opened after a sever are looked for (mysql2 has no hook before a connection's handshake). */
const SEVER_SWEEP_MS = 50;

/** Every connection of a mysql2 pool, listed by mysql2 from the moment it is made (before its handshake). */
function poolConnections(pool: PromisePool): { stream?: Socket }[] {
  const all = (pool as unknown as { pool?: { _allConnections?: { toArray(): unknown[] } } }).pool?._allConnections;
  return (all?.toArray() ?? []) as { stream?: Socket }[];
}

/** Portable statements, in order, on one of our connections (inside its transaction). */
async function runOn(c: PoolConnection, list: Statement[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const s of list) out.push(outcome((await c.query(s.text, s.values))[0]));
  return out;
}

/** The owned rows without workflow to run (flow = 0): the others finish through ../portable/flow.ts. */
function withoutFlow(owned: Map<string, Row>): Map<string, Row> {
  return new Map([...owned].filter(([, r]) => Number(r.flow) === 0));
}

/** MySQL answers rows for a SELECT and a result header (affected rows) for a write. */
function outcome(res: unknown): Outcome {
  if (Array.isArray(res)) return { rows: res as Row[], changes: res.length };
  return { rows: [], changes: (res as ResultSetHeader).affectedRows };
}

function isAppSide(o: unknown): o is MysqlAppSide {
  return o != null && typeof (o as MysqlAppSide).hold === 'function' && (o as MysqlAppSide).template != null;
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
    recordIdentity(conn);
  });
  return pool.promise();
}

/** Rows in one order for every batch that locks several: two batches never wait for each other in a cycle. */
function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
