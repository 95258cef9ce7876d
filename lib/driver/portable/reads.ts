/**
 * Reads for the facade, the CLI and the admin: one statement on every database. Where a planner
 * needs to be told which index serves a read (SQLite, MySQL), the dialect's useIndex() says so;
 * the live half of a union with history gets typed NULLs for the columns only history has.
 */
import { TERMINAL_STATES, type JobState, type ListFilter } from '../../model.ts';
import { listLimit, statesByTable } from '../sql.ts';
import { CALLBACK_EDGE, FLOW } from './flow.ts';
import { selectColumns as columns, type SqlDialect } from './dialect.ts';
import type { Sql } from './sql.ts';
import { read, type Binder, type Statement } from './statement.ts';
import { isReserved } from './side-index.ts';

/** The columns of a job the list shows (with PAYLOAD only when asked). */
const SUMMARY = [
  'id', 'name', 'queue', 'state', 'priority', 'attempts', 'max_attempts', 'timeout_ms', 'run_at', 'created_at', 'started_at',
  'ref_id', 'tag', 'batch_id', 'created_by', 'meta', 'progress', 'progress_message', 'checkpoint', 'error', 'worker_id', 'user_id', 'reply_to', 'args', 'callback_batch', 'callbacks',
  'serial_key', 'unique_key', 'group_key',
];
const PAYLOAD = ['payload', 'payload_bin'];
/** Every column of a job both tables have. */
const RECORD = [...SUMMARY, ...PAYLOAD, 'backoff'];

/**
 * The job a dead-letter copy was made from (its one callback edge), or NULL, read from `table`'s
 * row: a copy is told apart from an onSuccess / onFailure callback, whose edge is the same kind,
 * by its flow bit. The edge stays when the original is pruned (it is deleted with the copy).
 */
export function deadLetterOf({ t }: Sql, table: string): string {
  return `CASE WHEN (${table}.flow & ${FLOW.deadLetter}) <> 0 THEN
    (SELECT dl.parent_id FROM ${t.deps} dl WHERE dl.child_id = ${table}.id AND dl.position = ${CALLBACK_EDGE}) END`;
}

export interface JobId {
  id: string;
}

/** One job, live or finished (an id is in one table at a time: the move to history is one transaction). */
export function jobGet(sql: Sql, k: JobId): Statement {
  const { d, t } = sql;
  const cols = (table: string) => `${columns(d, RECORD)}, ${deadLetterOf(sql, table)} AS dead_letter_of`;
  return read(d, (b) =>
    `SELECT ${cols(t.jobs)}, ${d.nullAs('time')} AS finished_at, ${d.nullAs('json')} AS result, parents_left, reserved_until FROM ${t.jobs} WHERE id = ${b.id(k.id)}
     UNION ALL
     SELECT ${cols(t.history)}, finished_at, result, 0 AS parents_left, ${d.nullAs('time')} AS reserved_until FROM ${t.history} WHERE id = ${b.id(k.id)}`);
}

/** The failed attempts of a job (the current one is described by the job itself). */
export function jobAttempts({ d, t }: Sql, k: JobId): Statement {
  return read(d, (b) => `SELECT * FROM ${t.attempts} WHERE job_id = ${b.id(k.id)} ORDER BY attempt`);
}

/** A job's log lines after `afterSeq`, in order, at most `limit`; with `last`, the latest `limit`, newest first. */
export function jobLogs({ d, t }: Sql, k: JobId & { afterSeq: number; limit: number; last?: boolean }): Statement {
  return read(d, (b) =>
    `SELECT ${b.top(k.limit)}seq, attempt, at, message FROM ${t.logs}
     WHERE job_id = ${b.id(k.id)} AND seq > ${b.bigint(k.afterSeq)} ORDER BY seq${k.last ? ' DESC' : ''}${b.limit(k.limit)}`);
}

export function workersList({ d, t }: Sql): Statement {
  return read(d, () => `SELECT * FROM ${t.workers} ORDER BY started_at`);
}

/** The database clock (column `now`). */
export function clockNow({ d }: Sql): Statement {
  return read(d, () => `SELECT ${d.now} AS now`);
}

/** Live jobs per state and queue: exact (the hot table is small). */
export function jobsLiveCounts({ d, t }: Sql): Statement {
  return read(d, () => `SELECT state, queue, COUNT(*) AS count FROM ${t.jobs} GROUP BY state, queue ORDER BY queue, state`);
}

/**
 * Finished jobs per state, each counted on its own (state, id) index range, up to cap: never a
 * full count of history. Every state answers a row (count 0 when it has none), in a fixed order.
 */
export function jobsFinishedCounts({ d, t }: Sql, k: { cap: number }): Statement {
  return read(d, (b) =>
    TERMINAL_STATES.map((state, i) =>
      `SELECT ${i + 1} AS ord, '${state}' AS state, COUNT(*) AS count FROM (
         SELECT ${b.top(k.cap)}1 AS one FROM ${t.history}${d.useIndex(t.historyState)} WHERE state = '${state}'${b.limit(k.cap)}) capped`,
    ).join('\nUNION ALL\n') + '\nORDER BY ord');
}

/**
 * Per queue of the live table, read from its (queue, state, …) index: pending, due, running,
 * and how long the oldest due job has waited. The clock is read once, so every figure compares
 * with the same now (MAX only lifts that one reading into the group).
 */
export function queuesStats({ d, t }: Sql): Statement {
  const due = `state = 'pending' AND run_at <= clock.now`;
  return read(d, () =>
    `SELECT queue, SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending, SUM(CASE WHEN ${due} THEN 1 ELSE 0 END) AS due,
       SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS running,
       ${d.msBetween('MAX(clock.now)', `MIN(CASE WHEN ${due} THEN run_at END)`)} AS oldest
     FROM ${t.jobs}${d.useIndex(t.jobsQueue)} CROSS JOIN (SELECT ${d.now} AS now) clock
     GROUP BY queue`);
}

/** The paused queues (a row means paused), with when. */
export function queuesPaused({ d, t }: Sql): Statement {
  return read(d, () => `SELECT queue, paused_at FROM ${t.paused}`);
}

/** Which of a queue's groups to count, and over which rate window. */
export interface GroupCountsQuery {
  queue: string;
  /** The queue's rate window (null: no rate limit, no starts counted). */
  windowMs: number | null;
  /** Only these groups (absent: every group, and the jobs without one). */
  groups?: string[];
  limit: number;
}

/**
 * One queue's live jobs per group (NULL: those without a group): pending, due and running, read
 * from its index with the clock read once, and beside them the starts its rate limit recorded
 * within the window. Each part is grouped before the union, so the union holds a row per group
 * and part, not per job. The busiest groups first (then jobs without a group, then by name), at
 * most `limit`.
 */
export function queueGroupCounts(sql: Sql, k: GroupCountsQuery): Statement {
  const { d, t } = sql;
  const only = (b: Binder) => (k.groups ? ` AND group_key ${b.in(k.groups)}` : '');
  return read(d, (b) => {
    const top = b.top(k.limit);
    const live = d.queueIndexHoldsRunning ? liveGroupsOneScan(sql, b, k.queue, only) : liveGroupsByState(sql, b, k.queue, only);
    const starts = k.windowMs === null ? '' : `
       UNION ALL
       SELECT group_key, 0, 0, 0, COUNT(*) FROM ${t.starts}
       WHERE queue = ${b.text(k.queue)} AND started_at > ${d.plusMs(d.now, b.bigint(-k.windowMs))}${only(b)} GROUP BY group_key`;
    return `SELECT ${top}g.group_key, SUM(g.n_pending) AS pending, SUM(g.n_due) AS due, SUM(g.n_running) AS running, SUM(g.n_starts) AS starts
     FROM (${live}${starts}) g GROUP BY g.group_key
     ORDER BY SUM(g.n_running) DESC, SUM(g.n_due) DESC, SUM(g.n_pending) DESC, CASE WHEN g.group_key IS NULL THEN 0 ELSE 1 END, g.group_key${b.limit(k.limit)}`;
  });
}

/** A queue's live jobs per group from its (queue, state, …) index, where that index holds both states. */
function liveGroupsOneScan({ d, t }: Sql, b: Binder, queue: string, only: (b: Binder) => string): string {
  const due = `state = 'pending' AND run_at <= clock.now`;
  return `SELECT group_key, SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS n_pending, SUM(CASE WHEN ${due} THEN 1 ELSE 0 END) AS n_due,
         SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS n_running, 0 AS n_starts
       FROM ${t.jobs}${d.useIndex(t.jobsQueue)} CROSS JOIN (SELECT ${d.now} AS now) clock
       WHERE queue = ${b.text(queue)}${only(b)} GROUP BY group_key`;
}

/**
 * The same where pending and running jobs are indexed apart (PostgreSQL, migration 020): each
 * state from its own index, by the literal state its partial index names (`queue = $1` alone
 * would read the whole table).
 */
function liveGroupsByState({ d, t }: Sql, b: Binder, queue: string, only: (b: Binder) => string): string {
  return `SELECT group_key, COUNT(*) AS n_pending, SUM(CASE WHEN run_at <= clock.now THEN 1 ELSE 0 END) AS n_due, 0 AS n_running, 0 AS n_starts
       FROM ${t.jobs} CROSS JOIN (SELECT ${d.now} AS now) clock
       WHERE queue = ${b.text(queue)} AND state = 'pending'${only(b)} GROUP BY group_key
       UNION ALL
       SELECT group_key, 0, 0, COUNT(*), 0 FROM ${t.jobs}
       WHERE queue = ${b.text(queue)} AND state = 'running'${only(b)} GROUP BY group_key`;
}

/** The starts a queue's rate limit recorded within its window (the claim deletes older ones only when it next claims). */
export function queueStartsInWindow({ d, t }: Sql, k: { queue: string; windowMs: number }): Statement {
  return read(d, (b) =>
    `SELECT COUNT(*) AS n FROM ${t.starts} WHERE queue = ${b.text(k.queue)} AND started_at > ${d.plusMs(d.now, b.bigint(-k.windowMs))}`);
}

/**
 * A keyset page of jobs, newest first (id < cursor, never OFFSET, which rereads what it skips):
 * each half walks its id index backward and stops at the limit, then the union is cut to the
 * limit. A state filter touches only the tables that hold those states (at least one).
 */
export function jobsList(sql: Sql, filter: ListFilter, opts: { historyInMonthPartitions?: boolean } = {}): Statement {
  const { d, t } = sql;
  const limit = listLimit(filter);
  const { live, history } = statesByTable(filter);
  const payload = filter.includePayload === true;
  const cols = columns(d, payload ? [...SUMMARY, ...PAYLOAD] : SUMMARY);
  // The columns only history has: typed NULLs in the live half.
  const liveTail = `${d.nullAs('time')} AS finished_at${payload ? `, ${d.nullAs('json')} AS result` : ''}, parents_left, reserved_until`;
  const historyTail = `finished_at${payload ? ', result' : ''}, 0 AS parents_left, ${d.nullAs('time')} AS reserved_until`;
  return read(d, (b) => {
    const top = b.top(limit);
    const half = (table: string, hint: string, tail: string, states: JobState[] | LiveState, allStates: number, alias: string) =>
      `SELECT * FROM (SELECT ${b.top(limit)}${cols}, ${deadLetterOf(sql, table)} AS dead_letter_of, ${tail} FROM ${table}${hint}${listWhere(sql, b, filter, states, allStates)}
         ORDER BY id DESC${b.limit(limit)}) ${alias}`;
    const halves: string[] = [];
    if (live && !d.queueIndexHoldsRunning) {
      // Where pending and running jobs are indexed apart (PostgreSQL, migration 020), a half per
      // live state: a queue's pending jobs read from jobs_queue, its running ones from jobs_running.
      for (const state of new Set(live as LiveState[])) halves.push(half(t.jobs, '', liveTail, state, 2, `live_${state}`));
    } else if (live) halves.push(half(t.jobs, '', liveTail, live, 2, 'live'));
    if (history) halves.push(half(t.history, historyListIndex(sql, filter, history, opts.historyInMonthPartitions === true), historyTail, history, TERMINAL_STATES.length, 'finished'));
    return `SELECT ${top}* FROM (${halves.join('\nUNION ALL\n')}) page ORDER BY id DESC${b.limit(limit)}`;
  });
}

/**
 * Where MySQL's planner must be told which index serves history's half of a list (elsewhere the
 * dialect says nothing). On one history table, a range of finish times (a month of the History
 * view) is read from the finish-time index, its matches sorted: walking ids (or a state's ids)
 * newest first would pass every row finished after the month and, to end its last page, every row
 * finished before; only a selective filter's index (tag, batch, refId, userId) reads less. Where
 * history is partitioned by month, the range prunes the walk to the month's partitions, where ids
 * newest first stop at the page. A queue or name filter beside a state filter walks (queue, id) or
 * (name, id): the planner would intersect it with the state index, reading both ranges whole.
 */
function historyListIndex({ d, t }: Sql, f: ListFilter, states: JobState[], inMonthPartitions: boolean): string {
  const selective = f.tag !== undefined || f.batchId !== undefined || f.refId !== undefined || f.userId !== undefined;
  const finishedRange = f.finishedAfter !== undefined || f.finishedBefore !== undefined;
  if (finishedRange && !selective && !inMonthPartitions) return d.useIndex(t.historyFinished);
  if ((f.queue !== undefined || f.name !== undefined) && states.length < TERMINAL_STATES.length) return d.ignoreIndexes([t.historyState]);
  return '';
}

type LiveState = 'pending' | 'running';

/**
 * The WHERE clause of one table's half of the list: every filter is a bound value but one live
 * state, written as the literal its partial index's predicate names (a plan made for any value
 * of a bound state could not use that index).
 */
function listWhere(sql: Sql, b: Binder, f: ListFilter, states: JobState[] | LiveState, allStates: number): string {
  const where: string[] = [];
  if (typeof states === 'string') where.push(states === 'running' ? `state = 'running'` : `state = 'pending'`);
  else if (states.length < allStates) where.push(`state IN (${states.map((s) => b.ascii(s)).join(', ')})`);
  if (f.queue !== undefined) where.push(`queue = ${b.text(f.queue)}`);
  if (f.name !== undefined) where.push(`name = ${b.text(f.name)}`);
  if (f.tag !== undefined) where.push(`tag = ${b.text(f.tag)}`);
  if (f.batchId !== undefined) where.push(`batch_id = ${b.text(f.batchId)}`);
  if (f.refId !== undefined) where.push(`ref_id = ${b.text(f.refId)}`);
  if (f.createdBy !== undefined) where.push(`created_by = ${b.text(f.createdBy)}`);
  if (f.userId !== undefined) where.push(`user_id = ${b.text(f.userId)}`);
  if (f.replyTo !== undefined) where.push(`reply_to = ${b.text(f.replyTo)}`);
  for (const [key, value] of Object.entries(f.args ?? {})) where.push(`${b.jsonText('args', key)} = ${b.text(value)}`);
  if (f.createdAfter !== undefined) where.push(`created_at >= ${b.time(f.createdAfter.getTime())}`);
  if (f.createdBefore !== undefined) where.push(`created_at < ${b.time(f.createdBefore.getTime())}`);
  // Only history's half is read with these (statesByTable): the live table has no finished_at.
  if (f.finishedAfter !== undefined) where.push(`finished_at >= ${b.time(f.finishedAfter.getTime())}`);
  if (f.finishedBefore !== undefined) where.push(`finished_at < ${b.time(f.finishedBefore.getTime())}`);
  if (f.reserved) where.push(isReserved(sql));
  if (f.cursor !== undefined) where.push(`id < ${b.id(f.cursor)}`);
  return where.length ? ` WHERE ${where.join(' AND ')}` : '';
}

/** The newest finish before `before` (epoch ms; null: the newest of all), column `at`: one step back along the finish-time index. */
export function historyNewestBefore({ d, t }: Sql, k: { before: number | null }): Statement {
  return read(d, (b) =>
    `SELECT MAX(finished_at) AS at FROM ${t.history}${d.useIndex(t.historyFinished)}${k.before === null ? '' : ` WHERE finished_at < ${b.time(k.before)}`}`);
}

/**
 * Finished jobs per state among the first `cap` of a month (a range of the finish-time index, so
 * never more than `cap` entries read; ORDER BY keeps a planner without fresh statistics off a
 * table scan): exact when the month holds fewer.
 */
export function historyMonthCounts({ d, t }: Sql, k: { from: number; to: number; cap: number }): Statement {
  return read(d, (b) =>
    `SELECT m.state, COUNT(*) AS n FROM (
       SELECT ${b.top(k.cap)}state FROM ${t.history}${d.useIndex(t.historyFinished)}
       WHERE finished_at >= ${b.time(k.from)} AND finished_at < ${b.time(k.to)} ORDER BY finished_at${b.limit(k.cap)}) m
     GROUP BY m.state`);
}

/**
 * Jobs finished after `since` (epoch ms), in finish order, at most `limit`, from the finish-time
 * index: what jobs.subscribe hears of jobs other processes finished.
 */
export function historyFinishedSince({ d, t }: Sql, k: { since: number; limit: number }): Statement {
  return read(d, (b) =>
    `SELECT ${b.top(k.limit)}id, name, queue, state, attempts, finished_at, error, result FROM ${t.history}${d.useIndex(t.historyFinished)}
     WHERE finished_at > ${b.time(k.since)} ORDER BY finished_at, id${b.limit(k.limit)}`);
}
