/**
 * Every portable statement (lib/driver/portable/), built with hostile text wherever a string goes
 * in: the server-less tests render each one for every dialect (test/unit/portable.test.ts) and
 * SQL Server's statement tests include them. A new portable builder is added here.
 */
import { DIALECTS } from '../../lib/driver/portable/dialect.ts';
import { tables, type Outcome, type Statement, type Steps } from '../../lib/driver/portable/statement.ts';
import { batchCounts, batchRow, commitReserved, finishJobs, insertWithFlow, jobDependents, jobParents, reopenFlow, reservationsExpired } from '../../lib/driver/portable/flow.ts';
import type { Sql } from '../../lib/driver/portable/sql.ts';
import type { Dialect } from '../../lib/driver/store.ts';
import { leaseRelease, leaseRenew } from '../../lib/driver/portable/leases.ts';
import { jobsRaise, jobsToAge } from '../../lib/driver/portable/aging.ts';
import {
  clockNow, historyFinishedSince, historyMonthCounts, historyNewestBefore, jobAttempts, jobGet, jobLogs, jobsFinishedCounts, jobsList, jobsLiveCounts, queueGroupCounts, queueStartsInWindow, queuesPaused, queuesStats,
  workersList,
} from '../../lib/driver/portable/reads.ts';
import { throughputCounters, throughputCoverage, throughputForget, throughputLast, throughputRead, throughputSave } from '../../lib/driver/portable/throughput.ts';
import { cancelJob, historyPrune, historyPruneLock, historyPrunePick, jobMakeDue, jobRetry, jobsDelete, queuePause, queueResume, redriveCopy, retentionLeftovers } from '../../lib/driver/portable/admin.ts';
import { jobSaveCheckpoint, jobsNextDue, jobsOwnedBy, jobsStalled, workerHeartbeat, workerHeartbeatAge, workerRemove, workersFound, workersLockable, workersRemoveStale, workersStale } from '../../lib/driver/portable/workers.ts';
import { claimManaged, groupForget, idleGroups, lockGroups, queueSettingsList, rankInGroup, saveGroupRanks, saveQueueSettings } from '../../lib/driver/portable/queues.ts';
import { scheduleAdvance, scheduleRecordRun, scheduleRemove, scheduleSetEnabled, scheduleTicksRemove, schedulesDue, schedulesList } from '../../lib/driver/portable/schedules.ts';

export const HOSTILE = "x'); DROP TABLE sqljobs_jobs; -- ? $1 @p1 `key` [key]";
/**
 * Strings that quote, escape or delimit in SQL, JSON, PostgreSQL arrays or a JavaScript
 * replacement string (`$$`, `$&`, `$'`, `` $` ``), each of which some path once mangled or could:
 * stored and read back, every one must come back exactly.
 */
export const AWKWARD_STRINGS = ['"', '\\', '\\"', "'", "\\'", "''", '{a,b}', ',', 'NULL', ' x ', '$1', "E'x'", 'line\nbreak\ttab', 'é漢字🙂', '\\x00ff', 'a$$b', 'x$&y', 'p$`q', "it$'s"];
export const UUID = '01936f4e-8a1b-7c2d-9e3f-0a1b2c3d4e5f';
export const TOKEN = '5b0e7f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b';

export function sqlFor(dialect: Dialect, prefix = 'app_'): Sql {
  return { d: DIALECTS[dialect], t: tables(prefix) };
}

export function portableStatements(sql: Sql): [string, Statement][] {
  return [
    ['leaseRenew', leaseRenew(sql, { name: HOSTILE, owner: HOSTILE, token: 3, ttlMs: 1000 })],
    ['leaseRelease', leaseRelease(sql, { name: HOSTILE, owner: HOSTILE, token: 3 })],
    ['jobGet', jobGet(sql, { id: UUID })],
    ['jobAttempts', jobAttempts(sql, { id: UUID })],
    ['jobLogs', jobLogs(sql, { id: UUID, afterSeq: 3, limit: 100 })],
    ['jobLogs (the latest)', jobLogs(sql, { id: UUID, afterSeq: 0, limit: 100, last: true })],
    ['workersList', workersList(sql)],
    ['clockNow', clockNow(sql)],
    ['jobsLiveCounts', jobsLiveCounts(sql)],
    ['jobsFinishedCounts', jobsFinishedCounts(sql, { cap: 1000 })],
    ['queuesStats', queuesStats(sql)],
    ['queuesPaused', queuesPaused(sql)],
    ['throughputCoverage', throughputCoverage(sql, { windowMs: 3_600_000 })],
    ['throughputRead (history only)', throughputRead(sql, { from: 600_000, to: null, bucketMs: 60_000, counted: null })],
    ['throughputRead (a span of history)', throughputRead(sql, { from: 600_000, to: 645_000, bucketMs: 60_000, counted: null })],
    ['throughputRead (counters within the window)', throughputRead(sql, { from: 630_000, to: null, bucketMs: 300_000, counted: { from: 660_000, to: 905_000 } })],
    ['throughputRead (a month file)', throughputRead(sql, { from: 630_000, to: null, bucketMs: 60_000, counted: { from: 660_000, to: 905_000 } }, { counters: false })],
    ['throughputLast', throughputLast(sql)],
    ['throughputCounters', throughputCounters(sql, { from: 600_000, to: 900_000 })],
    ['throughputSave', throughputSave(sql, { start: 600_000, completed: 3, failed: 1, countedTo: 645_000 })],
    ['throughputForget', throughputForget(sql, { before: 600_000 })],
    ['throughputForget (all)', throughputForget(sql, { before: null })],
    ['jobsList', jobsList(sql, {
      queue: HOSTILE, name: HOSTILE, tag: HOSTILE, batchId: HOSTILE, refId: HOSTILE, createdBy: HOSTILE, userId: HOSTILE, replyTo: HOSTILE,
      args: { [HOSTILE]: HOSTILE, 'a."b\\': HOSTILE }, createdAfter: new Date(0), createdBefore: new Date(1), cursor: UUID, limit: 10, includePayload: true,
    })],
    ['jobsList (live states)', jobsList(sql, { states: ['pending', 'running'], queue: HOSTILE })],
    ['jobsList (some finished states)', jobsList(sql, { states: ['failed', 'cancelled'], cursor: UUID })],
    ['jobsList (finished in a month)', jobsList(sql, { finishedAfter: new Date(300_000), finishedBefore: new Date(600_000), state: 'failed' })],
    ['jobsList (reserved)', jobsList(sql, { reserved: true, queue: HOSTILE, cursor: UUID })],
    ['queueGroupCounts', queueGroupCounts(sql, { queue: HOSTILE, windowMs: null, limit: 100 })],
    ['queueGroupCounts (rate window, some groups)', queueGroupCounts(sql, { queue: HOSTILE, windowMs: 60_000, groups: [HOSTILE, 'b'], limit: 100 })],
    ['queueStartsInWindow', queueStartsInWindow(sql, { queue: HOSTILE, windowMs: 60_000 })],
    ...each('cancelJob', played(cancelJob(sql, UUID), answers(sql))),
    ...flowStatements(sql),
    ...queueStatements(sql),
    ['jobMakeDue', jobMakeDue(sql, UUID)],
    ...each('jobRetry', jobRetry(sql, UUID)),
    ...each('redriveCopy', played(redriveCopy(sql, UUID, JSON.stringify({ message: HOSTILE })), redriveAnswers(sql))),
    ['queuePause', queuePause(sql, HOSTILE)],
    ['queueResume', queueResume(sql, HOSTILE)],
    ...each('jobsDelete', jobsDelete(sql, [UUID, TOKEN])),
    ['historyPrunePick', historyPrunePick(sql, { olderThanMs: 86_400_000, limit: 100 })],
    ...each('historyPrune', historyPrune(sql, { olderThanMs: 86_400_000, ids: [UUID, TOKEN] })),
    ...each('retentionLeftovers', retentionLeftovers(sql, { olderThanMs: 86_400_000 })),
    ['workerHeartbeat', workerHeartbeat(sql, { id: HOSTILE, host: HOSTILE, pid: 1, queues: [HOSTILE], names: [HOSTILE], concurrency: 2 })],
    ['workerHeartbeat (all queues)', workerHeartbeat(sql, { id: HOSTILE, host: HOSTILE, pid: 1, queues: null, names: [], concurrency: 1 })],
    ['jobsOwnedBy', jobsOwnedBy(sql, HOSTILE)],
    ['workerRemove', workerRemove(sql, HOSTILE)],
    ['workerHeartbeatAge', workerHeartbeatAge(sql, HOSTILE)],
    ['workersRemoveStale', workersRemoveStale(sql, 30_000)],
    ['workersRemoveStale (some)', workersRemoveStale(sql, 30_000, [HOSTILE, 'b'])],
    ['workersStale', workersStale(sql, 30_000)],
    ['workersFound', workersFound(sql, [HOSTILE, 'b'])],
    ...(sql.d.skipLocked ? [['workersLockable', workersLockable(sql, [HOSTILE, 'b'], 30_000, sql.d.skipLocked)] as [string, Statement]] : []),
    ['jobsStalled', jobsStalled(sql, { stallMs: 30_000, limit: 500 })],
    ['jobsNextDue', jobsNextDue(sql, { names: [HOSTILE], queues: [HOSTILE] })],
    ['jobsNextDue (all queues)', jobsNextDue(sql, { names: [HOSTILE] })],
    ['jobSaveCheckpoint', jobSaveCheckpoint(sql, { id: UUID, token: TOKEN }, JSON.stringify(HOSTILE))],
    ['schedulesList', schedulesList(sql)],
    ['schedulesDue', schedulesDue(sql)],
    ['scheduleSetEnabled', scheduleSetEnabled(sql, { key: HOSTILE, enabled: false, nextRunAt: null })],
    ['scheduleSetEnabled (next run)', scheduleSetEnabled(sql, { key: HOSTILE, enabled: true, nextRunAt: 600_000 })],
    ['scheduleTicksRemove', scheduleTicksRemove(sql, HOSTILE)],
    ['scheduleRemove', scheduleRemove(sql, HOSTILE)],
    ['scheduleAdvance', scheduleAdvance(sql, { key: HOSTILE, from: 300_000, nextRunAt: 600_000 })],
    ['scheduleAdvance (ended)', scheduleAdvance(sql, { key: HOSTILE, from: 300_000, nextRunAt: null })],
    ['scheduleRecordRun', scheduleRecordRun(sql, { key: HOSTILE, jobId: UUID })],
    ['historyNewestBefore', historyNewestBefore(sql, { before: 600_000 })],
    ['historyNewestBefore (newest)', historyNewestBefore(sql, { before: null })],
    ['historyFinishedSince', historyFinishedSince(sql, { since: 300_000, limit: 1000 })],
    ['historyMonthCounts', historyMonthCounts(sql, { from: 300_000, to: 600_000, cap: 100 })],
    ['historyPruneLock', historyPruneLock(sql, [UUID, TOKEN])],
  ];
}

/**
 * What the workflow steps (lib/driver/portable/flow.ts) say along every branch: a job with every
 * flow bit finished each way, an enqueue with parents outside the call (one completed, one
 * failed), a retry of a dependent in a batch, and the reads.
 */
function flowStatements(sql: Sql): [string, Statement][] {
  const spec = JSON.stringify({ name: HOSTILE, queue: HOSTILE, payloadJson: '{}', priority: 0, maxAttempts: 3, timeoutMs: null, backoffJson: null, delayMs: 0, runAt: null,
    refId: null, tag: HOSTILE, batchId: null, createdBy: HOSTILE, userId: HOSTILE, replyTo: HOSTILE, argsJson: null, metaJson: null, flow: 0, callbacksJson: null, callbackBatch: null });
  const callbacks = `{"onSuccess":${spec},"onFailure":${spec},"onComplete":${spec}}`;
  const out: [string, Statement][] = [];
  for (const state of ['completed', 'failed', 'cancelled'] as const) {
    const item = { id: UUID, token: TOKEN, state, resultJson: '{}', errorJson: state === 'completed' ? undefined : '{"message":"x"}', attempt: { number: 1, startedAt: new Date(0) } };
    out.push(...each(`finishJobs (${state})`, played(finishJobs(sql, [item]), answers(sql, callbacks))));
  }
  const row = { id: TOKEN, name: HOSTILE, queue: HOSTILE, payloadJson: '{}', payloadBin: null, priority: 0, maxAttempts: 3, timeoutMs: null, backoffJson: null,
    delayMs: 5, runAt: null, refId: HOSTILE, tag: null, batchId: HOSTILE, createdBy: null, userId: null, replyTo: null, argsJson: null, metaJson: null,
    traceContextJson: HOSTILE, dependsOn: [UUID, PARENT_FAILED], flow: 8 | 4, callbacksJson: callbacks, callbackBatch: null, uniqueKey: null, dedupe: null, serialKey: HOSTILE, groupKey: HOSTILE, reserveMs: 60_000, bytes: 0 };
  out.push(...each('insertWithFlow', played(insertWithFlow(sql, [row], [{ id: HOSTILE, callbacks: JSON.parse(callbacks) }]), answers(sql, callbacks))));
  const unique = { ...row, id: UUID, dependsOn: [], refId: null, flow: 0, uniqueKey: `u:${HOSTILE}`, dedupe: { kind: 'unique' as const, forMs: 60_000, states: ['pending' as const, 'completed' as const] } };
  const debounce = { ...row, id: UUID, dependsOn: [], refId: null, flow: 0, uniqueKey: `d:${HOSTILE}`, dedupe: { kind: 'debounce' as const, ms: 500 } };
  out.push(...each('insertWithFlow (unique, none found)', played(insertWithFlow(sql, [unique]), () => ({ rows: [], changes: 0 }))));
  out.push(...each('insertWithFlow (debounce, one waiting)', played(insertWithFlow(sql, [debounce]), (s) => ({ rows: s.returnsRows ? [{ id: TOKEN }] : [], changes: 1 }))));
  const tailLive = (s: Statement): Outcome => ({ rows: /tail_id FROM/.test(s.text) ? [{ tail_id: TOKEN }] : s.returnsRows ? [{ id: TOKEN }] : [], changes: 1 });
  out.push(...each('reopenFlow', played(reopenFlow(sql, UUID, { state: 'failed', flow: 8 | 4, batchId: HOSTILE, serialKey: HOSTILE }), tailLive)));
  out.push(...each('commitReserved', played(commitReserved(sql, [UUID, TOKEN]), (s) => ({ rows: s.returnsRows ? [{ id: UUID, queue: HOSTILE, parents_left: 1 }, { id: TOKEN, queue: HOSTILE, parents_left: 2 }] : [], changes: 1 }))));
  out.push(['reservationsExpired', reservationsExpired(sql, 100)]);
  out.push(['jobsToAge (fresh)', jobsToAge(sql, { everyMs: 60_000, limit: 1000, fresh: true })], ['jobsToAge (raised before)', jobsToAge(sql, { everyMs: 60_000, limit: 1000, fresh: false })]);
  out.push(['jobsRaise', jobsRaise(sql, [UUID, TOKEN], 60_000)]);
  out.push(['jobParents', jobParents(sql, UUID)], ['jobDependents', jobDependents(sql, UUID)], ['batchCounts', batchCounts(sql, HOSTILE)], ['batchRow', batchRow(sql, HOSTILE)]);
  return out;
}

/**
 * Queue limits and fair groups (lib/driver/portable/queues.ts): settings written both ways, a
 * grouped enqueue in a queue not yet managed, and a claim of a queue with every limit, whose reads
 * find a row in each (one group full, one with room).
 */
function queueStatements(sql: Sql): [string, Statement][] {
  const settings = { concurrency: 3, groupConcurrency: 1, rateLimit: { limit: 50, intervalMs: 1000, per: 'group' as const } };
  const none = () => ({ rows: [], changes: 0 });
  const found = (s: Statement): Outcome => ({ rows: s.returnsRows ? [{ code_hash: HOSTILE, vtime: 4, last_rank: 2 }] : [], changes: 1 });
  const limits = { concurrency: 3, group_concurrency: 1, rate_limit: 50, rate_interval_ms: 1000, rate_per: 'group', vtime: 4, paused: 0 };
  const claimAnswers = (s: Statement): Outcome => {
    if (!s.returnsRows && !/^\s*SELECT/.test(s.text)) return { rows: [], changes: 1 };
    if (/FROM \w+_queues q/.test(s.text)) return { rows: [limits], changes: 1 };
    if (/GROUP BY group_key/.test(s.text)) return { rows: [{ group_key: HOSTILE, n: 1 }], changes: 1 };
    if (/COUNT\(\*\) AS n FROM/.test(s.text)) return { rows: [{ n: 1 }], changes: 1 };
    if (/fair_rank FROM/.test(s.text)) return { rows: [{ id: UUID, group_key: HOSTILE, fair_rank: 5 }, { id: TOKEN, group_key: 'other', fair_rank: 6 }], changes: 2 };
    return { rows: [{ id: TOKEN, queue: HOSTILE }], changes: 1 };
  };
  return [
    ['queueSettingsList', queueSettingsList(sql)],
    ['idleGroups', idleGroups(sql, { idleMs: 86_400_000, limit: 1000 })],
    ['groupForget', groupForget(sql, { queue: HOSTILE, group: HOSTILE, idleMs: 86_400_000 })],
    ...each('saveQueueSettings (new, from code)', played(saveQueueSettings(sql, HOSTILE, settings, HOSTILE), none)),
    ...each('saveQueueSettings (run-time edit)', played(saveQueueSettings(sql, HOSTILE, settings, null), found)),
    ...each('lockGroups (a queue not managed yet)', played(lockGroups(sql, [{ queue: HOSTILE, groupKey: HOSTILE }, { queue: HOSTILE, groupKey: 'b' }]), (s) => (/SELECT vtime/.test(s.text) ? none() : found(s)))),
    ...each('rankInGroup', played(rankInGroup(sql, { groups: new Map([[JSON.stringify([HOSTILE, HOSTILE]), { queue: HOSTILE, group: HOSTILE, last: 3 }]]), vtimes: new Map(), turns: new Map() }, { queue: HOSTILE, groupKey: HOSTILE, priority: 5 }), found)),
    ...each('saveGroupRanks', played(saveGroupRanks(sql, { groups: new Map([['k', { queue: HOSTILE, group: HOSTILE, last: 9 }]]), vtimes: new Map(), turns: new Map() }), found)),
    ...each('claimManaged', played(claimManaged(sql, { workerId: HOSTILE, names: [HOSTILE], queue: HOSTILE, limit: 5 }, TOKEN), claimAnswers)),
  ];
}

const PARENT_FAILED = '01936f4e-8a1b-7c2d-9e3f-0a1b2c3d4e60';

/** Answers that take every branch: each read finds a row with every flow bit, a dependent with one parent left, a batch at its last job. */
function answers(sql: Sql, callbacks = '{}'): (s: Statement) => Outcome {
  const json = (v: string) => (sql.d.name === 'postgres' ? JSON.parse(v) : v);
  return (s) => {
    if (!s.returnsRows || !/^\s*SELECT/.test(s.text)) return { rows: [], changes: 1 };
    if (/FROM \w+_batches/.test(s.text)) return { rows: [{ total: 1, finished: 1, failed: 0, callbacks: json(callbacks), fired: 0 }], changes: 1 };
    if (/parents_left FROM/.test(s.text)) return { rows: [{ id: TOKEN, queue: HOSTILE, parents_left: 1 }], changes: 1 };
    if (/SELECT vtime FROM/.test(s.text)) return { rows: [{ vtime: 0 }], changes: 1 }; // a managed queue (joinGroup)
    if (/SELECT id, name, state FROM \w+_history/.test(s.text)) return { rows: [{ id: UUID, name: HOSTILE, state: 'completed' }, { id: PARENT_FAILED, name: HOSTILE, state: 'failed' }], changes: 2 };
    if (/SELECT id FROM \w+_jobs\b(?!.*ref_id)/s.test(s.text)) return { rows: [], changes: 0 };
    if (/ref_id =/.test(s.text)) return { rows: [], changes: 0 };
    return { rows: [{ id: UUID, name: HOSTILE, queue: HOSTILE, state: 'running', flow: 15, callbacks: json(callbacks), batch_id: HOSTILE, worker_id: HOSTILE }], changes: 1 };
  };
}

/** Answers that take a redrive's longest path: a pending copy, its failed original with every flow bit and a serial key, moved back. */
function redriveAnswers(sql: Sql): (s: Statement) => Outcome {
  const finish = answers(sql);
  return (s) => {
    if (/AS original FROM/.test(s.text)) return { rows: [{ state: 'pending', original: TOKEN }], changes: 1 };
    if (/SELECT queue, state, flow, batch_id, serial_key FROM/.test(s.text)) return { rows: [{ queue: HOSTILE, state: 'failed', flow: 15, batch_id: HOSTILE, serial_key: HOSTILE }], changes: 1 };
    return finish(s);
  };
}

/** Every statement steps yield, each answered by `answer` (a cancel's cascade is cut at the first round: the same statements again). */
export function played<T>(steps: Steps<T>, answer: (s: Statement) => Outcome): Statement[] {
  const said: Statement[] = [];
  let next = steps.next();
  while (!next.done && said.length < 200) {
    const s: Statement = next.value;
    said.push(s);
    const again = said.filter((x) => x.text === s.text).length > 1;
    next = steps.next(again && /parents_left > 0/.test(s.text) ? { rows: [], changes: 0 } : answer(s));
  }
  return said;
}

/** The statements of one transaction, named by their place in it. */
function each(name: string, list: Statement[]): [string, Statement][] {
  return list.map((s, i) => [`${name} ${i + 1}/${list.length}`, s]);
}
