/**
 * Every portable statement (lib/driver/portable/), built with hostile text wherever a string goes
 * in: the server-less tests render each one for every dialect (test/unit/portable.test.ts) and
 * SQL Server's statement tests include them. A new portable builder is added here.
 */
import { DIALECTS } from '../../lib/driver/portable/dialect.ts';
import { tables, type Statement } from '../../lib/driver/portable/statement.ts';
import type { Sql } from '../../lib/driver/portable/sql.ts';
import type { Dialect } from '../../lib/driver/store.ts';
import { leaseRelease, leaseRenew } from '../../lib/driver/portable/leases.ts';
import {
  clockNow, jobAttempts, jobGet, jobLogs, jobsFinishedCounts, jobsList, jobsLiveCounts, jobsThroughput, queuesPaused, queuesStats, workersList,
} from '../../lib/driver/portable/reads.ts';
import { historyPrune, historyPrunePick, jobCancel, jobMakeDue, jobRetry, jobsDelete, queuePause, queueResume } from '../../lib/driver/portable/admin.ts';
import { jobSaveCheckpoint, jobsNextDue, jobsOwnedBy, jobsStalled, workerHeartbeat, workerRemove, workersRemoveStale } from '../../lib/driver/portable/workers.ts';
import { scheduleAdvance, scheduleRemove, scheduleSetEnabled, scheduleTicksRemove, schedulesDue, schedulesList } from '../../lib/driver/portable/schedules.ts';

export const HOSTILE = "x'); DROP TABLE sqljobs_jobs; -- ? $1 @p1 `key` [key]";
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
    ['workersList', workersList(sql)],
    ['clockNow', clockNow(sql)],
    ['jobsLiveCounts', jobsLiveCounts(sql)],
    ['jobsFinishedCounts', jobsFinishedCounts(sql, { cap: 1000 })],
    ['queuesStats', queuesStats(sql)],
    ['queuesPaused', queuesPaused(sql)],
    ['jobsThroughput', jobsThroughput(sql, { windowMs: 3_600_000, bucketMs: 60_000 })],
    ['jobsList', jobsList(sql, {
      queue: HOSTILE, name: HOSTILE, tag: HOSTILE, batchId: HOSTILE, refId: HOSTILE, createdBy: HOSTILE,
      createdAfter: new Date(0), createdBefore: new Date(1), cursor: UUID, limit: 10, includePayload: true,
    })],
    ['jobsList (live states)', jobsList(sql, { states: ['pending', 'running'], queue: HOSTILE })],
    ['jobsList (some finished states)', jobsList(sql, { states: ['failed', 'cancelled'], cursor: UUID })],
    ...each('jobCancel', jobCancel(sql, UUID)),
    ['jobMakeDue', jobMakeDue(sql, UUID)],
    ...each('jobRetry', jobRetry(sql, UUID)),
    ['queuePause', queuePause(sql, HOSTILE)],
    ['queueResume', queueResume(sql, HOSTILE)],
    ...each('jobsDelete', jobsDelete(sql, [UUID, TOKEN])),
    ['historyPrunePick', historyPrunePick(sql, { olderThanMs: 86_400_000, limit: 100 })],
    ...each('historyPrune', historyPrune(sql, { olderThanMs: 86_400_000, ids: [UUID, TOKEN] })),
    ['workerHeartbeat', workerHeartbeat(sql, { id: HOSTILE, host: HOSTILE, pid: 1, queues: [HOSTILE], names: [HOSTILE], concurrency: 2 })],
    ['workerHeartbeat (all queues)', workerHeartbeat(sql, { id: HOSTILE, host: HOSTILE, pid: 1, queues: null, names: [], concurrency: 1 })],
    ['jobsOwnedBy', jobsOwnedBy(sql, HOSTILE)],
    ['workerRemove', workerRemove(sql, HOSTILE)],
    ['workersRemoveStale', workersRemoveStale(sql, 30_000)],
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
  ];
}

/** The statements of one transaction, named by their place in it. */
function each(name: string, list: Statement[]): [string, Statement][] {
  return list.map((s, i) => [`${name} ${i + 1}/${list.length}`, s]);
}
