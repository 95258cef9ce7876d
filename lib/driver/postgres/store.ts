/**
 * PostgreSQL (pg): all of this dialect's SQL.
 *
 * Enqueue runs on the app's pool (or the caller's transaction client), so the job commits with
 * the caller's writes; the wake-up NOTIFY is part of the same statement, delivered at commit.
 * Everything the worker does (claim, outcomes, heartbeat, sweeper, migrations) runs on a small
 * private pool built from the app pool's settings, so liveness never waits for a free app
 * connection. LISTEN uses one dedicated client that reconnects and then asks for a catch-up poll.
 */
import type { Pool, PoolClient, PoolConfig, Client, QueryResultRow } from 'pg';
import type { AttemptRecord, EnqueueResult, JobRecord, JobState, ListFilter, ListPage, LogRecord, NewJobRow, JobError } from '../../model.ts';
import { checkNotNewer, loadMigrations, splitStatements } from '../migrations.ts';
import { claimOrder, nativeCodec, toAttemptRecord, toClaimedJob, toJobRecord, toLogRecord, toWorkerRecord, withCurrentAttempt } from '../rows.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';
import { Params, listLimit, listWhere, settleEnqueue, statesByTable } from '../sql.ts';
import type {
  CancelResult, ClaimRequest, ClaimedJob, CompleteItem, FailItem, Fenced, ListenCallbacks, ListenHandle, LogItem, OpenTransaction,
  ProgressItem, QueueStats, ReleaseItem, SessionLock, StatusCounts, Store, StoreCapabilities, ThroughputBuckets, WorkerRecord,
} from '../store.ts';
import { isPgClient } from '../detect.ts';
import { postgres as postgresDialect } from '../portable/dialect.ts';
import { PortableStore } from '../portable/engine.ts';
import type { Outcome, SqlRunner, Statement } from '../portable/statement.ts';
import { holdPgClient, openTransaction, withHeld } from '../held.ts';
import { CLAIM_COLUMNS, mergeQueueStats } from '../store.ts';

const COMMON = `id, name, queue, payload, payload_bin, priority, attempts, max_attempts, timeout_ms, backoff,
  run_at, created_at, started_at, ref_id, tag, batch_id, created_by, meta, progress, progress_message,
  checkpoint, error, worker_id`;
const SUMMARY = `id::text AS id, name, queue, state, priority, attempts, max_attempts, timeout_ms, run_at, created_at,
  started_at, ref_id, tag, batch_id, created_by, meta, progress, progress_message, checkpoint, error, worker_id`;
/** The enqueue input record: one JSON array parameter for any number of jobs. */
const INPUT = `id uuid, name text, queue text, payload json, payload_b64 text, priority int, max_attempts int,
  timeout_ms int, backoff json, run_at timestamptz, delay_ms bigint, ref_id text, tag text, batch_id text,
  created_by text, meta json`;
/** Keep each enqueue chunk under a few MB of JSON. */
const CHUNK_BYTES = 4 * 1024 * 1024;

type PoolCtor = new (cfg: PoolConfig) => Pool;
type ClientCtor = new (cfg: PoolConfig) => Client;

/**
 * The app's side of a PostgreSQL store: where enqueue and a request's transaction run (the app's
 * own pool, through its own driver), and how the worker's private connections are made. pg and
 * slonik differ only here; everything the worker does runs on plain pg pools of its own.
 */
export interface PgAppSide {
  /** Settings and classes for the worker's private pools and dedicated clients (LISTEN, session locks). */
  readonly config: PoolConfig;
  readonly Pool: PoolCtor;
  readonly Client: ClientCtor;
  /** Run one statement (`$n` placeholders) on the app's pool; rows use single-word, text-only columns. */
  query(text: string, values: unknown[]): Promise<Record<string, unknown>[]>;
  /** Run one statement on a handle the caller gave as opts.tx, after checking it is one. */
  queryOn(tx: unknown, text: string, values: unknown[]): Promise<Record<string, unknown>[]>;
  /** Open a transaction on the app's pool for a request's unit of work. */
  begin(): Promise<OpenTransaction>;
}

/** The pg Pool as the app side: pg-pool keeps its Client class and options, so pg need not be imported. */
export function pgAppSide(pool: Pool): PgAppSide {
  return {
    config: (pool as unknown as { options: PoolConfig }).options,
    Pool: pool.constructor as PoolCtor,
    Client: (pool as unknown as { Client: ClientCtor }).Client,
    query: async (text, values) => (await pool.query(text, values)).rows,
    queryOn: async (tx, text, values) => {
      if (!isPgClient(tx)) throw new TypeError('opts.tx on PostgreSQL must be a pg client (from pool.connect()) inside BEGIN');
      const status = (tx as { getTransactionStatus?: () => string }).getTransactionStatus?.();
      if (status === 'I') throw new TypeError('opts.tx: the pg client is not inside a transaction (run BEGIN first), so the job would not be part of it');
      return (await (tx as PoolClient).query(text, values)).rows;
    },
    begin: () => beginOnPool(pool),
  };
}

export interface PostgresStoreOptions {
  prefix: string;
  workerPoolSize: number;
}

/**
 * pg_locks row of the session advisory lock taken with pg_try_advisory_lock(hashtext($1)): the
 * bigint key is split into classid (high 32 bits) and objid (low 32 bits), objsubid 1.
 */
const ADVISORY_KEY_MATCH = `classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid
  AND objid = (hashtext($1)::bigint & 4294967295)::oid AND objsubid = 1`;

/** How a failed transaction on one of our held clients is undone. */
const rollback = (c: PoolClient) => c.query('ROLLBACK');

export class PostgresStore extends PortableStore implements Store {
  readonly dialect = 'postgres' as const;
  readonly capabilities: StoreCapabilities = { notify: true, syncEnqueue: false };
  readonly prefix: string;
  private readonly own: Pool;
  /**
   * One connection for claims, planned to walk the claim index in order. A queue table's
   * statistics are always stale (it fills and drains between ANALYZE runs); with too few rows
   * estimated, the planner would read every pending row into a bitmap and sort it on each claim.
   */
  private readonly claimer: Pool;
  private readonly jobsChannel: string;
  private readonly cancelChannel: string;
  private readonly sql: ReturnType<PostgresStore['buildSql']>;

  private readonly app: PgAppSide;

  /** Portable statements (../portable/) on the private pool. */
  protected readonly runner: SqlRunner = {
    run: async (s) => outcome(s, await this.own.query(s.text, s.values)),
    transaction: (list) => this.transaction(async (c) => {
      const out: Outcome[] = [];
      for (const s of list) out.push(outcome(s, await c.query(s.text, s.values)));
      return out;
    }),
  };

  constructor(app: Pool | PgAppSide, opts: PostgresStoreOptions) {
    super(postgresDialect, opts.prefix);
    this.app = 'begin' in app ? app : pgAppSide(app);
    this.prefix = opts.prefix;
    this.jobsChannel = `${opts.prefix}jobs`;
    this.cancelChannel = `${opts.prefix}cancel`;
    const Ctor = this.app.Pool;
    const base = this.app.config;
    this.own = new Ctor({ ...base, max: opts.workerPoolSize, idleTimeoutMillis: 30_000, allowExitOnIdle: true });
    this.own.on('error', () => undefined); // an idle private connection dropped by the server is replaced on next use
    const planner = '-c enable_bitmapscan=off -c enable_seqscan=off -c enable_sort=off';
    this.claimer = new Ctor({ ...base, max: 1, idleTimeoutMillis: 30_000, allowExitOnIdle: true, options: [base.options, planner].filter(Boolean).join(' ') });
    this.claimer.on('error', () => undefined);
    this.sql = this.buildSql();
  }


  /** The hot statements, built once per prefix. */
  private buildSql() {
    const jobs = this.t.jobs;
    const history = this.t.history;
    return {
      enqueue: `WITH input AS (SELECT * FROM json_to_recordset($1::json) AS x(${INPUT})),
        ins AS (
          INSERT INTO ${jobs} (id, name, queue, state, payload, payload_bin, priority, max_attempts, timeout_ms, backoff, run_at, ref_id, tag, batch_id, created_by, meta)
          SELECT id, name, queue, 'pending', payload, decode(payload_b64, 'base64'), priority, max_attempts, timeout_ms, backoff,
            COALESCE(run_at, now() + delay_ms * interval '1 millisecond'), ref_id, tag, batch_id, created_by, meta
          FROM input
          ON CONFLICT (ref_id) WHERE ref_id IS NOT NULL DO NOTHING
          RETURNING id, queue, run_at <= now() AS due),
        wake AS (SELECT pg_notify($2, queue) FROM (SELECT DISTINCT queue FROM ins WHERE due) q)
        SELECT id::text AS id, NULL::text AS ref, (SELECT count(*) FROM wake)::text AS woke FROM ins
        UNION ALL
        SELECT j.id::text, j.ref_id, '0' FROM ${jobs} j JOIN input i ON j.ref_id = i.ref_id
        WHERE i.ref_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = i.id)`,
      claim: `WITH next AS (
          SELECT id FROM ${jobs}
          WHERE state = 'pending' AND run_at <= now() AND name = ANY($1::text[])
            AND ($5::text[] IS NULL OR queue = ANY($5::text[])) AND ($6::text[] IS NULL OR NOT (queue = ANY($6::text[])))
            AND queue NOT IN (SELECT queue FROM ${this.t.paused})
          ORDER BY priority DESC, run_at, id
          LIMIT $2 FOR UPDATE SKIP LOCKED)
        UPDATE ${jobs} j SET state = 'running', token = $3, worker_id = $4, attempts = j.attempts + 1,
          started_at = now(), progress = NULL, progress_message = NULL
        FROM next WHERE j.id = next.id
        RETURNING ${CLAIM_COLUMNS.split(', ').map((c) => (c === 'id' || c === 'token' ? `j.${c}::text AS ${c}` : `j.${c}`)).join(', ')}`,
      complete: `WITH done AS (
          DELETE FROM ${jobs} j USING unnest($1::uuid[], $2::uuid[], $3::json[]) AS x(id, token, result)
          WHERE j.id = x.id AND j.token = x.token AND j.state = 'running'
          RETURNING j.*, x.result AS new_result)
        INSERT INTO ${history} (${COMMON}, state, finished_at, result)
        SELECT ${COMMON.replace(/\berror\b/, 'NULL')}, 'completed', now(), new_result FROM done
        RETURNING id::text AS id`,
      fail: `WITH x AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::json[], $5::bigint[]) AS x(id, token, attempt, err, delay_ms)),
        retry AS (
          UPDATE ${jobs} j SET state = 'pending', run_at = now() + x.delay_ms * interval '1 millisecond', error = x.err, token = NULL
          FROM x WHERE x.delay_ms IS NOT NULL AND j.id = x.id AND j.token = x.token AND j.state = 'running'
          RETURNING j.id, j.queue, j.worker_id, j.started_at, x.attempt, x.err, x.delay_ms),
        -- A job due again at once (a rescue, a zero backoff) wakes the other processes' workers at commit.
        wake AS (SELECT pg_notify($6, queue) FROM (SELECT DISTINCT queue FROM retry WHERE delay_ms = 0) q),
        dead AS (
          DELETE FROM ${jobs} j USING x
          WHERE x.delay_ms IS NULL AND j.id = x.id AND j.token = x.token AND j.state = 'running'
          RETURNING j.*, x.err AS new_error, x.attempt AS failed_attempt),
        moved AS (
          INSERT INTO ${history} (${COMMON}, state, finished_at, result)
          SELECT ${COMMON.replace(/\berror\b/, 'new_error')}, 'failed', now(), NULL FROM dead
          RETURNING id),
        recorded AS (
          INSERT INTO ${this.t.attempts} (job_id, attempt, worker_id, started_at, finished_at, error)
          SELECT id, attempt, worker_id, started_at, now(), err FROM retry
          UNION ALL SELECT id, failed_attempt, worker_id, started_at, now(), new_error FROM dead
          ON CONFLICT (job_id, attempt) DO UPDATE SET error = excluded.error, finished_at = excluded.finished_at)
        SELECT r.id::text AS id FROM retry r CROSS JOIN (SELECT count(*) FROM wake) w UNION ALL SELECT id::text FROM moved`,
      release: `WITH back AS (
          UPDATE ${jobs} j SET state = 'pending', run_at = now() + x.delay_ms * interval '1 millisecond',
            attempts = j.attempts - x.refund, token = NULL
          FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::int[]) AS x(id, token, delay_ms, refund)
          WHERE j.id = x.id AND j.token = x.token AND j.state = 'running'
          RETURNING j.id, j.queue, x.delay_ms),
        wake AS (SELECT pg_notify($5, queue) FROM (SELECT DISTINCT queue FROM back WHERE delay_ms = 0) q)
        SELECT id::text AS id, (SELECT count(*) FROM wake) AS woke FROM back`,
    };
  }

  // ---------------------------------------------------------------- migrations

  /** One transaction under a transaction-scoped advisory lock: concurrent migrators wait, then see the work done. */
  async migrate(): Promise<void> {
    const known = loadMigrations('postgres', this.prefix);
    await this.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${this.prefix}migrate`]);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.t.migrations} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const applied = (await c.query(`SELECT version FROM ${this.t.migrations}`)).rows.map((r) => Number(r.version));
      checkNotNewer('postgres', applied, known);
      for (const m of known) {
        if (applied.includes(m.version)) continue;
        for (const stmt of splitStatements(m.sql)) await c.query(stmt);
        await c.query(`INSERT INTO ${this.t.migrations} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      }
    });
  }

  // ---------------------------------------------------------------- enqueue

  async enqueue(rows: NewJobRow[], tx?: unknown): Promise<EnqueueResult[]> {
    const run = (text: string, values: unknown[]) => (tx === undefined ? this.app.query(text, values) : this.app.queryOn(tx, text, values));
    // Statements on a caller's client run one at a time (pg deprecates concurrent queries on one client).
    return settleEnqueue(rows, CHUNK_BYTES, 5000, async (chunk) =>
      (await run(this.sql.enqueue, [inputJson(chunk), this.jobsChannel])) as { id: string; ref: string | null }[],
    );
  }

  // ---------------------------------------------------------------- claim and outcomes

  async claim(req: ClaimRequest): Promise<ClaimedJob[]> {
    const args = [req.names, req.limit, crypto.randomUUID(), req.workerId, req.queues ?? null, req.excludeQueues ?? null];
    const res = await this.claimer.query(this.sql.claim, args);
    return res.rows.map((r) => toClaimedJob(r, nativeCodec)).sort(claimOrder);
  }

  private async ids(text: string, values: unknown[]): Promise<Set<string>> {
    const res = await this.own.query(text, values);
    return new Set(res.rows.map((r) => r.id as string));
  }

  async complete(items: CompleteItem[]): Promise<Set<string>> {
    return this.ids(this.sql.complete, [items.map((i) => i.id), items.map((i) => i.token), items.map((i) => i.resultJson)]);
  }

  async fail(items: FailItem[]): Promise<Set<string>> {
    return this.ids(this.sql.fail, [
      items.map((i) => i.id),
      items.map((i) => i.token),
      items.map((i) => i.attempt),
      items.map((i) => JSON.stringify(i.error)),
      items.map((i) => i.retryDelayMs),
      this.jobsChannel,
    ]);
  }

  async release(items: ReleaseItem[]): Promise<Set<string>> {
    return this.ids(this.sql.release, [
      items.map((i) => i.id),
      items.map((i) => i.token),
      items.map((i) => i.delayMs),
      items.map((i) => (i.refund ? 1 : 0)),
      this.jobsChannel,
    ]);
  }

  async saveProgress(items: ProgressItem[]): Promise<Set<string>> {
    return this.ids(
      `UPDATE ${this.t.jobs} j SET progress = x.progress, progress_message = x.message
       FROM unnest($1::uuid[], $2::uuid[], $3::real[], $4::text[]) AS x(id, token, progress, message)
       WHERE j.id = x.id AND j.token = x.token AND j.state = 'running' RETURNING j.id::text AS id`,
      [items.map((i) => i.id), items.map((i) => i.token), items.map((i) => i.progress), items.map((i) => i.message)],
    );
  }

  async appendLogs(items: LogItem[]): Promise<Set<string>> {
    const lines = items.flatMap((it) => it.lines.map((l) => ({ ...l, id: it.id, token: it.token, attempt: it.attempt })));
    return this.ids(
      `INSERT INTO ${this.t.logs} (job_id, attempt, at, message)
       SELECT x.id, x.attempt, to_timestamp(x.at / 1000.0), x.message
       FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::float8[], $5::text[]) WITH ORDINALITY AS x(id, token, attempt, at, message, n)
       WHERE EXISTS (SELECT 1 FROM ${this.t.jobs} j WHERE j.id = x.id AND j.token = x.token AND j.state = 'running')
       ORDER BY x.n
       RETURNING job_id::text AS id`,
      [lines.map((l) => l.id), lines.map((l) => l.token), lines.map((l) => l.attempt), lines.map((l) => l.at), lines.map((l) => l.message)],
    );
  }

  async runTransactional(
    item: Fenced,
    work: (tx: unknown) => unknown,
    encode: (result: unknown) => string | null,
    beforeComplete: () => Promise<void> | void,
  ): Promise<{ applied: boolean; result: unknown }> {
    return withHeld(await holdPgClient(this.own), rollback, async (client) => {
      await client.query('BEGIN');
      const result = await work(client);
      const resultJson = encode(result);
      await beforeComplete();
      const done = await client.query(this.sql.complete, [[item.id], [item.token], [resultJson]]);
      const applied = done.rowCount === 1;
      await client.query(applied ? 'COMMIT' : 'ROLLBACK');
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

  async acquireLease(name: string, owner: string, ttlMs: number): Promise<number | null> {
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



  /** pg_try_advisory_lock on a connection of its own: a pooled one would keep the lock after release. */
  async trySessionLock(name: string): Promise<SessionLock | null> {
    const client = dedicatedClient(this.app);
    let lostCb: (() => void) | null = null;
    let gone = false;
    const drop = () => {
      if (gone) return;
      gone = true;
      void client.end().catch(() => undefined);
      lostCb?.();
    };
    client.on('error', drop);
    client.on('end', drop);
    const key = `${this.prefix}${name}`;
    try {
      await client.connect();
      const got = await client.query('SELECT pg_try_advisory_lock(hashtext($1)) AS got', [key]);
      if (!got.rows[0].got) {
        gone = true;
        await client.end();
        return null;
      }
    } catch (err) {
      gone = true;
      await client.end().catch(() => undefined);
      throw err;
    }
    return {
      pid: (client as unknown as { processID?: number }).processID ?? null,
      stillHeld: async () => {
        if (gone) return false;
        const r = await client.query(
          `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
             AND ${ADVISORY_KEY_MATCH}) AS held`,
          [key],
        );
        return r.rows[0].held === true;
      },
      onLost: (cb) => {
        lostCb = cb;
        if (gone) cb();
      },
      release: async () => {
        if (gone) return;
        gone = true;
        await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
        await client.end().catch(() => undefined);
      },
    };
  }

  async evictSessionLockHolder(name: string): Promise<number> {
    const rows = await this.rows(
      `SELECT pg_terminate_backend(pid) AS ended FROM pg_locks
       WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() AND ${ADVISORY_KEY_MATCH}`,
      [`${this.prefix}${name}`],
    );
    return rows.filter((r) => r.ended === true).length;
  }

  // ---------------------------------------------------------------- schedules

  async upsertSchedule(d: ScheduleDef, nextRunAt: number | null, codeHash: string | null): Promise<void> {
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

  async fireSchedule(key: string, fireAt: number, row: NewJobRow, skipIfLive: JobError | null): Promise<{ jobId: string; skipped: boolean } | null> {
    return this.transaction(async (c) => {
      const tick = await c.query(
        `INSERT INTO ${this.t.ticks} (schedule_key, fire_at, job_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
        [key, new Date(fireAt), row.id],
      );
      if (tick.rowCount !== 1) return null;
      const live = skipIfLive !== null && row.refId ? (await c.query(`SELECT 1 FROM ${this.t.jobs} WHERE ref_id = $1`, [row.refId])).rowCount === 1 : false;
      if (live) {
        await c.query(
          `INSERT INTO ${this.t.history} (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at, tag, batch_id, created_by, meta, error)
           VALUES ($1, $2, $3, 'skipped', $4::json, $5, 0, $6, $7, now(), now(), $8, $9, $10, $11::json, $12::json)`,
          [row.id, row.name, row.queue, row.payloadJson, row.priority, row.maxAttempts, new Date(fireAt), row.tag, row.batchId, row.createdBy, row.metaJson,
            JSON.stringify(skipIfLive)],
        );
      } else {
        await c.query(this.sql.enqueue, [inputJson([row]), this.jobsChannel]);
      }
      await c.query(`UPDATE ${this.t.schedules} SET last_run_at = $1, last_job_id = $2, runs = runs + 1 WHERE key = $3`, [new Date(fireAt), row.id, key]);
      return { jobId: row.id, skipped: live };
    });
  }

  async dbNow(): Promise<number> {
    return ((await this.rows('SELECT now() AS now'))[0].now as Date).getTime();
  }

  // ---------------------------------------------------------------- status

  async statusCounts(cap: number): Promise<StatusCounts> {
    const live = await this.rows(`SELECT state, queue, count(*)::int AS count FROM ${this.t.jobs} GROUP BY state, queue ORDER BY queue, state`);
    // Each state counted on its own (state, id) index range, up to cap: never a full count of history.
    const finished = await this.rows(
      `SELECT s.state, c.count FROM unnest(ARRAY['completed', 'failed', 'cancelled', 'skipped']) AS s(state)
       CROSS JOIN LATERAL (SELECT count(*)::int AS count FROM (SELECT 1 FROM ${this.t.history} h WHERE h.state = s.state LIMIT $1) capped) c`,
      [cap],
    );
    return {
      live: live as StatusCounts['live'],
      finished: finished.filter((r) => Number(r.count) > 0).map((r) => ({ state: r.state as string, count: Number(r.count), capped: Number(r.count) >= cap })),
    };
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    return (await this.rows(`SELECT * FROM ${this.t.workers} ORDER BY started_at`)).map((r) => toWorkerRecord(r, nativeCodec));
  }

  async leaderInfo(name: string): Promise<string | null> {
    const rows = await this.rows(
      `SELECT a.pid, a.client_addr::text AS addr FROM pg_stat_activity a
       WHERE a.pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND ${ADVISORY_KEY_MATCH})`,
      [`${this.prefix}${name}`],
    );
    return rows.length ? `PostgreSQL session ${rows[0].pid}${rows[0].addr ? ` from ${rows[0].addr}` : ''} (advisory lock)` : null;
  }

  // ---------------------------------------------------------------- reads and admin verbs

  private async rows(text: string, values: unknown[] = []): Promise<QueryResultRow[]> {
    return (await this.own.query(text, values)).rows;
  }

  async get(id: string): Promise<JobRecord | null> {
    const cols = COMMON.replace('id,', 'id::text AS id,');
    const rows = await this.rows(
      `SELECT ${cols}, state, NULL::timestamptz AS finished_at, NULL::json AS result FROM ${this.t.jobs} WHERE id = $1
       UNION ALL
       SELECT ${cols}, state, finished_at, result FROM ${this.t.history} WHERE id = $1`,
      [id],
    );
    return rows.length ? toJobRecord(rows[0], nativeCodec) : null;
  }

  async list(filter: ListFilter): Promise<ListPage> {
    const limit = listLimit(filter);
    const { live, history } = statesByTable(filter);
    const p = new Params('dollar');
    const cols = filter.includePayload ? `${SUMMARY}, payload, payload_bin` : SUMMARY;
    const parts: string[] = [];
    // Each half orders by the table's uuid column (qualified: a bare "id" would be the text alias
    // of the select list, whose order no index serves), so it walks an index and stops at the limit.
    if (live) {
      parts.push(`(SELECT ${cols}, NULL::timestamptz AS finished_at${filter.includePayload ? ', NULL::json AS result' : ''} FROM ${this.t.jobs}
        ${listWhere(filter, live, 2, p, (d) => d)} ORDER BY ${this.t.jobs}.id DESC LIMIT ${p.add(limit)})`);
    }
    if (history) {
      parts.push(`(SELECT ${cols}, finished_at${filter.includePayload ? ', result' : ''} FROM ${this.t.history}
        ${listWhere(filter, history, 4, p, (d) => d)} ORDER BY ${this.t.history}.id DESC LIMIT ${p.add(limit)})`);
    }
    const rows = await this.rows(`SELECT * FROM (${parts.join(' UNION ALL ')}) page ORDER BY id DESC LIMIT ${p.add(limit)}`, p.values);
    const items = rows.map((r) => toJobRecord(r, nativeCodec));
    return { items, nextCursor: items.length === limit ? items[items.length - 1].id : null };
  }

  async attempts(id: string): Promise<AttemptRecord[]> {
    const rows = await this.rows(`SELECT * FROM ${this.t.attempts} WHERE job_id = $1 ORDER BY attempt`, [id]);
    return withCurrentAttempt(rows.map((r) => toAttemptRecord(r, nativeCodec)), await this.get(id));
  }

  async logs(id: string, opts: { afterSeq?: number; limit: number }): Promise<LogRecord[]> {
    const rows = await this.rows(
      `SELECT seq, attempt, at, message FROM ${this.t.logs} WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [id, opts.afterSeq ?? 0, opts.limit],
    );
    return rows.map((r) => toLogRecord(r, nativeCodec));
  }

  async cancel(id: string): Promise<CancelResult | null> {
    const rows = await this.rows(
      `WITH gone AS (DELETE FROM ${this.t.jobs} WHERE id = $1 RETURNING *),
        moved AS (INSERT INTO ${this.t.history} (${COMMON}, state, finished_at, result) SELECT ${COMMON}, 'cancelled', now(), NULL FROM gone),
        told AS (SELECT pg_notify($2, id::text) FROM gone WHERE state = 'running')
       SELECT state, worker_id, (SELECT count(*) FROM told) AS told FROM gone`,
      [id, this.cancelChannel],
    );
    return rows.length ? { previous: rows[0].state, workerId: rows[0].worker_id } : null;
  }

  async retry(id: string): Promise<JobState | null> {
    const now = await this.rows(`UPDATE ${this.t.jobs} SET run_at = now() WHERE id = $1 AND state = 'pending' RETURNING queue`, [id]);
    if (now.length) {
      await this.own.query('SELECT pg_notify($1, $2)', [this.jobsChannel, now[0].queue]);
      return 'pending';
    }
    try {
      const rows = await this.rows(
        `WITH gone AS (DELETE FROM ${this.t.history} WHERE id = $1 RETURNING *),
          back AS (
            INSERT INTO ${this.t.jobs} (${COMMON}, state)
            SELECT id, name, queue, payload, payload_bin, priority, attempts, GREATEST(max_attempts, attempts + 1), timeout_ms, backoff,
              now(), created_at, NULL, ref_id, tag, batch_id, created_by, meta, NULL, NULL, checkpoint, error, NULL, 'pending' FROM gone
            RETURNING queue),
          told AS (SELECT pg_notify($2, queue) FROM back)
         SELECT queue, (SELECT count(*) FROM told) FROM back`,
        [id, this.jobsChannel],
      );
      return rows.length ? 'pending' : null;
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new Error(`cannot retry job ${id}: a live job with the same refId exists`);
      throw err;
    }
  }

  async pruneHistory(olderThanMs: number, limit: number): Promise<number> {
    const rows = await this.rows(
      `WITH gone AS (
         DELETE FROM ${this.t.history} WHERE id IN (
           SELECT id FROM ${this.t.history} WHERE finished_at < now() - $1 * interval '1 millisecond' LIMIT $2)
         RETURNING id),
       logs AS (DELETE FROM ${this.t.logs} WHERE job_id IN (SELECT id FROM gone)),
       att AS (DELETE FROM ${this.t.attempts} WHERE job_id IN (SELECT id FROM gone))
       SELECT count(*)::int AS n FROM gone`,
      [olderThanMs, limit],
    );
    return rows[0].n;
  }

  // ---------------------------------------------------------------- admin verbs

  async pauseQueue(queue: string): Promise<void> {
    await this.rows(`INSERT INTO ${this.t.paused} (queue) VALUES ($1) ON CONFLICT (queue) DO NOTHING`, [queue]);
  }

  async resumeQueue(queue: string): Promise<boolean> {
    const rows = await this.rows(`DELETE FROM ${this.t.paused} WHERE queue = $1 RETURNING queue`, [queue]);
    if (rows.length) await this.own.query('SELECT pg_notify($1, $2)', [this.jobsChannel, queue]);
    return rows.length === 1;
  }

  async queueStats(): Promise<QueueStats[]> {
    const [live, paused] = await Promise.all([
      this.rows(`SELECT queue, count(*) FILTER (WHERE state = 'pending')::int AS pending,
          count(*) FILTER (WHERE state = 'pending' AND run_at <= now())::int AS due,
          count(*) FILTER (WHERE state = 'running')::int AS running,
          (EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE state = 'pending' AND run_at <= now())) * 1000)::float8 AS oldest
        FROM ${this.t.jobs} GROUP BY queue`),
      this.rows(`SELECT queue, paused_at FROM ${this.t.paused}`),
    ]);
    return mergeQueueStats(
      live.map((r) => ({ queue: r.queue, pending: r.pending, due: r.due, running: r.running, oldestDueAgeMs: r.oldest === null ? null : Math.round(r.oldest), pausedAt: null })),
      paused.map((r) => ({ queue: r.queue, pausedAt: r.paused_at })),
    );
  }

  async throughput(windowMs: number, bucketMs: number): Promise<ThroughputBuckets> {
    const rows = await this.rows(
      `WITH t AS (SELECT (EXTRACT(EPOCH FROM now()) * 1000)::float8 AS now)
       SELECT t.now, b.start, b.completed, b.failed FROM t LEFT JOIN (
         SELECT (floor(EXTRACT(EPOCH FROM finished_at) * 1000 / $2) * $2)::float8 AS start,
           count(*) FILTER (WHERE state = 'completed')::int AS completed, count(*) FILTER (WHERE state = 'failed')::int AS failed
         FROM ${this.t.history} WHERE finished_at > now() - $1 * interval '1 millisecond' GROUP BY 1) b ON true
       ORDER BY b.start`,
      [windowMs, bucketMs],
    );
    const buckets = rows.filter((r) => r.start !== null).map((r) => ({ start: Number(r.start), completed: r.completed, failed: r.failed }));
    return { now: Math.round(Number(rows[0].now)), buckets };
  }

  async makeDue(id: string): Promise<boolean> {
    const rows = await this.rows(`UPDATE ${this.t.jobs} SET run_at = now() WHERE id = $1 AND state = 'pending' RETURNING queue`, [id]);
    if (rows.length) await this.own.query('SELECT pg_notify($1, $2)', [this.jobsChannel, rows[0].queue]);
    return rows.length === 1;
  }

  async deleteJobs(ids: string[]): Promise<string[]> {
    const rows = await this.rows(
      `WITH live AS (DELETE FROM ${this.t.jobs} WHERE id = ANY($1::uuid[]) AND state = 'pending' RETURNING id),
        finished AS (DELETE FROM ${this.t.history} WHERE id = ANY($1::uuid[]) RETURNING id),
        gone AS (SELECT id FROM live UNION ALL SELECT id FROM finished),
        logs AS (DELETE FROM ${this.t.logs} WHERE job_id IN (SELECT id FROM gone)),
        att AS (DELETE FROM ${this.t.attempts} WHERE job_id IN (SELECT id FROM gone))
       SELECT id::text AS id FROM gone`,
      [ids],
    );
    return rows.map((r) => r.id as string);
  }

  // ---------------------------------------------------------------- LISTEN

  async listen(cb: ListenCallbacks): Promise<ListenHandle> {
    const listener = new Listener(this.app, [this.jobsChannel, this.cancelChannel], (channel, payload) => {
      if (channel === this.jobsChannel) cb.onJob(payload);
      else cb.onCancel(payload);
    }, cb);
    await listener.connect();
    return listener;
  }

  beginTransaction(): Promise<OpenTransaction> {
    return this.app.begin();
  }

  async close(): Promise<void> {
    await Promise.all([this.own.end(), this.claimer.end()]);
  }
}

function outcome(s: Statement, res: { rows: Record<string, unknown>[]; rowCount: number | null }): Outcome {
  return { rows: res.rows, changes: s.returnsRows ? res.rows.length : (res.rowCount ?? 0) };
}

/**
 * A client from the app's pool, after BEGIN; released once, on commit or rollback. It is held
 * with an error listener while the request runs: the server may end it at any moment (e.g.
 * idle_in_transaction_session_timeout while the handler awaits something else).
 */
async function beginOnPool(pool: Pool): Promise<OpenTransaction> {
  return openTransaction(await holdPgClient(pool), (c, sql) => c.query(sql), 'BEGIN');
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
    private readonly app: PgAppSide,
    private readonly channels: string[],
    private readonly onNotify: (channel: string, payload: string) => void,
    private readonly cb: ListenCallbacks,
  ) {}

  async connect(): Promise<void> {
    const client = dedicatedClient(this.app);
    // Known from the start, not once it listens: a close() while a reconnect is under way must end it.
    this.client = client;
    let dropped = false;
    let listening = false;
    const drop = (err?: unknown) => {
      if (dropped) return;
      dropped = true;
      if (err && !this.closed) this.cb.onError(err);
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.client === client) this.client = null;
      // Before it listens, a failure also rejects connect(), whose caller retries: one reconnect loop, not two.
      if (!this.closed && listening) this.scheduleReconnect();
    };
    client.on('error', drop);
    client.on('end', () => drop());
    client.on('notification', (m) => this.onNotify(m.channel, m.payload ?? ''));
    await client.connect();
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
    if (c) await c.end().catch(() => undefined);
  }
}

/**
 * A connection of its own, outside any pool, with the app pool's settings (without importing pg:
 * pg-pool keeps its Client class): for LISTEN and session advisory locks, which a pooled
 * connection would carry over to whoever checks it out next.
 */
function dedicatedClient(app: PgAppSide): Client {
  return new app.Client({ ...app.config, keepAlive: true });
}

/** The enqueue input as JSON text; payloads are spliced in as the validated JSON they already are. */
function inputJson(rows: NewJobRow[]): string {
  const q = JSON.stringify;
  return `[${rows
    .map(
      (r) =>
        `{"id":"${r.id}","name":${q(r.name)},"queue":${q(r.queue)},"payload":${r.payloadJson ?? 'null'},` +
        `"payload_b64":${r.payloadBin ? q(r.payloadBin.toString('base64')) : 'null'},"priority":${r.priority},` +
        `"max_attempts":${r.maxAttempts},"timeout_ms":${r.timeoutMs},"backoff":${r.backoffJson ?? 'null'},` +
        `"run_at":${r.runAt ? q(r.runAt.toISOString()) : 'null'},"delay_ms":${r.delayMs},"ref_id":${q(r.refId)},` +
        `"tag":${q(r.tag)},"batch_id":${q(r.batchId)},"created_by":${q(r.createdBy)},"meta":${r.metaJson ?? 'null'}}`,
    )
    .join(',')}]`;
}
