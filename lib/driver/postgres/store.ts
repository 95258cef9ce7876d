/**
 * PostgreSQL (pg): all of this dialect's SQL.
 *
 * Enqueue runs on the app's pool (or the caller's transaction client), so the job commits with
 * the caller's writes; the wake-up NOTIFY is part of the same statement, delivered at commit.
 * Everything the worker does (claim, outcomes, heartbeat, sweeper, migrations) runs on a small
 * private pool built from the app pool's settings, so liveness never waits for a free app
 * connection. LISTEN uses one dedicated client that reconnects and then asks for a catch-up poll;
 * a process that subscribes to finished jobs LISTENs on a second one, under a lease that turns
 * history's NOTIFY on (migration 018).
 */
import os from 'node:os';
import type { Socket } from 'node:net';
import type { Pool, PoolClient, PoolConfig, Client, QueryResultRow } from 'pg';
import type { EnqueueResult } from '../../model.ts';
import { checkNotNewer, loadMigrations, splitStatements } from '../migrations.ts';
import { claimOrder, claimedFromColumns, nativeCodec } from '../rows.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';
import { settleEnqueue } from '../sql.ts';
import type {
  ClaimedJob, ClaimRequest, CompleteItem, FailItem, FinishedCallbacks, InsertBatch, LeaseRequest, ListenCallbacks, ListenHandle,
  LogItem, OpenTransaction, PooledStoreOptions, ProgressItem, ReleaseItem, ScheduleTick, SessionLock, Store,
  StoreCapabilities, TransactionalCompletion, HistoryMonth,
} from '../store.ts';
import { takeSessionLock } from '../session-lock.ts';
import { pgAppSide, type ClientCtor, type PgAppSide } from './app.ts';
import { OwnClients, severClient } from './own-clients.ts';
import { StatementWatchdog, type LookRow } from './watchdog.ts';
import { IN_TRANSACTION_GUARD, NOT_IN_TRANSACTION, jobsEnqueue } from './enqueue.ts';
import { describeTx, isPgClient } from '../detect.ts';
import { CLAIM_PLANNER, CLAIM_PLANNER_LOCAL, jobsClaim } from './claim.ts';
import { keepsSession, TRANSACTION_POOLER_WARNING, type PoolerMode } from './pooler.ts';
import { jobsComplete } from './complete.ts';
import { jobsFail } from './fail.ts';
import { jobsRelease } from './release.ts';
import { jobsSaveProgress } from './progress.ts';
import { logsAppend } from './logs.ts';
import { prepared, preparedStatementLost } from './prepared.ts';
import { postgres as postgresDialect } from '../portable/dialect.ts';
import { PortableStore } from '../portable/engine.ts';
import { drive, type Outcome, type SqlRunner, type Statement, type Steps } from '../portable/statement.ts';
import { insertWithFlow, type FlowOutcome } from '../portable/flow.ts';
import { holdPgClient, nothingToUndo, withHeld } from '../held.ts';
import { HistoryMonths } from './months.ts';
import { Periodic } from '../../periodic.ts';
import { settlesWithin, within } from '../../wait.ts';
import { TICK_IDLE_MS, TICK_LOCK_WAIT_MS } from '../portable/schedules.ts';

/** Claim connections whose session has the planner settings (a replaced connection gets them again). */
const plannedSessions = new WeakSet<PoolClient>();

/** `Base`, each instance kept in `into` until its connection ends. */
function recording(Base: ClientCtor, into: Set<Client>): ClientCtor {
  return class extends Base {
    constructor(...args: ConstructorParameters<ClientCtor>) {
      super(...args);
      into.add(this);
      this.once('end', () => into.delete(this));
    }
  };
}

/** The claim connection's planner settings (CLAIM_PLANNER), set once per session. */
async function planSession(c: PoolClient): Promise<void> {
  if (plannedSessions.has(c)) return;
  await c.query(CLAIM_PLANNER);
  plannedSessions.add(c);
}

/** Keep each enqueue chunk under a few MB of JSON. */
const CHUNK_BYTES = 4 * 1024 * 1024;

export interface PostgresStoreOptions extends PooledStoreOptions {
  /** What sits between the app's pool and the server (see pooler.ts). Default 'auto'. */
  pooler?: PoolerMode;
  /** A connection string to the server itself, for the session-scoped connections: LISTEN, session locks, claims. */
  directUrl?: string;
  /** Told once when detection finds a transaction pooler. */
  warn?: (message: string) => void;
}

/**
 * pg_locks row of the session advisory lock taken with pg_try_advisory_lock(hashtext($1)): the
 * bigint key is split into classid (high 32 bits) and objid (low 32 bits), objsubid 1.
 */
const ADVISORY_KEY_MATCH = `classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid
  AND objid = (hashtext($1)::bigint & 4294967295)::oid AND objsubid = 1`;

/**
 * Every statement a lock session sends carries this comment, so pg_stat_activity shows, for an
 * idle backend, that the last thing it ran was ours: the proof sessionLockEvict asks for.
 */
const LOCK_SESSION_MARK = '/* sqljobs session lock */';

/**
 * A subscriber's lease (its row in the subscribers table, which turns history's NOTIFY on): how long
 * it lasts, and how often it is renewed while the process listens. A process that died leaves its
 * row for at most the lease (finishing statements NOTIFY for nobody meanwhile, which costs only time).
 */
const SUBSCRIBER_LEASE_MS = 60_000;
const SUBSCRIBER_RENEW_MS = 20_000;

/** A tick's limits (see TICK_LOCK_WAIT_MS), for its transaction only. */
const TICK_LIMITS = `SET LOCAL lock_timeout = '${TICK_LOCK_WAIT_MS}ms'; SET LOCAL idle_in_transaction_session_timeout = '${TICK_IDLE_MS}ms'`;

/** How a failed transaction on one of our held clients is undone. */
const rollback = (c: PoolClient) => c.query('ROLLBACK');

export class PostgresStore extends PortableStore implements Store {
  readonly capabilities: StoreCapabilities = { notify: true, syncEnqueue: false, claimAheadByHandlerTime: true };
  private readonly own: Pool;
  /**
   * One connection for claims, planned by a session SET to walk the claim index (see CLAIM_PLANNER
   * in claim.ts); made on first use, once it is known that its session is its own.
   */
  private claimer: Pool | null = null;
  /** The heartbeat's connection (see PortableStore.livenessRunner), made at the first heartbeat. */
  private liveness: Pool | null = null;
  /** Set by close(): no claim connection is made after it. */
  private closed = false;
  /** Settings of the session-scoped connections (claims, LISTEN, session locks): directUrl's when given. */
  private readonly sessionConfig: PoolConfig;
  private readonly pooler: PoolerMode;
  private readonly warn: (message: string) => void;
  /** Whether sessionConfig's connections keep their server session; asked once (see pooler.ts). */
  private sessionKept: Promise<boolean> | null = null;
  /**
   * Whether the claim is prepared (./prepared.ts) on the claim connection, which keeps its session
   * whenever it is used (direct, a session pooler or directUrl). The batch writes never are (see ids).
   */
  private preparingClaims = true;
  private readonly jobsChannel: string;
  private readonly cancelChannel: string;
  /** Where history's trigger announces finished jobs (migration 018). */
  private readonly finishedChannel: string;
  /** The hot statements, one file each, their text built once per prefix. */
  private readonly hot = {
    enqueue: jobsEnqueue(this.t),
    enqueueInCallerTransaction: jobsEnqueue(this.t, { inCallerTransaction: true }),
    claim: jobsClaim(this.t),
    complete: jobsComplete(this.t),
    fail: jobsFail(this.t),
    release: jobsRelease(this.t),
    progress: jobsSaveProgress(this.t),
    logs: logsAppend(this.t),
  };

  private readonly app: PgAppSide;
  /** Our statements watched until they answer (./watchdog.ts). Tests shorten its checks. */
  readonly watchdog = new StatementWatchdog((text, values, ms) => this.askServer(text, values, ms), severClient);
  private readonly ours = new OwnClients(this.watchdog);
  /** The app's Client class, each instance known (./own-clients.ts): our pool's connections. */
  private readonly Client: ClientCtor;
  /** The same for the connections made with sessionConfig (claims, LISTEN, session locks), which keep their session. */
  private readonly SessionClient: ClientCtor;
  /** Whether our pool's connections keep their session (a direct connection or a session pooler): their backends can be watched. */
  private ownKeepsSession = false;

  /** History's monthly partitions (migration 014): made ahead and dropped by retention. */
  private readonly months = new HistoryMonths(
    {
      query: (text, values) => this.own.query(text, values),
      transaction: (fn) => this.transaction((c) => fn((text, values) => c.query(text, values))),
    },
    this.t,
    this.prefix,
  );

  /** Portable statements (../portable/) on the private pool. */
  protected readonly runner: SqlRunner = {
    run: async (s) => outcome(s, await this.own.query(s.text, s.values)),
    transaction: (list) => this.transaction(async (c) => {
      const out: Outcome[] = [];
      for (const s of list) out.push(outcome(s, await c.query(s.text, s.values)));
      return out;
    }),
    within: (steps) => this.transaction((c) => drive(steps, async (s) => outcome(s, await c.query(s.text, s.values)))),
  };

  protected override get livenessRunner(): SqlRunner {
    if (this.closed) return this.runner; // no new connection after close(): the ended pool says so
    this.liveness ??= this.privatePool(1);
    const liveness = this.liveness;
    return { ...this.runner, run: async (s) => outcome(s, await liveness.query(s.text, s.values)) };
  }

  /** A pool of ours with the app pool's settings (the app's copy of pg builds it). */
  private privatePool(max: number): Pool {
    const pool = new this.app.Pool({ ...this.app.config, Client: this.Client as never, max, idleTimeoutMillis: 30_000, allowExitOnIdle: true });
    pool.on('error', () => undefined); // an idle private connection dropped by the server is replaced on next use
    return pool;
  }

  /**
   * Workflow steps in the caller's opts.tx (refused outside a transaction, as enqueue is), or in
   * one of ours. (Only reads' rows are looked at on a caller's connection: see ../portable/flow.ts.)
   */
  protected async withinCaller<T>(tx: unknown, steps: Steps<T>): Promise<T> {
    if (tx === undefined) return this.runner.within(steps);
    await this.onCaller(tx, IN_TRANSACTION_GUARD, []);
    return drive(steps, async (s) => {
      const rows = await this.onCaller(tx, s.text, s.values);
      return { rows, changes: rows.length };
    });
  }

  /** Wake other processes at the caller's commit: the NOTIFY goes in the same transaction as the jobs. */
  override async jobInsertFlow(batch: InsertBatch): Promise<EnqueueResult[]> {
    if (batch.tx === undefined) return super.jobInsertFlow(batch);
    const { value, wake } = await this.withinCaller(batch.tx, insertWithFlow(this, batch.rows, batch.batches));
    if (wake.size) await this.onCaller(batch.tx, `SELECT pg_notify($1, q) FROM unnest($2::text[]) q`, [this.jobsChannel, [...wake]]);
    return value;
  }

  constructor(app: Pool | PgAppSide, opts: PostgresStoreOptions) {
    super(postgresDialect, opts.prefix);
    this.app = 'begin' in app ? app : pgAppSide(app);
    this.Client = this.ours.tracking(this.app.Client, () => this.ownKeepsSession);
    this.SessionClient = this.ours.tracking(this.app.Client, () => true);
    this.ownKeepsSession = !opts.directUrl && opts.pooler === 'session';
    this.jobsChannel = `${opts.prefix}jobs`;
    this.cancelChannel = `${opts.prefix}cancel`;
    this.finishedChannel = `${opts.prefix}finished`;
    const base = this.app.config;
    this.own = this.privatePool(opts.workerPoolSize);
    this.sessionConfig = opts.directUrl ? directConfig(base, opts.directUrl) : base;
    this.pooler = opts.directUrl ? 'session' : (opts.pooler ?? 'auto');
    if (this.pooler === 'transaction') this.capabilities.notify = false;
    this.warn = opts.warn ?? (() => undefined);
  }

  /**
   * Whether session-scoped state stays on our dedicated connections: true on a direct connection,
   * through a session pooler or with directUrl; false behind a transaction pooler. Detected once
   * (a failure is not remembered: the next caller asks again).
   */
  sessionScoped(): Promise<boolean> {
    if (this.pooler !== 'auto') return Promise.resolve(this.pooler === 'session');
    this.sessionKept ??= keepsSession(this.Client, this.sessionConfig).then(
      (kept) => {
        this.ownKeepsSession = kept; // detected only without directUrl: our pool then connects where the probe did
        if (!kept) {
          this.capabilities.notify = false;
          this.warn(TRANSACTION_POOLER_WARNING);
        }
        return kept;
      },
      (err: unknown) => {
        this.sessionKept = null;
        throw err;
      },
    );
    return this.sessionKept;
  }

  sessionLocksUsable(): Promise<boolean> {
    return this.sessionScoped();
  }

  /** The claim connection, made on first use with the planner settings for its session. */
  private claimPool(): Pool {
    if (this.claimer) return this.claimer;
    if (this.closed) throw new Error('sqljobs: the store is closed');
    const clients = new Set<Client>();
    const claimer = new this.app.Pool({ ...this.sessionConfig, Client: recording(this.SessionClient, clients) as never, max: 1, idleTimeoutMillis: 30_000, allowExitOnIdle: true });
    claimer.on('error', () => undefined);
    this.claimClients.set(claimer, clients);
    return (this.claimer = claimer);
  }

  /**
   * A claim on the claim connection, its session planned first when it is new. Awaited before the
   * claim rather than queued from the pool's 'connect' event, which would run two statements on the
   * client at once (pg deprecates that, and warns in the app's log).
   */
  private async claimOnPlannedSession(q: { text: string; values: unknown[] }): Promise<unknown[][]> {
    return withHeld(await holdPgClient(this.claimPool()), nothingToUndo, async (c) => {
      await planSession(c);
      return (await this.onClaimer(c, q)).rows;
    });
  }

  /**
   * The pooler probe (two connections, 15 round trips) starts beside the worker's heartbeat, and the
   * claim connection is made and planned beside its listener's: the first claim then waits for
   * neither. Measured for issue 17 (`bench/measure.ts --system sqljobs-pg --measure process`, the
   * first handler's start after start() was called, 5 alternated pairs): 45 → 34 ms median. The
   * connections still open one after another in effect: on 2 cores each new backend is CPU.
   */
  prepareClaims(stopped?: AbortSignal): void {
    if (this.closed) return;
    void this.sessionScoped()
      .then(async (kept) => {
        if (!kept || this.closed || stopped?.aborted) return;
        const pool = this.claimPool();
        // A stop() during the start drops the connection being made (a host that never answers
        // would hold its socket for ever). The pool stays: a claim queued behind this connect is
        // given a connection of its own, as it would have been without this one.
        const giveUp = () => this.dropClaimConnections(pool);
        stopped?.addEventListener('abort', giveUp, { once: true });
        try {
          await withHeld(await holdPgClient(pool), nothingToUndo, planSession);
        } finally {
          stopped?.removeEventListener('abort', giveUp);
        }
      })
      .catch(() => undefined);
  }

  /** The claim pool's clients, connecting ones too (pg-pool lists none before they connect). */
  private readonly claimClients = new WeakMap<Pool, Set<Client>>();

  private dropClaimConnections(pool: Pool): void {
    for (const c of this.claimClients.get(pool) ?? []) severClient(c);
  }

  /** The claim on its own connection, prepared while that connection keeps its session; rows as arrays (see jobClaim). */
  private async onClaimer(on: PoolClient, q: { text: string; values: unknown[] }): Promise<{ rows: unknown[][] }> {
    if (!this.preparingClaims) return on.query({ text: q.text, values: q.values, rowMode: 'array' });
    try {
      return await on.query({ ...prepared(q), rowMode: 'array' });
    } catch (err) {
      if (!preparedStatementLost(err)) throw err;
      this.preparingClaims = false; // a pooler that detection missed: plain statements from now on
      return on.query({ text: q.text, values: q.values, rowMode: 'array' });
    }
  }


  // ---------------------------------------------------------------- migrations

  /** One transaction under a transaction-scoped advisory lock: concurrent migrators wait, then see the work done. */
  async migrate(): Promise<void> {
    const known = loadMigrations('postgres', this.prefix);
    await this.transaction(async (c) => {
      this.waitingToMigrate = c;
      try {
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${this.prefix}migrate`]);
      } finally {
        this.waitingToMigrate = null;
      }
      // Made only when missing: an app whose role may read and write the tables but not create any
      // runs on a schema its owner migrated (CREATE … IF NOT EXISTS needs CREATE on the schema all the same).
      const present = (await c.query('SELECT to_regclass($1) IS NOT NULL AS present', [this.t.migrations])).rows[0]?.present === true;
      if (!present) await c.query(`CREATE TABLE IF NOT EXISTS ${this.t.migrations} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const applied = (await c.query(`SELECT version FROM ${this.t.migrations}`)).rows.map((r) => Number(r.version));
      checkNotNewer('postgres', applied, known);
      for (const m of known) {
        if (applied.includes(m.version)) continue;
        for (const stmt of splitStatements(m.sql)) await c.query(stmt);
        await c.query(`INSERT INTO ${this.t.migrations} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      }
    });
  }

  // ---------------------------------------------------------------- history partitions

  async historyUpkeep(): Promise<void> {
    await this.months.ensureAhead();
  }

  /**
   * Whole months past the retention are dropped first (instant, whatever their size); then the rows
   * past it in the month that straddles the cutoff go in bounded batches, as elsewhere. A month kept
   * because a live job reads it is kept whole: rows are pruned only after the expired months' end.
   */
  override async historyPrune(req: { olderThanMs: number; limit: number; more?: boolean }): Promise<number> {
    // Whole months once per round (its first batch); later batches prune rows past the same end.
    if (!req.more || this.expiredUntil === undefined) {
      this.expiredUntil = (await this.months.dropExpired(req.olderThanMs)).expiredUntil;
    }
    return super.historyPrune({ olderThanMs: req.olderThanMs, limit: req.limit, since: this.expiredUntil?.getTime() });
  }

  /** The end of the newest month past the retention at this round's start (undefined: no round yet). */
  private expiredUntil: Date | null | undefined;

  /**
   * Each month with its partition and size; a large month's counts from ANALYZE's estimate rather
   * than a count (not even counted when ANALYZE puts it well past the cap).
   */
  override async historyMonths(req: { cap: number }): Promise<HistoryMonth[]> {
    const layout = await this.months.layout();
    const estimated = this.months.estimatedMonths(layout, 2 * req.cap);
    return this.months.describe(await this.walkHistoryMonths(req, (month) => estimated.has(month.key)), layout);
  }

  // ---------------------------------------------------------------- enqueue

  async jobInsertMany({ rows, tx }: InsertBatch): Promise<EnqueueResult[]> {
    const enqueue = tx === undefined ? this.hot.enqueue : this.hot.enqueueInCallerTransaction;
    const run = (text: string, values: unknown[]) => (tx === undefined ? this.app.query(text, values) : this.onCaller(tx, text, values));
    // Statements on a caller's client run one at a time (pg deprecates concurrent queries on one client).
    return settleEnqueue(rows, CHUNK_BYTES, 5000, async (chunk) => {
      const q = enqueue(chunk, this.jobsChannel);
      return (await run(q.text, q.values)) as { id: string; ref: string | null }[];
    });
  }

  /** A statement on the caller's opts.tx; the server's refusal to run it outside a transaction, in words. */
  private async onCaller(tx: unknown, text: string, values: unknown[]): Promise<Record<string, unknown>[]> {
    try {
      return await this.app.queryOn(tx, text, values);
    } catch (err) {
      if (!String((err as Error)?.message).includes(NOT_IN_TRANSACTION)) throw err;
      const what = isPgClient(tx) ? 'the pg client' : describeTx(tx);
      throw new TypeError(`opts.tx: ${what} is not inside a transaction (BEGIN was not run on it, it has ended, or the enqueue was not awaited before it did), so the job was not written`);
    }
  }

  // ---------------------------------------------------------------- claim and outcomes

  async jobClaim(req: ClaimRequest): Promise<ClaimedJob[]> {
    const q = this.hot.claim(req, crypto.randomUUID());
    const rows = (await this.sessionScoped()) ? await this.claimOnPlannedSession(q) : await this.claimPlannedLocally(q);
    // Rows as arrays in CLAIM_COLUMNS' order (pg builds no object per row, and neither do we).
    return rows.map((r) => claimedFromColumns(r, nativeCodec)).sort(claimOrder);
  }

  /** A managed queue's claim, planned for its transaction as every claim is (see CLAIM_PLANNER): its queue's statistics are as stale. */
  protected override async withinClaim<T>(steps: Steps<T>): Promise<T> {
    return withHeld(await holdPgClient(this.own), rollback, async (c) => {
      await c.query(CLAIM_PLANNER_LOCAL);
      const out = await drive(steps, async (s) => outcome(s, await c.query(s.text, s.values)));
      await c.query('COMMIT');
      return out;
    });
  }

  /** Behind a transaction pooler: the planner settings last for the claim's own transaction only. */
  private async claimPlannedLocally(q: { text: string; values: unknown[] }): Promise<unknown[][]> {
    return withHeld(await holdPgClient(this.own), rollback, async (c) => {
      await c.query(CLAIM_PLANNER_LOCAL);
      const res = await c.query({ text: q.text, values: q.values, rowMode: 'array' });
      await c.query('COMMIT');
      return res.rows;
    });
  }

  /**
   * A batch write (completion, failure, release, progress, logs) over arrays of its items, answering
   * the ids it changed. Never prepared: a prepared statement's generic plan, made while batches were
   * small, went on joining each item of a 500-item batch against every running row (125–615 ms a
   * completion instead of 7, and a worker stuck at a fifth of its rate). Planned per call, the
   * server sees the batch's size; planning costs ~0.2 ms a batch (issue 17).
   */
  private async ids({ text, values }: { text: string; values: unknown[] }): Promise<Set<string>> {
    const res = await this.own.query(text, values);
    return new Set(res.rows.map((r) => r.id as string));
  }

  protected async completeFast(items: CompleteItem[]): Promise<Set<string>> {
    return this.ids(this.hot.complete(items));
  }

  protected async failFast(items: FailItem[]): Promise<Set<string>> {
    return this.ids(this.hot.fail(items, this.jobsChannel));
  }

  async jobReleaseMany(items: ReleaseItem[]): Promise<Set<string>> {
    return this.ids(this.hot.release(items, this.jobsChannel));
  }

  async jobProgressMany(items: ProgressItem[]): Promise<Set<string>> {
    return this.ids(this.hot.progress(items));
  }

  async logAppendMany(items: LogItem[]): Promise<Set<string>> {
    return this.ids(this.hot.logs(items));
  }

  async jobCompleteInTransaction({ item, work, encode, beforeComplete }: TransactionalCompletion): Promise<{ applied: boolean; result: unknown }> {
    return withHeld(await holdPgClient(this.own), rollback, async (client) => {
      await client.query('BEGIN');
      const result = await work(client);
      const resultJson = encode(result);
      await beforeComplete();
      let applied = false;
      if (!item.flow) {
        const q = this.hot.complete([{ id: item.id, token: item.token, resultJson }]);
        applied = (await client.query(q.text, q.values)).rowCount === 1;
      }
      let flow: FlowOutcome<Set<string>> | null = null;
      if (!applied) {
        flow = await drive(this.completionSteps(item, resultJson), async (s) => outcome(s, await client.query(s.text, s.values)));
        applied = flow.value.has(item.id);
      }
      await client.query(applied ? 'COMMIT' : 'ROLLBACK');
      if (applied && flow) await this.withWake(flow);
      return { applied, result };
    });
  }

  /** `fn` in a transaction on a private connection (held with an error listener: see held.ts). */
  private async transaction<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return withHeld(await holdPgClient(this.own), rollback, async (c) => {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    });
  }

  // ---------------------------------------------------------------- leases

  async leaseAcquire({ name, owner, ttlMs }: LeaseRequest): Promise<number | null> {
    const rows = await this.rows(
      `INSERT INTO ${this.t.leases} AS l (name, owner, token, expires_at) VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
       ON CONFLICT (name) DO UPDATE SET
         token = CASE WHEN l.owner = excluded.owner AND l.expires_at > now() THEN l.token ELSE l.token + 1 END,
         owner = excluded.owner, expires_at = excluded.expires_at
       WHERE l.owner = excluded.owner OR l.expires_at <= now()
       RETURNING token`,
      [name, owner, ttlMs],
    );
    return rows.length ? Number(rows[0].token) : null;
  }



  /**
   * pg_try_advisory_lock on a connection of its own: a pooled one would keep the lock after
   * release. Refused behind a transaction pooler (the leader asks sessionLocksUsable first).
   */
  async sessionLockTry(name: string): Promise<SessionLock | null> {
    if (!(await this.sessionScoped())) throw new Error('session locks are off behind a transaction pooler (set directUrl)');
    const client = dedicatedClient(this.SessionClient, this.sessionConfig);
    const key = `${this.prefix}${name}`;
    let pid: number | null = null;
    return takeSessionLock({
      onDrop: (cb) => {
        client.on('error', cb);
        client.on('end', cb);
      },
      take: async () => {
        await client.connect();
        const r = await client.query(`${LOCK_SESSION_MARK} SELECT pg_try_advisory_lock(hashtext($1)) AS got, pg_backend_pid() AS pid`, [key]);
        // The server's pid, not the client's processID: a pooler hands out a cancel key of its own.
        pid = Number(r.rows[0].pid);
        return r.rows[0].got === true;
      },
      check: async () => {
        const r = await client.query(
          `${LOCK_SESSION_MARK} SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
             AND ${ADVISORY_KEY_MATCH}) AS held`,
          [key],
        );
        return r.rows[0].held === true;
      },
      unlock: async () => {
        await client.query(`${LOCK_SESSION_MARK} SELECT pg_advisory_unlock(hashtext($1))`, [key]);
      },
      close: () => client.end(),
      closeOnLoss: true,
      pid: () => pid,
    });
  }

  /**
   * End the session holding the lock, only where it is provably a lock session of ours: sessions
   * are kept (never behind a transaction pooler, whose server connections serve other clients'
   * transactions), and the holder is idle with one of our lock statements as the last thing it
   * ran. A server connection a pooler shares would show someone else's statement, or be busy.
   */
  async sessionLockEvict(name: string): Promise<number> {
    if (!(await this.sessionScoped())) return 0;
    const rows = await this.rows(
      `SELECT pg_terminate_backend(l.pid) AS ended FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() AND ${ADVISORY_KEY_MATCH.replace(/\b(classid|objid|objsubid)\b/g, 'l.$1')}
         AND a.state = 'idle' AND starts_with(a.query, $2)`,
      [`${this.prefix}${name}`, LOCK_SESSION_MARK],
    );
    return rows.filter((r) => r.ended === true).length;
  }

  // ---------------------------------------------------------------- schedules

  async scheduleUpsert({ def: d, nextRunAt, codeHash }: { def: ScheduleDef; nextRunAt: number | null; codeHash: string | null }): Promise<void> {
    const at = (ms: number | null) => (ms === null ? null : new Date(ms));
    await this.own.query(
      `INSERT INTO ${this.t.schedules} AS s (key, name, cron, timezone, every_ms, start_at, end_at, max_runs, payload, options, overlap, missed, next_run_at, code_hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::json, $10::json, $11, $12, $13, $14)
       ON CONFLICT (key) DO UPDATE SET name = excluded.name, cron = excluded.cron, timezone = excluded.timezone,
         every_ms = excluded.every_ms, start_at = excluded.start_at, end_at = excluded.end_at, max_runs = excluded.max_runs,
         payload = excluded.payload, options = excluded.options, overlap = excluded.overlap, missed = excluded.missed,
         next_run_at = CASE WHEN s.cron IS DISTINCT FROM excluded.cron OR s.timezone IS DISTINCT FROM excluded.timezone
           OR s.every_ms IS DISTINCT FROM excluded.every_ms OR s.start_at IS DISTINCT FROM excluded.start_at OR s.next_run_at IS NULL
           THEN excluded.next_run_at ELSE s.next_run_at END,
         code_hash = COALESCE(excluded.code_hash, s.code_hash), updated_at = now()
       WHERE excluded.code_hash IS NULL OR s.code_hash IS DISTINCT FROM excluded.code_hash`,
      [d.key, d.name, d.cron, d.timezone, d.everyMs, at(d.startAt), at(d.endAt), d.maxRuns, d.payloadJson, d.optionsJson, d.overlap, d.missed, at(nextRunAt), codeHash],
    );
  }

  async scheduleFire({ key, fireAt, row, skipIfLive }: ScheduleTick): Promise<{ jobId: string; skipped: boolean } | null> {
    return this.transaction(async (c) => {
      await c.query(TICK_LIMITS);
      const tick = await c.query(
        `INSERT INTO ${this.t.ticks} (schedule_key, fire_at, job_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
        [key, new Date(fireAt), row.id],
      );
      if (tick.rowCount !== 1) return null;
      const live = skipIfLive !== null && row.refId ? (await c.query(`SELECT 1 FROM ${this.t.jobs} WHERE ref_id = $1`, [row.refId])).rowCount === 1 : false;
      if (live) {
        await c.query(
          `INSERT INTO ${this.t.history} (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at, tag, batch_id, created_by, meta, error, user_id, reply_to, args)
           VALUES ($1, $2, $3, 'skipped', $4::json, $5, 0, $6, $7, now(), now(), $8, $9, $10, $11::json, $12::json, $13, $14, $15::json)`,
          [row.id, row.name, row.queue, row.payloadJson, row.priority, row.maxAttempts, new Date(fireAt), row.tag, row.batchId, row.createdBy, row.metaJson,
            JSON.stringify(skipIfLive), row.userId, row.replyTo, row.argsJson],
        );
      } else {
        const q = this.hot.enqueue([row], this.jobsChannel);
        await c.query(q.text, q.values);
      }
      await c.query(`UPDATE ${this.t.schedules} SET last_run_at = $1, last_job_id = $2, runs = runs + 1 WHERE key = $3`, [new Date(fireAt), row.id, key]);
      return { jobId: row.id, skipped: live };
    });
  }

  // ---------------------------------------------------------------- status

  async leaderDescribe(name: string): Promise<string | null> {
    const rows = await this.rows(
      `SELECT a.pid, a.client_addr::text AS addr FROM pg_stat_activity a
       WHERE a.pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND ${ADVISORY_KEY_MATCH})`,
      [`${this.prefix}${name}`],
    );
    return rows.length ? `PostgreSQL session ${rows[0].pid}${rows[0].addr ? ` from ${rows[0].addr}` : ''} (advisory lock)` : null;
  }

  // ---------------------------------------------------------------- helpers

  private async rows(text: string, values: unknown[] = []): Promise<QueryResultRow[]> {
    return (await this.own.query(text, values)).rows;
  }

  // ---------------------------------------------------------------- NOTIFY and LISTEN

  /** Workers in other processes wake at once (after a retry, a run-now or a resume). */
  protected override async announceJobs(queue: string): Promise<void> {
    await this.own.query('SELECT pg_notify($1, $2)', [this.jobsChannel, queue]);
  }

  /** The worker running the job, in whichever process, aborts it at once. */
  protected override async announceCancel(id: string): Promise<void> {
    await this.own.query('SELECT pg_notify($1, $2)', [this.cancelChannel, id]);
  }


  /** null behind a transaction pooler: a LISTEN there lasts one transaction, and the worker polls instead. */
  async listen(cb: ListenCallbacks, stopped?: AbortSignal): Promise<ListenHandle | null> {
    if (!(await this.sessionScoped())) return null;
    const listener = new Listener(this.SessionClient, this.sessionConfig, [this.jobsChannel, this.cancelChannel], (channel, payload) => {
      if (channel === this.jobsChannel) cb.onJob(payload);
      else cb.onCancel(payload);
    }, cb);
    await connectOrClose(listener, stopped);
    return listener;
  }

  /**
   * LISTEN for finished jobs on a client of its own, then take a subscriber's lease: from then on
   * every statement that moves jobs to history, in any process, NOTIFYs at its commit (and none does
   * while no process holds a lease). null behind a transaction pooler, as for listen().
   */
  async listenFinished(cb: FinishedCallbacks): Promise<ListenHandle | null> {
    if (!(await this.sessionScoped())) return null;
    const listener = new Listener(this.SessionClient, this.sessionConfig, [this.finishedChannel], () => cb.onFinished(), cb);
    await connectOrClose(listener);
    const lease = new SubscriberLease(this.own, this.t.subscribers, cb.onError);
    try {
      await lease.take();
    } catch (err) {
      await listener.close();
      throw err;
    }
    return {
      close: async () => {
        await lease.end();
        await listener.close();
      },
    };
  }

  beginTransaction(): Promise<OpenTransaction> {
    return this.app.begin();
  }

  /**
   * A migration waiting for another process's (which may take long): it has done nothing, and
   * close() drops its connection rather than wait (pg-pool's end() waits for every client lent).
   * One applying statements is waited for: it is one transaction, and short.
   */
  private waitingToMigrate: PoolClient | null = null;

  async close(): Promise<void> {
    this.closed = true;
    if (this.waitingToMigrate) severClient(this.waitingToMigrate);
    await Promise.all([this.own.end(), this.claimer?.end(), this.liveness?.end()]);
  }

  sever(until: Promise<unknown>): void {
    this.ours.sever(until);
  }

  /** For the watchdog: one statement on a connection of its own (never watched), given up after `timeoutMs`. */
  private async askServer(text: string, values: unknown[], timeoutMs: number): Promise<LookRow[] | null> {
    const c = new this.app.Client({ ...this.sessionConfig, keepAlive: true });
    c.on('error', () => undefined);
    this.ours.add(c);
    const asked = (async () => {
      await c.connect();
      return (await c.query(text, values)).rows as LookRow[];
    })().catch(() => null);
    const rows = await within(asked, timeoutMs, null);
    if (rows === null) severClient(c);
    else void c.end().catch(() => undefined);
    return rows;
  }
}

function outcome(s: Statement, res: { rows: Record<string, unknown>[]; rowCount: number | null }): Outcome {
  return { rows: res.rows, changes: s.returnsRows ? res.rows.length : (res.rowCount ?? 0) };
}

/**
 * A listener's first connect: closed if it fails (its client may have connected before a LISTEN
 * failed; start() tries again with a new one), and given up when `stopped` fires (close() ends a
 * client still connecting, which rejects the connect).
 */
async function connectOrClose(listener: Listener, stopped?: AbortSignal): Promise<void> {
  const giveUp = () => void listener.close();
  stopped?.addEventListener('abort', giveUp, { once: true });
  try {
    if (stopped?.aborted) throw new Error('the LISTEN connection was given up: the worker is stopping');
    await listener.connect();
  } catch (err) {
    await listener.close();
    throw err;
  } finally {
    stopped?.removeEventListener('abort', giveUp);
  }
}

/**
 * One dedicated client for LISTEN. A pg Client never reconnects by itself: on error or end we
 * make a new one with backoff, LISTEN again, and ask for a catch-up poll (notifications sent
 * while we were away are lost).
 */
class Listener implements ListenHandle {
  private client: Client | null = null;
  private closed = false;
  private retry = 0;

  constructor(
    private readonly Client: ClientCtor,
    private readonly config: PoolConfig,
    private readonly channels: string[],
    private readonly onNotify: (channel: string, payload: string) => void,
    private readonly cb: Pick<ListenCallbacks, 'onReconnect' | 'onError'>,
  ) {}

  async connect(): Promise<void> {
    const client = dedicatedClient(this.Client, this.config);
    // Known from the start, not once it listens: a close() while a reconnect is under way must end it.
    this.client = client;
    let dropped = false;
    let listening = false;
    const drop = (err?: unknown) => {
      if (dropped) return;
      dropped = true;
      // Before it listens, the failure rejects connect() too, and its caller reports it: once.
      if (err && !this.closed && listening) this.cb.onError(err);
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.client === client) this.client = null;
      // Before it listens, a failure also rejects connect(), whose caller retries: one reconnect loop, not two.
      if (!this.closed && listening) this.scheduleReconnect();
    };
    client.on('error', drop);
    client.on('end', () => drop());
    client.on('notification', (m) => this.onNotify(m.channel, m.payload ?? ''));
    this.connecting = client;
    try {
      await client.connect();
    } finally {
      if (this.connecting === client) this.connecting = null;
    }
    for (const ch of this.channels) await client.query(`LISTEN "${ch}"`);
    if (dropped) throw new Error('the LISTEN connection closed while it was being set up');
    listening = true;
    this.retry = 0;
  }

  private scheduleReconnect(): void {
    const delay = Math.min(50 * 2 ** this.retry++, 5000);
    setTimeout(() => {
      if (this.closed) return;
      this.connect().then(
        () => this.cb.onReconnect(),
        (err) => {
          if (this.closed) return; // close() ended the client it was connecting
          this.cb.onError(err);
          this.scheduleReconnect();
        },
      );
    }, delay).unref();
  }

  /** The backend pid of the LISTEN connection (tests terminate it to prove the reconnect). */
  get pid(): number | null {
    return (this.client as unknown as { processID?: number } | null)?.processID ?? null;
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    // pg's end() on a client still connecting waits for the server, which may never answer (an
    // unreachable directUrl): its socket is destroyed instead, which rejects the connect.
    if (c && c === this.connecting) return void (c as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
    if (c) await c.end().catch(() => undefined);
  }

  /** The client whose connect() is under way, if any. */
  private connecting: Client | null = null;
}

/**
 * A subscribing process's row in the subscribers table, renewed while it listens, deleted when it
 * stops. Taking one also clears the rows that processes which died left behind.
 */
class SubscriberLease {
  private readonly id = crypto.randomUUID();
  private readonly renewals: Periodic;

  constructor(
    private readonly own: Pool,
    private readonly table: string,
    onError: (err: unknown) => void,
  ) {
    this.renewals = new Periodic(onError);
  }

  async take(): Promise<void> {
    await this.own.query(`DELETE FROM ${this.table} WHERE expires_at < now() - $1 * interval '1 millisecond'`, [SUBSCRIBER_LEASE_MS]);
    await this.renew();
    this.renewals.every(SUBSCRIBER_RENEW_MS, () => this.renew());
  }

  /** Insert or extend: a row cleared while this process was stalled past its lease comes back. */
  private async renew(): Promise<void> {
    await this.own.query(
      `INSERT INTO ${this.table} (id, owner, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
       ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at`,
      [this.id, `${os.hostname()}:${process.pid}`, SUBSCRIBER_LEASE_MS],
    );
  }

  /**
   * Stop renewing and delete the row. Waited for a second at most: a database that does not answer
   * must not hold up the app's shutdown (the row then expires with its lease).
   */
  async end(): Promise<void> {
    await this.renewals.stop();
    await settlesWithin(this.own.query(`DELETE FROM ${this.table} WHERE id = $1`, [this.id]), 1000);
  }
}

/**
 * A connection of its own, outside any pool, with the app pool's settings (without importing pg:
 * pg-pool keeps its Client class): for LISTEN and session advisory locks, which a pooled
 * connection would carry over to whoever checks it out next.
 */
/**
 * The app's settings pointed at directUrl: where to connect comes from the URL alone (the pooler's
 * port must not survive a URL that leaves it out, as Neon's and Supabase's direct URLs do); the
 * rest (user, password, database, ssl, timeouts) stays the app's unless the URL says otherwise.
 */
function directConfig(base: PoolConfig, directUrl: string): PoolConfig {
  const { host: _host, port: _port, connectionString: _url, ...rest } = base;
  return { ...rest, connectionString: directUrl };
}

function dedicatedClient(Ctor: ClientCtor, config: PoolConfig): Client {
  return new Ctor({ ...config, keepAlive: true });
}

