/**
 * How the library tells the app about problems it handled itself, and how it calls the app's
 * event listeners without letting them change what it did.
 *
 * An error goes to the app's 'error' listeners when it has any, otherwise to the logger (console
 * by default), rate-limited to one line per distinct error per minute: a database that is away
 * must not flood the app's output with one line per poll.
 */
import type { EventEmitter } from 'node:events';
import { errorToRecord } from './model.ts';

/** What the `logger` option takes: console, pino, winston and most loggers fit. */
export interface Logger {
  error(message: string, ...details: unknown[]): void;
  /** Used for warnings when present (console, pino and winston have it); error otherwise. */
  warn?(message: string, ...details: unknown[]): void;
}

/**
 * Call a hook of the app's (a logger, an error reporter, a listener): a throw, or the rejection of
 * a promise it returns (an async reporter whose service is down), goes to `failed`, by default
 * nowhere (a logger has nowhere left to report to). Left alone, the rejection would be unhandled,
 * which ends the process.
 */
export function callApp(hook: () => unknown, failed: (err: unknown) => void = () => undefined): void {
  try {
    const out = hook();
    if (out !== null && typeof out === 'object' && typeof (out as PromiseLike<unknown>).then === 'function') {
      (out as PromiseLike<unknown>).then(undefined, failed);
    }
  } catch (err) {
    failed(err);
  }
}

const WINDOW_MS = 60_000;
/** Distinct errors remembered at once (the oldest is forgotten first). */
const MAX_KEYS = 200;

export class RateLimitedLog {
  private readonly seen = new Map<string, { at: number; repeats: number }>();

  constructor(
    private readonly logger: Logger | null,
    private readonly now: () => number = Date.now,
  ) {}

  /** Log a warning (a setting that degrades something, not a failure) once for the life of this instance. */
  warnOnce(message: string): void {
    if (!this.logger || this.warned.has(message)) return;
    this.warned.add(message);
    const logger = this.logger;
    callApp(() => (typeof logger.warn === 'function' ? logger.warn(`sqljobs: ${message}`) : logger.error(`sqljobs: ${message}`)));
  }

  private readonly warned = new Set<string>();

  /** Log one line for `err` unless the same error was logged within the last minute (then count it). */
  error(context: string, err: unknown): void {
    if (!this.logger) return;
    const message = errorToRecord(err).message;
    const key = `${context}\u0000${fingerprint(message)}`;
    const now = this.now();
    const last = this.seen.get(key);
    if (last && now - last.at < WINDOW_MS) {
      last.repeats++;
      return;
    }
    this.seen.delete(key);
    if (this.seen.size >= MAX_KEYS) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(key, { at: now, repeats: 0 });
    const repeats = last?.repeats ? ` (${last.repeats} more like it in the last minute)` : '';
    const logger = this.logger;
    callApp(() => logger.error(`sqljobs: ${context}: ${message}${repeats}`));
  }
}

/** The same error with other ids, numbers or timings counts as the same line. */
function fingerprint(message: string): string {
  return message.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>').replace(/\d+/g, '<n>');
}

/**
 * Emits the library's events: each listener is called on its own, and whatever it throws (or
 * the promise it returns rejects with) is reported, never propagated: the enqueue, cancel or
 * claim that emitted has already happened and must say so.
 */
export class SafeEvents {
  constructor(
    private readonly emitter: EventEmitter,
    private readonly log: RateLimitedLog,
  ) {}

  emit(event: string, payload: unknown): void {
    // rawListeners keeps once() wrappers, so calling them removes them as emit() would.
    for (const listener of this.emitter.rawListeners(event) as ((p: unknown) => unknown)[]) this.call(event, listener, payload);
  }

  /** Call one listener (an event's, or one jobs.subscribe was given): a throw or a rejection is reported, never thrown. */
  call<P>(event: string, listener: (p: P) => unknown, payload: P): void {
    callApp(() => listener.call(this.emitter, payload), (err) => this.listenerFailed(event, err));
  }

  /** A problem the library handled: to the 'error' listeners, or to the logger when there are none. */
  error(err: unknown, context = 'error'): void {
    if (this.quiet > 0) return;
    if (this.emitter.listenerCount('error') === 0) return this.log.error(context, err);
    this.emit('error', err);
  }

  private quiet = 0;

  /**
   * Errors met until `work` settles are not reported: what fails once stop() gave up on a database
   * that does not answer (and dropped its connections) fails for that reason, already said once.
   */
  quietUntil(work: Promise<unknown>): void {
    this.quiet++;
    const done = () => void this.quiet--;
    work.then(done, done);
  }

  private listenerFailed(event: string, err: unknown): void {
    // An 'error' listener that throws is reported to the logger only: no loop through itself.
    if (event === 'error') return this.log.error(`an 'error' listener threw`, err);
    this.error(err, `a '${event}' listener threw`);
  }
}
