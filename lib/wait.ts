/** jobs.waitFor: a job's record once it finished, by whichever process. */
import { TERMINAL_STATES, type JobRecord } from './model.ts';

/** The longest waitFor takes (a timer's limit is about 24.8 days; an hour is already a long request). */
export const MAX_WAIT_MS = 3_600_000;
/** How soon waitFor looks again at first, and at most how long between looks. */
const FIRST_LOOK_MS = 25;
const LAST_LOOK_MS = 250;

/** Thrown by jobs.waitFor when the job did not finish in time. */
export class WaitTimeoutError extends Error {
  constructor(
    readonly jobId: string,
    /** The job's state when the wait ended, null when no job with that id was found. */
    readonly state: JobRecord['state'] | null,
    timeoutMs: number,
    /** Said after the message: what may explain the wait. */
    hint?: string,
  ) {
    super((state === null
      ? `waitFor: no job ${jobId} was found within ${timeoutMs} ms (never enqueued, not committed yet, deleted, or pruned by retention)`
      : `waitFor: job ${jobId} was still ${state} after ${timeoutMs} ms`) + (hint ? `; ${hint}` : ''));
    this.name = 'WaitTimeoutError';
  }
}

export interface WaitSources<R extends JobRecord> {
  get(id: string): Promise<R | null>;
  /** Call `listener` with the id of each job this process finishes; answers how to stop. */
  on(listener: (id: string) => void): () => void;
}

/**
 * Look, then look again when this process finishes the job or after a pause that doubles from
 * 25 to 250 ms (another process finishing it is seen that late), until it finished or the time ran out.
 */
export async function waitForFinished<R extends JobRecord>(id: string, timeoutMs: number, sources: WaitSources<R>): Promise<R> {
  const deadline = Date.now() + timeoutMs;
  let wake: (() => void) | null = null;
  const off = sources.on((finished) => {
    if (finished === id) wake?.();
  });
  try {
    for (let pause = FIRST_LOOK_MS; ; pause = Math.min(pause * 2, LAST_LOOK_MS)) {
      const job = await sources.get(id);
      if (job && TERMINAL_STATES.includes(job.state)) return job;
      const left = deadline - Date.now();
      if (left <= 0) throw new WaitTimeoutError(id, job?.state ?? null, timeoutMs);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(pause, left));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    off();
  }
}

/** What `work` resolves to within `ms`, or `late` after them; the timer is cleared either way. */
export async function within<T, L>(work: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<L>((resolve) => (timer = setTimeout(resolve, ms, late)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `work` settles (resolves or rejects) within `ms`. */
export function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  return within(work.then(() => true, () => true), ms, false);
}
