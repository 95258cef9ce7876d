/**
 * Batches the writes of running attempts: outcomes (complete/fail/release) go out in one
 * statement or transaction per tick, logs and progress every flush interval. Every write is
 * fenced by the claim token; an item the store did not apply lost its claim.
 *
 * A write that fails because the database is away (a transient error), or fails whatever it
 * writes (a systemic error: a table missing), is retried with backoff while the worker runs. Once a stopping worker's timeout has passed it is given up instead
 * (stopRetrying): the job is still running under its attempt in the database, and the sweeper
 * returns it to pending, as it does when the process dies.
 *
 * An error that says the database refused the data is about one row of the batch. The batch is
 * then written item by item, so the refused item is found and the others go through; the refused item's
 * promise rejects with OutcomeRefusedError, and the attempt records that instead. One bad row
 * never holds back the writes queued behind it.
 */
import { classifyError, isContention, isRolledBackContention, isUnanswered } from '../driver/errors.ts';
import type { AttemptsOf, CompleteItem, FailItem, Fenced, JobWrites, LogItem, ProgressItem, ReleaseItem, StorePlumbing } from '../driver/store.ts';
import { errorToRecord } from '../model.ts';
import { storable } from '../text.ts';

/** The database refused this attempt's outcome (not the connection: the row). */
export class OutcomeRefusedError extends Error {
  constructor(
    readonly kind: string,
    readonly jobId: string,
    cause: unknown,
  ) {
    const reason = errorToRecord(cause).message;
    super(`the database refused the ${kind} of job ${jobId}: ${reason}`, { cause });
    this.name = 'OutcomeRefusedError';
    this.reason = reason;
  }
  readonly reason: string;
}

/**
 * A connection error can hide a refusal (a server that drops the connection over a packet too
 * large). A write failing this many times in a row while the database answers a probe is
 * treated as refused: a batch is then split, a single item fails its attempt.
 */
const TRANSIENT_FAILURES_BEFORE_REFUSAL = 5;

/** Tries of a log or progress write that meets contention (pauses of 50 ms, doubling, in between) before it is dropped… */
const BEST_EFFORT_CONTENTION_ATTEMPTS = 6;
/** …or once this long has passed since its flush began (a lock wait timeout of 50 s is not tried again). */
const BEST_EFFORT_CONTENTION_MS = 10_000;

/** Outcomes written in one statement at most (or the store's own batch size, when larger). */
export const OUTCOMES_PER_STATEMENT = 500;

/** Log lines written in one statement at most (MariaDB's default max_allowed_packet is 16 MiB). */
const LOG_CHUNK_CHARS = 4 * 1024 * 1024;
/** What a log statement adds to each line's message, at most (MySQL's form is the longest: ~70 characters). */
const LOG_LINE_OVERHEAD = 128;

interface Pending<T> {
  item: T;
  resolve(applied: boolean): void;
  reject(err: Error): void;
}

type Kind = 'complete' | 'fail' | 'release';

export interface WriterHooks {
  /** A log/progress write found this attempt (its job and claim token) no longer owned. */
  onLost(attempt: Fenced): void;
  onError(err: unknown): void;
  /** More outcomes are on their way within the window (else no reason to wait for them). */
  moreComing(): boolean;
  /** A batch of outcomes was written (or given up): fewer wait now. */
  written(): void;
}

interface LogBuffer {
  fenced: Fenced;
  attempt: number;
  lines: { at: number; message: string }[];
  progress: { progress: number; message: string | null } | null;
}

/**
 * A dropped connection or a driver's timeout: not a refusal, a missing table or contention the
 * server rolled back. Never throws (a handler's thrown value reaches here and may be hostile).
 */
function mayHaveCommitted(err: unknown): boolean {
  try {
    return classifyError(err) === 'transient' && !isRolledBackContention(err);
  } catch {
    return false;
  }
}

export class OutcomeWriter {
  private readonly queues: { [K in Kind]: Pending<K extends 'complete' ? CompleteItem : K extends 'fail' ? FailItem : ReleaseItem>[] } = {
    complete: [],
    fail: [],
    release: [],
  };
  private scheduled = false;
  private flushing: Promise<void> | null = null;
  /** Each attempt's buffered lines and progress, by `id:token` (a lost attempt may still log beside its job's next attempt). */
  private readonly logs = new Map<string, LogBuffer>();
  private bufferedLines = 0;
  private logTimer: NodeJS.Timeout | null = null;
  /** The periodic flush under way (one at a time). */
  private logFlush: Promise<void> | null = null;
  /**
   * Attempts whose lines or progress a write under way holds, and that write: an outcome waits
   * for its own attempt's write only, never for a write of other jobs held up by a lock.
   */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(
    private readonly store: JobWrites & Pick<StorePlumbing, 'clockNow'>,
    private readonly hooks: WriterHooks,
    private readonly opts: { workerId: string; logFlushMs: number; logBatchLines: number; batchWindowMs: number; batchMax: number },
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
   * Outcomes wait a few ticks while more are coming (at most `batchWindowMs`, or until `batchMax`
   * are queued) so that one statement or transaction writes many: each commit costs far more
   * than a row. With nothing else running they go at the next tick.
   */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (!this.firstQueuedAt) this.firstQueuedAt = performance.now();
    setImmediate(() => {
      this.scheduled = false;
      const queued = this.queues.complete.length + this.queues.fail.length + this.queues.release.length;
      // Nothing left (a flush took it all): no window to wait out.
      if (!queued) return void (this.firstQueuedAt = 0);
      if (queued < this.opts.batchMax && performance.now() - this.firstQueuedAt < this.opts.batchWindowMs && this.hooks.moreComing()) return this.schedule();
      this.firstQueuedAt = 0;
      if (!this.flushing) this.flushing = this.flushOutcomes().finally(() => (this.flushing = null));
      else void this.flushing.then(() => this.schedule());
    });
  }

  /**
   * Everything queued, at most 500 (or `batchMax`) a statement: outcomes queued while a slow batch
   * was written must not make the next one slower still (a PostgreSQL completion of 1,250 rows
   * took 458 ms, of 80 rows 11 ms). Not `batchMax` itself: PostgreSQL's batches often pass 100, and
   * splitting them there cost it a commit each (measured for issue 17).
   */
  private async flushOutcomes(): Promise<void> {
    for (const kind of ['complete', 'fail', 'release'] as const) {
      // What was queued when the flush began (later arrivals wait for the next, so no kind starves).
      for (let left = this.queues[kind].length; left > 0; ) {
        const batch = this.queues[kind].splice(0, Math.min(left, Math.max(this.opts.batchMax, OUTCOMES_PER_STATEMENT))) as Pending<CompleteItem & FailItem & ReleaseItem>[];
        left -= batch.length;
        if (!batch.length) break;
        this.writing = batch.length;
        try {
          for (const round of oneAttemptPerJob(batch, (p) => p.item.id)) await this.writeBatch(kind, round);
        } finally {
          this.writing = 0;
          this.hooks.written();
        }
      }
    }
  }

  /** Outcomes of the batch being written. */
  private writing = 0;
  private failed = false;

  /** The last try of an outcome write failed, and none succeeded since: the database is not taking outcomes. */
  get failing(): boolean {
    return this.failed;
  }

  /** Outcomes handed to the writer and not yet written (queued, or in the batch being written). */
  get unwritten(): number {
    return this.queues.complete.length + this.queues.fail.length + this.queues.release.length + this.writing;
  }

  private apply(kind: Kind, items: (CompleteItem & FailItem & ReleaseItem)[]): Promise<Set<string>> {
    return kind === 'complete' ? this.store.jobCompleteMany(items) : kind === 'fail' ? this.store.jobFailMany(items) : this.store.jobReleaseMany(items);
  }

  /** Write a batch; on an error that is not transient, item by item, so that only a refused item fails. */
  private async writeBatch(kind: Kind, batch: Pending<CompleteItem & FailItem & ReleaseItem>[]): Promise<void> {
    const tries = { mayHaveLanded: false };
    try {
      const applied = await this.retrying(() => this.apply(kind, batch.map((b) => b.item)), tries);
      this.failed = false;
      if (tries.mayHaveLanded) for (const id of await this.findLanded(kind, batch, applied)) applied.add(id);
      for (const b of batch) b.resolve(applied.has(b.item.id));
    } catch (err) {
      // Outcomes an earlier try wrote are done, whatever became of the tries after it.
      const landed = tries.mayHaveLanded ? await this.findLanded(kind, batch, new Set()) : new Set<string>();
      const rest = batch.filter((b) => !landed.has(b.item.id));
      for (const b of batch) if (landed.has(b.item.id)) b.resolve(true);
      if (err instanceof GivenUp) {
        for (const b of rest) {
          b.reject(new Error(`the ${kind} of job ${b.item.id} was not written before the worker stopped (${err.message}); it stays running under its attempt and is rescued after stallTimeout`));
        }
      } else if (rest.length > 1) {
        for (const b of rest) await this.writeBatch(kind, [b]);
      } else if (rest.length) {
        rest[0].reject(new OutcomeRefusedError(kind, rest[0].item.id, err));
      }
    }
  }

  /**
   * After a try whose connection dropped (its COMMIT may have landed before the answer was lost),
   * the outcomes not known to be applied are looked up: a completion in history, a failure among
   * the recorded attempts. Written by this very attempt, they are done, not lost. (A release
   * records nothing to find: one whose answer was lost stays reported lost.)
   */
  private findLanded(kind: Kind, batch: Pending<CompleteItem & FailItem>[], applied: Set<string>): Promise<Set<string>> {
    if (kind === 'release') return Promise.resolve(new Set());
    const attempts = batch.flatMap(({ item }) => (applied.has(item.id) || item.attempt === undefined ? [] : [{ id: item.id, attempt: item.attempt }]));
    return this.foundHere(attempts, (req) => (kind === 'complete' ? this.store.jobCompletedBy(req) : this.store.jobFailedBy(req)));
  }

  /**
   * Whether a transactional completion that failed with `err` is in history all the same: its
   * connection dropped after the COMMIT landed. Asked only after an error that allows it.
   */
  async completedDespite(err: unknown, fenced: Fenced, attempt: number): Promise<boolean> {
    if (!mayHaveCommitted(err)) return false;
    return (await this.foundHere([{ id: fenced.id, attempt }], (req) => this.store.jobCompletedBy(req))).has(fenced.id);
  }

  /** Of these attempts of this worker, those the look-up finds. Retried as a write is; if it still fails, none. */
  private async foundHere(attempts: AttemptsOf['attempts'], lookUp: (req: AttemptsOf) => Promise<Set<string>>): Promise<Set<string>> {
    if (!attempts.length) return new Set();
    try {
      return await this.retrying(() => lookUp({ workerId: this.opts.workerId, attempts }));
    } catch (err) {
      if (!(err instanceof GivenUp)) this.hooks.onError(err);
      return new Set();
    }
  }

  private retriesStopped = false;
  /** Pauses under way (outcome batches and log writes can wait at once): stopRetrying ends them all. */
  private readonly pauses = new Set<() => void>();

  /**
   * Run `fn`, retrying transient and systemic errors with backoff. Rethrows a refusal at once,
   * any other error after stopRetrying (as GivenUp), and a connection error that keeps coming
   * back while the database answers other statements (a refusal that looks like a dropped
   * connection: a server closing it over a packet too large).
   */
  private async retrying<T>(fn: () => Promise<T>, tries = { mayHaveLanded: false }): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const kind = classifyError(err);
        if (kind === 'refused') throw err;
        this.failed = true;
        this.hooks.onError(err);
        if (kind === 'transient' && !isRolledBackContention(err)) tries.mayHaveLanded = true;
        // A dropped connection that keeps coming back while the database answers: a refusal in disguise (not
        // contention, nor a statement of ours that never answered: a lock on a table's metadata can do that).
        if (kind === 'transient' && !isContention(err) && !isUnanswered(err) && attempt % TRANSIENT_FAILURES_BEFORE_REFUSAL === 0 && (await this.databaseAnswers())) {
          throw err;
        }
        if (this.retriesStopped) throw new GivenUp(err);
        await this.pause(Math.min(100 * 2 ** attempt, 5000));
        if (this.retriesStopped) throw new GivenUp(err);
      }
    }
  }

  /** Wait before trying again; stopRetrying ends the wait at once. */
  private async pause(ms: number): Promise<void> {
    await new Promise<void>((r) => {
      const wake = () => (clearTimeout(timer), this.pauses.delete(wake), r());
      const timer = setTimeout(wake, ms);
      this.pauses.add(wake);
    });
  }

  private databaseAnswers(): Promise<boolean> {
    return this.store.clockNow().then(() => true, () => false);
  }

  /** Shutdown past its timeout: a write that fails from now on is given up (its promise rejects) instead of retried. */
  stopRetrying(): void {
    this.retriesStopped = true;
    for (const wake of [...this.pauses]) wake();
  }

  // ------------------------------------------------------------ logs and progress

  log(fenced: Fenced, attempt: number, message: string): void {
    this.buffer(fenced, attempt).lines.push({ at: Date.now(), message: storable(message) });
    this.bufferedLines++;
    if (this.bufferedLines >= this.opts.logBatchLines) void this.flushLogs();
    else this.armLogTimer();
  }

  progress(fenced: Fenced, attempt: number, progress: number, message: string | null): void {
    this.buffer(fenced, attempt).progress = { progress, message: message === null ? null : storable(message) };
    this.armLogTimer();
  }

  private buffer(fenced: Fenced, attempt: number): LogBuffer {
    const key = attemptKey(fenced);
    let b = this.logs.get(key);
    if (!b) this.logs.set(key, (b = { fenced, attempt, lines: [], progress: null }));
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
    const buffers = this.takeBuffers();
    if (!buffers.length) return;
    this.logFlush = this.writeTaken(buffers).finally(() => (this.logFlush = null));
    await this.logFlush;
  }

  /**
   * The buffers not being written already: an attempt's next lines wait for its write under way,
   * so that they are stored after it. Those left wait for a later flush.
   */
  private takeBuffers(): LogBuffer[] {
    const taken: LogBuffer[] = [];
    for (const [key, b] of this.logs) {
      if (this.inFlight.has(key)) continue;
      this.logs.delete(key);
      this.bufferedLines -= b.lines.length;
      taken.push(b);
    }
    if (this.logs.size) this.armLogTimer();
    return taken;
  }

  /**
   * Lines first, then progress. An attempt is out of `inFlight` as soon as its own part is
   * written: one with lines only does not wait for the progress of others (whose row another
   * session may hold locked).
   */
  private writeTaken(buffers: LogBuffer[]): Promise<void> {
    const lost = new Map<string, Fenced>();
    const deadline = performance.now() + BEST_EFFORT_CONTENTION_MS;
    const linesWritten = this.writeLines(buffers, lost, deadline);
    const allWritten = linesWritten.then(() => this.writeProgress(buffers, lost, deadline)).then(() => {
      for (const attempt of lost.values()) this.hooks.onLost(attempt);
    });
    for (const b of buffers) {
      const key = attemptKey(b.fenced);
      const written = b.progress ? allWritten : linesWritten;
      this.inFlight.set(key, written);
      const done = () => void (this.inFlight.get(key) === written && this.inFlight.delete(key));
      written.then(done, done);
    }
    return allWritten;
  }

  private async writeLines(buffers: LogBuffer[], lost: Map<string, Fenced>, deadline: number): Promise<void> {
    const lines: LogItem[] = buffers.filter((b) => b.lines.length).map((b) => ({ ...b.fenced, attempt: b.attempt, lines: b.lines }));
    for (const round of oneAttemptPerJob(lines, (l) => l.id)) {
      for (const chunk of chunkLogs(round)) await this.bestEffort(chunk, (c) => this.store.logAppendMany(c), lost, deadline);
    }
  }

  private async writeProgress(buffers: LogBuffer[], lost: Map<string, Fenced>, deadline: number): Promise<void> {
    const progress: ProgressItem[] = buffers.filter((b) => b.progress).map((b) => ({ ...b.fenced, ...b.progress! }));
    for (const round of oneAttemptPerJob(progress, (p) => p.id)) await this.bestEffort(round, (p) => this.store.jobProgressMany(p), lost, deadline);
  }

  /**
   * Logs and progress are best effort: while the database is away they are dropped (the
   * attempt's outcome is not). A refusal drops only the refused job's part: the batch is written
   * job by job to find it. So does contention (a deadlock, a lock wait, a statement timeout) met
   * before the deadline: a row another session holds locked then holds back only its own job's
   * part, where the server gives up waiting for locks in time (a lock_timeout of a few seconds);
   * a batch that waited past the deadline is dropped instead, so that no lock wait is waited
   * again for each of its jobs. What met contention is tried again a few times within the
   * deadline: the server rolled it back, so writing it again cannot store a line twice, which
   * retrying after a dropped connection could (its COMMIT may have landed).
   */
  private async bestEffort<T extends Fenced>(items: T[], write: (items: T[]) => Promise<Set<string>>, lost: Map<string, Fenced>, deadline: number): Promise<void> {
    let round: T[][] = [items];
    for (let attempt = 1; ; attempt++) {
      const contended: T[] = [];
      for (const group of round) contended.push(...(await this.writeSplitting(group, write, lost, deadline)));
      if (!contended.length || attempt >= BEST_EFFORT_CONTENTION_ATTEMPTS || performance.now() >= deadline || this.retriesStopped) return;
      await this.pause(Math.min(50 * 2 ** (attempt - 1), 1000));
      if (this.retriesStopped) return;
      round = contended.map((item) => [item]);
    }
  }

  /** Write `items`, job by job after a refusal or (before the deadline) contention; answers the items that met contention the server rolled back. */
  private async writeSplitting<T extends Fenced>(items: T[], write: (items: T[]) => Promise<Set<string>>, lost: Map<string, Fenced>, deadline: number): Promise<T[]> {
    try {
      const ok = await write(items);
      for (const item of items) if (!ok.has(item.id)) lost.set(attemptKey(item), { id: item.id, token: item.token });
      return [];
    } catch (err) {
      const contention = isRolledBackContention(err);
      if (items.length > 1 && ((contention && performance.now() < deadline) || classifyError(err) === 'refused')) {
        if (contention) this.hooks.onError(err);
        const contended: T[] = [];
        for (const item of items) contended.push(...(await this.writeSplitting([item], write, lost, deadline)));
        return contended;
      }
      this.hooks.onError(err);
      return contention ? items : [];
    }
  }

  /** This attempt's buffered lines and progress, taken out of the buffer (the caller writes them in its own transaction). */
  takeBuffered(fenced: Fenced): { lines: LogItem | null; progress: ProgressItem | null } {
    const key = attemptKey(fenced);
    const b = this.logs.get(key);
    if (!b) return { lines: null, progress: null };
    this.logs.delete(key);
    this.bufferedLines = Math.max(0, this.bufferedLines - b.lines.length);
    return {
      lines: b.lines.length ? { ...b.fenced, attempt: b.attempt, lines: b.lines } : null,
      progress: b.progress ? { ...b.fenced, ...b.progress } : null,
    };
  }

  /** Whether this attempt has lines or progress not written yet (buffered, or in a write under way). */
  hasBuffered(fenced: Fenced): boolean {
    const key = attemptKey(fenced);
    return this.logs.has(key) || this.inFlight.has(key);
  }

  /**
   * Write the lines and progress of one attempt before its outcome (after the move to history
   * its fence is gone): the write under way that holds them, else a write of every buffer not
   * being written, its own among them. Not the periodic flush, which may be waiting for a lock
   * on other jobs' rows; and attempts finishing together share one write, as they share the flush.
   */
  async flushAttempt(fenced: Fenced): Promise<void> {
    const key = attemptKey(fenced);
    for (;;) {
      const writing = this.inFlight.get(key);
      if (writing) {
        await writing;
        continue;
      }
      if (!this.logs.has(key)) return;
      await this.writeTaken(this.takeBuffers());
    }
  }

  /** Wait until everything buffered so far is written. */
  async drain(): Promise<void> {
    for (;;) {
      await this.flushLogs();
      if (!this.inFlight.size) break;
      await Promise.all(this.inFlight.values());
    }
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

function attemptKey(fenced: Fenced): string {
  return `${fenced.id}:${fenced.token}`;
}

/**
 * The items in rounds where each job id appears once. A store answers the ids it wrote, so two
 * attempts of one job in one statement (a lost attempt still running beside the job's next one)
 * would count the lost one's write as done. Nearly always a single round, found by one pass.
 */
export function oneAttemptPerJob<T>(items: T[], idOf: (item: T) => string): T[][] {
  if (items.length < 2) return items.length ? [items] : [];
  const seen = new Set<string>();
  for (const item of items) {
    const id = idOf(item);
    if (seen.has(id)) return inRounds(items, idOf);
    seen.add(id);
  }
  return [items];
}

function inRounds<T>(items: T[], idOf: (item: T) => string): T[][] {
  const rounds: T[][] = [];
  const times = new Map<string, number>();
  for (const item of items) {
    const id = idOf(item);
    const round = times.get(id) ?? 0;
    times.set(id, round + 1);
    (rounds[round] ??= []).push(item);
  }
  return rounds;
}

/**
 * Split log items so that no statement carries more than LOG_CHUNK_CHARS of text, each line
 * counted with LOG_LINE_OVERHEAD for what the statement adds to it (its other values and, on
 * MySQL, its `SELECT …, …, … UNION ALL`): counted by their messages alone, 320,000 short lines
 * of one flush made a 17 MB statement, over MariaDB's 16 MiB max_allowed_packet, and were lost.
 */
function chunkLogs(items: LogItem[]): LogItem[][] {
  const chunks: LogItem[][] = [];
  let chunk: LogItem[] = [];
  let size = 0;
  for (const item of items) {
    let part: LogItem = { ...item, lines: [] };
    for (const line of item.lines) {
      const cost = line.message.length + LOG_LINE_OVERHEAD;
      if (size + cost > LOG_CHUNK_CHARS && (chunk.length || part.lines.length)) {
        if (part.lines.length) chunk.push(part);
        chunks.push(chunk);
        chunk = [];
        size = 0;
        part = { ...item, lines: [] };
      }
      part.lines.push(line);
      size += cost;
    }
    if (part.lines.length) chunk.push(part);
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

/** A transient error after the worker stopped retrying. */
class GivenUp extends Error {
  constructor(cause: unknown) {
    super(errorToRecord(cause).message, { cause });
  }
}
