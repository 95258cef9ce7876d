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
  /** The handler runs inside the transaction that marks the job completed (ctx.tx). */
  transactional?: boolean;
  maxAttempts?: number;
  queue?: string;
  priority?: number;
}

export type AttemptOutcome =
  | { kind: 'completed'; result: unknown; written?: boolean }
  | { kind: 'retrying'; error: JobError; delayMs: number }
  | { kind: 'failed'; error: JobError }
  | { kind: 'snoozed'; delayMs: number }
  | { kind: 'aborted'; reason: AbortReason }
  /** The fenced write was refused: another worker or a cancel owns the job now. */
  | { kind: 'lost' };

export class RunningAttempt {
  readonly claimSeq: number;
  private timer: NodeJS.Timeout | null = null;
  /** Created on first use: most handlers never look at their signal. */
  private abortController: AbortController | null = null;
  private abortReason: AbortReason | null = null;
  /** Settles with the attempt's outcome once it is written (or refused). */
  readonly done: Promise<AttemptOutcome>;
  /** Settles when the handler has returned, thrown or been abandoned: its slot is free from then on. */
  readonly handlerDone: Promise<void>;
  private markHandlerDone!: () => void;
  /** Decides the attempt: the handler's outcome or an abort, whichever comes first. */
  private decide!: (o: AttemptOutcome) => void;

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

  get fenced(): { id: string; token: string; rowid?: number } {
    return { id: this.job.id, token: this.job.token, rowid: this.job.rowid };
  }

  private get controller(): AbortController {
    if (!this.abortController) {
      this.abortController = new AbortController();
      if (this.abortReason) this.abortController.abort(this.abortError(this.abortReason));
    }
    return this.abortController;
  }

  private abortError(reason: AbortReason): JobAbortError {
    const messages: Record<AbortReason, string> = {
      timeout: `job ${this.job.name} (${this.job.id}) timed out after ${this.timeoutMs} ms`,
      cancelled: `job ${this.job.name} (${this.job.id}) was cancelled`,
      shutdown: `worker shutting down: job ${this.job.name} (${this.job.id}) returned to pending`,
      lost: `job ${this.job.name} (${this.job.id}) is no longer owned by this worker (rescued or cancelled elsewhere)`,
    };
    return new JobAbortError(reason, messages[reason]);
  }

  /** Fire the attempt's AbortSignal; the attempt stops waiting for its handler at once. */
  abort(reason: AbortReason): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.abortController?.abort(this.abortError(reason));
    this.decide?.({ kind: 'aborted', reason });
  }

  private get timeoutMs(): number | null {
    return this.job.timeoutMs ?? this.def.timeout ?? null;
  }

  private context(): JobContext {
    const { job, deps } = this;
    const fenced = this.fenced;
    const self = this;
    return {
      id: job.id,
      name: job.name,
      queue: job.queue,
      attempt: job.attempts,
      maxAttempts: job.maxAttempts,
      checkpoint: job.checkpoint,
      get signal() {
        return self.controller.signal;
      },
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
    const timeout = this.timeoutMs;
    let outcome = await new Promise<AttemptOutcome>((resolve) => {
      this.decide = resolve;
      if (timeout) this.timer = setTimeout(() => this.abort('timeout'), timeout);
      if (this.def.transactional) {
        this.runTransactional().then(resolve, (err) => resolve(this.classify(err)));
        return;
      }
      let result: unknown;
      try {
        result = this.def.handler(this.job.payload as never, this.context());
      } catch (err) {
        return resolve(this.classify(err));
      }
      if (result !== null && typeof (result as PromiseLike<unknown>)?.then === 'function') {
        (result as PromiseLike<unknown>).then(
          (value) => resolve({ kind: 'completed', result: value }),
          (err) => resolve(this.classify(err)),
        );
      } else {
        resolve({ kind: 'completed', result });
      }
    });
    if (this.timer) clearTimeout(this.timer);
    this.markHandlerDone();
    if (outcome.kind === 'aborted' && outcome.reason === 'timeout') {
      outcome = this.retryOrFail(this.abortError('timeout'));
    }
    return this.persist(outcome);
  }

  /**
   * Transactional completion: the handler's database work and the fenced completion commit
   * together, or not at all (a rescued job's old worker rolls its work back).
   */
  private async runTransactional(): Promise<AttemptOutcome> {
    const ctx = this.context();
    const { applied, result } = await this.deps.store.runTransactional(
      this.fenced,
      (tx) => this.def.handler(this.job.payload as never, Object.assign(ctx, { tx })),
      (value) => (value === undefined ? null : toJson(this.job.name, 'result', value)),
      () => (this.deps.writer.hasBuffered(this.job.id) ? this.deps.writer.flushJob(this.job.id) : undefined),
    );
    return applied ? { kind: 'completed', result, written: true } : { kind: 'lost' };
  }

  private classify(err: unknown): AttemptOutcome {
    if (err instanceof SnoozeJob) return { kind: 'snoozed', delayMs: err.delayMs };
    if (err instanceof DiscardJob) return { kind: 'failed', error: errorToRecord(err) };
    if (this.abortReason && this.abortReason !== 'timeout') return { kind: 'aborted', reason: this.abortReason };
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
    if (writer.hasBuffered(this.job.id)) await writer.flushJob(this.job.id);
    let applied: boolean;
    switch (outcome.kind) {
      case 'completed': {
        if (outcome.written) return outcome;
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
