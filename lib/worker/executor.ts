/**
 * Runs one attempt of one job: builds its context, enforces its timeout, turns the handler's
 * return/throw into an outcome, and writes that outcome through the fenced writer.
 */
import {
  backoffDelay, errorToRecord, toJson, type BackoffOptions, type JobError, type JsonValue,
} from '../model.ts';
import type { ClaimedJob } from '../store/store.ts';
import { DiscardJob, JobAbortError, SnoozeJob, type AbortReason, type JobContext } from './context.ts';
import type { OutcomeWriter } from './writer.ts';
import type { Store } from '../store/store.ts';

export interface JobDefinition {
  name: string;
  handler: (payload: never, ctx: JobContext) => unknown;
  timeout?: number;
  backoff?: BackoffOptions;
  maxAttempts?: number;
  queue?: string;
  priority?: number;
}

export type AttemptOutcome =
  | { kind: 'completed'; result: unknown }
  | { kind: 'retrying'; error: JobError; delayMs: number }
  | { kind: 'failed'; error: JobError }
  | { kind: 'snoozed'; delayMs: number }
  | { kind: 'aborted'; reason: AbortReason }
  /** The fenced write was refused: another worker or a cancel owns the job now. */
  | { kind: 'lost' };

export class RunningAttempt {
  readonly controller = new AbortController();
  readonly claimSeq: number;
  private timer: NodeJS.Timeout | null = null;
  /** Settles with the attempt's outcome once it is written (or refused). */
  readonly done: Promise<AttemptOutcome>;
  /** Settles when the handler has returned, thrown or been abandoned: its slot is free from then on. */
  readonly handlerDone: Promise<void>;
  private markHandlerDone!: () => void;
  private settleAbort!: (reason: AbortReason) => void;

  constructor(
    readonly job: ClaimedJob,
    private readonly def: JobDefinition,
    private readonly deps: { store: Store; writer: OutcomeWriter; seq: number },
  ) {
    this.claimSeq = deps.seq;
    this.handlerDone = new Promise((r) => (this.markHandlerDone = r));
    this.done = this.run();
  }

  get id(): string {
    return this.job.id;
  }

  get fenced(): { id: string; token: string } {
    return { id: this.job.id, token: this.job.token };
  }

  /** Fire the attempt's AbortSignal; the attempt stops waiting for its handler at once. */
  abort(reason: AbortReason): void {
    if (this.controller.signal.aborted) return;
    const messages: Record<AbortReason, string> = {
      timeout: `job ${this.job.name} (${this.job.id}) timed out after ${this.timeoutMs} ms`,
      cancelled: `job ${this.job.name} (${this.job.id}) was cancelled`,
      shutdown: `worker shutting down: job ${this.job.name} (${this.job.id}) returned to pending`,
      lost: `job ${this.job.name} (${this.job.id}) is no longer owned by this worker (rescued or cancelled elsewhere)`,
    };
    this.controller.abort(new JobAbortError(reason, messages[reason]));
    this.settleAbort?.(reason);
  }

  private get timeoutMs(): number | null {
    return this.job.timeoutMs ?? this.def.timeout ?? null;
  }

  private context(): JobContext {
    const { job, deps } = this;
    const fenced = this.fenced;
    return {
      id: job.id,
      name: job.name,
      queue: job.queue,
      attempt: job.attempts,
      maxAttempts: job.maxAttempts,
      checkpoint: job.checkpoint,
      signal: this.controller.signal,
      progress: (percent: number, message?: string) => {
        if (typeof percent !== 'number' || !Number.isFinite(percent)) throw new TypeError(`progress percent must be a number from 0 to 100; got ${percent}`);
        deps.writer.progress(fenced, job.attempts, Math.max(0, Math.min(100, percent)), message ?? null);
      },
      log: (message: string) => deps.writer.log(fenced, job.attempts, String(message).slice(0, 10_000)),
      saveCheckpoint: async (state: JsonValue) => {
        const ok = await deps.store.saveCheckpoint(fenced, toJson(job.name, 'checkpoint', state));
        if (!ok) this.abort('lost');
        return ok;
      },
      discard: (reason: string) => {
        throw new DiscardJob(reason);
      },
      snooze: (ms: number) => {
        if (!Number.isInteger(ms) || ms < 0) throw new TypeError(`snooze ms must be a non-negative integer; got ${ms}`);
        throw new SnoozeJob(ms);
      },
    };
  }

  private async run(): Promise<AttemptOutcome> {
    const aborted = new Promise<AttemptOutcome>((resolve) => {
      this.settleAbort = (reason) => resolve({ kind: 'aborted', reason });
    });
    const timeout = this.timeoutMs;
    if (timeout) this.timer = setTimeout(() => this.abort('timeout'), timeout);
    let outcome: AttemptOutcome;
    try {
      const result = Promise.resolve()
        .then(() => this.def.handler(this.job.payload as never, this.context()))
        .then(
          (value): AttemptOutcome => ({ kind: 'completed', result: value }),
          (err): AttemptOutcome => this.classify(err),
        );
      outcome = await Promise.race([result, aborted]);
    } finally {
      if (this.timer) clearTimeout(this.timer);
      this.markHandlerDone();
    }
    if (outcome.kind === 'aborted' && outcome.reason === 'timeout') {
      outcome = this.retryOrFail(new JobAbortError('timeout', `job ${this.job.name} (${this.job.id}) timed out after ${timeout} ms`));
    }
    return this.persist(outcome);
  }

  private classify(err: unknown): AttemptOutcome {
    if (err instanceof SnoozeJob) return { kind: 'snoozed', delayMs: err.delayMs };
    if (err instanceof DiscardJob) return { kind: 'failed', error: errorToRecord(err) };
    if (this.controller.signal.aborted) {
      const reason = (this.controller.signal.reason as JobAbortError).reason;
      if (reason !== 'timeout') return { kind: 'aborted', reason };
    }
    return this.retryOrFail(err);
  }

  private retryOrFail(err: unknown): AttemptOutcome {
    const error = errorToRecord(err);
    if (this.job.attempts >= this.job.maxAttempts) return { kind: 'failed', error };
    const backoff = this.job.backoff ?? this.def.backoff ?? null;
    return { kind: 'retrying', error, delayMs: backoffDelay(backoff, this.job.attempts, err) };
  }

  /** Write the outcome, fenced. Aborted attempts write nothing here: the worker decides (shutdown releases). */
  private async persist(outcome: AttemptOutcome): Promise<AttemptOutcome> {
    const { writer } = this.deps;
    const base = { ...this.fenced, attempt: this.job.attempts, startedAt: this.job.startedAt };
    if (outcome.kind === 'aborted') return outcome;
    await writer.flushJob(this.job.id);
    let applied: boolean;
    switch (outcome.kind) {
      case 'completed': {
        let resultJson: string | null;
        try {
          resultJson = outcome.result === undefined ? null : toJson(this.job.name, 'result', outcome.result);
        } catch (err) {
          return this.persist(this.retryOrFail(err));
        }
        applied = await writer.complete({ ...this.fenced, resultJson });
        break;
      }
      case 'retrying':
        applied = await writer.fail({ ...base, error: outcome.error, retryDelayMs: outcome.delayMs });
        break;
      case 'failed':
        applied = await writer.fail({ ...base, error: outcome.error, retryDelayMs: null });
        break;
      case 'snoozed':
        applied = await writer.release({ ...this.fenced, delayMs: outcome.delayMs, refund: true });
        break;
      default:
        return outcome;
    }
    if (!applied) {
      this.abort('lost');
      return { kind: 'lost' };
    }
    return outcome;
  }
}
