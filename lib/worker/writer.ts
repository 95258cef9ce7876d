/**
 * Batches the writes of running attempts: outcomes (complete/fail/release) go out in one
 * statement or transaction per tick, logs and progress every flush interval. Every write is
 * fenced by the claim token; an item the store did not apply lost its claim.
 *
 * A write that fails because the database is away is retried with backoff while the worker runs.
 * Once a stopping worker's timeout has passed it is given up instead (stopRetrying): the job is
 * still running under its attempt in the database, and the sweeper returns it to pending, as it
 * does when the process dies.
 */
import type { CompleteItem, FailItem, Fenced, LogItem, ProgressItem, ReleaseItem, Store } from '../store/store.ts';

interface Pending<T> {
  item: T;
  resolve(applied: boolean): void;
  reject(err: Error): void;
}

type Kind = 'complete' | 'fail' | 'release';

export interface WriterHooks {
  /** A log/progress write found this attempt no longer owned. */
  onLost(id: string): void;
  onError(err: unknown): void;
}

interface LogBuffer {
  fenced: Fenced;
  attempt: number;
  lines: { at: number; message: string }[];
  progress: { progress: number; message: string | null } | null;
}

export class OutcomeWriter {
  private readonly queues: { [K in Kind]: Pending<K extends 'complete' ? CompleteItem : K extends 'fail' ? FailItem : ReleaseItem>[] } = {
    complete: [],
    fail: [],
    release: [],
  };
  private scheduled = false;
  private flushing: Promise<void> | null = null;
  private readonly logs = new Map<string, LogBuffer>();
  private bufferedLines = 0;
  private logTimer: NodeJS.Timeout | null = null;
  private logFlush: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly hooks: WriterHooks,
    private readonly opts: { logFlushMs: number; logBatchLines: number; batchWindowMs: number; batchMax: number },
  ) {}

  complete(item: CompleteItem): Promise<boolean> {
    return this.enqueue('complete', item);
  }
  fail(item: FailItem): Promise<boolean> {
    return this.enqueue('fail', item);
  }
  release(item: ReleaseItem): Promise<boolean> {
    return this.enqueue('release', item);
  }

  private enqueue<T>(kind: Kind, item: T): Promise<boolean> {
    return new Promise((resolve, reject) => {
      (this.queues[kind] as Pending<T>[]).push({ item, resolve, reject });
      this.schedule();
    });
  }

  private firstQueuedAt = 0;

  /**
   * Outcomes wait a few ticks (at most `batchWindowMs`, or until `batchMax` are queued) so that
   * one statement or transaction writes many: each commit costs far more than a row.
   */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (!this.firstQueuedAt) this.firstQueuedAt = performance.now();
    setImmediate(() => {
      this.scheduled = false;
      const queued = this.queues.complete.length + this.queues.fail.length + this.queues.release.length;
      if (queued < this.opts.batchMax && performance.now() - this.firstQueuedAt < this.opts.batchWindowMs) return this.schedule();
      this.firstQueuedAt = 0;
      if (!this.flushing) this.flushing = this.flushOutcomes().finally(() => (this.flushing = null));
      else void this.flushing.then(() => this.schedule());
    });
  }

  private async flushOutcomes(): Promise<void> {
    for (const kind of ['complete', 'fail', 'release'] as const) {
      const batch = this.queues[kind].splice(0);
      if (!batch.length) continue;
      const items = batch.map((b) => b.item);
      try {
        const applied = await this.retrying(() =>
          kind === 'complete'
            ? this.store.complete(items as CompleteItem[])
            : kind === 'fail'
              ? this.store.fail(items as FailItem[])
              : this.store.release(items as ReleaseItem[]),
        );
        for (const b of batch) b.resolve(applied.has(b.item.id));
      } catch (err) {
        for (const b of batch) {
          b.reject(new Error(`the ${kind} of job ${b.item.id} was not written before the worker stopped (${(err as Error).message}); it stays running under its attempt and is rescued after stallTimeout`));
        }
      }
    }
  }

  private retriesStopped = false;
  private wakeRetry: (() => void) | null = null;

  private async retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        this.hooks.onError(err);
        if (this.retriesStopped) throw err;
        await new Promise<void>((r) => {
          const timer = setTimeout(r, Math.min(100 * 2 ** attempt, 5000));
          this.wakeRetry = () => (clearTimeout(timer), r());
        });
        this.wakeRetry = null;
        if (this.retriesStopped) throw err;
      }
    }
  }

  /** Shutdown past its timeout: a write that fails from now on is given up (its promise rejects) instead of retried. */
  stopRetrying(): void {
    this.retriesStopped = true;
    this.wakeRetry?.();
  }

  // ------------------------------------------------------------ logs and progress

  log(fenced: Fenced, attempt: number, message: string): void {
    this.buffer(fenced, attempt).lines.push({ at: Date.now(), message });
    this.bufferedLines++;
    if (this.bufferedLines >= this.opts.logBatchLines) void this.flushLogs();
    else this.armLogTimer();
  }

  progress(fenced: Fenced, attempt: number, progress: number, message: string | null): void {
    this.buffer(fenced, attempt).progress = { progress, message };
    this.armLogTimer();
  }

  private buffer(fenced: Fenced, attempt: number): LogBuffer {
    let b = this.logs.get(fenced.id);
    if (!b || b.fenced.token !== fenced.token) {
      b = { fenced, attempt, lines: [], progress: null };
      this.logs.set(fenced.id, b);
    }
    return b;
  }

  private armLogTimer(): void {
    if (this.logTimer) return;
    this.logTimer = setTimeout(() => {
      this.logTimer = null;
      void this.flushLogs();
    }, this.opts.logFlushMs);
  }

  /** Write every buffered log line and progress value (one transaction per kind). */
  async flushLogs(): Promise<void> {
    while (this.logFlush) await this.logFlush;
    if (!this.logs.size) return;
    const buffers = [...this.logs.values()];
    this.logs.clear();
    this.bufferedLines = 0;
    this.logFlush = this.writeLogs(buffers).finally(() => (this.logFlush = null));
    await this.logFlush;
  }

  private async writeLogs(buffers: LogBuffer[]): Promise<void> {
    const lines: LogItem[] = buffers.filter((b) => b.lines.length).map((b) => ({ ...b.fenced, attempt: b.attempt, lines: b.lines }));
    const progress: ProgressItem[] = buffers.filter((b) => b.progress).map((b) => ({ ...b.fenced, ...b.progress! }));
    try {
      const lost = new Set<string>();
      if (lines.length) {
        const ok = await this.store.appendLogs(lines);
        for (const l of lines) if (!ok.has(l.id)) lost.add(l.id);
      }
      if (progress.length) {
        const ok = await this.store.saveProgress(progress);
        for (const p of progress) if (!ok.has(p.id)) lost.add(p.id);
      }
      for (const id of lost) this.hooks.onLost(id);
    } catch (err) {
      // Logs are best effort while the database is away; the attempt's outcome is not.
      this.hooks.onError(err);
    }
  }

  hasBuffered(id: string): boolean {
    return this.logs.has(id) || this.logFlush !== null;
  }

  /** Flush the logs of one job before its outcome is written (after the move to history its fence is gone). */
  async flushJob(id: string): Promise<void> {
    if (this.logs.has(id) || this.logFlush) await this.flushLogs();
  }

  /** Wait until everything buffered so far is written. */
  async drain(): Promise<void> {
    await this.flushLogs();
    while (this.flushing || this.scheduled || this.queues.complete.length || this.queues.fail.length || this.queues.release.length) {
      if (this.flushing) await this.flushing;
      else await new Promise((r) => setImmediate(r));
    }
  }

  dispose(): void {
    if (this.logTimer) clearTimeout(this.logTimer);
    this.logTimer = null;
  }
}
