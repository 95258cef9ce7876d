/**
 * SQL Server 2019+ and Azure SQL (mssql 12 over tedious; on Node 20 tedious 19): running the
 * statements of ./statements.ts, the hot-operation files and ../portable/. NOT YET EXERCISED
 * AGAINST A LIVE SQL SERVER (none was available where this was written); the conformance suite runs it when SQLJOBS_MSSQL_URL is set.
 *
 * Enqueue runs on the app's ConnectionPool, or on the app's Transaction given as opts.tx. mssql
 * refuses a second request on a transaction while one runs (EREQINPROG), so every statement we
 * send on a transaction goes through that transaction's serial queue. The worker's statements
 * run on a private pool built from the app pool's config. Leadership uses a session-owned app
 * lock (sp_getapplock) on a connection of its own; a stale holder (its lease lapsed) is ended
 * with KILL. Times come from the database clock
 * (SYSUTCDATETIME, DATETIME2(3), read back as UTC Dates: mssql's default useUTC).
 */
import { createRequire } from 'node:module';
import type { EnqueueResult } from '../../model.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';
import { checkNotNewer, loadMigrations, splitStatements } from '../migrations.ts';
import { APP_LOCK_SHOWN, MssqlSql } from './statements.ts';
import { MssqlHistoryMonths } from './months.ts';
import { historyMonthsOfPartitions } from '../partition-months.ts';
import type { Param, ParamType, Stmt } from './tsql.ts';
import { claimOrder, toClaimedJob } from '../rows.ts';
import { describeTx } from '../detect.ts';
import { takeSessionLock } from '../session-lock.ts';
import { settleEnqueue } from '../sql.ts';
import { jobsEnqueue } from './enqueue.ts';
import { jobsClaim } from './claim.ts';
import { jobsComplete } from './complete.ts';
import { jobsFail } from './fail.ts';
import { jobsRelease, jobsSaveProgress, logsAppend } from './writes.ts';
import { mssql as mssqlDialect } from '../portable/dialect.ts';
import { PortableStore } from '../portable/engine.ts';
import type { FlowOutcome } from '../portable/flow.ts';
import { drive, type Outcome, type SqlRunner, type Statement, type Steps } from '../portable/statement.ts';
import type {
  ClaimedJob, ClaimRequest, CompleteItem, FailItem, HistoryMonth, InsertBatch, LeaseRequest, LogItem, OpenTransaction,
  PooledStoreOptions, ProgressItem, ReleaseItem, ScheduleTick, SessionLock, Store, StoreCapabilities,
  TransactionalCompletion,
} from '../store.ts';

type Row = Record<string, unknown>;

export type { MssqlPoolLike, MssqlRequestLike, MssqlTransactionLike } from '../handles.ts';
import type { MssqlPoolLike, MssqlRequestLike, MssqlResult, MssqlTransactionLike } from '../handles.ts';

/** Rows from tedious: DATETIME2 as UTC Dates, JSON as NVARCHAR text, BIGINT as strings, BIT as booleans. */
const codec = mssqlDialect.codec;

const CHUNK_BYTES = 4 * 1024 * 1024;
/** SQL Server errors for a duplicate key (unique index / constraint). */
const DUPLICATE_KEY = new Set([2601, 2627]);
/** KILL of a session id that is no longer in use ("... is not an active process ID"). */
const NOT_ACTIVE_SESSION = 6106;

export function isMssqlPool(o: unknown): o is MssqlPoolLike {
  const p = o as Record<string, unknown> | null;
  return p != null && typeof p.request === 'function' && typeof p.transaction === 'function' && 'connected' in p && typeof p.connect === 'function' && typeof p.close === 'function';
}

/** An mssql Transaction (also before begin(): begin/commit/rollback/request and its pool as parent). */
export function isMssqlTransaction(o: unknown): o is MssqlTransactionLike {
  const t = o as Record<string, unknown> | null;
  return t != null && ['begin', 'commit', 'rollback', 'request'].every((k) => typeof t[k] === 'function') && t.parent != null;
}

/**
 * Statements on one transaction, one at a time, in the order they were asked for: mssql fails a
 * request sent while another runs on the same transaction.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

const queues = new WeakMap<object, SerialQueue>();
export function queueOf(tx: object): SerialQueue {
  let q = queues.get(tx);
  if (!q) queues.set(tx, (q = new SerialQueue()));
  return q;
}

interface MssqlModule {
  NVarChar: (len: number) => unknown;
  VarBinary: (len: number) => unknown;
  VarChar: (len: number) => unknown;
  Char: (len: number) => unknown;
  BigInt: unknown;
  Int: unknown;
  Bit: unknown;
  DateTime2: (scale: number) => unknown;
  MAX: number;
  ISOLATION_LEVEL: { READ_COMMITTED: number };
}

let mssqlModule: MssqlModule | null = null;
function mssql(): MssqlModule {
  mssqlModule ??= createRequire(import.meta.url)('mssql') as MssqlModule;
  return mssqlModule;
}

/** The driver's type for each of our parameter types: every value is bound with an explicit type. */
export function driverType(t: ParamType): unknown {
  const sql = mssql();
  switch (t) {
    case 'nvarchar':
      return sql.NVarChar(4000);
    case 'nvarchar(max)':
      return sql.NVarChar(sql.MAX);
    case 'varchar':
      return sql.VarChar(50);
    case 'char36':
      return sql.Char(36);
    case 'bigint':
      return sql.BigInt;
    case 'int':
      return sql.Int;
    case 'bit':
      return sql.Bit;
    case 'datetime2':
      return sql.DateTime2(3);
    case 'varbinary(max)':
      return sql.VarBinary(sql.MAX);
  }
}

/** Bind a statement's parameters on a request and run its text (values never enter the text). */
export function bind(req: MssqlRequestLike, params: Param[]): MssqlRequestLike {
  for (const p of params) req.input(p.name, driverType(p.type), p.value);
  return req;
}

/** A portable statement as SQL Server runs it: its values named @p1…@pn (the dialect's placeholders), each with its type. */
export function named(s: Statement): Stmt {
  return { text: s.text, params: s.values.map((value, i) => ({ name: `p${i + 1}`, type: s.types[i], value: value as Param['value'] })) };
}

/** The last result set is the answer (earlier ones belong to statements before it in the batch). */
function outcome(s: Statement, res: MssqlResult): Outcome {
  const rows = res.recordsets.at(-1) ?? [];
  return { rows, changes: s.returnsRows ? rows.length : res.rowsAffected.reduce((a, b) => a + b, 0) };
}

export class MssqlStore extends PortableStore implements Store {
  readonly capabilities: StoreCapabilities = { notify: false, syncEnqueue: false };
  readonly sql: MssqlSql;
  private readonly own: MssqlPoolLike;
  private readCommittedSnapshot: Promise<boolean> | null = null;
  /** The heartbeat's connection (see PortableStore.livenessRunner), made at the first heartbeat. */
  private liveness: MssqlPoolLike | null = null;
  private closed = false;

  /** Portable statements (../portable/), their values bound as @p1…@pn with their types. */
  protected readonly runner: SqlRunner = {
    run: async (s) => outcome(s, await this.run(named(s))),
    transaction: (list) =>
      this.inTransaction(async (tx) => {
        const out: Outcome[] = [];
        for (const s of list) out.push(outcome(s, await this.run(named(s), tx)));
        return out;
      }),
    within: (steps) => this.inTransaction((tx) => drive(steps, async (s) => outcome(s, await this.run(named(s), tx)))),
  };

  protected override get livenessRunner(): SqlRunner {
    if (this.closed) return this.runner; // no new connection after close(): the ended pool says so
    if (!this.liveness) {
      this.liveness = this.privatePool({ min: 0, max: 1 });
      this.liveness.on('error', () => undefined);
    }
    const liveness = this.liveness;
    return { ...this.runner, run: async (s) => outcome(s, await this.run(named(s), liveness)) };
  }

  /** `fn` in a READ COMMITTED transaction of ours: committed after it, rolled back when it throws. */
  private async inTransaction<T>(fn: (tx: MssqlTransactionLike) => Promise<T>): Promise<T> {
    if (!this.own.connected) await this.own.connect();
    const tx = this.own.transaction();
    await tx.begin(mssql().ISOLATION_LEVEL.READ_COMMITTED);
    try {
      const out = await fn(tx);
      await queueOf(tx).run(() => tx.commit());
      return out;
    } catch (err) {
      await queueOf(tx).run(() => tx.rollback()).catch(() => undefined);
      throw err;
    }
  }

  /** Workflow steps in the caller's mssql Transaction, or in one of ours. */
  protected async withinCaller<T>(tx: unknown, steps: Steps<T>): Promise<T> {
    if (tx === undefined) return this.runner.within(steps);
    if (!isMssqlTransaction(tx)) throw new TypeError(`opts.tx on SQL Server must be an mssql Transaction (pool.transaction()) after begin(); got ${describeTx(tx)}`);
    return drive(steps, async (s) => outcome(s, await this.run(named(s), tx)));
  }

  constructor(private readonly app: MssqlPoolLike, opts: PooledStoreOptions) {
    super(mssqlDialect, opts.prefix);
    this.sql = new MssqlSql(opts.prefix);
    this.own = this.privatePool({ max: opts.workerPoolSize });
    this.own.on('error', () => undefined); // a broken private connection is replaced on next use
  }

  /**
   * A pool of our own with the app pool's settings (the app's copy of mssql builds it). Its `min`
   * is at most its `max`: the app's is copied, and tarn refuses a min above the max at connect.
   */
  private privatePool(pool: { min?: number; max: number; idleTimeoutMillis?: number }): MssqlPoolLike {
    const Ctor = this.app.constructor as new (config: object) => MssqlPoolLike;
    const config = this.app.config as { pool?: { min?: number } };
    const min = Math.min(pool.min ?? config.pool?.min ?? 0, pool.max);
    return new Ctor({ ...config, pool: { ...config.pool, ...pool, min } });
  }

  private async run(stmt: Stmt, on: MssqlPoolLike | MssqlTransactionLike = this.own): Promise<MssqlResult> {
    if (isMssqlTransaction(on)) return queueOf(on).run(() => bind(on.request(), stmt.params).query(stmt.text));
    if (!on.connected) await on.connect();
    return bind(on.request(), stmt.params).query(stmt.text);
  }

  private async rows(stmt: Stmt, on?: MssqlPoolLike | MssqlTransactionLike): Promise<Row[]> {
    const res = await this.run(stmt, on);
    return res.recordsets.at(-1) ?? [];
  }

  private async ids(stmt: Stmt): Promise<Set<string>> {
    return new Set((await this.rows(stmt)).map((r) => String(r.id)));
  }

  /** Whether the database reads committed data from row versions (claims then add READCOMMITTEDLOCK). */
  private rcsi(): Promise<boolean> {
    this.readCommittedSnapshot ??= this.rows({ text: 'SELECT is_read_committed_snapshot_on AS rcsi FROM sys.databases WHERE database_id = DB_ID();', params: [] })
      .then((r) => r[0]?.rcsi === true || r[0]?.rcsi === 1)
      .catch((err) => {
        this.readCommittedSnapshot = null;
        throw err;
      });
    return this.readCommittedSnapshot;
  }

  // ---------------------------------------------------------------- migrations

  /** One transaction under a transaction-owned app lock: concurrent migrators wait, then see the work done. */
  async migrate(): Promise<void> {
    const known = loadMigrations('mssql', this.prefix);
    if (!this.own.connected) await this.own.connect();
    const tx = this.own.transaction();
    await tx.begin(mssql().ISOLATION_LEVEL.READ_COMMITTED);
    try {
      const q = (text: string, params: Param[] = []) => this.rows({ text, params }, tx);
      await q(`DECLARE @r INT; EXEC @r = sp_getapplock @Resource = @res, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 60000;
IF @r < 0 THROW 50001, 'sqljobs: could not take the migration lock', 1;`, [{ name: 'res', type: 'nvarchar', value: `${this.prefix}migrate` }]);
      await q(`IF OBJECT_ID(@name, 'U') IS NULL CREATE TABLE ${this.sql.t('migrations')} (version INT PRIMARY KEY, name NVARCHAR(200) NOT NULL, applied_at DATETIME2(3) NOT NULL DEFAULT SYSUTCDATETIME());`, [
        { name: 'name', type: 'nvarchar', value: this.sql.t('migrations') },
      ]);
      const applied = (await q(`SELECT version FROM ${this.sql.t('migrations')};`)).map((r) => Number(r.version));
      checkNotNewer('mssql', applied, known);
      for (const m of known) {
        if (applied.includes(m.version)) continue;
        for (const stmt of splitStatements(m.sql)) await q(stmt);
        await q(`INSERT INTO ${this.sql.t('migrations')} (version, name) VALUES (@version, @name);`, [
          { name: 'version', type: 'int', value: m.version },
          { name: 'name', type: 'nvarchar', value: m.name },
        ]);
      }
      await tx.commit();
    } catch (err) {
      await tx.rollback().catch(() => undefined);
      throw err;
    }
  }

  // ---------------------------------------------------------------- history partitions

  /** Partitioned history (./months.ts, after `sqljobs history-partitions`): nothing is done on an unpartitioned one but finding that out. */
  private readonly months = new MssqlHistoryMonths(
    {
      query: (s) => this.rows(s),
      transaction: (fn) => this.inTransaction((tx) => fn((s) => this.rows(s, tx))),
      now: async () => (await this.rows({ text: 'SELECT SYSUTCDATETIME() AS now', params: [] }))[0].now as Date,
    },
    this.t,
    this.prefix,
  );

  async historyUpkeep(): Promise<void> {
    await this.months.ensureAhead();
  }

  historyPartitionScript(req: { apply: boolean }): Promise<{ text: string }[]> {
    return this.months.script(req);
  }

  /** Partitioned: each month where it is kept (partition number), with its size and the row count where a count is capped. */
  override async historyMonths(req: { cap: number }): Promise<HistoryMonth[]> {
    const months = await super.historyMonths(req);
    const parts = await this.months.list();
    return parts.length ? historyMonthsOfPartitions(months, parts) : months;
  }

  /** Partitioned: whole months past the retention are emptied first; rows are pruned one by one only after the newest expired month. */
  override async historyPrune(req: { olderThanMs: number; limit: number }): Promise<number> {
    const { expiredUntil } = await this.months.dropExpired(req.olderThanMs);
    return super.historyPrune({ ...req, since: expiredUntil?.getTime() });
  }

  // ---------------------------------------------------------------- enqueue

  async jobInsertMany({ rows, tx }: InsertBatch): Promise<EnqueueResult[]> {
    let target: MssqlPoolLike | MssqlTransactionLike = this.app;
    if (tx !== undefined) {
      if (!isMssqlTransaction(tx)) throw new TypeError(`opts.tx on SQL Server must be an mssql Transaction (pool.transaction()) after begin(); got ${describeTx(tx)}`);
      target = tx;
    }
    return settleEnqueue(rows, CHUNK_BYTES, 1000, async (chunk) => {
      try {
        const found = await this.rows(jobsEnqueue(this.t, chunk), target);
        return found.map((r) => ({ id: String(r.id), ref: r.ref === null ? null : String(r.ref) }));
      } catch (err) {
        // Another enqueuer committed the same refId between our probe and insert: look again
        // (not inside the caller's transaction, which the error has aborted).
        if (DUPLICATE_KEY.has((err as { number?: number }).number ?? 0) && tx === undefined) return null;
        throw err;
      }
    });
  }

  // ---------------------------------------------------------------- claim and outcomes

  async jobClaim(req: ClaimRequest): Promise<ClaimedJob[]> {
    const rows = await this.rows(jobsClaim(this.t, req, crypto.randomUUID(), await this.rcsi()));
    return rows.map((r) => toClaimedJob(r, codec)).sort(claimOrder);
  }

  protected completeFast(items: CompleteItem[]): Promise<Set<string>> {
    return this.ids(jobsComplete(this.t, items));
  }

  protected failFast(items: FailItem[]): Promise<Set<string>> {
    return this.ids(jobsFail(this.t, items));
  }

  jobReleaseMany(items: ReleaseItem[]): Promise<Set<string>> {
    return this.ids(jobsRelease(this.t, items));
  }

  jobProgressMany(items: ProgressItem[]): Promise<Set<string>> {
    return this.ids(jobsSaveProgress(this.t, items));
  }

  logAppendMany(items: LogItem[]): Promise<Set<string>> {
    return this.ids(logsAppend(this.t, items));
  }

  /** `work` gets an mssql Transaction on our private pool; the fenced completion runs on it after `work`. */
  async jobCompleteInTransaction({ item, work, encode, beforeComplete }: TransactionalCompletion): Promise<{ applied: boolean; result: unknown }> {
    if (!this.own.connected) await this.own.connect();
    const tx = this.own.transaction();
    await tx.begin(mssql().ISOLATION_LEVEL.READ_COMMITTED);
    try {
      const result = await work(tx);
      const resultJson = encode(result);
      await beforeComplete();
      let applied = !item.flow && (await this.rows(jobsComplete(this.t, [{ id: item.id, token: item.token, resultJson }]), tx)).length === 1;
      let flow: FlowOutcome<Set<string>> | null = null;
      if (!applied) {
        flow = await drive(this.completionSteps(item, resultJson), async (s) => outcome(s, await this.run(named(s), tx)));
        applied = flow.value.has(item.id);
      }
      await queueOf(tx).run(() => (applied ? tx.commit() : tx.rollback()));
      if (applied && flow) await this.withWake(flow);
      return { applied, result };
    } catch (err) {
      await queueOf(tx).run(() => tx.rollback()).catch(() => undefined);
      throw err;
    }
  }

  // ---------------------------------------------------------------- leases and the session lock

  async leaseAcquire({ name, owner, ttlMs }: LeaseRequest): Promise<number | null> {
    const rows = await this.rows(this.sql.acquireLease(name, owner, ttlMs));
    return rows.length ? Number(rows[0].token) : null;
  }



  /**
   * sp_getapplock owned by the session, on a one-connection pool of its own (mssql never resets
   * pooled connections, so a session lock on a shared pool would stay with whoever runs next).
   * If that connection drops, the pool makes a new one without the lock: stillHeld() then reads
   * APPLOCK_MODE as NoLock, and a pool error calls onLost at once.
   */
  async sessionLockTry(name: string): Promise<SessionLock | null> {
    const resource = `${this.prefix}${name}`;
    const pool = this.privatePool({ min: 0, max: 1, idleTimeoutMillis: 2_147_483_647 });
    let spid: number | null = null;
    return takeSessionLock({
      onDrop: (cb) => pool.on('error', cb),
      take: async () => {
        await pool.connect();
        const got = (await this.rows(this.sql.getAppLock(resource), pool))[0];
        spid = Number(got.spid);
        return Number(got.r) >= 0;
      },
      check: async () => (await this.rows(this.sql.appLockMode(resource), pool))[0]?.mode === 'Exclusive',
      unlock: async () => {
        await this.run(this.sql.releaseAppLock(resource), pool);
      },
      close: async () => {
        await pool.close();
      },
      closeOnLoss: true,
      pid: () => spid,
    });
  }

  /**
   * End the sessions holding the leader app lock (a leader paused or hung with its connection
   * open). Only when the lock's name is short enough to be shown whole in sys.dm_tran_locks:
   * with a longer one another prefix's lock could match, and ending its leader is worse than
   * waiting for the stale connection to drop. Needs VIEW SERVER STATE and ALTER ANY CONNECTION
   * (Azure SQL Database: VIEW DATABASE STATE and KILL DATABASE CONNECTION).
   */
  async sessionLockEvict(name: string): Promise<number> {
    const resource = `${this.prefix}${name}`;
    if (resource.length > APP_LOCK_SHOWN) return 0;
    try {
      let ended = 0;
      for (const r of await this.rows(this.sql.appLockHolders(resource))) {
        const killed = await this.rows(this.sql.killAppLockHolder(resource, Number(r.spid))).catch((err: { number?: number }) => {
          if (err.number === NOT_ACTIVE_SESSION) return [{ killed: 0 }]; // it ended on its own meanwhile
          throw err;
        });
        ended += Number(killed[0]?.killed ?? 0);
      }
      return ended;
    } catch (err) {
      throw new Error(
        `cannot end the SQL Server session holding app lock "${resource}" (needs VIEW SERVER STATE and ALTER ANY CONNECTION; on Azure SQL Database VIEW DATABASE STATE and KILL DATABASE CONNECTION): ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  async leaderDescribe(name: string): Promise<string | null> {
    try {
      const rows = await this.rows(this.sql.appLockHolder(`${this.prefix}${name}`));
      if (rows.length) return `SQL Server session ${rows[0].spid}${rows[0].host ? ` from ${rows[0].host}` : ''} (app lock)`;
    } catch {
      // Reading sys.dm_tran_locks needs VIEW DATABASE STATE; without it, say what the leases say.
    }
    const lease = await this.rows({
      text: `SELECT owner, DATEDIFF_BIG(millisecond, SYSUTCDATETIME(), expires_at) AS left_ms FROM ${this.sql.t('leases')} WHERE name = @name AND expires_at > SYSUTCDATETIME();`,
      params: [{ name: 'name', type: 'nvarchar', value: name }],
    });
    return lease.length ? `${lease[0].owner} (lease, ${lease[0].left_ms} ms left)` : null;
  }

  // ---------------------------------------------------------------- schedules

  async scheduleUpsert({ def, nextRunAt, codeHash }: { def: ScheduleDef; nextRunAt: number | null; codeHash: string | null }): Promise<void> {
    await this.run(this.sql.upsertSchedule(def, nextRunAt, codeHash));
  }

  async scheduleFire({ key, fireAt, row, skipIfLive }: ScheduleTick): Promise<{ jobId: string; skipped: boolean } | null> {
    const r = (await this.rows(this.sql.fireSchedule(key, fireAt, row, skipIfLive)))[0];
    if (!r || Number(r.fired) !== 1) return null;
    return { jobId: row.id, skipped: r.live === true || r.live === 1 };
  }

  // ---------------------------------------------------------------- the request's transaction

  /** A Transaction on the app's pool, begun; commit and rollback wait for statements in flight. */
  async beginTransaction(): Promise<OpenTransaction> {
    if (!this.app.connected) await this.app.connect();
    const tx = this.app.transaction();
    await tx.begin(mssql().ISOLATION_LEVEL.READ_COMMITTED);
    let finished = false;
    const finish = (how: 'commit' | 'rollback') =>
      queueOf(tx).run(async () => {
        if (finished) return;
        finished = true;
        await (how === 'commit' ? tx.commit() : tx.rollback());
      });
    return { native: tx, commit: () => finish('commit'), rollback: () => finish('rollback') };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([this.own.close(), this.liveness?.close()]);
  }
}
