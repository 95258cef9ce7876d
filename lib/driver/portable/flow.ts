/**
 * Workflows, written once for every database: jobs that wait for their parents, callbacks
 * enqueued when a job finishes, and batches whose last job enqueues the batch's callbacks.
 *
 * A job whose `flow` column is 0 never comes here: it finishes through its dialect's one-statement
 * completion, which is fenced on `flow = 0` as well as on its claim token. Everything else
 * finishes through finishJobs, one transaction that moves the job to history and then, from what
 * each statement answered:
 *  - completed: each dependent has one parent fewer to wait for, and runs once it has none;
 *  - failed or cancelled: each waiting dependent is cancelled, naming the parent, and so on down;
 *  - its callback (onSuccess / onFailure) is enqueued, with the job as its parent;
 *  - its batch counts it, under the batch row's lock: the transaction that counts the last job
 *    enqueues the batch's callbacks and marks them fired, so exactly one ever does.
 * The rows read first are read under a lock (`d.lockHint`, `d.forUpdate`), so what the later
 * statements decide from stays true until commit.
 *
 * A waiting job is pending with `parents_left` > 0 and its run_at at the end of time, so claims
 * (and their index) need no change for it: the flow that releases it sets run_at to now.
 */
import { JobValidationError, type EnqueueResult, type JobError, type NewJobRow } from '../../model.ts';
import { uuidv7 } from '../../uuid.ts';
import { sharedColumns } from '../columns.ts';
import { read, write, type Binder, type Outcome, type Statement, type Steps } from './statement.ts';
import type { Sql } from './sql.ts';
import { lockGroups, rankInGroup, saveGroupRanks } from './queues.ts';
import { expiredReservations, jobsWithUniqueKey, reservationForget, sideIndexRows } from './side-index.ts';

/** The bits of a job's `flow` column. */
export const FLOW = {
  /** Other jobs depend on it (set on the parent when a dependent is enqueued). */
  children: 1,
  /** It has an onSuccess or onFailure callback. */
  callbacks: 2,
  /** It belongs to a batch made by jobs.batch (the batches table has its row). */
  batch: 4,
  /** It depends on other jobs (ctx.parents reads them). */
  parents: 8,
  /** It is the dead-letter copy of a failed job (its parent: ctx.deadLetterOf). */
  deadLetter: 16,
} as const;

/** The run_at of a job waiting for its parents: the end of time every database stores. */
export const WAITING_RUN_AT = Date.UTC(9999, 11, 31);

/** The bits of the batches table's `fired` column. */
const FIRED = { onComplete: 1, onSuccess: 2, onFailure: 4 } as const;
type BatchCallbackKind = keyof typeof FIRED;
/** The batches table's `callback_jobs`: the id of the job each fired callback enqueued. */
export type BatchCallbackJobs = Partial<Record<BatchCallbackKind, string>>;

/** A callback as stored with its job: an enqueue row without its id (chosen when it is enqueued). */
export type StoredCallback = Omit<NewJobRow, 'id' | 'bytes' | 'payloadBin' | 'dependsOn'>;

export interface StoredCallbacks {
  onSuccess?: StoredCallback;
  onFailure?: StoredCallback;
  onComplete?: StoredCallback;
  /** The queue a failed job's copy goes to (the deadLetter option). */
  deadLetter?: string;
}

export type FinishState = 'completed' | 'failed' | 'cancelled';

/** A job to finish: fenced by its claim token when a worker finishes it, by its id alone when an operator cancels it. */
export interface FinishItem {
  id: string;
  token?: string;
  state: FinishState;
  resultJson?: string | null;
  /** Replaces the job's last error (undefined: keep it). */
  errorJson?: string;
  /** The failed attempt to record (a worker's failure). */
  attempt?: { number: number; startedAt: Date | null };
}

/** What a finished job's flow needs from its row. */
interface FinishedRow {
  id: string;
  name: string;
  queue: string;
  state: FinishState;
  flow: number;
  callbacks: StoredCallbacks | null;
  batchId: string | null;
  serialKey: string | null;
}

export interface FlowOutcome<T> {
  value: T;
  /** Queues that have a job due now that was not (to wake their workers after commit). */
  wake: Set<string>;
}

const ROW_COLUMNS = 'id, name, queue, state, flow, callbacks, batch_id, worker_id, serial_key';

// ---------------------------------------------------------------- enqueue

/**
 * Enqueue rows that depend on other jobs, carry callbacks or belong to a batch, in the caller's
 * transaction (or one of the store's). `rows` are in an order where each same-call parent comes
 * before its dependents (the facade sorts them and refuses cycles).
 */
/** A batch made with its jobs (jobs.batch): its id is the batchId of its rows. */
export interface NewBatch {
  id: string;
  callbacks: StoredCallbacks;
}

export function* insertWithFlow(sql: Sql, rows: NewJobRow[], batches: NewBatch[] = []): Steps<FlowOutcome<EnqueueResult[]>> {
  const { d, t } = sql;
  const inCall = new Map(rows.map((r) => [r.id, r]));
  const outside = [...new Set(rows.flatMap((r) => r.dependsOn.filter((p) => !inCall.has(p))))];
  const done = new Set<string>();
  const ended = new Map<string, { name: string; state: string }>();
  // The call's unique and serial keys are locked first, in one order, before any job row or group:
  // cancel and delete take a key before the jobs of its line too, so no two of them wait for each
  // other in a cycle (keys in two orders, or a key after a group, deadlocked).
  const keys = [...new Set(rows.flatMap((r) => [...(r.dedupe !== null ? [r.uniqueKey!] : []), ...(r.serialKey !== null ? [serialLockKey(r.serialKey)] : [])]))];
  for (const key of keys.sort()) yield lockKey(sql, key);
  if (outside.length) {
    const unknown = yield* whereParentsAre(sql, outside, done, ended);
    if (unknown !== undefined) {
      const child = rows.find((r) => r.dependsOn.includes(unknown))!;
      throw new JobValidationError(`job "${child.name}": dependsOn names ${unknown}, which is no job (neither live nor in history)`, 'dependsOn', child.name);
    }
  }
  const results: EnqueueResult[] = [];
  // A row whose refId a live job holds is that job: its same-call dependents wait for that one.
  const holderOf = new Map<string, string>();
  const due = new Set<string>();
  const ranks = yield* lockGroups(sql, rows);
  // Serial keys: each key is locked and its tail read once per call; a later row of the key in
  // this call follows the row before it (already marked as having a dependent), and the key's
  // new tail is written once at the end, under the lock.
  const tails = new Map<string, string>();
  markSerialChains(rows);
  for (const r of rows) {
    if (r.dedupe !== null) {
      const found = yield* dedupe(sql, r);
      if (found) {
        // The job that stands for it may have finished: its same-call dependents then count it done, or are cancelled.
        if (r.flow & FLOW.children) yield* whereParentsAre(sql, [found.id], done, ended);
        holderOf.set(r.id, found.id);
        results.push(found);
        continue;
      }
    }
    if (r.refId !== null) {
      const holder = ((yield read(d, (b) => `SELECT id FROM ${t.jobs}${d.lockHint} WHERE ref_id = ${b.text(r.refId!)}${d.forUpdate}`)) as Outcome).rows[0];
      if (holder) {
        const id = String(holder.id);
        if (r.flow & FLOW.children) yield write(d, (b) => `UPDATE ${t.jobs} SET flow = flow | ${FLOW.children} WHERE id = ${b.id(id)}`);
        holderOf.set(r.id, id);
        results.push({ id, existed: true });
        continue;
      }
    }
    const parents = [...new Set(r.dependsOn.map((p) => holderOf.get(p) ?? p))];
    let before: string | null = null;
    if (r.serialKey !== null) {
      before = tails.has(r.serialKey) ? tails.get(r.serialKey)! : yield* serialTail(sql, r.serialKey, r.id, true);
      tails.set(r.serialKey, r.id);
      // Its parent already: it waits for that one once (a second edge would repeat the key).
      if (before !== null && parents.includes(before)) before = null;
    }
    const rank = r.groupKey === null ? 0 : yield* rankInGroup(sql, ranks, { queue: r.queue, groupKey: r.groupKey, priority: r.priority });
    // A reserved job has one hold more: jobs.commitReserved takes it away.
    const waitingFor = parents.filter((p) => !done.has(p)).length + (before ? 1 : 0) + (r.reserveMs !== null ? 1 : 0);
    yield insertJob(sql, r, waitingFor, rank);
    yield* sideIndexRows(sql, r);
    if (waitingFor === 0 && r.runAt === null && r.delayMs === 0) due.add(r.queue);
    if (parents.length) yield insertEdges(sql, r.id, parents);
    if (before) yield serialEdge(sql, r.id, before);
    results.push(r.reserveMs !== null ? { id: r.id, existed: false, reserved: true } : { id: r.id, existed: false });
  }
  yield* saveGroupRanks(sql, ranks);
  for (const [key, tail] of tails) yield setSerialTail(sql, key, tail);
  for (const batch of batches) {
    // Its size is the jobs written (an item whose refId a live job held is that job, outside the batch).
    const total = rows.filter((r, i) => r.batchId === batch.id && !results[i].existed).length;
    yield write(d, (b) =>
      `INSERT INTO ${t.batches} (id, total, callbacks, created_at) VALUES (${b.text(batch.id)}, ${b.int(total)}, ${b.longText(JSON.stringify(batch.callbacks))}, ${d.now})`);
    // Every item was an existing job: no job of its own will finish it, so it is finished now.
    if (total === 0) for (const q of yield* countInBatch(sql, batch.id, [])) due.add(q);
  }
  // A dependent enqueued after its parent failed or was cancelled is cancelled as the parent's
  // dependents were (the same flow, so its own dependents, callbacks and batch follow).
  if (ended.size) {
    for (const q of yield* cancelDependents(sql, [...ended].map(([id, p]) => ({ id, name: p.name, state: p.state as FinishState })))) due.add(q);
  }
  return { value: results, wake: due };
}

/**
 * Where jobs named as parents are: live ones are marked as having a dependent (the UPDATE's row
 * lock also keeps them from finishing until this commits: their completion then sees it);
 * finished ones go to `done` (completed) or `ended` (failed, cancelled). Reads lock what they
 * read, so that they see the latest committed rows, not the snapshot of a caller's REPEATABLE
 * READ transaction (MySQL's default): a parent finished since the caller's first read looked live
 * there, and its dependent waited forever. Answers an id that is no job, if any.
 */
function* whereParentsAre(sql: Sql, ids: string[], done: Set<string>, ended: Map<string, { name: string; state: string }>): Steps<string | undefined> {
  const { d, t } = sql;
  yield write(d, (b) => `UPDATE ${t.jobs}${d.byKey} SET flow = flow | ${FLOW.children} WHERE id ${b.ids(ids)}`);
  const live = new Set(((yield read(d, (b) => `SELECT id FROM ${t.jobs}${d.lockHint} WHERE id ${b.ids(ids)}${d.forUpdate}`)) as Outcome).rows.map((r) => String(r.id)));
  const gone = ids.filter((id) => !live.has(id));
  if (!gone.length) return undefined;
  const finished = (yield read(d, (b) => `SELECT id, name, state FROM ${t.history}${d.lockHint} WHERE id ${b.ids(gone)}${d.forUpdate}`)) as Outcome;
  for (const r of finished.rows) {
    if (r.state === 'completed') done.add(String(r.id));
    else ended.set(String(r.id), { name: String(r.name), state: String(r.state) });
  }
  return gone.find((id) => !done.has(id) && !ended.has(id));
}

/**
 * Uniqueness and debounce, under the key's lock (an upsert of its row in the keys table: a second
 * enqueue of the same key waits there until this transaction ends, so the checks below stay
 * true until commit). Answers the job that stands for this row, or null to insert it.
 * - unique: a live job with the key in one of the states (created within forMs, when given), else
 *   one in history, newest first;
 * - debounce: the pending job with the key that has not started yet, its payload replaced and its
 *   run time moved to now + ms.
 */
/** Take a key's lock until commit: upsert its row in the keys table (a second taker waits on the row). */
function lockKey({ d, t }: Sql, key: string): Statement {
  return write(d, (b) => d.upsert(t.keys, d.col('key'), [[d.col('key'), b.text(key)], ['touched_at', d.now]], `touched_at = ${d.now}`));
}

/** (Its key is already locked: insertWithFlow locks every key of its call first.) */
function* dedupe(sql: Sql, r: NewJobRow): Steps<EnqueueResult | null> {
  const { d, t } = sql;
  const key = r.uniqueKey!;
  const how = r.dedupe!;
  if (how.kind === 'debounce') {
    const waiting = ((yield read(d, (b) =>
      `SELECT j.id FROM ${jobsWithUniqueKey(sql, t.jobs, b.text(key), d.lockHint)} AND j.state = 'pending' AND j.attempts = 0${d.forUpdate}`)) as Outcome).rows[0];
    if (!waiting) return null;
    const id = String(waiting.id);
    // One still waiting (its serial key's job before it, parents, a reservation) keeps waiting: its release makes it due.
    yield write(d, (b) =>
      `UPDATE ${t.jobs} SET payload = ${b.longText(r.payloadJson)}, payload_bin = ${b.bytes(r.payloadBin)},
         run_at = CASE WHEN parents_left > 0 THEN run_at ELSE ${d.plusMs(d.now, b.bigint(how.ms))} END WHERE id = ${b.id(id)}`);
    return { id, existed: true, replaced: true };
  }
  const live = how.states.filter((s) => s === 'pending' || s === 'running');
  const finished = how.states.filter((s) => s !== 'pending' && s !== 'running');
  const recent = (b: Binder) => (how.forMs === null ? '' : ` AND j.created_at > ${d.plusMs(d.now, b.bigint(-how.forMs))}`);
  if (live.length) {
    // Not a locking read: on MySQL, in a caller's REPEATABLE READ transaction, one over the key's
    // index range takes gap locks, and enqueues of other keys waited for its commit. (Its snapshot
    // may miss a job of the key committed since its first read: README.)
    const found = ((yield read(d, (b) => `SELECT j.id FROM ${jobsWithUniqueKey(sql, t.jobs, b.text(key))} AND j.state ${b.in(live)}${recent(b)}`)) as Outcome).rows[0];
    if (found) return { id: String(found.id), existed: true };
  }
  if (finished.length) {
    const found = ((yield read(d, (b) =>
      `SELECT ${b.top(1)}j.id FROM ${jobsWithUniqueKey(sql, t.history, b.text(key))} AND j.state ${b.in(finished)}${recent(b)} ORDER BY j.created_at DESC${b.limit(1)}`)) as Outcome).rows[0];
    if (found) return { id: String(found.id), existed: true };
  }
  return null;
}

/** One job row as a portable INSERT: waiting (run_at at the end of time) while it has parents left. */
function insertJob(sql: Sql, r: NewJobRow | (StoredCallback & { id: string; payloadBin?: null }), parentsLeft: number, fairRank = 0): Statement {
  const { d, t } = sql;
  return write(d, (b) => {
    // Each value is bound as its placeholder is written (positional placeholders on most databases).
    const row: [string, () => string][] = [
      ['id', () => b.id(r.id)], ['name', () => b.text(r.name)], ['queue', () => b.text(r.queue)], ['state', () => `'pending'`],
      ['payload', () => b.longText(r.payloadJson)], ['payload_bin', () => b.bytes(r.payloadBin ?? null)], ['priority', () => b.int(r.priority)],
      ['max_attempts', () => b.int(r.maxAttempts ?? 25)], ['timeout_ms', () => b.int(r.timeoutMs)], ['backoff', () => b.longText(r.backoffJson)],
      ['run_at', () => (parentsLeft > 0 ? b.time(WAITING_RUN_AT) : r.runAt ? b.time(new Date(r.runAt).getTime()) : d.plusMs(d.now, b.bigint(r.delayMs)))],
      ['created_at', () => d.now], ['ref_id', () => b.text(r.refId)], ['tag', () => b.text(r.tag)], ['batch_id', () => b.text(r.batchId)],
      ['created_by', () => b.text(r.createdBy)], ['meta', () => b.longText(r.metaJson)], ['user_id', () => b.text(r.userId)],
      ['reply_to', () => b.text(r.replyTo)], ['args', () => b.longText(r.argsJson)], ['flow', () => b.int(r.flow)],
      ['trace_context', () => b.text(r.traceContextJson ?? null)],
      ['parents_left', () => b.int(parentsLeft)], ['callbacks', () => b.longText(r.callbacksJson)], ['callback_batch', () => b.text(r.callbackBatch)],
      ['unique_key', () => b.text(r.uniqueKey ?? null)], ['serial_key', () => b.text(r.serialKey ?? null)],
      ['group_key', () => b.text(r.groupKey ?? null)], ['fair_rank', () => b.bigint(fairRank)],
      ['reserved_until', () => (r.reserveMs ? d.plusMs(d.now, b.bigint(r.reserveMs)) : d.nullAs('time'))],
    ];
    const values = row.map(([, v]) => v()).join(', ');
    return `INSERT INTO ${t.jobs} (${row.map(([c]) => c).join(', ')}) VALUES (${values})`;
  });
}

/** A callback's edge to the job it reports on: position -1, so that retrying it never waits for (or is refused over) that job. */
export const CALLBACK_EDGE = -1;

/** A serial key's edge to the job before it: position -2, released when that job finishes in any state. */
export const SERIAL_EDGE = -2;

function serialEdge(sql: Sql, child: string, before: string): Statement {
  const { d, t } = sql;
  return write(d, (b) => `INSERT INTO ${t.deps} (child_id, parent_id, position) VALUES (${b.id(child)}, ${b.id(before)}, ${b.int(SERIAL_EDGE)})`);
}

/**
 * A serial key's last job, under the key's lock (the upsert of its keys row) until commit: the job
 * `id` waits for it when it is still live. It is marked as having a dependent, so that its
 * completion, fenced on flow, takes the flow that releases the new one. The caller then writes
 * the key's new tail (keys.tail_id).
 */
function* serialTail(sql: Sql, serialKey: string, id: string, keyLocked = false): Steps<string | null> {
  const { d, t } = sql;
  const key = serialLockKey(serialKey);
  // (insertWithFlow locked its keys first: not upserted twice on the enqueue path.)
  if (!keyLocked) yield lockKey(sql, key);
  const tail = ((yield read(d, (b) => `SELECT tail_id FROM ${t.keys} WHERE ${d.col('key')} = ${b.text(key)}`)) as Outcome).rows[0]?.tail_id;
  if (tail == null || String(tail) === id) return null;
  const previous = String(tail);
  yield write(d, (b) => `UPDATE ${t.jobs} SET flow = flow | ${FLOW.children} WHERE id = ${b.id(previous)}`);
  // A locking read: the latest committed row, not a caller's REPEATABLE READ snapshot (see whereParentsAre).
  const live = ((yield read(d, (b) => `SELECT id FROM ${t.jobs}${d.lockHint} WHERE id = ${b.id(previous)}${d.forUpdate}`)) as Outcome).rows.length > 0;
  return live ? previous : null;
}

/** Join a serial key as its new tail: the job before it when still live (see serialTail). */
function* joinSerialKey(sql: Sql, serialKey: string, id: string): Steps<string | null> {
  const before = yield* serialTail(sql, serialKey, id);
  yield setSerialTail(sql, serialKey, id);
  return before;
}

function setSerialTail({ d, t }: Sql, serialKey: string, id: string): Statement {
  return write(d, (b) => `UPDATE ${t.keys} SET tail_id = ${b.id(id)} WHERE ${d.col('key')} = ${b.text(serialLockKey(serialKey))}`);
}

/** A serial key's row in the keys table (beside unique and debounce keys, which are prefixed by their kind too). */
const serialLockKey = (serialKey: string): string => `s:${serialKey}`;

/**
 * Rows of a call followed by a later row of their serial key are marked as having a dependent
 * before they are written (a row that turns out to be an existing job leaves a harmless mark:
 * its completion finds no dependent to release).
 */
function markSerialChains(rows: NewJobRow[]): void {
  const last = new Map<string, NewJobRow>();
  for (const r of rows) {
    if (r.serialKey === null) continue;
    const before = last.get(r.serialKey);
    if (before) before.flow |= FLOW.children;
    last.set(r.serialKey, r);
  }
}

function insertEdges(sql: Sql, child: string, parents: string[], callback = false): Statement {
  const { d, t } = sql;
  return write(d, (b) =>
    `INSERT INTO ${t.deps} (child_id, parent_id, position) VALUES ${parents.map((p, i) => `(${b.id(child)}, ${b.id(p)}, ${b.int(callback ? CALLBACK_EDGE : i)})`).join(', ')}`);
}

// ---------------------------------------------------------------- finish

/**
 * Finish jobs (fenced by token when given) and run their flow, in one transaction. Answers the
 * ids it finished: one whose row is gone or runs under another token is left alone.
 */
export function* finishJobs(sql: Sql, items: FinishItem[]): Steps<FlowOutcome<Set<string>>> {
  const applied = new Set<string>();
  const finished: FinishedRow[] = [];
  // A worker's completions (the common case: serial keys, dependents, callbacks, batches) move
  // together, in three statements whatever their number; anything else one by one.
  let together = items.filter(isOwnedCompletion);
  let oneByOne = items.filter((i) => !isOwnedCompletion(i));
  if (together.length === 1) [together, oneByOne] = [[], items];
  // (At most 100 a statement: SQL Server takes 2,100 parameters.)
  if (together.length) for (let i = 0; i < together.length; i += 100) finished.push(...(yield* moveCompletedToHistory(sql, together.slice(i, i + 100))));
  for (const item of oneByOne) {
    const row = yield* moveToHistory(sql, item);
    if (row) finished.push(row);
  }
  for (const row of finished) applied.add(row.id);
  const wake = yield* afterFinish(sql, finished);
  return { value: applied, wake };
}

function isOwnedCompletion(item: FinishItem): item is FinishItem & { token: string } {
  return item.state === 'completed' && item.token !== undefined && item.errorJson === undefined && item.attempt === undefined;
}

/** Owned running jobs completed at once: lock those still owned, copy them to history with their results, delete them. */
function* moveCompletedToHistory(sql: Sql, items: (FinishItem & { token: string })[]): Steps<FinishedRow[]> {
  const { d, t } = sql;
  const locked = ((yield read(d, (b) => {
    const owned = items.map((i) => `(id = ${b.id(i.id)} AND token = ${b.id(i.token)})`).join(' OR ');
    return `SELECT ${ROW_COLUMNS} FROM ${t.jobs}${d.byKey}${d.lockHint} WHERE (${owned}) AND state = 'running'${d.forUpdate}`;
  })) as Outcome).rows;
  if (!locked.length) return [];
  const ids = locked.map((r) => String(r.id));
  yield* moveLockedToHistory(sql, ids, 'completed', 'result', new Map(items.map((i) => [i.id, i.resultJson ?? null])));
  return locked.map((row) => finishedRow(sql, row, 'completed'));
}

/**
 * Rows this transaction locked, to history in `state`, each with its own JSON in `column` (the
 * other NULL), then out of the jobs table: two statements for any number of rows.
 */
function* moveLockedToHistory(sql: Sql, ids: string[], state: FinishState, column: 'result' | 'error', jsonOf: Map<string, string | null>): Steps<void> {
  const { d, t } = sql;
  yield write(d, (b) => {
    const given = ids.filter((id) => jsonOf.get(id) != null);
    // Placeholders in text order: the CASE's (in the select list either way), then the id list.
    const value = given.length
      ? `CASE ${given.map((id) => `WHEN id = ${b.id(id)} THEN ${d.json(b.longText(jsonOf.get(id)!))}`).join(' ')} ELSE ${d.nullAs('json')} END`
      : d.nullAs('json');
    const [error, result] = column === 'error' ? [value, d.nullAs('json')] : [d.nullAs('json'), value];
    return `INSERT INTO ${t.history} (${sharedColumns(d.col)}, state, finished_at, result)
      SELECT ${sharedColumns(d.col, { error })}, '${state}', ${d.now}, ${result} FROM ${t.jobs} WHERE id ${b.ids(ids)}`;
  });
  yield write(d, (b) => `${d.deleteByKey(t.jobs)} WHERE id ${b.ids(ids)}`);
}

/** Lock the job's row (owned by the token, when given), copy it to history as finished, delete it, and record a failed attempt. */
function* moveToHistory(sql: Sql, item: FinishItem): Steps<FinishedRow | null> {
  const { d, t } = sql;
  const locked = (yield read(d, (b) => {
    const id = b.id(item.id); // bound first: its placeholder comes first
    const fence = item.token === undefined ? '' : ` AND token = ${b.id(item.token)} AND state = 'running'`;
    return `SELECT ${ROW_COLUMNS} FROM ${t.jobs}${d.lockHint} WHERE id = ${id}${fence}${d.forUpdate}`;
  })) as Outcome;
  const row = locked.rows[0];
  if (!row) return null;
  yield write(d, (b) => {
    const error = item.errorJson === undefined ? (item.state === 'completed' ? d.nullAs('json') : d.col('error')) : d.json(b.longText(item.errorJson));
    const result = item.resultJson == null ? d.nullAs('json') : d.json(b.longText(item.resultJson));
    return `INSERT INTO ${t.history} (${sharedColumns(d.col)}, state, finished_at, result)
      SELECT ${sharedColumns(d.col, { error })}, '${item.state}', ${d.now}, ${result} FROM ${t.jobs} WHERE id = ${b.id(item.id)}`;
  });
  yield write(d, (b) => `DELETE FROM ${t.jobs} WHERE id = ${b.id(item.id)}`);
  if (item.attempt && item.errorJson !== undefined) {
    const { number, startedAt } = item.attempt;
    yield write(d, (b) => `DELETE FROM ${t.attempts} WHERE job_id = ${b.id(item.id)} AND attempt = ${b.int(number)}`);
    yield write(d, (b) =>
      `INSERT INTO ${t.attempts} (job_id, attempt, worker_id, started_at, finished_at, error)
       VALUES (${b.id(item.id)}, ${b.int(number)}, ${b.text(row.worker_id == null ? null : String(row.worker_id))}, ${b.time(startedAt?.getTime() ?? null)}, ${d.now}, ${b.longText(item.errorJson!)})`);
  }
  return finishedRow(sql, row, item.state);
}

function finishedRow(sql: Sql, row: Record<string, unknown>, state: FinishState): FinishedRow {
  return {
    id: String(row.id),
    name: String(row.name),
    queue: String(row.queue),
    state,
    flow: Number(row.flow),
    callbacks: (sql.d.codec.json(row.callbacks) as StoredCallbacks | null) ?? null,
    batchId: row.batch_id == null ? null : String(row.batch_id),
    serialKey: row.serial_key == null ? null : String(row.serial_key),
  };
}

/**
 * Pending jobs deleted (rows as the delete read them): their workflow goes on as if they were
 * cancelled. `before`: each one's serial key's job before it, read before its edges went.
 */
export function* afterRemoved(sql: Sql, rows: Record<string, unknown>[], before: Map<string, string>): Steps<Set<string>> {
  return yield* afterFinish(sql, rows.map((r) => finishedRow(sql, r, 'cancelled')), before);
}

/**
 * Before a cancel or delete locks its jobs: the rows it will need to hand their serial keys over,
 * locked in the order an enqueue and a completion take them (the key's row, then the job before,
 * then the job), so that neither waits for the other in a cycle. Answers each job's serial key's
 * job before it (by the edges, which a delete removes).
 */
export function* lockSerialLines(sql: Sql, ids: string[]): Steps<Map<string, string>> {
  const { d, t } = sql;
  const keyed = ((yield read(d, (b) => `SELECT id, serial_key FROM ${t.jobs}${d.byKey} WHERE id ${b.ids(ids)} AND serial_key IS NOT NULL`)) as Outcome).rows;
  if (!keyed.length) return new Map();
  for (const key of [...new Set(keyed.map((r) => serialLockKey(String(r.serial_key))))].sort()) yield lockKey(sql, key);
  const before = yield* serialPredecessors(sql, keyed.map((r) => String(r.id)));
  // One at a time, earliest in its line first, as a completion locks a job and then the one after
  // it (id order is not line order once a retried job rejoined its line behind newer ones).
  for (const id of inLineOrder(before)) yield read(d, (b) => `SELECT id FROM ${t.jobs}${d.lockHint} WHERE id = ${b.id(id)}${d.forUpdate}`);
  return before;
}

/** The jobs `before` names as coming before others, each after the jobs before it (by the same edges). */
function inLineOrder(before: Map<string, string>): string[] {
  const depth = (id: string): number => {
    let n = 0;
    for (let at = before.get(id); at !== undefined && n <= before.size; at = before.get(at)) n++;
    return n;
  };
  return [...new Set(before.values())].sort((a, b) => depth(a) - depth(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** A finished job's serial key's row, locked before it moves back to its line: the order cancel, delete and enqueue take a key and its jobs in. */
export function* lockFinishedSerialKey(sql: Sql, id: string): Steps<void> {
  const { d, t } = sql;
  const row = ((yield read(d, (b) => `SELECT serial_key FROM ${t.history} WHERE id = ${b.id(id)}`)) as Outcome).rows[0];
  if (row?.serial_key != null) yield lockKey(sql, serialLockKey(String(row.serial_key)));
}

/** Each job's serial key's job before it (its serial edge), by job id. */
function* serialPredecessors(sql: Sql, ids: string[]): Steps<Map<string, string>> {
  const { d, t } = sql;
  const edges = ((yield read(d, (b) => `SELECT child_id, parent_id FROM ${t.deps} WHERE child_id ${b.ids(ids)} AND position = ${SERIAL_EDGE}`)) as Outcome).rows;
  return new Map(edges.map((e) => [String(e.child_id), String(e.parent_id)]));
}

/**
 * Jobs of serial keys that ended (cancelled, deleted, failed) while the job before them still
 * lives: they never ran, so the line does not move past them. Their next jobs wait for that job
 * instead (the edge re-pointed; one that already depends on it keeps that edge, and its serial
 * edge is released), and a key whose last job one was gets that job back as its last. Releasing
 * their next jobs instead started them beside the job still running.
 */
function* handOverSerialKeys(sql: Sql, ended: FinishedRow[], known?: Map<string, string>): Steps<void> {
  const { d, t } = sql;
  const keyed = ended.filter((r) => r.serialKey !== null);
  if (!keyed.length) return;
  const before = known ?? (yield* serialPredecessors(sql, keyed.map((r) => r.id)));
  // The job before each, past jobs of the line that ended in this round too (a delete of several, a cascade).
  const endedHere = new Set(keyed.map((r) => r.id));
  const liveBefore = new Map<string, string>();
  for (const r of keyed) {
    let previous = before.get(r.id);
    for (let hops = 0; previous !== undefined && endedHere.has(previous) && hops < keyed.length; hops++) previous = before.get(previous);
    if (previous !== undefined && !endedHere.has(previous)) liveBefore.set(r.id, previous);
  }
  if (!liveBefore.size) return;
  const wanted = [...new Set(liveBefore.values())].sort();
  const live = new Set(((yield read(d, (b) => `SELECT id FROM ${t.jobs}${d.byKey}${d.lockHint} WHERE id ${b.ids(wanted)}${d.forUpdate}`)) as Outcome).rows.map((r) => String(r.id)));
  for (const r of keyed) {
    const previous = liveBefore.get(r.id);
    if (previous === undefined || !live.has(previous)) continue;
    const next = ((yield read(d, (b) => `SELECT child_id FROM ${t.deps} WHERE parent_id = ${b.id(r.id)} AND position = ${SERIAL_EDGE}`)) as Outcome).rows.map((e) => String(e.child_id));
    if (next.length) {
      const already = new Set(((yield read(d, (b) => `SELECT child_id FROM ${t.deps} WHERE parent_id = ${b.id(previous)} AND child_id ${b.ids(next)}`)) as Outcome).rows.map((e) => String(e.child_id)));
      const moving = next.filter((c) => !already.has(c));
      if (moving.length) {
        yield write(d, (b) => `UPDATE ${t.deps} SET parent_id = ${b.id(previous)} WHERE parent_id = ${b.id(r.id)} AND position = ${SERIAL_EDGE} AND child_id ${b.ids(moving)}`);
      }
    }
    yield write(d, (b) => `UPDATE ${t.keys} SET tail_id = ${b.id(previous)} WHERE ${d.col('key')} = ${b.text(serialLockKey(r.serialKey!))} AND tail_id = ${b.id(r.id)}`);
  }
}

/** What finishing these jobs sets off, round after round (a cancelled dependent is finished in turn). */
function* afterFinish(sql: Sql, finished: FinishedRow[], before?: Map<string, string>): Steps<Set<string>> {
  const wake = new Set<string>();
  let round = finished;
  while (round.length) {
    yield* handOverSerialKeys(sql, round.filter((r) => r.state !== 'completed'), round === finished ? before : undefined);
    // Completed: every dependent has one parent fewer. Failed or cancelled: only the next job of its serial key.
    const parents = round.filter((r) => r.flow & FLOW.children);
    const completed = parents.filter((r) => r.state === 'completed').map((r) => r.id);
    const ended = parents.filter((r) => r.state !== 'completed');
    if (completed.length) for (const q of yield* releaseDependents(sql, completed, 'all')) wake.add(q);
    if (ended.length) for (const q of yield* releaseDependents(sql, ended.map((r) => r.id), 'serial')) wake.add(q);
    const next = ended.length ? yield* cancelWaiting(sql, ended) : [];
    for (const r of round) {
      if (!(r.flow & FLOW.callbacks) || !r.callbacks) continue;
      const spec = r.state === 'completed' ? r.callbacks.onSuccess : r.callbacks.onFailure;
      if (spec) wake.add((yield* enqueueCallback(sql, spec, { parent: r.id })).queue);
      if (r.state === 'failed' && r.callbacks.deadLetter) wake.add(yield* enqueueDeadLetter(sql, r.id, r.callbacks.deadLetter));
    }
    const batches = new Map<string, FinishedRow[]>();
    for (const r of round) if (r.flow & FLOW.batch && r.batchId !== null) batches.set(r.batchId, [...(batches.get(r.batchId) ?? []), r]);
    for (const [id, rows] of batches) for (const q of yield* countInBatch(sql, id, rows)) wake.add(q);
    round = next;
  }
  return wake;
}

/**
 * Finished parents: each waiting dependent they release (all of them when they completed, only
 * their serial keys' next jobs otherwise) has one parent fewer per edge; one with none left is
 * due now. A handful of statements for any number of parents. Answers the due jobs' queues.
 */
function* releaseDependents(sql: Sql, parentIds: string[], which: 'all' | 'serial'): Steps<string[]> {
  const { d, t } = sql;
  const edges = which === 'all' ? `position <> ${CALLBACK_EDGE}` : `position = ${SERIAL_EDGE}`;
  // How many of these parents each dependent waits for (an edge is unique per child and parent).
  // The edges cannot change meanwhile: a dependent enqueued now waits for the parents' row locks.
  const released = new Map<string, number>();
  const edgeRows = ((yield read(d, (b) => `SELECT child_id FROM ${t.deps} WHERE parent_id ${b.ids(parentIds)} AND ${edges}`)) as Outcome).rows;
  for (const e of edgeRows) released.set(String(e.child_id), (released.get(String(e.child_id)) ?? 0) + 1);
  if (!released.size) return [];
  const waiting = ((yield read(d, (b) =>
    `SELECT id, queue, parents_left FROM ${t.jobs}${d.byKey}${d.lockHint}
     WHERE id ${b.ids([...released.keys()])} AND state = 'pending' AND parents_left > 0${d.forUpdate}`)) as Outcome).rows;
  if (!waiting.length) return [];
  const due = waiting.filter((w) => (released.get(String(w.id)) ?? 0) >= Number(w.parents_left));
  if (due.length) yield write(d, (b) => `UPDATE ${t.jobs}${d.byKey} SET parents_left = 0, run_at = ${d.now} WHERE id ${b.ids(due.map((w) => String(w.id)))}`);
  // The others, grouped by how many parents fewer they wait for (almost always one group: 1).
  const fewer = new Map<number, string[]>();
  for (const w of waiting) {
    const n = released.get(String(w.id)) ?? 0;
    if (n > 0 && n < Number(w.parents_left)) fewer.set(n, [...(fewer.get(n) ?? []), String(w.id)]);
  }
  for (const [n, ids] of fewer) yield write(d, (b) => `UPDATE ${t.jobs}${d.byKey} SET parents_left = parents_left - ${b.int(n)} WHERE id ${b.ids(ids)}`);
  return due.map((w) => String(w.queue));
}

/**
 * Parents that failed or were cancelled: their waiting dependents are cancelled, each naming its
 * parent, and theirs in turn, level by level: each level's edges are read from rows already
 * locked (a dependent enqueued meanwhile waits for that lock, then sees its parent ended), and
 * the level's waiting jobs are locked at once. Then all of them move to history a chunk at a
 * time: a few statements per level and per chunk, not per job (a 2,000-link chain took 5 s on
 * PostgreSQL one job at a time).
 */
function* cancelWaiting(sql: Sql, parents: Pick<FinishedRow, 'id' | 'name' | 'state'>[]): Steps<FinishedRow[]> {
  const { d, t } = sql;
  const cancelled: { row: Record<string, unknown>; errorJson: string }[] = [];
  const seen = new Set<string>();
  let level: Pick<FinishedRow, 'id' | 'name' | 'state'>[] = parents;
  while (level.length) {
    const byId = new Map(level.map((p) => [p.id, p]));
    const edges = ((yield read(d, (b) => `SELECT child_id, parent_id FROM ${t.deps} WHERE parent_id ${b.ids([...byId.keys()])} AND position >= 0`)) as Outcome).rows;
    // Each dependent names the first of its parents here, in the parents' order.
    const childrenOf = new Map<string, string[]>();
    for (const e of edges) {
      const siblings = childrenOf.get(String(e.parent_id));
      if (siblings) siblings.push(String(e.child_id));
      else childrenOf.set(String(e.parent_id), [String(e.child_id)]);
    }
    const parentOf = new Map<string, Pick<FinishedRow, 'id' | 'name' | 'state'>>();
    for (const parent of level) {
      for (const child of childrenOf.get(parent.id) ?? []) if (!seen.has(child) && !parentOf.has(child)) parentOf.set(child, parent);
    }
    if (!parentOf.size) break;
    const locked = ((yield read(d, (b) =>
      `SELECT ${ROW_COLUMNS} FROM ${t.jobs}${d.byKey}${d.lockHint}
       WHERE id ${b.ids([...parentOf.keys()].sort())} AND state = 'pending' AND parents_left > 0${d.forUpdate}`)) as Outcome).rows;
    level = [];
    for (const row of locked) {
      const id = String(row.id);
      const parent = parentOf.get(id)!;
      seen.add(id);
      const error: JobError & { parentId: string } = { name: 'ParentEnded', message: `cancelled: parent job ${parent.id} (${parent.name}) ${parent.state}`, parentId: parent.id };
      cancelled.push({ row, errorJson: JSON.stringify(error) });
      level.push({ id, name: String(row.name), state: 'cancelled' });
    }
  }
  for (let i = 0; i < cancelled.length; i += CANCEL_CHUNK) {
    const chunk = cancelled.slice(i, i + CANCEL_CHUNK);
    yield* moveLockedToHistory(sql, chunk.map(({ row }) => String(row.id)), 'cancelled', 'error', new Map(chunk.map(({ row, errorJson }) => [String(row.id), errorJson])));
  }
  return cancelled.map(({ row }) => finishedRow(sql, row, 'cancelled'));
}

/** Jobs moved to history as cancelled per statement (each binds its error: SQL Server takes 2,100 parameters). */
const CANCEL_CHUNK = 500;


/** Cancel the waiting dependents of parents that had already ended (a dependent enqueued late), and what follows from that. */
function* cancelDependents(sql: Sql, parents: Pick<FinishedRow, 'id' | 'name' | 'state'>[]): Steps<Set<string>> {
  return yield* afterFinish(sql, yield* cancelWaiting(sql, parents));
}

/** Enqueue a stored callback now, as a dependent of `parent` (already done) or as the callback of a batch. Answers its id and queue. */
function* enqueueCallback(sql: Sql, spec: StoredCallback, of: { parent?: string; batch?: string }): Steps<{ id: string; queue: string }> {
  const id = uuidv7();
  // Its own callbacks (and dead letter) as stored with it; its parent is the job that set it off.
  const flow = (spec.flow & FLOW.callbacks) | (of.parent !== undefined ? FLOW.parents : 0);
  const ranks = yield* lockGroups(sql, [spec]);
  const rank = spec.groupKey ? yield* rankInGroup(sql, ranks, { queue: spec.queue, groupKey: spec.groupKey, priority: spec.priority }) : 0;
  yield* saveGroupRanks(sql, ranks);
  yield insertJob(sql, { ...spec, id, flow, callbackBatch: of.batch ?? null, refId: null }, 0, rank);
  if (of.parent !== undefined) yield insertEdges(sql, id, [of.parent], true);
  return { id, queue: spec.queue };
}

/**
 * A failed job's dead-letter copy, made from its history row: same name, payload and options, in
 * `queue`, due now, with the failed job as its parent (ctx.deadLetterOf). It carries no callbacks
 * (so no dead letter of its own: no loops), no refId, unique key or batch. Answers its queue.
 */
function* enqueueDeadLetter(sql: Sql, failedId: string, queue: string): Steps<string> {
  const { d, t } = sql;
  const id = uuidv7();
  const copied = ['name', 'payload', 'payload_bin', 'priority', 'max_attempts', 'timeout_ms', 'backoff', 'tag', 'created_by', 'meta', 'user_id', 'reply_to', 'args', 'trace_context'];
  yield write(d, (b) => {
    const newId = b.id(id);
    const toQueue = b.text(queue);
    return `INSERT INTO ${t.jobs} (id, queue, state, run_at, created_at, flow, ${copied.join(', ')})
      SELECT ${newId}, ${toQueue}, 'pending', ${d.now}, ${d.now}, ${FLOW.parents | FLOW.deadLetter}, ${copied.join(', ')}
      FROM ${t.history} WHERE id = ${b.id(failedId)}`;
  });
  yield insertEdges(sql, id, [failedId], true);
  return queue;
}

/**
 * Count finished jobs in their batch, under the batch row's lock (the UPDATE takes it): the
 * transaction that sees the count reach the total enqueues each callback not fired yet whose
 * condition holds, marks it fired and records the job it enqueued (callback_jobs, for the
 * admin's batch page and batchStatus). Answers the callbacks' queues.
 */
function* countInBatch(sql: Sql, batchId: string, rows: FinishedRow[]): Steps<string[]> {
  const { d, t } = sql;
  const failed = rows.filter((r) => r.state !== 'completed').length;
  yield write(d, (b) => `UPDATE ${t.batches} SET finished = finished + ${b.int(rows.length)}, failed = failed + ${b.int(failed)} WHERE id = ${b.text(batchId)}`);
  const batch = ((yield read(d, (b) => `SELECT total, finished, failed, callbacks, fired, callback_jobs FROM ${t.batches} WHERE id = ${b.text(batchId)}`)) as Outcome).rows[0];
  if (!batch || Number(batch.finished) < Number(batch.total)) return [];
  const callbacks = (sql.d.codec.json(batch.callbacks) as StoredCallbacks | null) ?? {};
  const enqueued = (sql.d.codec.json(batch.callback_jobs) as BatchCallbackJobs | null) ?? {};
  const anyFailed = Number(batch.failed) > 0;
  let fired = Number(batch.fired);
  const queues: string[] = [];
  for (const kind of ['onComplete', 'onSuccess', 'onFailure'] as BatchCallbackKind[]) {
    const spec = callbacks[kind];
    if (!spec || fired & FIRED[kind]) continue;
    if ((kind === 'onSuccess' && anyFailed) || (kind === 'onFailure' && !anyFailed)) continue;
    const job = yield* enqueueCallback(sql, spec, { batch: batchId });
    queues.push(job.queue);
    enqueued[kind] = job.id;
    fired |= FIRED[kind];
  }
  yield write(d, (b) => {
    const set = [`fired = ${b.int(fired)}`]; // bound in the order the text reads (positional placeholders)
    if (queues.length) set.push(`callback_jobs = ${b.longText(JSON.stringify(enqueued))}`);
    return `UPDATE ${t.batches} SET ${set.join(', ')}, finished_at = ${d.now} WHERE id = ${b.text(batchId)}`;
  });
  return queues;
}

// ---------------------------------------------------------------- retry

/**
 * A finished job is live again (an operator's retry, in the same transaction): a dependent waits
 * again for its parents that are live, and is refused while one has failed or was cancelled; a
 * batch job is counted out of its batch's finished jobs (its callbacks fire again only if not fired).
 */
export function* reopenFlow(sql: Sql, id: string, previous: { state: string; flow: number; batchId: string | null; serialKey: string | null }): Steps<void> {
  const { d, t } = sql;
  if (previous.flow & FLOW.parents) {
    const parents = ((yield read(d, (b) =>
      `SELECT dp.parent_id, h.state AS finished_state, h.name, j.id AS live_id FROM ${t.deps} dp
       LEFT JOIN ${t.history} h ON h.id = dp.parent_id LEFT JOIN ${t.jobs} j ON j.id = dp.parent_id
       WHERE dp.child_id = ${b.id(id)} AND dp.position >= 0 ORDER BY dp.position`)) as Outcome).rows;
    const ended = parents.find((p) => p.live_id == null && p.finished_state !== 'completed' && p.finished_state != null);
    if (ended) {
      throw new Error(`cannot retry job ${id}: its parent ${String(ended.parent_id)} (${String(ended.name)}) ${String(ended.finished_state)}; retry the parent first`);
    }
    const left = parents.filter((p) => p.live_id != null).length;
    if (left > 0) yield write(d, (b) => `UPDATE ${t.jobs} SET parents_left = ${b.int(left)}, run_at = ${b.time(WAITING_RUN_AT)} WHERE id = ${b.id(id)}`);
  }
  if (previous.flow & FLOW.batch && previous.batchId !== null) {
    const failed = previous.state === 'completed' ? 0 : 1;
    yield write(d, (b) => `UPDATE ${t.batches} SET finished = finished - 1, failed = failed - ${b.int(failed)}, finished_at = NULL WHERE id = ${b.text(previous.batchId!)}`);
  }
  if (previous.serialKey !== null) {
    // Back at the end of its key's line: it waits for the key's tail, and becomes it.
    // The serial edges from the jobs after it in its old place go (released when it finished): a
    // hand-over would otherwise point one at it again while it waits behind them, each waiting
    // for the other.
    yield write(d, (b) => `DELETE FROM ${t.deps} WHERE parent_id = ${b.id(id)} AND position = ${SERIAL_EDGE}`);
    const before = yield* joinSerialKey(sql, previous.serialKey, id);
    if (before) {
      yield write(d, (b) => `DELETE FROM ${t.deps} WHERE child_id = ${b.id(id)} AND position = ${SERIAL_EDGE}`);
      yield serialEdge(sql, id, before);
      yield write(d, (b) => `UPDATE ${t.jobs} SET parents_left = parents_left + 1, run_at = ${b.time(WAITING_RUN_AT)} WHERE id = ${b.id(id)}`);
    }
  }
}

// ---------------------------------------------------------------- two-phase commit

/**
 * Commit reserved jobs: each loses its reservation's hold, and one with no other hold left is due
 * at its enqueue time (its FIFO place). Answers the ids committed (a job not reserved, or gone, is not).
 */
export function* commitReserved(sql: Sql, ids: string[]): Steps<FlowOutcome<string[]>> {
  const { d, t } = sql;
  // Single-word column names: in a slonik caller's transaction the rows pass the app's row
  // interceptors, and a camelCase one would turn parents_left into parentsLeft.
  const held = ((yield read(d, (b) =>
    `SELECT id, queue, parents_left AS holds FROM ${t.jobs}${d.byKey}${d.lockHint} WHERE id ${b.ids(ids)} AND reserved_until IS NOT NULL${d.forUpdate}`)) as Outcome).rows;
  const wake = new Set<string>();
  for (const r of held) {
    const last = Number(r.holds) <= 1;
    yield write(d, (b) =>
      last
        ? `UPDATE ${t.jobs} SET reserved_until = NULL, parents_left = 0, run_at = created_at WHERE id = ${b.id(String(r.id))}`
        : `UPDATE ${t.jobs} SET reserved_until = NULL, parents_left = parents_left - 1 WHERE id = ${b.id(String(r.id))}`);
    if (last) wake.add(String(r.queue));
  }
  const committed = held.map((r) => String(r.id));
  if (committed.length) yield* reservationForget(sql, committed);
  return { value: committed, wake };
}

/** Reserved jobs whose reservation ran out (the leader cancels them), oldest first. */
export function reservationsExpired(sql: Sql, limit: number): Statement {
  return read(sql.d, (b) => expiredReservations(sql, b, limit));
}

// ---------------------------------------------------------------- reads

/** A job's parents in dependsOn order, with their outcome where they finished. */
export function jobParents({ d, t }: Sql, id: string): Statement {
  return read(d, (b) =>
    `SELECT dp.parent_id, dp.position, COALESCE(h.name, j.name) AS name, COALESCE(h.state, j.state) AS state, h.result, h.error
     FROM ${t.deps} dp LEFT JOIN ${t.history} h ON h.id = dp.parent_id LEFT JOIN ${t.jobs} j ON j.id = dp.parent_id
     WHERE dp.child_id = ${b.id(id)} AND dp.position <> ${SERIAL_EDGE} ORDER BY dp.position`);
}

/** The jobs that depend on a job. */
export function jobDependents({ d, t }: Sql, id: string): Statement {
  return read(d, (b) =>
    `SELECT dp.child_id, dp.position, COALESCE(h.name, j.name) AS name, COALESCE(h.state, j.state) AS state, j.parents_left, h.result, h.error
     FROM ${t.deps} dp LEFT JOIN ${t.history} h ON h.id = dp.child_id LEFT JOIN ${t.jobs} j ON j.id = dp.child_id
     WHERE dp.parent_id = ${b.id(id)} ORDER BY dp.child_id`);
}

/** A batch's jobs counted by state: live ones (by jobs_batch) and finished ones (by history_batch). */
export function batchCounts({ d, t }: Sql, batchId: string): Statement {
  return read(d, (b) =>
    `SELECT state, COUNT(*) AS n FROM ${t.jobs} WHERE batch_id = ${b.text(batchId)} GROUP BY state
     UNION ALL SELECT state, COUNT(*) AS n FROM ${t.history} WHERE batch_id = ${b.text(batchId)} GROUP BY state`);
}

/** A batch made by jobs.batch: its size, counts and callbacks. */
export function batchRow({ d, t }: Sql, batchId: string): Statement {
  return read(d, (b) => `SELECT id, total, finished, failed, callbacks, fired, callback_jobs, created_at, finished_at FROM ${t.batches} WHERE id = ${b.text(batchId)}`);
}
