/** What a handler receives besides its payload, and the outcomes it can choose besides return/throw. */
import type { JobError, JobState, JsonValue } from '../model.ts';
import type { BatchStatus } from '../driver/store.ts';

/** A parent of a job (its `dependsOn`, in order, or the job a callback reports on), as the handler sees it. */
export interface JobParent {
  id: string;
  name: string;
  /** Its state when this attempt started: completed for a dependent; failed or cancelled too for an onFailure callback. */
  state: JobState | null;
  /** Its result when it completed, else null. */
  result: unknown;
  error: JobError | null;
}

export interface JobContext {
  readonly id: string;
  readonly name: string;
  readonly queue: string;
  /** 1 on the first run. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** State saved by checkpoint() in an earlier attempt, or null. */
  readonly checkpoint: JsonValue | null;
  /** The user the job was enqueued for (the `userId` enqueue option), or null. */
  readonly userId: string | null;
  /** Where the outcome should be reported (the `replyTo` enqueue option), or null. */
  readonly replyTo: string | null;
  /** The string arguments given at enqueue (the `args` enqueue option), or null. */
  readonly args: Readonly<Record<string, string>> | null;
  /**
   * The jobs this one depended on (`dependsOn` order), each with its result; for an onSuccess or
   * onFailure callback, the job it reports on. Empty for other jobs.
   */
  readonly parents: readonly JobParent[];
  /** For a batch's callback (jobs.batch onComplete, onSuccess, onFailure): the batch's counts. Null otherwise. */
  readonly batch: BatchStatus | null;
  /** For a dead-letter copy (the deadLetter option): the id of the job that failed for good. Null otherwise. */
  readonly deadLetterOf: string | null;
  /**
   * Only for jobs defined with `transactional: true`: the driver's handle inside the transaction
   * that will mark this job completed (pg: a PoolClient; better-sqlite3: the Database, and the
   * handler must then be synchronous). Its writes commit with the completion, exactly once.
   */
  readonly tx?: unknown;
  /** Fires on timeout, on cancel of this job, on shutdown, and when this worker lost the job. */
  readonly signal: AbortSignal;
  /** Report progress (0-100). Buffered; written in batches. */
  progress(percent: number, message?: string): void;
  /** Append a log line to the job. Buffered; written in batches. */
  log(message: string): void;
  /** Persist state now, so that the next attempt resumes from it. Resolves false if this attempt lost the job. */
  saveCheckpoint(state: JsonValue): Promise<boolean>;
  /** Fail for good: no further attempts. */
  discard(reason: string): never;
  /** Run again after `ms` milliseconds without spending an attempt. */
  snooze(ms: number): never;
}

/** Why an attempt's signal fired. */
export type AbortReason = 'timeout' | 'cancelled' | 'shutdown' | 'lost';

export class JobAbortError extends Error {
  constructor(readonly reason: AbortReason, message: string) {
    super(message);
    this.name = 'JobAbortError';
  }
}

/** Thrown by ctx.discard(); also usable directly: `throw new DiscardJob('bad input')`. */
export class DiscardJob extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'DiscardJob';
  }
}

/** Thrown by ctx.snooze(). */
export class SnoozeJob extends Error {
  constructor(readonly delayMs: number) {
    super(`snoozed for ${delayMs} ms`);
    this.name = 'SnoozeJob';
  }
}
