/**
 * The job model: records, states, options and the validation of everything a caller hands us.
 *
 * State transitions (every one is a compare-and-set on the expected state, in one statement or
 * one transaction; see the store for the SQL):
 *
 *   (enqueue)            -> pending
 *   pending  --claim-->     running     (attempts + 1, new claim token)
 *   running  --complete-->  completed   (moved to history, fenced by token)
 *   running  --fail-->      pending     (retry: run_at = now + backoff, attempt recorded)
 *   running  --fail-->      failed      (attempts exhausted or discarded; moved to history)
 *   running  --snooze-->    pending     (attempt refunded, run_at = now + delay)
 *   running  --shutdown-->  pending     (attempt refunded)
 *   running  --rescue-->    pending     (worker heartbeat stale; attempt recorded "worker lost")
 *   running  --rescue-->    failed      (same, at the attempt limit)
 *   pending|running --cancel--> cancelled (moved to history)
 *   failed|cancelled --retry--> pending  (moved back to the hot table)
 */
import type { TransactionHandle } from './driver/orm/types.ts';
import type { JobMap, JobName, PayloadOf } from './jobs.ts';
import { safeString, storableText } from './text.ts';

export const JOB_STATES = ['pending', 'running', 'completed', 'failed', 'cancelled', 'skipped'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const TERMINAL_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled', 'skipped'];

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
/** What a payload may be: JSON-serialisable data, or binary. */
export type Payload = JsonValue | Buffer | undefined | object;

export type BackoffOptions =
  | {
      type?: 'exponential' | 'linear' | 'fixed';
      /** First delay in milliseconds. Default 1000. */
      baseMs?: number;
      /** Upper bound in milliseconds. Default 1 hour. */
      maxMs?: number;
      /** Fraction of the delay applied as random jitter (0..1). Default 0.2. */
      jitter?: number;
    }
  | ((attempt: number, error: unknown) => number);

export interface JobError {
  message: string;
  name?: string;
  stack?: string;
}

/** The error name of an attempt the rescuer ended (its worker stopped sending heartbeats). */
export const WORKER_LOST = 'WorkerLost';

export interface JobRecord<P = unknown, R = unknown> {
  id: string;
  name: string;
  queue: string;
  state: JobState;
  payload?: P;
  priority: number;
  attempts: number;
  maxAttempts: number;
  runAt: Date;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  progress: number | null;
  progressMessage: string | null;
  result?: R | null;
  error: JobError | null;
  refId: string | null;
  tag: string | null;
  batchId: string | null;
  createdBy: string | null;
  /** The user the job was enqueued for (`userId` option, or the request's user through the HTTP middleware). */
  userId: string | null;
  /** Where the job's outcome should be reported (`replyTo` option): a channel, address or URL of the app's choosing. */
  replyTo: string | null;
  /** String arguments given at enqueue (`args` option). */
  args: Record<string, string> | null;
  meta: JsonValue | null;
  timeoutMs: number | null;
  checkpoint: JsonValue | null;
  workerId: string | null;
  /** Parents not completed yet (a job enqueued with `dependsOn` waits while this is above 0); 0 otherwise. */
  waitingFor: number;
  /** The batch whose callback this job is (jobs.batch's onComplete, onSuccess or onFailure), or null. */
  callbackOf: string | null;
  /** For a dead-letter copy (the deadLetter option): the id of the job that failed for good, whose copy it is. Null otherwise. */
  deadLetterOf: string | null;
  /** Its serial key (the serial option), or null. */
  serialKey: string | null;
  /** Its fair group (the group option), or null. */
  group: string | null;
  /** A reserved job (reserve: true) not committed yet: when its reservation runs out. Null otherwise. */
  reservedUntil: Date | null;
  /** Its unique or debounce key, or null. */
  uniqueKey: { kind: 'unique' | 'debounce'; key: string } | null;
  /** The job names its onSuccess / onFailure callbacks enqueue when it finishes, or null when it has none. */
  callbacks: JobCallbackNames | null;
}

/** A job's callbacks by option, as names only (their payload and options stay in the database). */
export interface JobCallbackNames {
  onSuccess?: string;
  onFailure?: string;
  /** The queue a copy goes to when the job fails for good (the deadLetter option). */
  deadLetter?: string;
}

export interface AttemptRecord {
  attempt: number;
  startedAt: Date | null;
  finishedAt: Date | null;
  workerId: string | null;
  /** `cancelled`: the job was cancelled while this attempt ran (its error says why). */
  outcome: 'completed' | 'failed' | 'running' | 'cancelled';
  error: JobError | null;
}

export interface LogRecord {
  seq: number;
  attempt: number;
  at: Date;
  message: string;
}

/** Options of an enqueue. M: the job map, which types the callbacks' names and payloads (untyped when empty). */
export interface EnqueueOptions<Tx = TransactionHandle, M extends JobMap = {}> {
  /** Run after this many milliseconds (measured by the database clock). */
  delay?: number;
  /** Run at or after this instant. */
  runAt?: Date;
  /** Higher runs first. Integer, default 0. */
  priority?: number;
  queue?: string;
  maxAttempts?: number;
  /** Per-attempt timeout in milliseconds. */
  timeout?: number;
  backoff?: Exclude<BackoffOptions, Function>;
  /** Idempotency key: unique among live (pending or running) jobs. */
  refId?: string;
  tag?: string;
  batchId?: string;
  createdBy?: string;
  /** The user this job runs for: at most 255 characters; `jobs.list({ userId })` finds their jobs. */
  userId?: string;
  /** Where to report the outcome (a channel, address or URL of the app's choosing): at most 2000 characters. */
  replyTo?: string;
  /** String arguments: a plain object of at most 50 keys (1-100 characters) with string values of at most 2000 characters. */
  args?: Record<string, string>;
  meta?: JsonValue;
  /**
   * Jobs this one waits for: it stays pending, never claimed, until every one of them completed
   * (a parent that already completed counts as done). A parent that fails or is cancelled cancels
   * it. In enqueueMany and jobs.batch, a number is the index of another item of the same call.
   */
  dependsOn?: string | number | readonly (string | number)[];
  /** Enqueued in the transaction that completes this job, with this job as its parent (`ctx.parents`). */
  onSuccess?: CallbackOption<M>;
  /** Enqueued in the transaction that fails this job for good or cancels it, with this job as its parent. */
  onFailure?: CallbackOption<M>;
  /**
   * Uniqueness: while a job with this key exists in one of `states` (default pending and running)
   * and, with `forMs`, was created within that many milliseconds (finished ones too when `states`
   * lists them), enqueue returns that job with `existed: true` instead.
   */
  unique?: { key: string; forMs?: number; states?: JobState[] };
  /**
   * Debounce: the job runs `ms` after the last enqueue with this key. Enqueueing again while it
   * has not started replaces its payload and moves its run time to now + ms (`replaced: true`).
   */
  debounce?: { key: string; ms: number };
  /** When the job fails for good, a copy (same name, payload and options) is enqueued in this queue, in the same transaction. */
  deadLetter?: string;
  /**
   * Jobs with the same serial key run one at a time, in enqueue order, across every process: the
   * next starts once the previous finished (completed, failed for good or cancelled; one waiting
   * for its retry still holds the key). Other keys are not held back.
   */
  serial?: string;
  /**
   * Fair group (a tenant, an account): within its queue and priority, claims take ready jobs
   * round-robin across groups, so a group with many ready jobs cannot starve one with few. The
   * queue's `groupConcurrency` and a per-group `rateLimit` count jobs by this key.
   */
  group?: string;
  /**
   * Two-phase commit: the job holds its place (its serial key, its FIFO order) but no worker sees
   * it until jobs.commitReserved(id); jobs.cancel(id) discards it; not committed within the
   * reserveTimeout option, it is cancelled. The result says `reserved: true`.
   */
  reserve?: boolean;
  /**
   * Enqueue inside the caller's open transaction: the driver's handle (pg client in BEGIN, mysql2
   * connection, better-sqlite3 Database inside db.transaction(), slonik or mssql transaction), an
   * ORM's transaction object (Knex, Kysely, Drizzle, Prisma, TypeORM, Sequelize, MikroORM), or any
   * { query(text, values), inTransaction() }.
   */
  tx?: Tx;
}

/**
 * A job to enqueue later: its name alone (for a job whose payload may be left out), or its name
 * with a payload and enqueue options. With a job map, the name is one of its jobs and the payload
 * that job's.
 */
export type CallbackOption<M extends JobMap = {}> = CallbackName<M> | CallbackSpec<M>;

/** The names a callback may give alone: jobs whose payload may be undefined. */
type CallbackName<M extends JobMap> = { [K in JobName<M>]: undefined extends PayloadOf<M, K> ? K : never }[JobName<M>];

export type CallbackSpec<M extends JobMap = {}> = {
  [K in JobName<M>]: { name: K } & (undefined extends PayloadOf<M, K> ? { payload?: PayloadOf<M, K> } : { payload: PayloadOf<M, K> }) & CallbackEnqueueOptions<M>;
}[JobName<M>];

/** The options that name a callback (onComplete: a batch's). */
export const CALLBACK_OPTIONS = ['onSuccess', 'onFailure', 'onComplete'] as const;
export type CallbackKey = (typeof CALLBACK_OPTIONS)[number];
/** @internal Options as the core reads them: the job map types the caller's callbacks, the core checks every callback at run time. */
export type UntypedCallbacks<O> = Omit<O, CallbackKey> & { [K in CallbackKey & keyof O]?: CallbackOption };
/** @internal */
export function untypedCallbacks<O extends object>(opts: O): UntypedCallbacks<O> {
  return opts as unknown as UntypedCallbacks<O>;
}

/** What a callback takes of the enqueue options: not those of a job enqueued now (it is enqueued in the transaction that finishes its job). */
export interface CallbackEnqueueOptions<M extends JobMap = {}> extends Omit<EnqueueOptions<never, M>, 'tx' | 'dependsOn' | 'runAt' | 'debounce' | 'unique' | 'reserve' | 'serial' | 'refId'> {}

export interface EnqueueResult {
  id: string;
  /** True when a live job with the same refId (or unique or debounce key) already existed and was returned instead. */
  existed: boolean;
  /** debounce: the pending job's payload was replaced and its run time moved (existed is true too). */
  replaced?: boolean;
  /** reserve: the job waits for jobs.commitReserved. */
  reserved?: boolean;
  /** True when the write waits for a request's commit gate. */
  deferred?: boolean;
}

export interface ListFilter {
  states?: JobState[];
  state?: JobState;
  queue?: string;
  name?: string;
  tag?: string;
  batchId?: string;
  refId?: string;
  createdBy?: string;
  userId?: string;
  /** Jobs enqueued with this replyTo (exact). */
  replyTo?: string;
  /** Jobs whose args hold every one of these pairs (exact values; other keys may be there too). */
  args?: Record<string, string>;
  createdAfter?: Date;
  createdBefore?: Date;
  /** Only finished jobs (history) that finished at or after this instant. */
  finishedAfter?: Date;
  /** Only finished jobs (history) that finished before this instant. */
  finishedBefore?: Date;
  /** Keyset cursor from a previous page's nextCursor. */
  cursor?: string;
  /** Default 50, at most 500. */
  limit?: number;
  includePayload?: boolean;
  /** Only reserved jobs (reserve: true) not committed yet: pending ones with a reservedUntil. */
  reserved?: true;
}

export interface ListPage<P = unknown> {
  items: JobRecord<P>[];
  nextCursor: string | null;
}

/**
 * The ids of the jobs a filter matches, newest first, at most `cap` (more: others match beyond
 * it), read page by page through `list` (the facade's store, or the admin's facade).
 */
export async function idsMatching(list: (f: ListFilter) => Promise<ListPage>, filter: ListFilter, cap: number): Promise<{ ids: string[]; more: boolean }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  while (ids.length <= cap) {
    const page = await list({ ...filter, cursor, limit: Math.min(500, cap + 1 - ids.length) });
    ids.push(...page.items.map((j) => j.id));
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  return { ids: ids.slice(0, cap), more: ids.length > cap };
}

/** Which dead-letter copies jobs.redriveDeadLetters looks at: the jobs of one queue, narrowed as jobs.list narrows them. */
export interface RedriveFilter extends Omit<ListFilter, 'queue' | 'cursor' | 'limit' | 'includePayload'> {
  /** The dead-letter queue (required). */
  queue: string;
  /** Jobs looked at, newest first: default 1000, at most 10,000. */
  limit?: number;
}

/** Why a job given to jobs.redriveDeadLetters was left as it was (the words read after a count: "2 not a dead-letter copy"). */
export const REDRIVE_SKIPS = {
  notFound: 'no such job',
  notDeadLetter: 'not a dead-letter copy',
  originalGone: 'original deleted or pruned',
  originalLive: 'original pending or running, redriven or retried already',
  originalNotFailed: 'original completed or cancelled',
  retryRefused: "retry refused: a live job holds the original's refId, or a parent it depends on failed",
} as const;
export type RedriveSkip = keyof typeof REDRIVE_SKIPS;

export interface RedriveResult {
  /** Copies whose original went back to pending (each original at most once). */
  redriven: number;
  /** Jobs left as they were. */
  skipped: number;
  /** The skipped jobs counted by reason (a reason none had is absent). */
  reasons: Partial<Record<RedriveSkip, number>>;
  /** The ids of the originals retried. */
  originals: string[];
  /** With a filter: more jobs matched than `limit`. */
  more: boolean;
}

/** The most jobs one redrive looks at (the admin's largest bulkCap). */
export const MAX_REDRIVE = 10_000;

/** A redrive filter validated (JobValidationError naming the field), split into the list filter and how many jobs to look at. */
export function validateRedriveFilter(f: RedriveFilter): { filter: ListFilter; limit: number } {
  const what = 'redriveDeadLetters';
  const refuse = (field: string, message: string): never => {
    throw new JobValidationError(`${what}: ${field} ${message}`, field);
  };
  if (f === null || typeof f !== 'object') refuse('filter', `must be an object { queue, state, name, tag, ... } or an array of job ids; got ${describe(f)}`);
  const { limit = 1000, ...filter } = f;
  for (const k of ['cursor', 'includePayload']) if (k in filter) refuse(k, 'is not a redrive filter (limit says how many jobs to look at)');
  if (filter.queue === undefined) refuse('queue', 'is required: the dead-letter queue whose copies to redrive');
  validateName(filter.queue, 'queue');
  validateListFilter(filter, what);
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_REDRIVE) refuse('limit', `must be an integer from 1 to ${MAX_REDRIVE}; got ${describe(limit)}`);
  return { filter, limit };
}

/** Job ids given to a bulk verb, validated (JobValidationError naming `ids[i]`) and without repeats. */
export function validateIds(ids: unknown, what: string, max: number): string[] {
  if (!Array.isArray(ids)) throw new JobValidationError(`${what}: ids must be an array of job ids; got ${describe(ids)}`, 'ids');
  if (ids.length > max) throw new JobValidationError(`${what}: ids must hold at most ${max} job ids; got ${ids.length}`, 'ids');
  ids.forEach((id, i) => {
    if (!isValidId(id)) throw new JobValidationError(`${what}: ids[${i}] must be a job id (lowercase UUID text); got ${describe(id)}`, `ids[${i}]`);
  });
  return [...new Set(ids as string[])];
}

/** An error whose message names the job and the field at fault. */
export class JobValidationError extends TypeError {
  constructor(
    message: string,
    readonly field: string,
    readonly job?: string,
  ) {
    super(message);
    this.name = 'JobValidationError';
  }
}

function fail(job: string | undefined, field: string, what: string): never {
  const where = job ? `job "${job}": ` : '';
  throw new JobValidationError(`${where}${field} ${what}`, field, job);
}

const NAME_RE = /^[A-Za-z0-9_.:\-/]{1,200}$/;

export function validateName(name: unknown, field = 'name', job?: string): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    fail(job, field, `must be 1-200 characters of letters, digits, _ . : - /; got ${describe(name)}`);
  }
  // A URL path segment of '.' or '..' is collapsed by browsers and URL parsers: the admin could not name it.
  if (name === '.' || name === '..') fail(job, field, `must not be "." or ".." (a URL path segment cannot carry them); got ${describe(name)}`);
  return name;
}

function optionalText(job: string, field: string, v: unknown, max = 500): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length === 0 || v.length > max) {
    fail(job, field, `must be a non-empty string of at most ${max} characters; got ${describe(v)}`);
  }
  checkText(job, field, v);
  return v;
}

function optionalInt(job: string, field: string, v: unknown, min: number, max: number): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(job, field, `must be an integer from ${min} to ${max}; got ${describe(v)}`);
  }
  return v;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v);
  if (typeof v === 'bigint') return `${v}n (a BigInt)`;
  if (typeof v === 'function') return 'a function';
  if (v instanceof Date) return `a Date (${Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString()})`;
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'Object'})`;
  return `${String(v)} (${typeof v})`;
}

/**
 * Deepest nesting of arrays and objects in a payload, meta, result or checkpoint, on every
 * database alike: MariaDB's JSON columns refuse 32 levels (its JSON_VALID limit), and a deep
 * enough value would overflow the stack of the JSON walk.
 */
export const MAX_JSON_DEPTH = 31;

/**
 * Serialise a JSON value, refusing whatever JSON.stringify would silently change or drop:
 * BigInt, functions, symbols, undefined inside arrays, NaN/Infinity, Date, Map, Set, class
 * instances other than plain objects and arrays, and cycles; and what a database cannot store:
 * nesting deeper than MAX_JSON_DEPTH, NUL characters and lone surrogates. The error names the path.
 */
export function toJson(job: string | undefined, field: string, value: unknown): string {
  checkJson(job, value, [field], new Set(), 0);
  const json = JSON.stringify(value);
  // One scan of the text instead of a test per string: JSON.stringify writes U+0000 as \u0000 and
  // a lone surrogate as \udXXX (a pair stays raw). A hit may be an escaped backslash; the walk decides.
  if (SUSPECT_JSON_TEXT.test(json)) findBadText(job, value, field);
  return json;
}

const SUSPECT_JSON_TEXT = /\\u(?:0000|d[89a-f])/;

/** `payload.a[0].b` from the walk's stack of keys (built only for an error). */
function pathOf(keys: (string | number)[]): string {
  return keys.map((k, i) => (i === 0 ? k : typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
}

/**
 * Throw for the first value JSON cannot hold as given. `keys` is the path walked so far, pushed
 * and popped in place: a payload's every value passes here, so no path text is built unless one fails.
 */
function checkJson(job: string | undefined, v: unknown, keys: (string | number)[], seen: Set<object>, depth: number): void {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(v)) fail(job, pathOf(keys), `must be a finite number (JSON has no ${v}); got ${v}`);
      return;
    case 'bigint':
      fail(job, pathOf(keys), `is a BigInt, which JSON cannot hold; convert it to a string or number`);
    case 'function':
      fail(job, pathOf(keys), `is a function, which JSON cannot hold`);
    case 'symbol':
      fail(job, pathOf(keys), `is a symbol, which JSON cannot hold`);
    case 'undefined':
      fail(job, pathOf(keys), `is undefined, which JSON cannot hold here`);
  }
  if (v === null) return;
  const obj = v as Record<string, unknown>;
  if (seen.has(obj)) fail(job, pathOf(keys), `is a circular reference`);
  if (depth === MAX_JSON_DEPTH) {
    fail(job, pathOf(keys), `is nested ${depth + 1} arrays or objects deep; at most ${MAX_JSON_DEPTH} levels are allowed (MariaDB's JSON limit, applied on every database)`);
  }
  seen.add(obj);
  if (Array.isArray(obj)) {
    for (let i = 0; i < obj.length; i++) {
      // A hole (new Array(3), a deleted element) is written as null by JSON, as before.
      if (!(i in obj)) continue;
      keys.push(i);
      checkJson(job, obj[i], keys, seen, depth + 1);
      keys.pop();
    }
  } else {
    const proto = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null) {
      const kind = obj.constructor?.name ?? 'object';
      fail(job, pathOf(keys), `is a ${kind}, which JSON would silently change; pass plain objects, arrays, strings, numbers, booleans or null (for a Date, pass toISOString())`);
    }
    for (const k of Object.keys(obj)) {
      const item = obj[k];
      // An undefined property is dropped by JSON; that is the documented, expected behaviour.
      if (item === undefined) continue;
      keys.push(k);
      checkJson(job, item, keys, seen, depth + 1);
      keys.pop();
    }
  }
  seen.delete(obj);
}

/** Walk a value already known to be JSON and throw for the first key or string a database cannot store. */
function findBadText(job: string | undefined, v: unknown, path: string): void {
  if (typeof v === 'string') return checkText(job, path, v);
  if (v === null || typeof v !== 'object') return;
  if (Array.isArray(v)) return v.forEach((item, i) => findBadText(job, item, `${path}[${i}]`));
  for (const [k, item] of Object.entries(v)) {
    checkText(job, `${path} key ${JSON.stringify(k)}`, k);
    findBadText(job, item, `${path}.${k}`);
  }
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Text every database stores as given. PostgreSQL refuses U+0000 in text and JSON keys; a lone
 * surrogate is not Unicode, so UTF-8 drivers replace it with U+FFFD (silently changed) and
 * MariaDB's JSON refuses it. Refused on every database, SQLite too, so an app behaves the same on each.
 */
export function checkText(job: string | undefined, field: string, s: string): void {
  const problem = textProblem(s);
  if (problem) fail(job, field, problem);
}

/** What is wrong with text a database cannot store as given, or null. */
export function textProblem(s: string): string | null {
  const nul = s.indexOf('\u0000');
  if (nul >= 0) {
    return `contains a NUL character (U+0000) at index ${nul}, which PostgreSQL cannot store; text may hold any Unicode except U+0000 (send binary data as base64 or a Buffer payload)`;
  }
  const lone = LONE_SURROGATE.exec(s);
  if (lone) {
    const code = lone[0].charCodeAt(0).toString(16).toUpperCase();
    return `contains a lone surrogate (U+${code}) at index ${lone.index}, which is not Unicode text (UTF-8 cannot encode it); surrogates are allowed only as pairs (e.g. an emoji)`;
  }
  return null;
}

export interface PayloadEncoding {
  json: string | null;
  binary: Buffer | null;
  bytes: number;
}

export function encodePayload(job: string, payload: unknown, maxBytes: number): PayloadEncoding {
  if (Buffer.isBuffer(payload) || payload instanceof Uint8Array) {
    const binary = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    if (binary.length > maxBytes) fail(job, 'payload', `is ${binary.length} bytes, over the limit of ${maxBytes} bytes (option maxPayloadBytes)`);
    return { json: null, binary, bytes: binary.length };
  }
  if (payload === undefined) return { json: null, binary: null, bytes: 0 };
  const json = toJson(job, 'payload', payload);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > maxBytes) fail(job, 'payload', `is ${bytes} bytes of JSON, over the limit of ${maxBytes} bytes (option maxPayloadBytes)`);
  return { json, binary: null, bytes };
}

/** A job as the store writes it: validated, encoded, with its id already chosen. */
export interface NewJobRow {
  id: string;
  name: string;
  queue: string;
  payloadJson: string | null;
  payloadBin: Buffer | null;
  priority: number;
  maxAttempts: number | null;
  timeoutMs: number | null;
  backoffJson: string | null;
  /** Delay from the database's now, in ms (0 for immediate). */
  delayMs: number;
  /** Absolute run time, when the caller gave one. */
  runAt: Date | null;
  refId: string | null;
  tag: string | null;
  batchId: string | null;
  createdBy: string | null;
  userId: string | null;
  replyTo: string | null;
  argsJson: string | null;
  metaJson: string | null;
  /** The enqueue's trace context (a propagation carrier as JSON, lib/telemetry/tracing.ts), or null. */
  traceContextJson: string | null;
  /** Parents' ids (resolved by the facade: same-call references become ids). */
  dependsOn: string[];
  /** Bits of ./driver/portable/flow.ts FLOW: what finishing this job must do besides moving it. */
  flow: number;
  /** The stored onSuccess/onFailure callbacks (JSON), or null. */
  callbacksJson: string | null;
  /** The batch whose callback this job is, or null. */
  callbackBatch: string | null;
  /** The stored key: `u:` + unique.key or `d:` + debounce.key, or null. */
  uniqueKey: string | null;
  /** The serial key (the serial option), or null. */
  serialKey: string | null;
  /** The fair group (the group option), or null. */
  groupKey: string | null;
  /** reserve: how long the reservation lasts (the reserveTimeout option, set by the facade), or null. */
  reserveMs: number | null;
  /** How the key is used at enqueue (./driver/portable/flow.ts insertWithFlow). */
  dedupe: { kind: 'unique'; forMs: number | null; states: JobState[] } | { kind: 'debounce'; ms: number } | null;
  bytes: number;
}

export const ENQUEUE_KEYS: ReadonlySet<string> = new Set([
  'delay', 'runAt', 'priority', 'queue', 'maxAttempts', 'timeout', 'backoff', 'refId', 'tag',
  'batchId', 'createdBy', 'userId', 'replyTo', 'args', 'meta', 'tx', 'name', 'payload', 'dependsOn', 'onSuccess', 'onFailure',
  'unique', 'debounce', 'deadLetter', 'serial', 'reserve', 'group',
]);

export function buildJobRow(
  id: string,
  name: string,
  payload: unknown,
  opts: EnqueueOptions,
  defaults: { queue: string; priority?: number; maxPayloadBytes: number },
): NewJobRow {
  validateName(name, 'name');
  if (opts === null || typeof opts !== 'object') fail(name, 'options', `must be an object; got ${describe(opts)}`);
  for (const key of Object.keys(opts)) {
    if (!ENQUEUE_KEYS.has(key)) fail(name, key, `is not an enqueue option; allowed: ${[...ENQUEUE_KEYS].filter((k) => k !== 'name' && k !== 'payload').join(', ')}`);
  }
  if (opts.delay !== undefined && opts.runAt !== undefined) fail(name, 'delay', 'and runAt cannot both be given');
  const delayMs = optionalInt(name, 'delay', opts.delay, 0, MAX_DELAY_MS) ?? 0;
  const runAt = opts.runAt === undefined ? null : validateStoredDate(opts.runAt, 'runAt', name);
  const queue = opts.queue === undefined ? defaults.queue : validateName(opts.queue, 'queue', name);
  const enc = encodePayload(name, payload, defaults.maxPayloadBytes);
  const dedupe = opts.unique === undefined && opts.debounce === undefined ? NO_DEDUPE : dedupeOf(name, opts, delayMs, runAt);
  return {
    id,
    name,
    queue,
    payloadJson: enc.json,
    payloadBin: enc.binary,
    priority: optionalInt(name, 'priority', opts.priority, -1_000_000, 1_000_000) ?? defaults.priority ?? 0,
    maxAttempts: optionalInt(name, 'maxAttempts', opts.maxAttempts, 1, 1_000_000),
    timeoutMs: optionalInt(name, 'timeout', opts.timeout, 1, 2_147_483_647),
    backoffJson: opts.backoff === undefined ? null : JSON.stringify(validateStoredBackoff(opts.backoff, name)),
    // A debounced job first runs debounce.ms from now (each later enqueue moves it again).
    delayMs: dedupe.dedupe?.kind === 'debounce' ? dedupe.dedupe.ms : delayMs,
    runAt,
    refId: optionalText(name, 'refId', opts.refId, 255),
    tag: optionalText(name, 'tag', opts.tag, 255),
    batchId: optionalText(name, 'batchId', opts.batchId, 255),
    createdBy: optionalText(name, 'createdBy', opts.createdBy, 255),
    userId: optionalText(name, 'userId', opts.userId, MAX_USER_ID),
    replyTo: optionalText(name, 'replyTo', opts.replyTo, MAX_REPLY_TO),
    argsJson: opts.args === undefined || opts.args === null ? null : argsJson(name, opts.args),
    metaJson: opts.meta === undefined ? null : toJson(name, 'meta', opts.meta),
    traceContextJson: null,
    dependsOn: [],
    flow: 0,
    callbacksJson: null,
    callbackBatch: null,
    uniqueKey: dedupe.uniqueKey,
    dedupe: dedupe.dedupe,
    serialKey: opts.serial === undefined ? null : dedupeKey(name, 'serial', opts.serial),
    groupKey: opts.group === undefined ? null : validateName(opts.group, 'group', name),
    reserveMs: reserveOf(name, opts, delayMs, runAt),
    bytes: enc.bytes + 256,
  };
}

/** reserve: true validated (the facade sets the reservation's length); null without it. */
function reserveOf(job: string, opts: EnqueueOptions, delayMs: number, runAt: Date | null): number | null {
  if (opts.reserve === undefined || opts.reserve === false) return null;
  if (opts.reserve !== true) fail(job, 'reserve', `must be true or false; got ${describe(opts.reserve)}`);
  if (delayMs !== 0 || runAt !== null || opts.debounce !== undefined) fail(job, 'reserve', 'cannot be combined with delay, runAt or debounce (a reserved job runs once committed)');
  return 0;
}

const NO_DEDUPE: Pick<NewJobRow, 'uniqueKey' | 'dedupe'> = Object.freeze({ uniqueKey: null, dedupe: null });

/** A unique or debounce key as stored: at most this many characters of the caller's key. */
export const MAX_DEDUPE_KEY = 255;

/** The unique / debounce options, validated: the key stored and how enqueue uses it. */
function dedupeOf(job: string, opts: EnqueueOptions, delayMs: number, runAt: Date | null): Pick<NewJobRow, 'uniqueKey' | 'dedupe'> {
  if (opts.unique !== undefined && opts.debounce !== undefined) fail(job, 'unique', 'and debounce cannot both be given');
  if (opts.unique !== undefined) {
    const u = plainObject(job, 'unique', opts.unique, ['key', 'forMs', 'states'], '{ key, forMs?, states? }');
    const key = dedupeKey(job, 'unique.key', u.key);
    const forMs = u.forMs === undefined ? null : checkDelayField(job, 'unique.forMs', u.forMs);
    const states = u.states === undefined ? (['pending', 'running'] as JobState[]) : statesList(job, 'unique.states', u.states);
    return { uniqueKey: `u:${key}`, dedupe: { kind: 'unique', forMs, states } };
  }
  if (opts.debounce !== undefined) {
    const dbo = plainObject(job, 'debounce', opts.debounce, ['key', 'ms'], '{ key, ms }');
    if (delayMs !== 0 || runAt !== null) fail(job, 'debounce', 'cannot be combined with delay or runAt (the job runs debounce.ms after the last enqueue)');
    return { uniqueKey: `d:${dedupeKey(job, 'debounce.key', dbo.key)}`, dedupe: { kind: 'debounce', ms: checkDelayField(job, 'debounce.ms', dbo.ms) } };
  }
  return { uniqueKey: null, dedupe: null };
}

function plainObject(job: string, field: string, v: unknown, keys: string[], shape: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(job, field, `must be ${shape}; got ${describe(v)}`);
  for (const k of Object.keys(v as object)) if (!keys.includes(k)) fail(job, `${field}.${k}`, `is not allowed; ${field} is ${shape}`);
  return v as Record<string, unknown>;
}

function dedupeKey(job: string, field: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_DEDUPE_KEY) fail(job, field, `must be a string of 1-${MAX_DEDUPE_KEY} characters; got ${describe(v)}`);
  checkText(job, field, v as string);
  return v as string;
}

function checkDelayField(job: string, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_DELAY_MS) fail(job, field, `must be a whole number of milliseconds from 0 to ${MAX_DELAY_MS}; got ${describe(v)}`);
  return v as number;
}

function statesList(job: string, field: string, v: unknown): JobState[] {
  if (!Array.isArray(v) || v.length === 0 || v.some((s) => !(JOB_STATES as readonly unknown[]).includes(s))) {
    fail(job, field, `must be a non-empty array of states (${JOB_STATES.join(', ')}); got ${describe(v)}`);
  }
  return [...new Set(v as JobState[])];
}

/** At most this many parents per job. */
export const MAX_PARENTS = 100;

/**
 * The dependsOn option as a list: job ids (well-formed, see isValidId) and, where `sameCall` is
 * the number of items in the call, indexes of other items. Duplicates are dropped.
 */
export function dependsOnList(job: string, value: unknown, sameCall: number | null): (string | number)[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  const allowed = sameCall === null ? 'job ids (strings)' : `job ids (strings) or indexes of other items of this call (0-${sameCall - 1})`;
  if (list.length > MAX_PARENTS) fail(job, 'dependsOn', `must name at most ${MAX_PARENTS} jobs; got ${list.length}`);
  for (const p of list) {
    const ok = typeof p === 'string' ? isValidId(p) : sameCall !== null && Number.isInteger(p) && p >= 0 && p < sameCall;
    if (!ok) fail(job, 'dependsOn', `must be ${allowed}; got ${describe(p)}`);
  }
  return [...new Set(list as (string | number)[])];
}

/** Bounds of the user context options (the columns are sized for them). */
export const MAX_USER_ID = 255;
export const MAX_REPLY_TO = 2000;
export const MAX_ARGS = 50;
export const MAX_ARG_KEY = 100;
export const MAX_ARG_VALUE = 2000;

/** `args` as stored: a plain object of string values, checked key by key. */
function argsJson(job: string, args: unknown): string {
  const problem = argsProblem(args);
  if (problem) fail(job, problem[0], problem[1]);
  return JSON.stringify(args);
}

/**
 * What is wrong with `args` (enqueue's option, or list's filter by them) as [field, message], or
 * null: a plain object of at most MAX_ARGS keys (1-MAX_ARG_KEY characters) with string values.
 */
function argsProblem(args: unknown): [field: string, message: string] | null {
  const proto = args !== null && typeof args === 'object' ? Object.getPrototypeOf(args) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    return ['args', `must be a plain object of string values (e.g. { orderId: '42' }); got ${describe(args)}`];
  }
  const entries = Object.entries(args as Record<string, unknown>);
  if (entries.length > MAX_ARGS) return ['args', `must have at most ${MAX_ARGS} keys; got ${entries.length}`];
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > MAX_ARG_KEY) return ['args', `keys must be 1-${MAX_ARG_KEY} characters; got ${describe(k)}`];
    const keyProblem = textProblem(k);
    if (keyProblem) return ['args', `key ${describe(k)} ${keyProblem}`];
    const field = `args.${k}`;
    if (typeof v !== 'string' || v.length > MAX_ARG_VALUE) return [field, `must be a string of at most ${MAX_ARG_VALUE} characters; got ${describe(v)}`];
    const valueProblem = textProblem(v);
    if (valueProblem) return [field, valueProblem];
  }
  return null;
}

/**
 * The instants every database stores exactly: MariaDB's DATETIME ends at 9999-12-31 and turns
 * year 1 into 2001; before 1970 a job is as due as at 1970, so nothing is lost by refusing it.
 */
export const MIN_STORED_DATE = new Date('1970-01-01T00:00:00.000Z');
export const MAX_STORED_DATE = new Date('9999-12-31T23:59:59.999Z');

export function validateStoredDate(v: unknown, field: string, job?: string): Date {
  const problem = storedDateProblem(v);
  if (problem) fail(job, field, problem);
  return v as Date;
}

export function storedDateProblem(v: unknown): string | null {
  const ms = v instanceof Date ? v.getTime() : NaN;
  if (ms >= MIN_STORED_DATE.getTime() && ms <= MAX_STORED_DATE.getTime()) return null;
  return `must be a valid Date from ${MIN_STORED_DATE.toISOString()} to ${MAX_STORED_DATE.toISOString()} (what every supported database stores); got ${describe(v)}`;
}

/** A backoff stored with the job (enqueue's option): data only, since a function cannot be stored. */
function validateStoredBackoff(b: unknown, job: string): BackoffOptions {
  if (typeof b === 'function') fail(job, 'backoff', 'cannot be a function in enqueue (a function cannot be stored with the job): give it to define(), or pass { type, baseMs, maxMs, jitter }');
  return validateBackoff(b, 'backoff', job);
}

export function validateBackoff(b: unknown, field: string, job?: string): BackoffOptions {
  if (typeof b === 'function') return b as BackoffOptions;
  if (b === null || typeof b !== 'object') fail(job, field, `must be { type, baseMs, maxMs, jitter } or a function (attempt, error) => ms; got ${describe(b)}`);
  const o = b as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['type', 'baseMs', 'maxMs', 'jitter'].includes(k)) fail(job, `${field}.${k}`, 'is not a backoff option; allowed: type, baseMs, maxMs, jitter');
  }
  if (o.type !== undefined && !['exponential', 'linear', 'fixed'].includes(o.type as string)) {
    fail(job, `${field}.type`, `must be 'exponential', 'linear' or 'fixed'; got ${describe(o.type)}`);
  }
  optionalInt(job ?? '', `${field}.baseMs`, o.baseMs, 0, 2_147_483_647);
  optionalInt(job ?? '', `${field}.maxMs`, o.maxMs, 0, 2_147_483_647);
  if (o.jitter !== undefined && (typeof o.jitter !== 'number' || !(o.jitter >= 0 && o.jitter <= 1))) {
    fail(job, `${field}.jitter`, `must be a number from 0 to 1; got ${describe(o.jitter)}`);
  }
  return o as BackoffOptions;
}

/** Whether a job that just ran attempt `attempts` may run again (maxAttempts counts every run). */
export function hasAttemptsLeft(job: { attempts: number; maxAttempts: number }): boolean {
  return job.attempts < job.maxAttempts;
}

/** The longest delay anything may ask for (delay, snooze, a backoff function's answer): ten years. */
export const MAX_DELAY_MS = 10 * 365 * 86_400_000;

/** A delay computed at run time (snooze, a backoff function): the same bounds as the `delay` option. */
export function checkDelay(what: string, ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_DELAY_MS) {
    throw new JobValidationError(`${what} must be a number of milliseconds from 0 to ${MAX_DELAY_MS} (ten years); got ${describe(ms)}`, 'delay');
  }
  return Math.round(ms);
}

export const DEFAULT_BACKOFF = { type: 'exponential', baseMs: 1000, maxMs: 3_600_000, jitter: 0.2 } as const;

/** Delay before the next attempt, after `attempt` (1-based) failed. */
export function backoffDelay(backoff: BackoffOptions | null | undefined, attempt: number, error: unknown, random = Math.random): number {
  if (typeof backoff === 'function') return checkDelay(`the backoff function's answer for attempt ${attempt}`, backoff(attempt, error));
  const b = { ...DEFAULT_BACKOFF, ...(backoff ?? {}) };
  let delay: number;
  if (b.type === 'fixed') delay = b.baseMs;
  else if (b.type === 'linear') delay = b.baseMs * attempt;
  else delay = b.baseMs * 2 ** Math.min(attempt - 1, 40);
  delay = Math.min(delay, b.maxMs);
  const spread = delay * b.jitter;
  return Math.max(0, Math.round(delay - spread + random() * 2 * spread));
}

/**
 * What is stored of a thrown value. Never throws: a value whose `message` getter throws, or a
 * revoked Proxy, still gives a readable record. Text is cut on code-point boundaries and made
 * storable (no NUL, no lone surrogate) so that the database accepts it.
 */
export function errorToRecord(err: unknown): JobError {
  let record: JobError;
  try {
    record = readError(err);
  } catch (e) {
    record = { message: `the handler threw a value that could not be read (${safeString(e instanceof Error ? e.message : e)})` };
  }
  return {
    ...record,
    message: storableText(record.message, 10_000),
    ...(record.name !== undefined && { name: storableText(record.name, 200) }),
    ...(record.stack !== undefined && { stack: storableText(record.stack, 20_000) }),
  };
}

function readError(err: unknown): JobError {
  if (err instanceof Error) {
    const stack = err.stack;
    return { message: safeString(err.message), name: safeString(err.name), ...(typeof stack === 'string' && { stack }) };
  }
  if (typeof err === 'string') return { message: err };
  let message: string | undefined;
  try {
    message = JSON.stringify(err);
  } catch {
    // Circular or BigInt: fall back to String().
  }
  return { message: message ?? safeString(err) };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function validateId(id: unknown): string {
  if (typeof id !== 'string' || !UUID_RE.test(id)) {
    throw new JobValidationError(`id must be a job id (lowercase UUID text); got ${describe(id)}`, 'id');
  }
  return id;
}

export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && UUID_RE.test(id);
}

const LIST_KEYS = [
  'states', 'state', 'queue', 'name', 'tag', 'batchId', 'refId', 'createdBy', 'userId', 'replyTo', 'args', 'createdAfter', 'createdBefore', 'finishedAfter', 'finishedBefore', 'cursor', 'limit',
  'includePayload', 'reserved',
];
/** The text filters and their longest value (a replyTo may be as long as enqueue allows). */
const LIST_TEXT_KEYS = { queue: 500, name: 500, tag: 500, batchId: 500, refId: 500, createdBy: 500, userId: 500, replyTo: MAX_REPLY_TO } as const;

/** A list filter from the app or the admin: refused early, naming the field and what is allowed. */
export function validateListFilter(f: ListFilter, verb = 'list'): void {
  const refuse = (field: string, what: string): never => {
    throw new JobValidationError(`${verb}: ${field} ${what}`, field);
  };
  if (f === null || typeof f !== 'object') refuse('filter', `must be an object; got ${describe(f)}`);
  for (const k of Object.keys(f)) {
    if (!LIST_KEYS.includes(k)) refuse(k, `is not a list filter; allowed: ${LIST_KEYS.join(', ')}`);
  }
  if (f.states !== undefined && !Array.isArray(f.states)) refuse('states', `must be an array of states; got ${describe(f.states)}`);
  const states: [string, unknown][] = f.states ? f.states.map((s, i) => [`states[${i}]`, s]) : f.state !== undefined ? [['state', f.state]] : [];
  for (const [field, s] of states) {
    if (!(JOB_STATES as readonly unknown[]).includes(s)) refuse(field, `must be one of ${JOB_STATES.join(', ')}; got ${describe(s)}`);
  }
  if (f.cursor !== undefined && !isValidId(f.cursor)) refuse('cursor', `must be a nextCursor from a previous page; got ${describe(f.cursor)}`);
  for (const [k, max] of Object.entries(LIST_TEXT_KEYS) as [keyof typeof LIST_TEXT_KEYS, number][]) {
    const v = f[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length > max) refuse(k, `must be a string of at most ${max} characters; got ${describe(v)}`);
    const problem = textProblem(v as string);
    if (problem) refuse(k, problem);
  }
  if (f.args !== undefined) {
    const problem = argsProblem(f.args);
    if (problem) refuse(...problem);
    // An empty object would match every job: more likely a filter built from nothing than meant.
    if (Object.keys(f.args).length === 0) refuse('args', 'must name at least one key (leave args out to match any job)');
  }
  for (const k of ['createdAfter', 'createdBefore', 'finishedAfter', 'finishedBefore'] as const) {
    const problem = f[k] === undefined ? null : storedDateProblem(f[k]);
    if (problem) refuse(k, problem);
  }
  if (f.limit !== undefined && (typeof f.limit !== 'number' || !Number.isInteger(f.limit) || f.limit < 1 || f.limit > 500)) {
    refuse('limit', `must be an integer from 1 to 500; got ${describe(f.limit)}`);
  }
  if (f.includePayload !== undefined && typeof f.includePayload !== 'boolean') refuse('includePayload', `must be true or false; got ${describe(f.includePayload)}`);
  if (f.reserved !== undefined && f.reserved !== true) refuse('reserved', `must be true (only reserved jobs) or left out; got ${describe(f.reserved)}`);
}
