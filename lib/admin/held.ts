/**
 * Why a pending job is not running, in words: the holds its own record shows (a reservation, its
 * parents, the job before it on its serial key) and those of its queue as the claim counts them
 * (driver/portable/queues.ts): paused, at its concurrency, its group at its groupConcurrency, its
 * rate window full. No I/O: the caller reads the queue's figures once for every job it shows.
 */
import type { StoredQueueSettings } from '../driver/portable/queues.ts';

export type HoldKind = 'reserved' | 'parents' | 'serial' | 'paused' | 'concurrency' | 'groupConcurrency' | 'rateLimit' | 'noWorker';

export interface Hold {
  kind: HoldKind;
  text: string;
}

/** What of a job its holds are read from (a JobRecord, or a link's fields). */
export interface HeldJob {
  state: string | null;
  waitingFor: number;
  serialKey?: string | null;
  reservedUntil?: Date | null;
}

/** A queue as its claim sees it now. */
export interface QueueNow {
  queue: string;
  paused: boolean;
  /** Its limits (null: none; the queue is not managed). */
  settings: StoredQueueSettings | null;
  /** Its running jobs, every group together. */
  running: number;
  /** Starts its rate window holds for the whole queue (null: no rate limit). */
  starts: number | null;
  /** Per group: its running jobs and its starts in the window (a group not listed has none). */
  groups: ReadonlyMap<string, { running: number; starts: number | null }>;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * The holds a job's record shows. Its waitingFor counts one hold per parent not completed, one for
 * the job before it on its serial key and one for a reservation; `parents` (from its links, when at
 * hand) tells the parents from the serial predecessor, which the record alone cannot.
 */
export function jobHolds(job: HeldJob, parents?: { total: number; left: number }): Hold[] {
  if (job.state !== 'pending' || job.waitingFor <= 0) return [];
  const holds: Hold[] = [];
  const reserved = job.reservedUntil ? 1 : 0;
  if (reserved) holds.push({ kind: 'reserved', text: 'reserved: it runs once committed (jobs.commitReserved)' });
  const rest = job.waitingFor - reserved;
  if (rest <= 0) return holds;
  if (parents) {
    const left = Math.min(parents.left, rest);
    if (left > 0) holds.push({ kind: 'parents', text: `waiting for ${left} of ${plural(parents.total, 'parent')}` });
    if (rest > left) holds.push({ kind: 'serial', text: `waiting for the job before it on serial key ${job.serialKey ?? '?'} to finish` });
  } else if (job.serialKey) {
    holds.push({ kind: 'serial', text: `waiting for ${plural(rest, 'earlier job')} to finish (its parents, or the one before it on serial key ${job.serialKey})` });
  } else {
    holds.push({ kind: 'parents', text: `waiting for ${plural(rest, 'parent')}` });
  }
  return holds;
}

/** The holds on the whole queue: paused, its concurrency reached, its rate window full (per queue). */
export function queueHolds(q: QueueNow): Hold[] {
  const holds: Hold[] = [];
  if (q.paused) holds.push({ kind: 'paused', text: `queue ${q.queue} is paused` });
  const s = q.settings;
  if (s?.concurrency != null && q.running >= s.concurrency) {
    holds.push({ kind: 'concurrency', text: `queue ${q.queue} is at its concurrency: ${q.running} of ${s.concurrency} running` });
  }
  const rate = s?.rateLimit;
  if (rate && rate.per === 'queue' && q.starts !== null && q.starts >= rate.limit) {
    holds.push({ kind: 'rateLimit', text: `rate window full: ${q.starts} of ${rate.limit} starts in the last ${rate.intervalMs} ms` });
  }
  return holds;
}

/**
 * The holds on one group of the queue: its groupConcurrency reached, its own rate window full (a
 * rate limit per group). Jobs without a group are held by neither: the claim counts them apart.
 */
export function groupHolds(q: QueueNow, group: string | null): Hold[] {
  const s = q.settings;
  if (group === null || !s) return [];
  const counts = q.groups.get(group) ?? { running: 0, starts: 0 };
  const holds: Hold[] = [];
  if (s.groupConcurrency !== null && counts.running >= s.groupConcurrency) {
    holds.push({ kind: 'groupConcurrency', text: `group ${group} is at its groupConcurrency: ${counts.running} of ${s.groupConcurrency} running` });
  }
  const rate = s.rateLimit;
  if (rate && rate.per === 'group' && (counts.starts ?? 0) >= rate.limit) {
    holds.push({ kind: 'rateLimit', text: `rate window of group ${group} full: ${counts.starts} of ${rate.limit} starts in the last ${rate.intervalMs} ms` });
  }
  return holds;
}

/** A live worker as its row says: the job names it has handlers for, the queues it claims from (null: all). */
export interface LiveWorker {
  names: readonly string[];
  queues: readonly string[] | null;
}

/**
 * No live worker would claim the job: none has a handler for its name in its queue (a name
 * misspelt between producer and worker, a queue no worker listens to, or no worker running).
 * Workers claim only the names they define, so such a job waits, pending, without an error.
 */
export function workerHolds(job: { name: string; queue: string }, workers: readonly LiveWorker[]): Hold[] {
  if (workers.some((w) => w.names.includes(job.name) && (w.queues === null || w.queues.includes(job.queue)))) return [];
  if (!workers.length) return [{ kind: 'noWorker', text: 'no worker is running' }];
  const names = [...new Set(workers.flatMap((w) => w.names))].sort();
  const byName = workers.filter((w) => w.names.includes(job.name));
  const text = byName.length
    ? `no live worker claims from queue ${job.queue}; those handling "${job.name}" claim from ${[...new Set(byName.flatMap((w) => w.queues ?? []))].sort().join(', ')}`
    : `no live worker has a handler for "${job.name}" (they handle: ${names.join(', ') || 'none'})`;
  return [{ kind: 'noWorker', text }];
}

/**
 * Why a pending job does not run now: its own holds, then its queue's and its group's. The limits
 * only hold back a job that is due and free of its own holds (the claim never looks at any other);
 * a paused queue holds every one of its jobs. Empty: nothing holds it (not due yet, or next in line).
 */
export function whyHeld(
  job: HeldJob & { name: string; queue: string; runAt: Date; group: string | null },
  q: QueueNow,
  opts: { now: number; parents?: { total: number; left: number }; workers?: readonly LiveWorker[] },
): Hold[] {
  if (job.state !== 'pending') return [];
  const own = jobHolds(job, opts.parents);
  const queue = queueHolds(q);
  const unclaimed = opts.workers ? workerHolds(job, opts.workers) : [];
  if (own.length || job.runAt.getTime() > opts.now) return [...own, ...queue.filter((h) => h.kind === 'paused'), ...unclaimed];
  return [...queue, ...groupHolds(q, job.group), ...unclaimed];
}
