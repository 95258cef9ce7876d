/** Turning database rows (snake_case, dialect types) into the public records. No SQL here. */
import type { AttemptRecord, BackoffOptions, JobCallbackNames, JobError, JobRecord, JobState, LogRecord } from '../model.ts';
import { CLAIM_COLUMNS, type ClaimedJob, type StalledJob, type StoredSchedule, type WorkerRecord } from './store.ts';
import type { MissedPolicy, OverlapPolicy } from '../schedule/schedule.ts';

/** How a dialect hands back times and JSON: SQLite gives numbers and text, pg gives Dates and objects. */
export interface RowCodec {
  date(v: unknown): Date | null;
  json(v: unknown): unknown;
}

export const textCodec: RowCodec = {
  date: (v) => (v === null || v === undefined ? null : new Date(Number(v))),
  json: (v) => (v === null || v === undefined ? null : typeof v === 'string' ? JSON.parse(v) : v),
};

export const nativeCodec: RowCodec = {
  date: (v) => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(v as string)),
  json: (v) => (v === undefined ? null : v),
};

type Row = Record<string, unknown>;

/**
 * A job's payload from its two columns: binary, else the JSON text, which every store reads as
 * text (PostgreSQL's claim and reads cast it: see SqlDialect.payloadText) so that a stored JSON
 * `null` stays null and only an absent payload (SQL NULL) is undefined. (MySQL 8's JSON type is
 * read as text too: the private pool sets jsonStrings.) A value a driver parsed is taken as it is.
 */
function payloadOf(bin: unknown, json: unknown): unknown {
  if (bin != null) return toBuffer(bin);
  if (json === null || json === undefined) return undefined;
  return typeof json === 'string' ? JSON.parse(json) : json;
}

/** A stalled job as the rescuer reads it (columns id, token, name, queue, attempts, max_attempts, worker_id, started_at, worker_heartbeat_at). */
export function toStalledJob(row: Row, codec: RowCodec): StalledJob {
  return {
    id: String(row.id),
    token: String(row.token),
    name: row.name as string,
    queue: row.queue as string,
    attempts: Number(row.attempts),
    maxAttempts: Number(row.max_attempts),
    workerId: row.worker_id === null || row.worker_id === undefined ? null : String(row.worker_id),
    startedAt: codec.date(row.started_at),
    workerHeartbeatAt: codec.date(row.worker_heartbeat_at)?.getTime() ?? null,
  };
}

export function toJobRecord(row: Row, codec: RowCodec): JobRecord {
  const rec: JobRecord = {
    id: String(row.id),
    name: row.name as string,
    queue: row.queue as string,
    state: row.state as JobState,
    priority: Number(row.priority),
    attempts: Number(row.attempts),
    maxAttempts: Number(row.max_attempts),
    runAt: codec.date(row.run_at)!,
    createdAt: codec.date(row.created_at)!,
    startedAt: codec.date(row.started_at),
    finishedAt: codec.date(row.finished_at),
    progress: row.progress === null || row.progress === undefined ? null : Number(row.progress),
    progressMessage: (row.progress_message as string | null) ?? null,
    error: (codec.json(row.error) as JobError | null) ?? null,
    refId: (row.ref_id as string | null) ?? null,
    tag: (row.tag as string | null) ?? null,
    batchId: (row.batch_id as string | null) ?? null,
    createdBy: (row.created_by as string | null) ?? null,
    userId: (row.user_id as string | null) ?? null,
    replyTo: (row.reply_to as string | null) ?? null,
    args: (codec.json(row.args) as Record<string, string> | null) ?? null,
    meta: (codec.json(row.meta) as JobRecord['meta']) ?? null,
    timeoutMs: row.timeout_ms === null || row.timeout_ms === undefined ? null : Number(row.timeout_ms),
    checkpoint: (codec.json(row.checkpoint) as JobRecord['checkpoint']) ?? null,
    workerId: (row.worker_id as string | null) ?? null,
    waitingFor: row.parents_left == null ? 0 : Number(row.parents_left),
    callbackOf: row.callback_batch == null ? null : String(row.callback_batch),
    deadLetterOf: row.dead_letter_of == null ? null : String(row.dead_letter_of),
    serialKey: row.serial_key == null ? null : String(row.serial_key),
    group: row.group_key == null ? null : String(row.group_key),
    reservedUntil: codec.date(row.reserved_until),
    uniqueKey: uniqueKeyOf(row.unique_key),
    callbacks: callbackNames(codec.json(row.callbacks)),
  };
  if ('payload' in row || 'payload_bin' in row) {
    rec.payload = payloadOf(row.payload_bin, row.payload);
  }
  if ('result' in row) rec.result = codec.json(row.result) ?? null;
  return rec;
}

/** The caller's unique or debounce key, without the stored kind prefix (`u:` / `d:`). */
function uniqueKeyOf(v: unknown): { kind: 'unique' | 'debounce'; key: string } | null {
  if (v == null) return null;
  const s = String(v);
  return { kind: s.startsWith('d:') ? 'debounce' : 'unique', key: s.slice(2) };
}

/** The stored callbacks (whole enqueue rows) reduced to their names: a record carries no callback's payload. */
function callbackNames(stored: unknown): JobCallbackNames | null {
  if (stored === null || typeof stored !== 'object') return null;
  const out: JobCallbackNames = {};
  for (const key of ['onSuccess', 'onFailure'] as const) {
    const name = (stored as Record<string, { name?: unknown } | undefined>)[key]?.name;
    if (typeof name === 'string') out[key] = name;
  }
  const deadLetter = (stored as { deadLetter?: unknown }).deadLetter;
  if (typeof deadLetter === 'string') out.deadLetter = deadLetter;
  return Object.keys(out).length ? out : null;
}

function toBuffer(v: unknown): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array);
}

/** Where each column of a claim's answer sits: CLAIM_COLUMNS in order, then the store's rowid if it has one. */
const CLAIM_KEYS = [...CLAIM_COLUMNS.split(', '), 'rowid_'] as const;
const AT = Object.fromEntries(CLAIM_KEYS.map((k, i) => [k, i])) as Record<string, number>;

export function toClaimedJob(row: Row, codec: RowCodec): ClaimedJob {
  return claimedFromColumns(CLAIM_KEYS.map((k) => row[k]), codec);
}

/**
 * A claimed job from its columns as an array (a store that reads rows as arrays skips building a
 * record of 21 keys per row first: SQLite's claim, measured for issue 17).
 */
export function claimedFromColumns(v: readonly unknown[], codec: RowCodec): ClaimedJob {
  const timeoutMs = v[AT.timeout_ms];
  const rowid = v[AT.rowid_];
  const flow = v[AT.flow];
  const callbackBatch = v[AT.callback_batch];
  const traceContext = v[AT.trace_context];
  const payloadBin = v[AT.payload_bin];
  return {
    id: String(v[AT.id]),
    token: String(v[AT.token]),
    name: v[AT.name] as string,
    queue: v[AT.queue] as string,
    payload: payloadOf(payloadBin, v[AT.payload]),
    priority: Number(v[AT.priority]),
    attempts: Number(v[AT.attempts]),
    maxAttempts: Number(v[AT.max_attempts]),
    timeoutMs: timeoutMs == null ? null : Number(timeoutMs),
    backoff: (codec.json(v[AT.backoff]) as BackoffOptions | null) ?? null,
    runAt: codec.date(v[AT.run_at])!,
    startedAt: codec.date(v[AT.started_at]),
    checkpoint: (codec.json(v[AT.checkpoint]) as JobRecord['checkpoint']) ?? null,
    userId: (v[AT.user_id] as string | null) ?? null,
    replyTo: (v[AT.reply_to] as string | null) ?? null,
    args: (codec.json(v[AT.args]) as Record<string, string> | null) ?? null,
    rowid: rowid == null ? undefined : Number(rowid),
    flow: flow == null ? 0 : Number(flow),
    callbackBatch: callbackBatch == null ? null : String(callbackBatch),
    traceContext: traceContext == null ? null : String(traceContext),
  };
}

export function toAttemptRecord(row: Row, codec: RowCodec): AttemptRecord {
  return {
    attempt: Number(row.attempt),
    startedAt: codec.date(row.started_at),
    finishedAt: codec.date(row.finished_at),
    workerId: (row.worker_id as string | null) ?? null,
    outcome: 'failed',
    error: (codec.json(row.error) as JobError | null) ?? null,
  };
}

/**
 * Failed attempts are rows of their own; the latest attempt of a job that is running or
 * completed is described by the job record itself.
 */
export function withCurrentAttempt(failed: AttemptRecord[], job: JobRecord | null): AttemptRecord[] {
  if (!job || job.attempts === 0) return failed;
  if (failed.some((a) => a.attempt === job.attempts)) return failed;
  // The latest attempt has no row of its own unless it failed: it is the job itself, running,
  // completed, or cancelled while it ran (a job cancelled while pending has no attempt unrecorded:
  // its last one failed, or it never ran).
  if (job.state === 'running' || job.state === 'completed' || job.state === 'cancelled') {
    const finished = job.state !== 'running';
    return [
      ...failed,
      {
        attempt: job.attempts,
        startedAt: job.startedAt,
        finishedAt: finished ? job.finishedAt : null,
        workerId: job.workerId,
        outcome: job.state,
        error: job.state === 'cancelled' ? job.error : null,
      },
    ];
  }
  return failed;
}

/** A schedules row as the store interface hands it on; `ms` turns the dialect's time into epoch ms. */
export function toStoredSchedule(row: Row, codec: RowCodec): StoredSchedule {
  const ms = (v: unknown) => codec.date(v)?.getTime() ?? null;
  const text = (v: unknown) => (v === null || v === undefined ? null : typeof v === 'string' ? v : JSON.stringify(v));
  return {
    key: row.key as string,
    name: row.name as string,
    cron: (row.cron as string | null) ?? null,
    timezone: (row.timezone as string | null) ?? null,
    everyMs: row.every_ms == null ? null : Number(row.every_ms),
    startAt: ms(row.start_at),
    endAt: ms(row.end_at),
    maxRuns: row.max_runs == null ? null : Number(row.max_runs),
    // As text (payload_text): pg would have parsed it, and a JSON string payload come back unquoted.
    payloadJson: row.payload_text == null ? null : String(row.payload_text),
    optionsJson: text(row.options),
    overlap: row.overlap as OverlapPolicy,
    missed: row.missed as MissedPolicy,
    enabled: row.enabled === true || row.enabled === 1,
    nextRunAt: ms(row.next_run_at),
    lastRunAt: ms(row.last_run_at),
    lastJobId: row.last_job_id == null ? null : String(row.last_job_id),
    runs: Number(row.runs),
  };
}

export function toWorkerRecord(row: Row, codec: RowCodec): WorkerRecord {
  const list = (v: unknown) => (v == null ? null : ((typeof v === 'string' ? JSON.parse(v) : v) as string[]));
  return {
    id: row.id as string,
    host: row.host as string,
    pid: Number(row.pid),
    queues: list(row.queues),
    names: list(row.names) ?? [],
    concurrency: Number(row.concurrency),
    startedAt: codec.date(row.started_at)!,
    heartbeatAt: codec.date(row.heartbeat_at)!,
  };
}

export function toLogRecord(row: Row, codec: RowCodec): LogRecord {
  return { seq: Number(row.seq), attempt: Number(row.attempt), at: codec.date(row.at)!, message: row.message as string };
}

/** Claim order: priority DESC, run_at, id (the order every dialect's claim query uses). */
export function claimOrder(a: ClaimedJob, b: ClaimedJob): number {
  return b.priority - a.priority || a.runAt.getTime() - b.runAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
