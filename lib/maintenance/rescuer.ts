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
 * frozen), all workers look silent, and rescuing them would run their jobs a second time. And a
 * silent worker whose row another session holds locked right now is left alone (workersHeld):
 * its heartbeat may be waiting behind that lock while the rescuer's own row is free (a rescuer
 * registered after the lock was taken, or whose row it does not cover).
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

export async function rescueStalled(store: Pick<WorkerLiveness, 'jobStalledList' | 'workersHeld' | 'workerRemoveStale'> & Pick<JobWrites, 'jobFailMany'>, stallMs: number): Promise<RescuedJob[]> {
  const { stalled, held } = await withoutHeldWorkers(store, await store.jobStalledList({ stallMs, limit: BATCH }));
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
  await store.workerRemoveStale(stallMs, held);
  return rescued;
}

/** The stalled jobs but those of workers whose row another session holds locked (see the top of this file), and those workers. */
async function withoutHeldWorkers(store: Pick<WorkerLiveness, 'workersHeld'>, stalled: StalledJob[]): Promise<{ stalled: StalledJob[]; held: Set<string> }> {
  const workers = [...new Set(stalled.map((job) => job.workerId).filter((id): id is string => id !== null))];
  const held = await store.workersHeld(workers);
  return { stalled: held.size ? stalled.filter((job) => job.workerId === null || !held.has(job.workerId)) : stalled, held };
}
