/**
 * A request's unit of work, shared by the Express and Koa adapters: `req.jobs` / `ctx.jobs`.
 *
 * The transaction opens lazily, on the first enqueue or tx() call, so a request that never
 * touches it costs no query and holds no connection. The adapters decide at their commit point
 * (before the response is sent) whether to commit or roll back; every path ends in exactly one
 * of the two, which also returns the connection to the pool.
 *
 * On SQLite (better-sqlite3 cannot hold a transaction across an await) the request's jobs are
 * buffered and written in one synchronous transaction at the commit point; `enqueueSync` joins
 * the app's own `db.transaction()` at once.
 */
import { Jobs, type BatchOptions, type EnqueueManyItem, type JobMap, type JobName, type PayloadOf, type SupportedDb } from '../jobs.ts';
import type { NewBatch } from '../driver/portable/flow.ts';
import type { TransactionHandle } from '../driver/orm/types.ts';
import { CALLBACK_OPTIONS, untypedCallbacks, type EnqueueOptions, type EnqueueResult, type JobRecord, type ListFilter, type ListPage, type NewJobRow } from '../model.ts';
import { describe } from '../model.ts';
import type { OpenTransaction } from '../driver/store.ts';

/** Methods of a driver's connection that only the middleware may call on the request's handle. */
const OWNED_BY_MIDDLEWARE: (string | symbol)[] = ['release', 'commit', 'rollback', 'beginTransaction'];

type State = 'idle' | 'open' | 'committed' | 'rolled back';

export interface UnitOfWorkOptions {
  /** The app's own per-request transaction (bring your own): enqueue joins it; the app commits it. */
  transaction?: () => TransactionHandle | null | undefined;
  /**
   * The request's user (the adapter's `userId` option, bound to the request): stamped as `userId`
   * and `createdBy` on every job enqueued through the unit of work, unless the call sets them.
   * Asked at the first enqueue (after the app's auth middleware ran), then remembered.
   */
  userId?: () => string | null | undefined;
}

const producers = new WeakMap<object, Jobs>();

/**
 * Methods of a transaction handle that run a statement: pg's query, slonik's query methods, and
 * an mssql Request's (mssql rejects a second request on a transaction while one runs).
 */
const QUERY_METHODS = new Set(['query', 'any', 'anyFirst', 'exists', 'many', 'manyFirst', 'maybeOne', 'maybeOneFirst', 'one', 'oneFirst', 'execute', 'batch']);

/**
 * A statement that begins, commits or rolls back a transaction (pg, MySQL, SQL Server spellings;
 * not a savepoint's). On the request's connection it would end the request's transaction
 * silently: PostgreSQL only warns at a second BEGIN, and its COMMIT then commits the request's
 * writes whatever the response (an ORM's `.transaction()` on a client bound to it sends both).
 */
const TRANSACTION_CONTROL = new RegExp(
  [
    String.raw`^BEGIN\s*(?:;|$|(?:WORK|TRAN|TRANSACTION|ISOLATION|READ|NOT|DEFERRABLE|DISTRIBUTED)\b)`,
    String.raw`^START\s+TRANSACTION\b`,
    String.raw`^(?:COMMIT|ABORT)\b`,
    String.raw`^END\s*(?:;|$|(?:WORK|TRANSACTION)\b)`,
    // ROLLBACK TO [SAVEPOINT] x, and SQL Server's ROLLBACK TRAN x, roll back to a savepoint only.
    String.raw`^ROLLBACK(?:\s+(?:WORK|TRAN|TRANSACTION))?\s*(?:;|$|AND\b)`,
  ].join('|'),
  'i',
);

/** The refusal of a statement that would begin or end the request's transaction, or null. */
function transactionControlRefusal(statement: unknown): Error | null {
  const s = statement as { text?: unknown; sql?: unknown } | null;
  const text = typeof statement === 'string' ? statement : typeof s?.text === 'string' ? s.text : typeof s?.sql === 'string' ? s.sql : null;
  if (text === null || !TRANSACTION_CONTROL.test(text.replace(/^(?:\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)+/, ''))) return null;
  return new Error(
    `do not begin, commit or roll back the request's transaction yourself ("${text.trim().slice(0, 40)}"): the middleware commits it with the response, or rolls it back; ` +
      'run your statements on the handle as they are, or inside a savepoint (SAVEPOINT … / RELEASE SAVEPOINT …) for a part that may fail alone',
  );
}

/**
 * The adapter's options, checked when the middleware is made: a misspelt name was ignored, and a
 * value that is not a function failed only at the first enqueue, as a bare TypeError in a 500.
 */
/** The client went away before the response ended (the socket closed under it). */
export function clientGone(res: { destroyed: boolean; writableFinished: boolean }): boolean {
  return res.destroyed && !res.writableFinished;
}

export function checkMiddlewareOptions(adapter: string, options: unknown, allowed: readonly string[]): void {
  if (options === null || typeof options !== 'object') throw new TypeError(`${adapter}: options must be an object; got ${describe(options)}`);
  for (const [key, value] of Object.entries(options)) {
    if (!allowed.includes(key)) throw new TypeError(`${adapter}: unknown option "${key}"; allowed: ${allowed.join(', ')}`);
    if (value !== undefined && typeof value !== 'function') throw new TypeError(`${adapter}: ${key} must be a function of the request; got ${describe(value)}`);
  }
}

/** A Jobs instance, or a producer-only one for a bare database handle (one per handle). */
export function resolveJobs(jobsOrDb: Jobs | SupportedDb): Jobs {
  if (jobsOrDb instanceof Jobs) return jobsOrDb;
  let jobs = producers.get(jobsOrDb as object);
  if (!jobs) {
    jobs = new Jobs({ db: jobsOrDb, worker: false });
    producers.set(jobsOrDb as object, jobs);
  }
  return jobs;
}

/**
 * The job map `req.jobs` / `ctx.jobs` is typed with. Empty (any name, any payload) unless the app
 * augments it:
 *
 *   declare module 'sqljobs' { interface RequestJobMap { 'send-receipt': { orderId: number } } }
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface RequestJobMap {}

/** `opts` with `id` as its userId and createdBy where unset, and in each callback it names (a name alone becomes { name }). */
function stampUser<O extends { userId?: string; createdBy?: string }>(opts: O, id: string): O {
  if (opts === null || typeof opts !== 'object') return opts; // refused by the enqueue, naming the field
  return stampCallbacks({ ...opts, userId: opts.userId ?? id, createdBy: opts.createdBy ?? id }, id);
}

/** The callbacks `opts` names, each stamped with `id` (a name alone becomes { name }). */
function stampCallbacks<O extends object>(opts: O, id: string): O {
  if (opts === null || typeof opts !== 'object') return opts;
  const out = { ...opts } as Record<string, unknown>;
  for (const key of CALLBACK_OPTIONS) {
    const spec = out[key];
    if (typeof spec === 'string') out[key] = stampUser<{ name: string; userId?: string }>({ name: spec }, id);
    else if (spec !== null && typeof spec === 'object' && !Array.isArray(spec)) out[key] = stampUser(spec as { userId?: string }, id);
  }
  return out as O;
}

export class RequestJobs<M extends JobMap = {}> {
  private state: State = 'idle';
  private tx: OpenTransaction | null = null;
  private opening: Promise<OpenTransaction> | null = null;
  private readonly buffered: NewJobRow[] = [];
  private readonly bufferedBatches: NewBatch[] = [];
  /** Statements on one connection run one at a time (drivers reject or deprecate overlap). */
  private chain: Promise<unknown> = Promise.resolve();
  private proxy: unknown = null;
  private user: { id: string | null | undefined } | null = null;
  /** Set when commit() or rollback() begins: what the unit of work is becoming. */
  private ending: 'committed' | 'rolled back' | null = null;

  constructor(
    readonly jobs: Jobs<M>,
    private readonly opts: UnitOfWorkOptions,
    /** Called once, on first use: the adapter installs its commit gate. */
    private readonly onFirstUse: () => void,
    /** True once the response has started: too late to join its unit of work. */
    private readonly tooLate: () => boolean = () => false,
  ) {}

  /**
   * The options with the request's user stamped in (userId and createdBy), where the call left them
   * unset: its callbacks' too (a batch's, a callback's own), which run for the same user.
   */
  private stamp<O extends { userId?: string; createdBy?: string }>(opts: O): O {
    const id = this.userId();
    return id === undefined ? opts : stampUser(opts, id);
  }

  /** A batch's options: its callbacks stamped (the batch itself takes no user). */
  private stampCallbacks<O extends object>(opts: O): O {
    const id = this.userId();
    return id === undefined ? opts : stampCallbacks(opts, id);
  }

  /** The request's user, asked once (undefined: none, or anonymous). */
  private userId(): string | undefined {
    if (!this.opts.userId) return undefined;
    this.user ??= { id: this.opts.userId() };
    return this.user.id ?? undefined;
  }

  /** Whether anything was enqueued or the transaction was opened. */
  get touched(): boolean {
    return this.state !== 'idle' || this.buffered.length > 0;
  }

  get finished(): boolean {
    return this.state === 'committed' || this.state === 'rolled back';
  }

  /** Committed, rolled back, or on its way to one of them (its commit gate fired). */
  get decided(): boolean {
    return this.finished || this.ending !== null;
  }

  /** The response went out without this unit of work being used: later use is refused. */
  seal(): void {
    if (this.state === 'idle' && !this.buffered.length) this.state = 'committed';
  }

  /**
   * What the unit of work has become, or is becoming, once its commit point has passed (the
   * response started, or commit/rollback began); null while it can still be used.
   */
  private ended(): string | null {
    if (this.tooLate()) this.seal();
    if (this.finished) return this.state;
    return this.ending ?? (this.tooLate() ? 'committed' : null);
  }

  private tooLateError(ended: string): Error {
    return new Error(`the request's unit of work is already ${ended}; use jobs.enqueue outside the request's transaction`);
  }

  private use(): void {
    const ended = this.ended();
    if (ended) throw this.tooLateError(ended);
    if (this.touched || this.opts.transaction) return;
    this.onFirstUse();
    // The gate rolls back at once when the client has already gone.
    if (this.ending) throw new Error(`the request's unit of work is already ${this.ending}: the client disconnected before the response`);
  }

  /**
   * Run `fn` in turn on the request's connection, unless commit or rollback began meanwhile (while
   * the caller awaited the transaction's opening): what was queued before that runs before COMMIT.
   */
  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const ended = this.finished ? this.state : this.ending;
    return ended ? Promise.reject(this.tooLateError(ended)) : this.serial(fn);
  }

  private get buffering(): boolean {
    return this.jobs.store.capabilities.syncEnqueue && !this.opts.transaction;
  }

  /** Enqueue as part of the request's unit of work: the job exists only if the request commits. */
  async enqueue<K extends JobName<M>>(name: K, payload: PayloadOf<M, K>, opts: Omit<EnqueueOptions<never, M>, 'tx'> = {}): Promise<EnqueueResult> {
    this.use();
    opts = this.stamp(opts);
    if (this.buffering) return this.buffer(name, payload, untypedCallbacks(opts));
    const tx = await this.native();
    return this.inTurn(() => this.jobs.enqueue(name, payload, { ...opts, tx }));
  }

  async enqueueMany(items: EnqueueManyItem<M>[]): Promise<EnqueueResult[]> {
    this.use();
    items = items.map((it) => this.stamp(it));
    if (this.buffering) {
      // Validated now (dependsOn between items resolved, cycles refused); the ids are final.
      const { rows, ids } = this.jobs.prepareCall(items);
      this.buffered.push(...rows);
      return ids.map((id) => ({ id, existed: false, deferred: true }));
    }
    const tx = await this.native();
    return this.inTurn(() => this.jobs.enqueueMany(items, { tx }));
  }

  /** jobs.batch as part of the request's unit of work: the batch exists only if the request commits. */
  async batch(items: EnqueueManyItem<M>[], opts: Omit<BatchOptions<never, M>, 'tx'> = {}): Promise<{ batchId: string; ids: string[] }> {
    this.use();
    items = items.map((it) => this.stamp(it));
    opts = this.stampCallbacks(opts);
    if (this.buffering) {
      const { rows, ids, batch } = this.jobs.prepareBatch(items, untypedCallbacks(opts));
      this.buffered.push(...rows);
      this.bufferedBatches.push(batch);
      return { batchId: batch.id, ids };
    }
    const tx = await this.native();
    return this.inTurn(() => this.jobs.batch(items, { ...opts, tx }));
  }

  /** SQLite: enqueue now, synchronously, joining the app's open db.transaction() if any. */
  enqueueSync<K extends JobName<M>>(name: K, payload: PayloadOf<M, K>, opts: Omit<EnqueueOptions<never, M>, 'tx'> = {}): EnqueueResult {
    if (this.finished) this.use();
    return this.jobs.enqueueSync(name, payload, this.stamp(opts));
  }

  private buffer(name: string, payload: unknown, opts: Omit<EnqueueOptions, 'tx'>): EnqueueResult {
    // Validated now, so bad input fails the request rather than its commit; the id is final.
    const row = this.jobs.prepareRow(name, payload, opts);
    this.buffered.push(row);
    return { id: row.id, existed: false, deferred: true };
  }

  /**
   * The driver's own handle inside the request's transaction, for the app's SQL in the same
   * transaction (pg: a PoolClient after BEGIN). Do not commit, roll back or release it: the
   * middleware does, at the response.
   */
  async transaction<T = unknown>(): Promise<T> {
    this.use();
    if (this.buffering) {
      throw new Error(
        "req.jobs.transaction(): better-sqlite3 cannot hold a transaction across an await; run your SQL in db.transaction(() => { ...; req.jobs.enqueueSync(...) })()",
      );
    }
    if (this.opts.transaction) return this.appTransaction() as T;
    const native = await this.native();
    return (this.proxy ??= this.guard(native as Record<string | symbol, unknown>)) as T;
  }

  /** The transaction's own handle (ours to use; the app gets the guarded one). */
  private async native(): Promise<TransactionHandle> {
    if (this.opts.transaction) return this.appTransaction();
    if (!this.opening) {
      this.state = 'open';
      this.opening = this.jobs.beginTransaction().then((tx) => {
        this.tx = tx;
        this.jobs.countOnCommit(tx.native);
        return tx;
      });
    }
    const tx = await this.opening;
    const ended = this.finished ? this.state : this.ending;
    if (ended) throw this.tooLateError(ended);
    return tx.native as TransactionHandle;
  }

  /** The app's own transaction handle; none (an ORM's tx.$client is undefined) would enqueue outside it. */
  private appTransaction(): TransactionHandle {
    const tx = this.opts.transaction!();
    if (tx === undefined || tx === null) {
      throw new TypeError(`the middleware's transaction option returned ${tx}: it must return the request transaction's driver client (pg PoolClient, mysql2 connection, ...), so that jobs commit and roll back with it`);
    }
    return tx;
  }

  /**
   * The handle the app sees: its queries are serialised with ours and refused once the unit of
   * work has ended (the connection may belong to another request by then), and it cannot be
   * released or committed by hand.
   */
  private guard(native: Record<string | symbol, unknown>): unknown {
    const proxy: unknown = new Proxy(native, {
      get: (target, key) => {
        // commit/rollback/beginTransaction exist on mysql2 connections (a second START TRANSACTION would commit silently).
        if (OWNED_BY_MIDDLEWARE.includes(key) && (key === 'release' || typeof target[key] === 'function')) {
          return () => {
            throw new Error(`do not ${String(key)} the request's connection yourself: the middleware commits or rolls back and releases it`);
          };
        }
        const value = target[key];
        if (typeof key === 'string' && QUERY_METHODS.has(key) && typeof value === 'function') {
          return (...args: unknown[]) => this.guardedQuery(target, value as (...a: unknown[]) => unknown, args);
        }
        if (key === 'request' && typeof value === 'function') {
          // mssql: tx.request() makes a Request; its statements join the same serial chain.
          return (...args: unknown[]) => this.guard((value as (...a: unknown[]) => Record<string | symbol, unknown>).apply(target, args));
        }
        if (typeof value !== 'function') return value;
        // Chained calls (mssql's request.input(...).query(...)) keep going through the guard.
        return (...args: unknown[]) => {
          const out = (value as (...a: unknown[]) => unknown).apply(target, args);
          return out === target ? proxy : out;
        };
      },
    });
    return proxy;
  }

  /**
   * A statement on the request's connection, in turn with ours, refused once the commit point has
   * passed. Promise calls answer a promise; callback calls (pg's `query(config, cb)`, the form
   * Knex uses) get the refusal in their callback, and hold the turn until their callback runs.
   * A pg submittable (pg-cursor, pg-query-stream) cannot be refused later: it is refused now.
   */
  private guardedQuery(target: object, query: (...a: unknown[]) => unknown, args: unknown[]): unknown {
    const ended = this.ended();
    const refusal = ended ? this.tooLateError(ended) : transactionControlRefusal(args[0]);
    const last = args.at(-1);
    // pg also takes the callback in the query config ({ text, callback }).
    const config = args[0] as { callback?: unknown; submit?: unknown } | null;
    const inConfig = typeof last !== 'function' && typeof config === 'object' && config !== null && typeof config.callback === 'function' && typeof config.submit !== 'function';
    if (typeof last === 'function' || inConfig) {
      const callback = (inConfig ? config!.callback : last) as (err: unknown, ...results: unknown[]) => void;
      if (refusal) {
        queueMicrotask(() => callback(refusal));
        return undefined;
      }
      void this.serial(
        () =>
          new Promise<void>((done) => {
            const answered = (err: unknown, ...results: unknown[]) => {
              done();
              callback(err, ...results);
            };
            const sent = inConfig ? [{ ...config, callback: answered }, ...args.slice(1)] : [...args.slice(0, -1), answered];
            try {
              query.apply(target, sent);
            } catch (err) {
              answered(err);
            }
          }),
      );
      return undefined;
    }
    const submittable = typeof (args[0] as { submit?: unknown } | null)?.submit === 'function';
    if (refusal) {
      if (submittable) throw refusal;
      return Promise.reject(refusal);
    }
    if (submittable) return query.apply(target, args);
    return this.serial(() => query.apply(target, args) as Promise<unknown>);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Commit point: write buffered jobs (SQLite) or COMMIT the transaction. Throws if the commit fails. */
  async commit(): Promise<void> {
    if (this.finished) return;
    this.ending ??= 'committed';
    try {
      if (this.buffered.length) {
        await this.jobs.writeRows(this.buffered.splice(0), this.bufferedBatches.splice(0));
      }
      if (this.opening) {
        await this.chain;
        const tx = await this.opening;
        await tx.commit();
        this.jobs.notifyCommitted(tx.native);
      }
      this.state = 'committed';
    } catch (err) {
      this.state = 'rolled back';
      await this.tx?.rollback().catch(() => undefined);
      throw err;
    }
  }

  /** Roll back and release. Never throws. */
  async rollback(): Promise<void> {
    if (this.finished) return;
    this.ending = 'rolled back';
    this.state = 'rolled back';
    this.buffered.length = 0;
    this.bufferedBatches.length = 0;
    if (this.opening) {
      await this.chain.catch(() => undefined);
      const tx = await this.opening.catch(() => null);
      await tx?.rollback().catch(() => undefined);
    }
  }

  // Read calls, for convenience: they do not join the transaction.
  get(id: string): Promise<JobRecord | null> {
    return this.jobs.get(id);
  }
  list(filter?: ListFilter): Promise<ListPage> {
    return this.jobs.list(filter);
  }
}
