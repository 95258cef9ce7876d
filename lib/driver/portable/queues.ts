/**
 * Queue limits and fair groups (createJobs({ queues }), jobs.queues.configure, the group option),
 * written once for every database.
 *
 * A queue with a row in the queues table is *managed*: general claims skip it, and it is claimed
 * by claimManaged below, which first locks the queue's row. Claims of one managed queue therefore
 * take turns across every process, and each counts, under that lock, what its limits allow:
 *  - concurrency: the queue's running jobs (jobs_queue index);
 *  - groupConcurrency: running jobs per group;
 *  - rateLimit: starts recorded in the starts table within the last intervalMs (a sliding window on
 *    the database clock: older rows are deleted first), for the queue or per group.
 * A job a limit holds back is simply not claimed: it stays pending, its attempts untouched.
 *
 * Fairness: a grouped job is enqueued with a fair rank (joinGroup): one past its group's last rank,
 * or the queue's vtime (the rank claims have reached) when that is later. Claims take jobs by
 * (priority DESC, fair_rank, run_at, then enqueue order), so within a priority the groups' jobs come in turns, and
 * a group that was idle joins the turns where they are now rather than ahead of everyone.
 * Jobs without a group rank 0: in a queue with groups they come first within their priority.
 */
import type { ClaimRequest } from '../store.ts';
import { CLAIM_COLUMNS } from '../store.ts';
import { read, write, type Binder, type Outcome, type Statement, type Steps } from './statement.ts';
import type { Sql } from './sql.ts';
import { selectColumns } from './dialect.ts';

/** A queue's limits as stored (null: no such limit). */
export interface StoredQueueSettings {
  concurrency: number | null;
  groupConcurrency: number | null;
  rateLimit: { limit: number; intervalMs: number; per: 'queue' | 'group' } | null;
}

/** A managed queue's row. */
export interface QueueSettingsRow extends StoredQueueSettings {
  queue: string;
  /** The hash of the createJobs settings it was written from, or null. */
  codeHash: string | null;
  updatedAt: Date;
}

/** A claim of one managed queue. */
export interface ManagedClaimRequest extends Omit<ClaimRequest, 'queues' | 'excludeQueues'> {
  queue: string;
}

/** What a managed claim took, and what held the rest back. */
export interface ManagedClaim<Row> {
  rows: Row[];
  /** The limit that allowed fewer than asked (null: none did; fewer jobs were due). */
  heldBy: 'concurrency' | 'groupConcurrency' | 'rateLimit' | 'paused' | null;
  /** When the rate window next frees a start, in ms (null: not held by the rate). */
  retryInMs: number | null;
}

type Row = Record<string, unknown>;

// ---------------------------------------------------------------- settings

/** Every managed queue's settings. */
export function queueSettingsList({ d, t }: Sql): Statement {
  return read(d, () =>
    `SELECT queue, concurrency, group_concurrency, rate_limit, rate_interval_ms, rate_per, code_hash, updated_at FROM ${t.queues} ORDER BY queue`);
}

export function toQueueSettingsRow(r: Row, date: (v: unknown) => Date | null): QueueSettingsRow {
  return { queue: String(r.queue), ...settingsOf(r), codeHash: r.code_hash == null ? null : String(r.code_hash), updatedAt: date(r.updated_at)! };
}

function settingsOf(r: Row): StoredQueueSettings {
  const num = (v: unknown) => (v == null ? null : Number(v));
  return {
    concurrency: num(r.concurrency),
    groupConcurrency: num(r.group_concurrency),
    rateLimit: r.rate_limit == null ? null : { limit: Number(r.rate_limit), intervalMs: Number(r.rate_interval_ms), per: r.rate_per === 'group' ? 'group' : 'queue' },
  };
}

/**
 * Write a queue's settings. From code (`codeHash` set) a stored row is replaced only when it was
 * written from other settings, so a run-time edit survives restarts until the code's settings
 * change; a run-time edit (`codeHash` null) always replaces and keeps the stored hash.
 */
export function* saveQueueSettings(sql: Sql, queue: string, s: StoredQueueSettings, codeHash: string | null): Steps<boolean> {
  const { d, t } = sql;
  const stored = ((yield read(d, (b) => `SELECT code_hash FROM ${t.queues}${d.lockHint} WHERE queue = ${b.text(queue)}${d.forUpdate}`)) as Outcome).rows[0];
  if (stored && codeHash !== null && stored.code_hash === codeHash) return false;
  const values = (b: Binder): [string, string][] => [
    ['concurrency', b.int(s.concurrency)], ['group_concurrency', b.int(s.groupConcurrency)],
    ['rate_limit', b.int(s.rateLimit?.limit ?? null)], ['rate_interval_ms', b.int(s.rateLimit?.intervalMs ?? null)],
    ['rate_per', b.text(s.rateLimit?.per ?? null)], ['updated_at', d.now],
  ];
  if (stored) {
    yield write(d, (b) => {
      const set = values(b).map(([c, v]) => `${c} = ${v}`);
      if (codeHash !== null) set.push(`code_hash = ${b.text(codeHash)}`);
      return `UPDATE ${t.queues} SET ${set.join(', ')} WHERE queue = ${b.text(queue)}`;
    });
  } else {
    // An upsert: another process may write the same queue's settings from the same code at the same moment.
    yield write(d, (b) => {
      const row: [string, string][] = [['queue', b.text(queue)], ...values(b), ['code_hash', b.text(codeHash)]];
      return d.upsert(t.queues, 'queue', row, values(b).map(([c, v]) => `${c} = ${v}`).join(', '));
    });
  }
  return true;
}

// ---------------------------------------------------------------- enqueue

/** One enqueue call's groups (their rows locked, their last ranks) and the current turn per queue and priority. */
export interface GroupRanks {
  groups: Map<string, { queue: string; group: string; last: number }>;
  /** Per queue: the rank its claims have reached (queues.vtime). */
  vtimes: Map<string, number>;
  turns: Map<string, number>;
}

const groupKey = (queue: string, group: string) => JSON.stringify([queue, group]);

/**
 * Lock the rows of the groups these jobs join, all in one order (queue, then group), so that two
 * transactions enqueueing the same groups wait for each other instead of deadlocking; read each
 * group's last rank. A queue without a row is made managed here: its jobs are then claimed in
 * fair-rank order. Concurrent enqueues of one group therefore take turns until commit.
 */
export function* lockGroups(sql: Sql, jobs: { queue: string; groupKey?: string | null }[]): Steps<GroupRanks> {
  const { d, t } = sql;
  const ranks: GroupRanks = { groups: new Map(), vtimes: new Map(), turns: new Map() };
  const pairs = [...new Map(jobs.filter((j) => j.groupKey).map((j) => [groupKey(j.queue, j.groupKey!), [j.queue, j.groupKey!] as const])).values()]
    .sort(([q1, g1], [q2, g2]) => (q1 < q2 ? -1 : q1 > q2 ? 1 : g1 < g2 ? -1 : g1 > g2 ? 1 : 0));
  for (const [queue, group] of pairs) {
    if (!ranks.vtimes.has(queue)) ranks.vtimes.set(queue, yield* queueVtime(sql, queue));
    yield write(d, (b) =>
      d.upsert(t.queueGroups, 'queue, group_key', [['queue', b.text(queue)], ['group_key', b.text(group)], ['last_rank', '0'], ['touched_at', d.now]], `touched_at = ${d.now}`));
    const row = ((yield read(d, (b) => `SELECT last_rank FROM ${t.queueGroups} WHERE queue = ${b.text(queue)} AND group_key = ${b.text(group)}`)) as Outcome).rows[0];
    ranks.groups.set(groupKey(queue, group), { queue, group, last: Number(row?.last_rank ?? 0) || 0 });
  }
  return ranks;
}

/**
 * A grouped job's fair rank: one past its group's last, or the current turn of its queue and
 * priority when that is later (an idle group joins the turns where they are, not ahead of every
 * waiting group). The turn is the lowest rank among due grouped jobs at that priority (ranks
 * compare only within a priority); with none, the rank claims have reached. Its group's row was
 * locked by lockGroups.
 */
export function* rankInGroup(sql: Sql, ranks: GroupRanks, job: { queue: string; groupKey: string; priority: number }): Steps<number> {
  const g = ranks.groups.get(groupKey(job.queue, job.groupKey))!;
  const key = JSON.stringify([job.queue, job.priority]);
  let turn = ranks.turns.get(key);
  if (turn === undefined) {
    const { d, t } = sql;
    const row = ((yield read(d, (b) =>
      `SELECT MIN(fair_rank) AS turn FROM ${t.jobs}${d.useIndex(t.jobsQueue)}
       WHERE queue = ${b.text(job.queue)} AND state = 'pending' AND priority = ${b.int(job.priority)} AND fair_rank > 0 AND run_at <= ${d.now}`)) as Outcome).rows[0];
    turn = row?.turn == null ? (ranks.vtimes.get(job.queue) ?? 0) : Number(row.turn);
    ranks.turns.set(key, turn);
  }
  g.last = Math.max(g.last + 1, turn);
  return g.last;
}

/** Store each group's last rank given in the call (its row is still locked by lockGroups). */
export function* saveGroupRanks(sql: Sql, ranks: GroupRanks): Steps<void> {
  const { d, t } = sql;
  for (const { queue, group, last } of ranks.groups.values()) {
    yield write(d, (b) => `UPDATE ${t.queueGroups} SET last_rank = ${b.bigint(last)} WHERE queue = ${b.text(queue)} AND group_key = ${b.text(group)}`);
  }
}

/**
 * Idle groups to forget: untouched for idleMs, their last rank at or below the rank their queue's
 * claims have reached. (One of its jobs may still wait, at a lower priority: its group's next job
 * then ranks at the turn, which may be before it. Ranks order groups, not a group's own jobs.)
 */
export function idleGroups({ d, t }: Sql, k: { idleMs: number; limit: number }): Statement {
  return read(d, (b) =>
    `SELECT ${b.top(k.limit)}g.queue, g.group_key FROM ${t.queueGroups} g JOIN ${t.queues} q ON q.queue = g.queue
     WHERE g.touched_at < ${d.plusMs(d.now, b.bigint(-k.idleMs))} AND g.last_rank <= q.vtime${b.limit(k.limit)}`);
}

/** Forget one idle group, if no enqueue touched it since it was picked. */
export function groupForget({ d, t }: Sql, g: { queue: string; group: string; idleMs: number }): Statement {
  return write(d, (b) =>
    `DELETE FROM ${t.queueGroups} WHERE queue = ${b.text(g.queue)} AND group_key = ${b.text(g.group)} AND touched_at < ${d.plusMs(d.now, b.bigint(-g.idleMs))}`);
}

/** The rank the queue's claims have reached, making the queue managed when it is not (a plain read: claims hold the row's lock). */
function* queueVtime(sql: Sql, queue: string): Steps<number> {
  const { d, t } = sql;
  const row = ((yield read(d, (b) => `SELECT vtime FROM ${t.queues} WHERE queue = ${b.text(queue)}`)) as Outcome).rows[0];
  if (row) return Number(row.vtime) || 0;
  // The row exists only when another enqueue made it meanwhile: its time moves, nothing else.
  yield write(d, (b) => d.upsert(t.queues, 'queue', [['queue', b.text(queue)], ['updated_at', d.now]], `updated_at = ${d.now}`));
  return 0;
}

// ---------------------------------------------------------------- claim

/** What the queue's limits allow now, read under the queue row's lock. */
interface Allowance {
  budget: number;
  heldBy: ManagedClaim<Row>['heldBy'];
  retryInMs: number | null;
  /** Per group with a limit in force: how many more may start (absent: no group limit applies). */
  groupRoom: Map<string, number> | null;
  /** Per group whose rate window is full: when it frees a start, in ms. */
  groupRetryInMs: Map<string, number>;
  settings: StoredQueueSettings;
  vtime: number;
}

/**
 * Claim up to `limit` due jobs of one managed queue within its limits: lock the queue's row, count
 * what the limits allow, pick jobs in fair order (skipping groups at their limit), turn them
 * running under `token`, record their starts where a rate limit counts them, and move the queue's
 * vtime on. One transaction. Its times are the statements' own clock (`d.statementNow`): the
 * first statement may have waited for the row.
 */
export function* claimManaged(sql: Sql, req: ManagedClaimRequest, token: string): Steps<ManagedClaim<Row>> {
  const allowance = yield* allowanceOf(sql, req);
  if (allowance === null) return { rows: [], heldBy: null, retryInMs: null };
  if (allowance.budget <= 0) return { rows: [], heldBy: allowance.heldBy, retryInMs: allowance.retryInMs };
  const picked = yield* pickFair(sql, req, allowance);
  const rows = picked.ids.length ? yield* takeJobs(sql, req, picked.ids, token) : [];
  // Picked jobs another transaction holds were skipped: pick past them, or with a held job at the
  // head of the queue every claim would pick it again (concurrency 1: nothing ran behind it).
  const past: string[] = [];
  let notTaken = untaken(picked.ids, rows);
  for (let round = 0; notTaken.length && rows.length < allowance.budget && round < PICK_PAST_ROUNDS; round++) {
    past.push(...notTaken);
    const more = yield* pickFair(sql, req, { ...allowance, budget: allowance.budget - rows.length }, past);
    if (!more.ids.length) break;
    const took = yield* takeJobs(sql, req, more.ids, token);
    rows.push(...took);
    picked.topRank = Math.max(picked.topRank, more.topRank);
    if (more.heldBy) Object.assign(picked, { heldBy: more.heldBy, retryInMs: more.retryInMs });
    notTaken = untaken(more.ids, took);
  }
  if (rows.length) yield* recordStarts(sql, req.queue, rows, allowance, picked.topRank);
  if (rows.length === req.limit) return { rows, heldBy: null, retryInMs: null };
  // Fewer than asked: a limit held the rest back, or fewer were due (then nothing holds the queue).
  const held = picked.heldBy ?? allowance.heldBy;
  return { rows, heldBy: held, retryInMs: picked.heldBy ? picked.retryInMs : allowance.retryInMs };
}

/**
 * Where the pick itself can lock what it reads and skip rows other sessions hold (a suffix:
 * PostgreSQL, MySQL): the claim then never waits on them, for no statement more. The rows read
 * beyond those taken (groups at their limit) stay locked until the claim commits, a moment later.
 */
function pickLock(d: Sql['d']): string {
  return d.skipLocked && !d.skipLocked.hint ? d.skipLocked.suffix : '';
}

/** Rounds of picking past jobs other transactions hold, in one claim. */
const PICK_PAST_ROUNDS = 3;

/** The picked ids a take did not turn running (held by another transaction, or no longer pending). */
function untaken(ids: string[], rows: Row[]): string[] {
  const taken = new Set(rows.map((r) => String(r.id).toLowerCase()));
  return ids.filter((id) => !taken.has(id.toLowerCase()));
}

function* allowanceOf(sql: Sql, req: ManagedClaimRequest): Steps<Allowance | null> {
  const { d, t } = sql;
  const q = ((yield read(d, (b) =>
    `SELECT concurrency, group_concurrency, rate_limit, rate_interval_ms, rate_per, vtime,
       (SELECT COUNT(*) FROM ${t.paused} p WHERE p.queue = q.queue) AS paused
     FROM ${t.queues} q${d.lockHint} WHERE q.queue = ${b.text(req.queue)}${d.forUpdate}`)) as Outcome).rows[0];
  if (!q) return null;
  const settings = settingsOf(q);
  const a: Allowance = { budget: req.limit, heldBy: null, retryInMs: null, groupRoom: null, groupRetryInMs: new Map(), settings, vtime: Number(q.vtime) };
  if (Number(q.paused) > 0) return { ...a, budget: 0, heldBy: 'paused' };
  if (settings.concurrency !== null) {
    const running = yield* count(sql, (b) => `SELECT COUNT(*) AS n FROM ${t.jobs} WHERE queue = ${b.text(req.queue)} AND state = 'running'`);
    cap(a, settings.concurrency - running, 'concurrency');
  }
  const rate = settings.rateLimit;
  if (rate) {
    yield write(d, (b) => `DELETE FROM ${t.starts} WHERE queue = ${b.text(req.queue)} AND started_at <= ${d.plusMs(d.statementNow, b.bigint(-rate.intervalMs))}`);
    if (rate.per === 'queue') {
      const w = ((yield read(d, (b) =>
        `SELECT COUNT(*) AS n, ${d.msBetween('MIN(started_at)', d.statementNow)} AS first_ago FROM ${t.starts} WHERE queue = ${b.text(req.queue)}`)) as Outcome).rows[0];
      if (cap(a, rate.limit - Number(w.n), 'rateLimit')) a.retryInMs = windowFrees(rate.intervalMs, w.first_ago);
    }
  }
  if (settings.groupConcurrency !== null || rate?.per === 'group') yield* countGroups(sql, req.queue, a);
  return a;
}

/** When a full rate window frees its oldest start, in ms from now (`firstAgo`: that start's time minus now, negative). */
function windowFrees(intervalMs: number, firstAgo: unknown): number {
  return Math.max(1, intervalMs + Number(firstAgo ?? 0));
}

/** Lower the budget to `room` when that is less; true when the limit holds everything back. */
function cap(a: Allowance, room: number, limit: NonNullable<Allowance['heldBy']>): boolean {
  if (room >= a.budget) return false;
  a.budget = Math.max(0, room);
  a.heldBy = limit;
  return a.budget === 0;
}

function* count(sql: Sql, build: (b: Binder) => string): Steps<number> {
  return Number(((yield read(sql.d, build)) as Outcome).rows[0]?.n ?? 0);
}

/** Per group with a limit in force: how many more of its jobs may start (groups not listed have their full limit), and when a full rate window frees one. */
function* countGroups(sql: Sql, queue: string, a: Allowance): Steps<void> {
  const { d, t } = sql;
  const s = a.settings;
  const room = (a.groupRoom = new Map<string, number>());
  if (s.groupConcurrency !== null) {
    const running = ((yield read(d, (b) =>
      `SELECT group_key, COUNT(*) AS n FROM ${t.jobs} WHERE queue = ${b.text(queue)} AND state = 'running' AND group_key IS NOT NULL GROUP BY group_key`)) as Outcome).rows;
    for (const r of running) room.set(String(r.group_key), s.groupConcurrency - Number(r.n));
  }
  const rate = s.rateLimit;
  if (rate?.per === 'group') {
    const started = ((yield read(d, (b) =>
      `SELECT group_key, COUNT(*) AS n, ${d.msBetween('MIN(started_at)', d.statementNow)} AS first_ago FROM ${t.starts}
       WHERE queue = ${b.text(queue)} AND group_key IS NOT NULL GROUP BY group_key`)) as Outcome).rows;
    for (const r of started) {
      const g = String(r.group_key);
      const left = rate.limit - Number(r.n);
      room.set(g, Math.min(room.get(g) ?? Infinity, left));
      if (left <= 0) a.groupRetryInMs.set(g, windowFrees(rate.intervalMs, r.first_ago));
    }
  }
}

/** The most a group may start in one claim when nothing was counted for it yet. */
function fullRoom(s: StoredQueueSettings): number {
  return Math.min(s.groupConcurrency ?? Infinity, s.rateLimit?.per === 'group' ? s.rateLimit.limit : Infinity);
}

/** Rounds of picking: each skips the groups the last one filled, so a busy group's backlog cannot hide the others' jobs. */
const PICK_ROUNDS = 4;
/** With group limits, a round reads this many times the budget: some rows may belong to groups that fill up in the round. */
const PICK_SLACK = 4;

interface Picked {
  ids: string[];
  topRank: number;
  /** A group limit kept some due jobs back (set only when one did). */
  heldBy: Allowance['heldBy'];
  /** When the first held group's rate window frees a start (null: a group held by its concurrency). */
  retryInMs: number | null;
}

/**
 * The next due jobs in fair order, at most `budget`, none from a group past its room. Read without
 * row locks (SQL Server: past rows an uncommitted enqueue holds): claims of this queue take turns
 * on its row, and takeJobs re-checks each job's state.
 */
function* pickFair(sql: Sql, req: ManagedClaimRequest, a: Allowance, past: string[] = []): Steps<Picked> {
  const { d, t } = sql;
  const picked: Picked = { ids: [], topRank: 0, heldBy: null, retryInMs: null };
  const room = a.groupRoom;
  const held = new Set<string>();
  for (let round = 0; round < PICK_ROUNDS && picked.ids.length < a.budget; round++) {
    const full = room ? [...room].filter(([, n]) => n <= 0).map(([g]) => g) : [];
    for (const g of full) held.add(g);
    const want = room ? a.budget * PICK_SLACK : a.budget;
    const rows = ((yield read(d, (b) =>
      `SELECT ${b.top(want)}id, group_key, fair_rank FROM ${t.jobs}${d.useIndex(t.jobsQueue)}${d.readPast}
       WHERE queue = ${b.text(req.queue)} AND state = 'pending' AND run_at <= ${d.statementNow} AND name ${b.in(req.names)}
         ${full.length ? `AND (group_key IS NULL OR NOT (group_key ${b.in(full)}))` : ''}
         ${picked.ids.length || past.length ? `AND NOT (id ${b.ids([...past, ...picked.ids])})` : ''}
       ORDER BY priority DESC, fair_rank, run_at, ${d.insertionOrder}${b.limit(want)}${pickLock(d)}`)) as Outcome).rows;
    for (const r of rows) {
      if (picked.ids.length >= a.budget) break;
      const group = r.group_key == null ? null : String(r.group_key);
      if (room && group !== null) {
        const left = room.get(group) ?? fullRoom(a.settings);
        room.set(group, left - 1);
        if (left <= 0) {
          held.add(group);
          continue;
        }
      }
      picked.ids.push(String(r.id));
      picked.topRank = Math.max(picked.topRank, Number(r.fair_rank));
    }
    if (rows.length < want) break;
  }
  if (held.size && picked.ids.length < a.budget) describeHold(a, held, picked);
  return picked;
}

/** Which group limit held jobs back, and (all held groups by their rate window) when the first frees a start. */
function describeHold(a: Allowance, held: Set<string>, picked: Picked): void {
  const byRate = [...held].map((g) => a.groupRetryInMs.get(g));
  picked.heldBy = byRate.every((ms) => ms !== undefined) ? 'rateLimit' : 'groupConcurrency';
  picked.retryInMs = picked.heldBy === 'rateLimit' ? Math.min(...(byRate as number[])) : null;
}

/** Turn the picked jobs running under `token` (those still pending) and read them back. */
function* takeJobs(sql: Sql, req: ManagedClaimRequest, ids: string[], token: string): Steps<Row[]> {
  const { d, t } = sql;
  // Only rows no other session holds: a caller's open transaction that enqueued a dependent of
  // one locked it until it ends, and the claim, holding the queue's row, stalled every claim of
  // the queue in every process while it waited.
  // PostgreSQL and MySQL locked them as they picked them (pickLock); SQL Server's pick only read past locks.
  const lock = d.skipLocked;
  if (lock && !pickLock(d)) {
    ids = ((yield read(d, (b) => `SELECT id FROM ${t.jobs}${lock.hint} WHERE id ${b.ids(ids)} AND state = 'pending'${lock.suffix}`)) as Outcome).rows.map((r) => String(r.id));
    if (!ids.length) return [];
  }
  yield write(d, (b) =>
    `UPDATE ${t.jobs} SET state = 'running', token = ${b.id(token)}, worker_id = ${b.text(req.workerId)}, attempts = attempts + 1,
       started_at = ${d.statementNow}, progress = NULL, progress_message = NULL
     WHERE id ${b.ids(ids)} AND state = 'pending'`);
  const columns = selectColumns(d, CLAIM_COLUMNS.split(', '));
  return ((yield read(d, (b) => `SELECT ${columns}, group_key FROM ${t.jobs} WHERE id ${b.ids(ids)} AND token = ${b.id(token)}`)) as Outcome).rows;
}

/** Record the starts a rate limit counts, and move the queue's vtime to the highest rank claimed. */
function* recordStarts(sql: Sql, queue: string, rows: Row[], a: Allowance, topRank: number): Steps<void> {
  const { d, t } = sql;
  if (a.settings.rateLimit) {
    const ids = rows.map((r) => String(r.id));
    yield write(d, (b) =>
      `INSERT INTO ${t.starts} (queue, started_at, job_id, group_key) SELECT queue, started_at, id, group_key FROM ${t.jobs} WHERE id ${b.ids(ids)}`);
  }
  if (topRank > a.vtime) yield write(d, (b) => `UPDATE ${t.queues} SET vtime = ${b.bigint(topRank)} WHERE queue = ${b.text(queue)}`);
}
