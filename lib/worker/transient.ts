/**
 * Transient jobs (ServiceStack's "transient jobs on named workers"): a defined handler run in
 * this process now, with the same context a worker gives it (progress, logs, signal, timeout),
 * written nowhere, listed while it runs. Runs with the same `serial` key wait for each other, in
 * call order; others run at once.
 */
import { checkDelay, JobValidationError, describe, toJson, type JsonValue } from '../model.ts';
import { MAX_TIMER_MS } from '../options.ts';
import { uuidv7 } from '../uuid.ts';
import { DiscardJob, JobAbortError, type JobContext } from './context.ts';
import type { JobDefinition } from './executor.ts';

export type { TransientOptions, TransientRun } from './options.ts';
import type { TransientOptions, TransientRun } from './options.ts';

const KEPT_LOG_LINES = 100;

interface Run extends TransientRun {
  controller: AbortController;
}

export class TransientRunner {
  private readonly runs = new Map<string, Run>();
  /** The tail of each serial key's chain: the next run with that key starts when it settles. */
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(private readonly definitionOf: (name: string) => JobDefinition | undefined) {}

  /** A run's promise; bad input is its rejection too, never a throw. */
  run(name: string, payload: unknown, opts: TransientOptions = {}): Promise<unknown> {
    try {
      return this.begin(name, payload, opts);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private begin(name: string, payload: unknown, opts: TransientOptions): Promise<unknown> {
    const def = this.definitionOf(name);
    if (!def) throw new JobValidationError(`runTransient: job "${name}" is not defined in this process (define it with jobs.define first)`, 'name', name);
    if (opts === null || typeof opts !== 'object') throw new TypeError(`runTransient: options must be an object { serial, timeout }; got ${describe(opts)}`);
    for (const key of Object.keys(opts)) {
      if (key !== 'serial' && key !== 'timeout') throw new JobValidationError(`runTransient: ${key} is not an option; allowed: serial, timeout`, key, name);
    }
    if (opts.serial !== undefined && (typeof opts.serial !== 'string' || !opts.serial.length || opts.serial.length > 255)) {
      throw new JobValidationError(`job "${name}": serial must be a key of 1-255 characters; got ${describe(opts.serial)}`, 'serial', name);
    }
    if (def.transactional) {
      throw new JobValidationError(`runTransient: job "${name}" is transactional (its handler runs in the transaction that completes it, ctx.tx), which a run that writes nothing has not; enqueue it instead`, 'name', name);
    }
    const timeout = opts.timeout === undefined ? def.timeout : checkDelay('timeout', opts.timeout);
    if (timeout !== undefined && timeout > MAX_TIMER_MS) throw new JobValidationError(`runTransient: timeout must be at most ${MAX_TIMER_MS} ms; got ${timeout}`, 'timeout', name);
    // Checked as a queued job's would be (a Date or BigInt is refused), though nothing is stored.
    if (payload !== undefined && !Buffer.isBuffer(payload)) toJson(name, 'payload', payload);
    const run: Run = {
      id: uuidv7(), name, state: 'waiting', serial: opts.serial ?? null, createdAt: new Date(), startedAt: null,
      progress: null, progressMessage: null, logs: [], controller: new AbortController(),
    };
    this.runs.set(run.id, run);
    const start = () => this.execute(run, def, payload, timeout);
    let result: Promise<unknown>;
    if (run.serial === null) {
      result = start();
    } else {
      const key = run.serial;
      const before = this.chains.get(key);
      result = before ? before.then(start, start) : start();
      const tail = result.catch(() => undefined);
      this.chains.set(key, tail);
      void tail.then(() => {
        if (this.chains.get(key) === tail) this.chains.delete(key);
      });
    }
    return result.finally(() => this.runs.delete(run.id));
  }

  /** The runs in progress or waiting, oldest first. */
  list(): TransientRun[] {
    return [...this.runs.values()].map(({ controller: _c, logs, ...r }) => ({ ...r, logs: [...logs] }));
  }

  /** Abort a transient run (its signal fires; its promise rejects). False when no such run. */
  cancel(id: string): boolean {
    const run = this.runs.get(id);
    if (!run) return false;
    run.controller.abort(new JobAbortError('cancelled', `transient job ${run.name} (${run.id}) was cancelled`));
    return true;
  }

  /** Abort every run (the instance is stopping). */
  abortAll(): void {
    for (const run of this.runs.values()) run.controller.abort(new JobAbortError('shutdown', `transient job ${run.name} (${run.id}) aborted: jobs stopping`));
  }

  private async execute(run: Run, def: JobDefinition, payload: unknown, timeout: number | undefined): Promise<unknown> {
    if (run.controller.signal.aborted) throw run.controller.signal.reason;
    run.state = 'running';
    run.startedAt = new Date();
    const timer = timeout ? setTimeout(() => run.controller.abort(new JobAbortError('timeout', `transient job ${run.name} (${run.id}) timed out after ${timeout} ms`)), timeout) : null;
    try {
      // Settles when the handler does, or at once when the signal fires (a handler that ignores it is not waited for).
      return await new Promise<unknown>((resolve, reject) => {
        const signal = run.controller.signal;
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        Promise.resolve()
          .then(() => def.handler(payload as never, this.context(run)))
          .then(resolve, reject);
      });
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private context(run: Run): JobContext {
    return {
      id: run.id,
      name: run.name,
      queue: 'transient',
      attempt: 1,
      maxAttempts: 1,
      checkpoint: null,
      userId: null,
      replyTo: null,
      args: null,
      parents: [],
      batch: null,
      deadLetterOf: null,
      signal: run.controller.signal,
      progress: (percent: number, message?: string) => {
        if (typeof percent !== 'number' || !Number.isFinite(percent)) throw new TypeError(`progress percent must be a number from 0 to 100; got ${percent}`);
        run.progress = Math.max(0, Math.min(100, percent));
        run.progressMessage = message === undefined || message === null ? null : String(message);
      },
      log: (message: string) => {
        run.logs.push({ at: new Date(), message: String(message) });
        if (run.logs.length > KEPT_LOG_LINES) run.logs.shift();
      },
      // Nothing is stored: there is no next attempt to resume.
      saveCheckpoint: async (_state: JsonValue) => false,
      discard: (reason: string) => {
        throw new DiscardJob(reason);
      },
      snooze: (_ms: number) => {
        throw new TypeError(`ctx.snooze is not available in a transient run (nothing is stored to run again later): job ${run.name}`);
      },
    };
  }
}
