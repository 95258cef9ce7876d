/**
 * The rescuer: jobs whose worker stopped sending heartbeats go back to pending (or fail for good
 * at their attempt limit), with the lost attempt recorded as "worker lost". The decision is made
 * here, once for every database; the store only reads the stalled jobs and writes the outcome
 * through the same fenced jobFailMany() a worker uses, so a rescue races nothing: a worker that comes
 * back and completes first wins, and two rescuers write each job once.
 *
 * Silence is proof only when heartbeats can be written. A round runs only while the rescuer's own
 * heartbeat is current (heartbeatLate): when every heartbeat is held back at once (another session
 * locking the workers' rows past the stall timeout, a database that stops writing, this process
 * frozen), all workers look silent, and rescuing them would run their jobs a second time. A
 * silent worker whose row another session holds locked right now is left alone (workersHeld):
 * its heartbeat may be waiting behind that lock while the rescuer's own row is free (a rescuer
 * registered after the lock was taken, or whose row it does not cover). And what a round sees is
 * looked at again 1.5 heartbeat intervals later before anything is rescued (Confirmation): when a
 * lock ends, the heartbeats that waited land one by one, the rescuer's own perhaps first.
 */
import { hasAttemptsLeft, WORKER_LOST, type JobError } from '../model.ts';
import type { FailItem, JobWrites, RescuedJob, StalledJob, WorkerLiveness } from '../driver/store.ts';

/** Jobs rescued per round at most; the next round takes the rest. */
const BATCH = 500;

export function workerLostError(job: StalledJob, stallMs: number): JobError {
  return { message: `worker lost: worker ${job.workerId ?? '?'} stopped sending heartbeats for over ${stallMs} ms`, name: WORKER_LOST };
}

/**
 * How late the rescuer's own heartbeat is, or null when it is current. Current means younger than
 * stallMs − heartbeatMs: a heartbeat held back as long as a silent worker's (stallMs) has to be at
 * least that old, since both are written every heartbeatMs. Unregistered (swept by a previous
 * leader, back at its next heartbeat) counts as late.
 */
export async function heartbeatLate(
  store: Pick<WorkerLiveness, 'workerHeartbeatAge'>,
  self: { workerId: string; heartbeatMs: number },
  stallMs: number,
): Promise<{ ageMs: number | null } | null> {
  const ageMs = await store.workerHeartbeatAge(self.workerId);
  return ageMs !== null && ageMs < stallMs - self.heartbeatMs ? null : { ageMs };
}

/**
 * How a rescue round confirms what it saw: it looks again after `afterMs` (more than a heartbeat
 * interval), and rescues only the jobs silent both times, if its own heartbeat is still current
 * then. A heartbeat that waited behind a lock until just now, or was written again with the
 * clock of when it was sent (a row deleted meanwhile, re-inserted), is followed by a fresh one
 * within a heartbeat interval; a dead worker's is not.
 */
export interface Confirmation {
  afterMs: number;
  /** Wait afterMs, or less when the rescuer stops; false when it stopped or its heartbeat is no longer current. */
  waitAndCheck(ms: number): Promise<boolean>;
}

type RescueStore = Pick<WorkerLiveness, 'jobStalledList' | 'workersHeld' | 'workerRemoveStale'> & Pick<JobWrites, 'jobFailMany'>;

/** Silent workers left alone this round because another session holds their row, with how many stalled jobs each has. */
export type HeldWorkers = Map<string, number>;

export async function rescueStalled(store: RescueStore, stallMs: number, confirm?: Confirmation, onHeld?: (held: HeldWorkers) => void): Promise<RescuedJob[]> {
  let seen = await store.jobStalledList({ stallMs, limit: BATCH });
  if (seen.length && confirm) {
    // Called off (stopped, no longer leading, own heartbeat late): nothing more this round, not even the sweep.
    if (!(await confirm.waitAndCheck(confirm.afterMs))) return [];
    seen = await silentAgain(store, stallMs, seen);
  }
  const stalled = await withoutHeldWorkers(store, seen, stallMs, onHeld);
  let rescued: RescuedJob[] = [];
  if (stalled.length) {
    const items: FailItem[] = stalled.map((job) => ({
      id: job.id,
      token: job.token,
      attempt: job.attempts,
      startedAt: job.startedAt,
      error: workerLostError(job, stallMs),
      retryDelayMs: hasAttemptsLeft(job) ? 0 : null,
    }));
    const applied = await store.jobFailMany(items);
    rescued = stalled.filter((job) => applied.has(job.id)).map((job) => ({ id: job.id, name: job.name, queue: job.queue, outcome: hasAttemptsLeft(job) ? 'retry' : 'failed' }));
  }
  await store.workerRemoveStale(stallMs);
  return rescued;
}

/** Of the jobs seen stalled, those still stalled under the same claim, their worker having written nothing since (see Confirmation). */
async function silentAgain(store: RescueStore, stallMs: number, seen: StalledJob[]): Promise<StalledJob[]> {
  const key = (job: StalledJob) => `${job.id}:${job.token}:${job.workerHeartbeatAt}`;
  const again = new Set((await store.jobStalledList({ stallMs, limit: BATCH })).map(key));
  return seen.filter((job) => again.has(key(job)));
}

/** The stalled jobs but those of workers whose row another session holds locked or that wrote a heartbeat since (see the top of this file). */
async function withoutHeldWorkers(store: Pick<WorkerLiveness, 'workersHeld'>, stalled: StalledJob[], stallMs: number, onHeld?: (held: HeldWorkers) => void): Promise<StalledJob[]> {
  const workers = [...new Set(stalled.map((job) => job.workerId).filter((id): id is string => id !== null))];
  const held = await store.workersHeld(workers, stallMs);
  const jobsOfHeld: HeldWorkers = new Map();
  for (const job of stalled) if (job.workerId !== null && held.has(job.workerId)) jobsOfHeld.set(job.workerId, (jobsOfHeld.get(job.workerId) ?? 0) + 1);
  onHeld?.(jobsOfHeld);
  return stalled.filter((job) => job.workerId === null || !held.has(job.workerId));
}
