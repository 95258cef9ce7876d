/**
 * The in-process worker: claims jobs in batches up to its free slots, runs them, writes their
 * outcomes, sends one heartbeat per process per interval and reconciles what the database says
 * it runs with what it holds (rescue and retention live in lib/maintenance/). Woken at once by an enqueue in this process, by LISTEN/NOTIFY where the database has
 * it, by a timer for the next delayed job, and by polling as the safety net.
 */
import os from 'node:os';
import { AsyncResource } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorToRecord, type JobError } from '../model.ts';
import type { ClaimRequest, ClaimedJob, Fenced, ListenCallbacks, ListenHandle, Store, StoreCapabilities, WorkerInfo } from '../driver/store.ts';
import { uuidv7 } from '../uuid.ts';
import { isContention, isTransientError } from '../driver/errors.ts';
import { Periodic } from '../periodic.ts';
import { settlesWithin } from '../wait.ts';
import { AttemptSet } from './attempts.ts';
import { RunningAttempt, type AttemptDeps, type AttemptOutcome, type JobDefinition } from './executor.ts';
import { Tracing } from '../telemetry/tracing.ts';
import { NO_METRICS, type AttemptMetrics } from '../telemetry/metrics.ts';
import { claimOrder } from '../driver/rows.ts';
import { OUTCOMES_PER_STATEMENT, OutcomeWriter, oneAttemptPerJob } from './writer.ts';

export type { JobEventPayload, WorkerEvents, WorkerOptions } from './options.ts';
import type { WorkerEvents, WorkerOptions } from './options.ts';

/** How soon a claim the database rolled back (contention) is tried again, ms. */
const CONTENTION_RETRY_MS = 20;
/**
 * Each step of start() (registration, LISTEN, first claim) is tried this many times after a
 * transient error, the waits doubling from START_RETRY_MS: a server that refuses connections still
 * refuses them on the last try (start() rejects after ~0.3 s), and one drop is healed by the next
 * connection.
 */
const START_TRIES = 3;
const START_RETRY_MS = 100;

/** A step of start() not taken because stop() was called: not an error of the database. */
class StartStopped extends Error {
  constructor() {
    super('the worker was stopped while it started');
  }
}

/** At most this many attempts a heartbeat finds gone are looked up to tell a cancel from a rescue. */
const LOST_LOOKUPS = 10;

/** How often drain() looks again at a managed queue a limit holds back until a slot frees (in another process). */
const DRAIN_HOLD_MS = 250;

/** What one round of claims brought: `more` when some claim took all it asked (another round may find more); `short` when an unmanaged claim did not (the due timer then looks for delayed jobs). */
interface Claimed {
  jobs: ClaimedJob[];
  more: boolean;
  short: boolean;
  /** Whether any claim was sent. */
  tried: boolean;
}

/** How outcomes are batched: the store's choice, else up to 100 within 1 ms. */
function outcomeBatch(capabilities: StoreCapabilities): { batchWindowMs: number; batchMax: number } {
  const batch = capabilities.outcomeBatch ?? { windowMs: 1, max: 100 };
  return { batchWindowMs: batch.windowMs, batchMax: batch.max };
}

export class Worker {
  readonly id = `${os.hostname()}:${process.pid}:${uuidv7().slice(-12)}`;
  /** Attempts whose handler has not returned yet (two of one job when a lost attempt still runs beside its job's next). */
  private readonly running = new AttemptSet('runningSlot');
  /** Claimed (ours, under our heartbeat) but not started yet: waiting for a free slot. */
  private readonly backlog: { job: ClaimedJob; seq: number }[] = [];
  /** Every started attempt until its outcome is written (or refused): still here after its handler returned. */
  private readonly unsettled = new AttemptSet('unsettledSlot');
  private avgRunMs = Infinity;
  private finishedRuns = 0;
  /** As avgRunMs, up to the handler's return only (stores with claimAheadByHandlerTime size claims ahead by it). */
  private avgHandlerMs = Infinity;
  private handlerRuns = 0;
  private readonly writer: OutcomeWriter;
  private readonly writerWindowMs: number;
  /** Poll and heartbeat. */
  private readonly periodic: Periodic;
  private dueTimer: { at: number; timer: NodeJS.Timeout } | null = null;
  private filling = false;
  private refill = false;
  private state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle';
  private seq = 0;
  private listener: ListenHandle | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly definitions: Map<string, JobDefinition>,
    private readonly opts: WorkerOptions,
    private readonly events: WorkerEvents,
    /** With leaderOnly, claims are made only while this is true. */
    private readonly leads: () => boolean = () => true,
    private readonly tracing: Tracing = new Tracing(null),
    private readonly metrics: AttemptMetrics = NO_METRICS,
  ) {
    this.periodic = new Periodic((err) => this.events.error(err));
    const batch = outcomeBatch(store.capabilities);
    this.writerWindowMs = batch.batchWindowMs;
    this.maxUnwritten = Math.max(2 * Math.max(batch.batchMax, OUTCOMES_PER_STATEMENT), 2 * opts.concurrency);
    this.writer = new OutcomeWriter(
      store,
      {
        onLost: (lost) => {
          for (const attempt of this.running) if (attempt.id === lost.id && attempt.job.token === lost.token) attempt.abort('lost');
        },
        onError: (err) => this.events.error(err),
        moreComing: () => this.moreOutcomesSoon(),
        written: () => this.outcomesWritten(),
      },
      { workerId: this.id, logFlushMs: opts.logFlushInterval, logBatchLines: 200, ...batch },
    );
    this.attemptDeps = this.makeAttemptDeps();
  }

  get isRunning(): boolean {
    return this.state === 'running';
  }

  get runningCount(): number {
    return this.running.size;
  }

  private info(): WorkerInfo {
    return {
      id: this.id,
      host: os.hostname(),
      pid: process.pid,
      queues: this.opts.queues ?? null,
      names: [...this.definitions.keys()],
      concurrency: this.opts.concurrency,
    };
  }

  /**
   * Register, listen, and claim once before anything else: a worker whose connections cannot be
   * used at all (a pooler refusing a startup parameter, a wrong password for the private pool)
   * makes start() reject with that error instead of leaving jobs pending in silence.
   */
  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.starting = true;
    this.startAborted = new AbortController();
    const started = this.begin(this.startAborted.signal);
    this.startSettled = started.then(() => undefined, () => undefined);
    return started;
  }

  /** start()'s work, settled: a stop() during it waits for it, then gives back what it claimed and ends its listener. */
  private startSettled: Promise<void> = Promise.resolve();
  /** Aborted by stop(): a LISTEN connection being opened for the start is given up at once. */
  private startAborted = new AbortController();

  private async begin(stopped: AbortSignal): Promise<void> {
    try {
      this.store.prepareClaims?.(stopped);
      await this.whileStarting(() => this.store.workerHeartbeat(this.info()), true);
      this.pollMs = this.opts.pollInterval;
      if (this.store.listen) {
        const cb: ListenCallbacks = {
          onJob: (queue) => this.wake(queue),
          onCancel: (id) => this.abortJob(id, 'cancelled'),
          onReconnect: () => this.wake(),
          onError: (err) => this.events.error(err),
        };
        // A connect that stop() gave up fails for that reason alone: not an error of the database.
        this.listener = await this.whileStarting(() => this.listenOrPoll(cb, stopped).catch((err: unknown) => {
          throw stopped.aborted ? new StartStopped() : err;
        }), true);
      }
      // Contention on the first claim is not tried again here: reported, and claimed again in 20 ms.
      const failed = await this.whileStarting(() => {
        this.newJobs = true;
        return this.fill();
      }, false).then(() => null, (err: unknown) => err);
      // Jobs already started prove the connections work, and contention (a deadlock, a lock wait)
      // proves it too: then the failure is reported and the poll tries again. Anything else is fatal.
      if (failed && !this.unsettled.size && !isContention(failed)) throw failed;
      if (failed && !(failed instanceof StartStopped)) this.events.error(failed);
    } catch (err) {
      if (this.state !== 'running') {
        // stop() took over: it gives back what this start claimed and ends its listener.
        if (!(err instanceof StartStopped)) this.events.error(err);
        return;
      }
      // A stop() meanwhile waits for the abandon, which gives back the jobs of a lost claim.
      this.stopped = this.abandonStart();
      await this.stopped;
      throw new Error(`the worker cannot use the database: ${errorToRecord(err).message}`, { cause: err });
    } finally {
      this.starting = false;
    }
    if (this.wokenWhileStarting) {
      this.wokenWhileStarting = false;
      this.wake();
    }
    if (this.state !== 'running') return; // stop() was called during the first claim
    // The poll timer keeps the process alive while the worker runs (a worker process on SQLite has no socket that would).
    this.periodic.every(this.pollMs, () => {
      this.releaseHold();
      this.lookAtOthersNext();
      return this.fill();
    }, true);
    this.periodic.every(this.opts.heartbeatInterval, () => this.heartbeat());
  }

  /**
   * A step of start() tried again after a dropped connection (and, where asked, contention): one
   * drop says nothing about whether the worker can use the database (the next try runs on a new
   * connection; a claim that committed before its answer was lost is reconciled by the next fill).
   * Not after a stop().
   */
  private async whileStarting<T>(step: () => Promise<T>, contentionToo: boolean): Promise<T> {
    for (let tried = 1; ; tried++) {
      if (this.state !== 'running') throw new StartStopped();
      try {
        return await step();
      } catch (err) {
        const again = isTransientError(err) && (contentionToo || !isContention(err));
        if (tried >= START_TRIES || !again || this.state !== 'running') throw err;
        this.events.error(err);
        await sleep(START_RETRY_MS * 2 ** (tried - 1));
      }
    }
  }

  /** How often the worker looks for jobs nothing told it about. */
  private pollMs = 1000;

  /** Listen where the store can; where it cannot, poll at the shorter period instead. */
  private async listenOrPoll(cb: ListenCallbacks, stopped: AbortSignal): Promise<ListenHandle | null> {
    const listener = await this.store.listen!(cb, stopped);
    this.pollMs = listener ? this.opts.pollInterval : this.opts.pollUnheard;
    return listener;
  }

  /** Undo a start that failed, so that start() may be called again. */
  private async abandonStart(): Promise<void> {
    this.state = 'stopping';
    await this.listener?.close().catch(() => undefined);
    this.listener = null;
    await this.releaseStrangers().catch(() => undefined);
    await this.store.workerRemove(this.id).catch(() => undefined);
    this.state = 'idle';
  }

  /**
   * Outcomes waiting to be written past which the worker claims nothing more, while the database
   * is not taking them (their last write failed): each job run meanwhile runs again if the process
   * stops before its outcome is written (a batch of large results failing again and again while
   * claims go through, say). Two statements' worth. While writes succeed, eight times that: a
   * normal backlog of outcomes (up to ~2,300 seen on a loaded machine) never holds a claim back,
   * and outcomes written slower than jobs run do not pile up without end.
   */
  private readonly maxUnwritten: number;
  /** Claims held back by unwritten outcomes: the writer's progress wakes the worker. */
  private heldByOutcomes = false;

  private unwrittenLimit(): number {
    return this.writer.failing ? this.maxUnwritten : 8 * this.maxUnwritten;
  }

  private outcomesBackedUp(): boolean {
    if (this.writer.unwritten < this.unwrittenLimit()) return false;
    this.heldByOutcomes = true;
    return true;
  }

  private outcomesWritten(): void {
    if (!this.heldByOutcomes || this.writer.unwritten >= this.unwrittenLimit() / 2) return;
    this.heldByOutcomes = false;
    if (this.state === 'running') this.refillSoon();
  }

  /** Claim now (an enqueue in this process, a NOTIFY, a timer). */
  wake(queue?: string): void {
    if (this.state !== 'running') return;
    // New jobs in a queue a limit holds back change nothing until the hold ends.
    if (queue !== undefined && this.managed.has(queue) && this.isHeld(queue)) return;
    // While start() makes its first claim, a wake-up would race it: it is taken after that claim.
    if (this.starting) return void (this.wokenWhileStarting = true);
    // A new job may outrank what was claimed ahead: look even when the backlog is full.
    this.newJobs = true;
    this.scope.runInAsyncScope(() => void this.fill().catch((err) => this.events.error(err)));
  }

  /**
   * The async context the worker's claims run in: the one it was made in. Whoever wakes it (an
   * enqueue inside a request, under that request's trace and its AsyncLocalStorage stores) must not
   * lend it its context: every later claim and attempt would inherit it.
   */
  private readonly scope = new AsyncResource('sqljobs.worker');

  /** start() is making its first claim; a wake-up meanwhile is taken after it. */
  private starting = false;
  private wokenWhileStarting = false;

  /** Set by a wake-up for new jobs; the next claim runs even with a full backlog. */
  private newJobs = false;
  /** The claim under way was made after a wake-up for new jobs: the backlog waits for its answer. */
  private claimingForNewJobs = false;

  /** A delayed job becomes due in `ms`: look again then. */
  wakeIn(ms: number): void {
    // Further out than the next poll, the poll finds it (and a timer past 2^31 ms would fire at once).
    if (this.state !== 'running' || !(ms < Math.min(this.pollMs, 2 ** 31 - 1))) return;
    const at = Date.now() + ms;
    if (this.dueTimer && this.dueTimer.at <= at) return;
    if (this.dueTimer) clearTimeout(this.dueTimer.timer);
    const timer = setTimeout(this.scope.bind(() => {
      this.dueTimer = null;
      this.wake();
    }), ms + 1);
    timer.unref();
    this.dueTimer = { at, timer };
  }

  private refillScheduled = false;

  /** Refill once per tick: outcomes written in one batch free their slots together, and one claim fills them. */
  private refillSoon(): void {
    if (this.refillScheduled) return;
    this.refillScheduled = true;
    setImmediate(this.refillInScope);
  }

  /** Bound once: AsyncResource.bind costs about a microsecond a call, and this runs once per tick of jobs. */
  private readonly refillInScope = this.scope.bind(() => {
    this.refillScheduled = false;
    void this.fill().catch((err) => this.events.error(err));
  });

  /** Claim until the free slots are full or nothing is due. One claim loop at a time. */
  private async fill(): Promise<void> {
    if (this.filling) {
      this.refill = true;
      // Slots freed while a claim is under way take from what was claimed before it: waiting for the
      // claim would leave the claimed-ahead backlog idle for a whole round trip. Unless the claim (or
      // the next) looks for new jobs that may outrank that backlog.
      if (!(this.newJobs || this.claimingForNewJobs) || this.backlogFits()) this.startFromBacklog();
      return;
    }
    this.filling = true;
    let short = false;
    try {
      do {
        this.refill = false;
        if (this.state !== 'running' || this.claimsLeft <= 0) break;
        if (this.reconcileWanted) await this.reconcile();
        // After a wake-up for new jobs, claim before starting what was claimed earlier: a new job may
        // outrank it (unless all of it fits the free slots with one to spare: see backlogFits).
        if (!this.newJobs || this.backlogFits()) this.startFromBacklog();
        this.claimingForNewJobs = this.newJobs;
        let claimed: Claimed | null;
        try {
          claimed = await this.claimFree();
        } finally {
          this.claimingForNewJobs = false;
        }
        if (claimed === null) break;
        if (claimed.jobs.length) this.claimsLeft--;
        const seq = ++this.seq;
        for (const job of claimed.jobs) this.backlog.push({ job, seq });
        // Start order across batches: managed queues' jobs first, then a later, higher-priority job before earlier low ones.
        if (claimed.jobs.length && this.backlog.length > claimed.jobs.length) this.backlog.sort((a, b) => this.startOrder(a.job, b.job));
        if (!this.newJobs || this.backlogFits()) this.startFromBacklog();
        short = claimed.short;
        if (claimed.more) this.refill = true;
      } while (this.refill || this.newJobs);
    } catch (err) {
      // The database rolled the claim back (a deadlock, a lock wait timeout): look again in a
      // moment rather than at the next poll, which may be a minute away.
      if (isContention(err) && this.state === 'running') this.wakeIn(CONTENTION_RETRY_MS);
      throw err;
    } finally {
      this.filling = false;
    }
    this.startFromBacklog();
    if (short && this.state === 'running') await this.armDueTimer();
    this.notifyIdle();
  }

  /**
   * One round of claims: each managed queue within its limits and its share of the slots, then one
   * claim per queue-limited queue, then one for the rest. Null when there was nothing to claim for.
   */
  private async claimFree(): Promise<Claimed | null> {
    if (this.opts.leaderOnly && !this.leads()) return null;
    if (this.outcomesBackedUp()) return null;
    const names = [...this.definitions.keys()];
    if (!names.length) return null;
    const lookAtOthers = this.newJobs || performance.now() >= this.othersQuietUntil;
    const ticks = this.pollTicks;
    const free = this.freeForUnmanaged();
    await this.loadManaged();
    const limits = this.opts.queueConcurrency ?? {};
    const limited = Object.keys(limits).filter((q) => this.serves(q) && !this.managed.has(q));
    const others = this.opts.queues?.filter((q) => !limited.includes(q) && !this.managed.has(q));
    const out: Claimed = { jobs: [], more: false, short: false, tried: false };
    await this.claimManagedQueues(names, others === undefined || others.length > 0 || limited.length > 0, out);
    let left = free;
    const take = (got: ClaimedJob[], asked: number) => {
      out.jobs.push(...got);
      out.tried = true;
      left -= got.length;
      if (got.length === asked) out.more = true;
      else out.short = true;
    };
    for (const q of limited) {
      const n = Math.min(left, limits[q] - this.heldIn(q));
      if (n > 0) take(await this.claim({ names, queues: [q], limit: n }), n);
    }
    if (left > 0 && (!others || others.length) && lookAtOthers) {
      // Managed queues need no exclusion here: the claim statement skips every queue with settings.
      const n = left;
      const got = await this.claim({ names, queues: others, excludeQueues: others || !limited.length ? undefined : limited, limit: n });
      this.othersBusy = got.length === n;
      // Found short: not again before new jobs are announced or the next poll. The claim passes over
      // every due job of a managed queue ahead of the first it may take, so claiming again after
      // each of their completions would read a managed queue's whole backlog each time.
      // A poll tick (or drain) during the claim asks for a fresh look: no quiet time then.
      this.othersQuietUntil = got.length === n || ticks !== this.pollTicks ? 0 : performance.now() + this.pollMs;
      take(got, n);
    }
    return out.tried ? out : null;
  }

  /** Slots the unmanaged queues may claim for now, counting what may be claimed ahead (0: wait). */
  private freeForUnmanaged(): number {
    const ahead = this.prefetchRoom();
    const newJobs = this.newJobs;
    this.newJobs = false;
    // With jobs claimed ahead, top the backlog up in large batches rather than one slot at a time,
    // except after a wake-up for new jobs: one of them may outrank the whole backlog.
    const free = this.opts.concurrency - this.running.size - this.backlog.length + ahead;
    // Only a backlog claimed ahead (more than the free slots take) makes a new job worth a look past
    // it: one that fits was claimed for those slots (a wake-up came during its claim) and starts now.
    if (newJobs && this.running.size + this.backlog.length > this.opts.concurrency) return Math.max(free, this.opts.concurrency);
    if (ahead && this.backlog.length > ahead / 2) return 0;
    return Math.max(0, free);
  }

  /** Jobs of managed queues first (each holds a place under its queue's limit from its claim on), then claim order. */
  private startOrder(a: ClaimedJob, b: ClaimedJob): number {
    return Number(this.managed.has(b.queue)) - Number(this.managed.has(a.queue)) || claimOrder(a, b);
  }

  private serves(queue: string): boolean {
    return !this.opts.queues || this.opts.queues.includes(queue);
  }

  // ---------------------------------------------------------------- managed queues

  /** Queues with limits or groups (driver/portable/queues.ts), as last read, and when. */
  private managed = new Set<string>();
  private managedReadAt = -Infinity;
  /**
   * Managed queues a limit held back at their last claim, until when: a rate limit until its
   * window frees a start; the others (Infinity) until a job of the queue finishes here or the next
   * poll. No claim of them meanwhile, whatever wakes the worker: limits never cause a claim storm.
   */
  private readonly heldUntil = new Map<string, number>();

  /** Read the managed queues again at the next claim (their settings changed in this process). */
  refreshQueues(): void {
    this.managedReadAt = -Infinity;
    this.heldUntil.clear();
    this.wake();
  }

  /** Once per poll period: which queues are managed (a queue becomes managed in another process too). */
  private async loadManaged(): Promise<void> {
    if (performance.now() - this.managedReadAt < this.pollMs) return;
    this.managed = new Set((await this.store.queueSettingsList()).map((q) => q.queue));
    this.managedReadAt = performance.now();
  }

  /**
   * Claim each managed queue this worker serves and no limit holds back, starting from a different
   * one each round. While the unmanaged queues (`rest`) have due jobs, each managed queue keeps to
   * its share of the worker's slots (its jobs running or waiting here count), so that no backlog
   * starves another queue; when they have none, the managed queues share every slot. Only while
   * jobs are short may a managed job be claimed with every slot taken (by jobs claimed ahead for
   * other queues): it starts first when one frees (startOrder), within milliseconds.
   */
  private async claimManagedQueues(names: string[], rest: boolean, out: Claimed): Promise<void> {
    const queues = [...this.managed].filter((q) => this.serves(q) && !this.isHeld(q));
    if (!queues.length) return;
    const start = this.managedTurn++ % queues.length;
    const sharing = queues.length + (rest && this.othersBusy ? 1 : 0);
    const share = Math.ceil(this.opts.concurrency / sharing);
    const inFlight = this.heldWhere((q) => this.managed.has(q));
    // The slots the other queues' jobs leave (running or claimed ahead); while jobs are short (the
    // other queues claim ahead), never less than a share: a slot frees within milliseconds then.
    const otherJobs = this.running.size + this.backlog.length - inFlight;
    const floor = this.prefetchRoom() > 0 ? share : 0;
    let room = Math.min(this.opts.concurrency, Math.max(this.opts.concurrency - otherJobs, floor)) - inFlight;
    for (let i = 0; i < queues.length && room > 0; i++) {
      const queue = queues[(start + i) % queues.length];
      const cap = Math.min(share, this.opts.queueConcurrency?.[queue] ?? Infinity);
      const n = Math.min(room, cap - this.heldIn(queue));
      if (n <= 0) continue;
      const claim = await this.counted(() => this.store.jobClaimManaged({ workerId: this.id, names, queue, limit: n }));
      out.tried = true;
      out.jobs.push(...claim.rows);
      if (claim.rows.length === n) out.more = true;
      room -= claim.rows.length;
      if (claim.heldBy) this.holdBack(queue, claim.retryInMs);
    }
  }

  /** Until when the unmanaged queues are not claimed again unless new jobs are announced (their last claim found fewer than asked). */
  private othersQuietUntil = 0;
  /** Poll ticks and drain() rounds so far: each asks for a look at the unmanaged queues. */
  private pollTicks = 0;

  /** A poll tick or a drain() round: the next claim looks at the unmanaged queues, even one under way. */
  private lookAtOthersNext(): void {
    this.othersQuietUntil = 0;
    this.pollTicks++;
  }

  /** Whether the unmanaged queues had more due jobs at their last claim (then the managed queues keep to their shares). */
  private othersBusy = true;

  /** Which managed queue claims first next time. */
  private managedTurn = 0;

  private isHeld(queue: string): boolean {
    const until = this.heldUntil.get(queue);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.heldUntil.delete(queue);
    return false;
  }

  private holdBack(queue: string, retryInMs: number | null): void {
    this.heldUntil.set(queue, retryInMs === null ? Infinity : Date.now() + retryInMs);
    if (retryInMs !== null) this.wakeIn(retryInMs);
  }

  /** A slot of the queue freed here (a job's outcome was written), or the poll came: a hold that waits for that ends. */
  private releaseHold(queue?: string): void {
    for (const [q, until] of this.heldUntil) if (until === Infinity && (queue === undefined || q === queue)) this.heldUntil.delete(q);
  }

  /** Claims in flight, and claims sent so far: a heartbeat's answer says nothing of a claim that overlapped it. */
  private claimsInFlight = 0;
  private claimsSent = 0;
  /** The database may hold running jobs of ours that we never received: compare at the next chance. */
  private reconcileWanted = false;

  private claim(req: Omit<ClaimRequest, 'workerId'>): Promise<ClaimedJob[]> {
    return this.counted(() => this.store.jobClaim({ workerId: this.id, ...req }));
  }

  private async counted<T>(claim: () => Promise<T>): Promise<T> {
    this.claimsInFlight++;
    this.claimsSent++;
    try {
      return await claim();
    } catch (err) {
      // The claim may have committed before its answer was lost (the connection died after COMMIT).
      this.reconcileWanted = true;
      throw err;
    } finally {
      this.claimsInFlight--;
    }
  }

  /**
   * How many jobs may be claimed ahead: about 100 ms of work at the rate recent jobs ran, up to
   * the `prefetch` cap; none while jobs are long (> 50 ms on average) or under per-queue limits.
   */
  private prefetchRoom(): number {
    const avgMs = this.store.capabilities.claimAheadByHandlerTime ? this.avgHandlerMs : this.avgRunMs;
    if (this.opts.queueConcurrency || this.finishedRuns < 20 || avgMs > 50) return 0;
    const perSecond = (this.opts.concurrency * 1000) / Math.max(avgMs, 0.01);
    return Math.min(this.opts.prefetch, Math.floor(perSecond / 10));
  }

  /**
   * Every job claimed so far has a free slot, and one is left over: a new job could displace none of
   * them, so they start without waiting for another claim (a same-process enqueue's return and its
   * NOTIFY both wake the worker, and the second would otherwise hold back what the first claimed).
   */
  private backlogFits(): boolean {
    return this.backlog.length < this.opts.concurrency - this.running.size;
  }

  /** Start claimed jobs in claim order while slots are free, keeping each queue under its own limit. */
  private startFromBacklog(): void {
    const limits = this.opts.queueConcurrency;
    // One job at a time, re-checking the free slots: a handler may wake the worker synchronously
    // (enqueueSync on SQLite), and a start inside this loop must not find the slots unchanged.
    for (let i = 0; i < this.backlog.length && this.running.size < this.opts.concurrency && this.state === 'running'; ) {
      const { job, seq } = this.backlog[i];
      const limit = limits?.[job.queue];
      if (limit !== undefined && this.runningIn(job.queue) >= limit) {
        i++;
        continue;
      }
      // The head goes by shift(), which V8 does in constant time on a long array; splice(0, 1)
      // moves every entry behind it (5.6 % of SQLite's profile with 500 jobs claimed ahead).
      if (i === 0) this.backlog.shift();
      else this.backlog.splice(i, 1);
      this.launch(job, seq);
    }
  }

  private runningIn(queue: string): number {
    return this.running.count((r) => r.job.queue === queue);
  }

  /** Running or claimed and waiting: what counts against a queue's limit when claiming. */
  private heldIn(queue: string): number {
    return this.heldWhere((q) => q === queue);
  }

  /** Jobs running here or claimed and waiting for a slot, of the queues `counts` selects. */
  private heldWhere(counts: (queue: string) => boolean): number {
    let n = this.running.count((r) => counts(r.job.queue));
    for (const b of this.backlog) if (counts(b.job.queue)) n++;
    return n;
  }

  private async armDueTimer(): Promise<void> {
    const due = await this.store.jobNextDueIn({ names: [...this.definitions.keys()], queues: this.opts.queues });
    if (due !== null && due < this.pollMs) this.wakeIn(due);
  }

  private readonly reportError = (err: unknown): void => this.events.error(err);

  /**
   * Whether outcomes written now should wait for more: attempts are running or claimed that
   * usually end within the writer's window, and no claim waits for an outcome to free a queue's slot.
   * A long job running alone does not hold a short one's outcome back.
   */
  private moreOutcomesSoon(): boolean {
    // Short handlers end within the tick they start in: between ticks it is the claimed backlog that is about to run.
    if ((this.running.size === 0 && this.backlog.length === 0) || !(this.avgHandlerMs < this.writerWindowMs)) return false;
    for (const until of this.heldUntil.values()) if (until === Infinity) return false;
    return true;
  }

  private launch(job: ClaimedJob, seq: number): void {
    const def = this.definitions.get(job.name)!;
    const attempt = new RunningAttempt(job, def, this.attemptDeps, seq, this.tracing.attempt(job, this.id), this.metrics.attempt(job));
    this.running.add(attempt);
    this.events.started({ id: job.id, name: job.name, queue: job.queue, attempt: job.attempts });
    this.unsettled.add(attempt);
    attempt.start();
  }

  /** What each attempt shares with the others and tells the worker (one object for all of them: no closures per attempt). */
  private readonly attemptDeps: AttemptDeps;

  private makeAttemptDeps(): AttemptDeps {
    return {
      store: this.store,
      writer: this.writer,
      maxOutputBytes: this.opts.maxOutputBytes,
      report: this.reportError,
      observer: {
        // The slot frees when the handler is done; the outcome is written in the next batch meanwhile.
        handlerEnded: (attempt) => {
          // How fast slots turn over, for stores that size claims ahead by it (claimAheadByHandlerTime).
          const ms = performance.now() - attempt.launchedAt;
          this.avgHandlerMs = this.handlerRuns++ ? this.avgHandlerMs * 0.9 + ms * 0.1 : ms;
          this.running.delete(attempt);
          if (this.state === 'running') this.refillSoon();
        },
        settled: (attempt, outcome) => {
          try {
            this.ended(attempt, outcome);
          } catch (err) {
            this.unwrittenOutcome(attempt, err);
          } finally {
            this.settled(attempt);
          }
        },
        unwritten: (attempt, err) => {
          try {
            this.unwrittenOutcome(attempt, err);
          } finally {
            this.settled(attempt);
          }
        },
      },
    };
  }

  private settled(attempt: RunningAttempt): void {
    this.unsettled.delete(attempt);
    this.running.delete(attempt);
    if (!this.unsettled.size) for (const w of this.settledWaiters.splice(0)) w();
    this.notifyIdle();
  }

  /** Resolved each time the last unsettled attempt settles (shutdown waits for it). */
  private settledWaiters: (() => void)[] = [];

  /** The outcome was not written: the job is still running under this attempt in the database. */
  private unwrittenOutcome(attempt: RunningAttempt, err: unknown): void {
    const outcome: AttemptOutcome = { kind: 'unwritten', error: errorToRecord(err) };
    attempt.trace.end(outcome);
    attempt.measure.end(outcome);
    this.park(attempt, outcome.error);
  }

  /** An attempt's outcome is written (or refused): trace, metrics, events, and what it frees. */
  private ended(attempt: RunningAttempt, outcome: AttemptOutcome): void {
    attempt.trace.end(outcome);
    attempt.measure.end(outcome);
    const ms = performance.now() - attempt.launchedAt;
    this.avgRunMs = this.finishedRuns++ ? this.avgRunMs * 0.9 + ms * 0.1 : ms;
    if (outcome.kind === 'unwritten') this.park(attempt, outcome.error);
    const { job } = attempt;
    // Its queue's limit counts it until its outcome is written: a hold waiting for a slot ends now.
    if (this.heldUntil.get(job.queue) === Infinity) {
      this.releaseHold(job.queue);
      if (this.state === 'running') this.refillSoon();
    }
    this.report(job, outcome);
    // A job back in pending runs again here when due (the refill that freed its slot ran before this write).
    if (outcome.kind === 'retrying' || outcome.kind === 'snoozed') this.wakeIn(outcome.delayMs);
  }

  private report(job: ClaimedJob, o: AttemptOutcome): void {
    const { id, name, queue, attempts: attempt } = job;
    switch (o.kind) {
      case 'completed':
        return this.events.completed({ id, name, queue, attempt, result: o.result });
      case 'retrying':
        return this.events.retrying({ id, name, queue, attempt, error: o.error, delayMs: o.delayMs });
      case 'failed':
        return this.events.failed({ id, name, queue, attempt, error: o.error });
      case 'snoozed':
        return this.events.snoozed({ id, name, queue, attempt, delayMs: o.delayMs });
      case 'aborted':
        return this.events.aborted({ id, name, queue, attempt, reason: o.reason });
      case 'lost':
        return this.events.aborted({ id, name, queue, attempt, reason: 'lost' });
      case 'unwritten':
        return this.events.aborted({ id, name, queue, attempt, reason: 'unwritten' });
    }
  }

  /**
   * Attempts that ran here but whose outcome could not be written, by `id:token`. The database
   * still has them running under this worker; reconciliation leaves them so (running them again
   * would repeat their effects), and the sweeper rescues them once this process is gone.
   */
  private readonly parked = new Set<string>();

  private park(attempt: RunningAttempt, error: JobError): void {
    this.parked.add(`${attempt.id}:${attempt.job.token}`);
    this.events.error(new Error(`job ${attempt.job.name} (${attempt.id}) ran, but its outcome could not be stored (${error.message}); it stays running under this worker and is rescued after stallTimeout once this process stops`));
  }

  /** A cancel in this process reaches the running attempt at once. */
  abortJob(id: string, reason: 'cancelled'): void {
    // The backlog first: an abort listener may wake the worker, whose starts must not include this job.
    this.dropFromBacklog((j) => j.id === id);
    for (const attempt of this.running) if (attempt.id === id) attempt.abort(reason);
  }

  private dropFromBacklog(lost: (job: ClaimedJob) => boolean): void {
    for (let i = this.backlog.length - 1; i >= 0; i--) if (lost(this.backlog[i].job)) this.backlog.splice(i, 1);
  }

  private async heartbeat(): Promise<void> {
    const seqAtStart = this.seq;
    const claimsSent = this.claimsSent;
    const quiet = this.claimsInFlight === 0;
    const owned = await this.store.workerHeartbeat(this.info());
    this.abortLost(owned, seqAtStart);
    // Only an answer no claim overlapped can show a job we never received; else the next claim loop looks.
    if (quiet && this.claimsSent === claimsSent) this.releaseUnknownAside(owned);
    else this.reconcileWanted = true;
  }

  private releasingUnknown = false;

  /**
   * The release of jobs this worker never received, not awaited by the heartbeat: on the worker's
   * pool, it may wait behind writes that wait on job rows another session locks, and the next
   * beats would wait for it (a heartbeat never overlaps the last). stop() awaits it (periodic).
   */
  private releaseUnknownAside(owned: Fenced[]): void {
    if (this.releasingUnknown) return; // the next beat after it looks again
    this.periodic.once(async () => {
      this.releasingUnknown = true;
      try {
        await this.releaseUnknown(owned);
      } finally {
        this.releasingUnknown = false;
      }
    });
  }

  /** Running attempts (and jobs claimed ahead) the database no longer gives to this worker: rescued or cancelled elsewhere. */
  private abortLost(owned: Fenced[], seqAtStart: number): void {
    const ownedKeys = new Set(owned.map((f) => `${f.id}:${f.token}`));
    // The backlog first: an abort listener may wake the worker, whose starts must not include a lost job.
    const lost = new Set(this.backlog.filter((b) => b.seq <= seqAtStart && !ownedKeys.has(`${b.job.id}:${b.job.token}`)).map((b) => b.job));
    if (lost.size) this.dropFromBacklog((j) => lost.has(j));
    // Only attempts claimed before this heartbeat was sent can be judged by its answer.
    const gone = [...this.running].filter((a) => a.claimSeq <= seqAtStart && !ownedKeys.has(`${a.id}:${a.job.token}`));
    // Many at once is a rescue of this worker's jobs (it paused past stallTimeout), not cancels: no look-up each.
    for (const attempt of gone) {
      if (gone.length <= LOST_LOOKUPS) this.abortLostAttempt(attempt);
      else attempt.abort('lost');
    }
  }

  /**
   * Why the database no longer gives it to us: a cancel from another process (where no
   * notification carries it: MySQL, SQLite) is said as a cancel, as in the process that cancelled.
   */
  private abortLostAttempt(attempt: RunningAttempt): void {
    void this.store.jobGet(attempt.id).then(
      (job) => attempt.abort(job?.state === 'cancelled' ? 'cancelled' : 'lost'),
      () => attempt.abort('lost'),
    );
  }

  /**
   * Jobs the database says run under this worker but that it never received (a claim whose
   * answer was lost after its COMMIT): back to pending at once, attempt refunded. Without this
   * the heartbeat would keep them "running" for as long as the process lives.
   */
  private async releaseUnknown(owned: Fenced[], stopping = false): Promise<void> {
    if (this.state !== 'running' && !stopping) return; // a stopping worker gives back what it has itself, then calls releaseStrangers
    const known = new Set<string>(this.parked);
    for (const a of this.unsettled) known.add(`${a.id}:${a.job.token}`);
    for (const a of this.running) known.add(`${a.id}:${a.job.token}`);
    for (const b of this.backlog) known.add(`${b.job.id}:${b.job.token}`);
    const unknown = owned.filter((f) => !known.has(`${f.id}:${f.token}`));
    this.reconcileWanted = false;
    if (!unknown.length) return;
    const released = await this.store.jobReleaseMany(unknown.map((f) => ({ id: f.id, token: f.token, delayMs: 0, refund: true })));
    if (released.size) {
      const why = stopping ? 'a claim whose answer was lost, or a release that failed' : 'a claim whose answer was lost';
      this.events.error(new Error(`returned ${released.size} job(s) to pending that the database had running under this worker without its knowing (${why}): ${[...released].slice(0, 5).join(', ')}${released.size > 5 ? ', …' : ''}`));
      if (!stopping) this.wake();
    }
  }

  /**
   * On the way out, after a claim whose answer was lost: its jobs, running under this worker in the
   * database, go back to pending now rather than after stallTimeout (where the rescue would count
   * an attempt that never ran). Only once every attempt has settled, so that every job this worker
   * ran and could not write an outcome for is parked, and stays running for the rescue.
   */
  private async releaseStrangers(): Promise<void> {
    if (!this.reconcileWanted || this.unsettled.size) return;
    await this.releaseUnknown(await this.store.workerHeartbeat(this.info()), true);
  }

  /** Inside the claim loop no claim is in flight: the heartbeat's answer is complete. */
  private async reconcile(): Promise<void> {
    const seqAtStart = this.seq;
    const owned = await this.store.workerHeartbeat(this.info());
    this.abortLost(owned, seqAtStart);
    await this.releaseUnknown(owned);
  }

  private notifyIdle(): void {
    if (!this.quiet) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private get quiet(): boolean {
    return !this.running.size && !this.backlog.length && !this.unsettled.size && !this.filling;
  }

  /** Resolve when no job is running and the claim loop is quiet. */
  async idle(): Promise<void> {
    if (!this.quiet) await new Promise<void>((r) => this.idleWaiters.push(r));
    return this.writer.drain();
  }

  /**
   * Claims this worker may still make (each bringing at least one job): unlimited, except for
   * runOne's worker, which makes one.
   */
  claimsLeft = Infinity;

  /**
   * sqljobs/testing's runOnce, on a started worker of concurrency 1 that claims nothing ahead and
   * was given claimsLeft = 1: wait for the claim under way (start()'s), make it if none came yet, and
   * resolve once what it brought ran and its outcome is written.
   */
  async runOne(): Promise<void> {
    while (this.filling) await new Promise((r) => setTimeout(r, 1));
    if (this.claimsLeft > 0) {
      this.lookAtOthersNext();
      await this.fill();
    }
    await this.idle();
  }

  /** Run until nothing is due, then resolve (for users' tests). */
  async drain(): Promise<void> {
    for (;;) {
      this.lookAtOthersNext();
      await this.fill();
      await this.idle();
      const due = await this.store.jobNextDueIn({ names: [...this.definitions.keys()], queues: this.opts.queues, managed: true });
      // A wake-up (a retry due at once, a new job) may have claimed while the question was asked:
      // a job claimed or running is not "due", so the answer holds only if the worker stayed quiet.
      if ((due === null || due > 0) && this.quiet) return;
      // Due jobs a queue's limit holds back (another process runs its jobs, or its rate window is full): wait for the hold to end.
      if (this.quiet && this.heldUntil.size) await this.holdsEnd();
    }
  }

  /**
   * Wait until the first hold on a managed queue ends, then lift those that wait for a slot: those
   * are looked at again every DRAIN_HOLD_MS (drain()'s own worker polls only once an hour).
   */
  private async holdsEnd(): Promise<void> {
    const first = Math.min(...this.heldUntil.values());
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(first - Date.now(), this.pollMs, DRAIN_HOLD_MS))));
    this.releaseHold();
  }

  /**
   * Graceful shutdown: stop claiming, let running jobs finish up to `timeout`, then abort the rest
   * and return them to pending with their attempt refunded.
   */
  async stop(timeout = this.opts.shutdownTimeout): Promise<void> {
    if (this.state === 'idle' || this.state === 'stopped') {
      this.state = 'stopped';
      return;
    }
    if (this.state === 'stopping') return this.stopped;
    this.state = 'stopping';
    this.startAborted.abort();
    this.stopped = this.shutdown(timeout);
    return this.stopped;
  }

  private stopped: Promise<void> = Promise.resolve();

  private async shutdown(timeout: number): Promise<void> {
    this.periodic.clear();
    if (this.dueTimer) clearTimeout(this.dueTimer.timer);
    // A start under way ends first (it stops at its next step), so that its claim and listener are ended here too.
    await this.startSettled;
    // A claim already sent finishes first, so that what it brings back is given back too.
    while (this.filling) await new Promise((r) => setTimeout(r, 1));
    // Jobs claimed ahead never started: give them back at once, attempt refunded.
    const unstarted = this.backlog.splice(0).map((b) => b.job);
    if (unstarted.length) {
      await this.store.jobReleaseMany(unstarted.map((j) => ({ id: j.id, token: j.token, delayMs: 0, refund: true }))).catch((err) => this.events.error(err));
    }
    // Not only the attempts still in their handler: one whose handler just returned may not have
    // queued its outcome yet (it waits for its own log flush), and the writer's drain below would miss it.
    const all = this.unsettled.size ? new Promise<void>((r) => this.settledWaiters.push(r)) : Promise.resolve();
    await settlesWithin(all, timeout);
    const left = [...this.running];
    for (const attempt of left) attempt.abort('shutdown');
    // Past the timeout an outcome that keeps failing is not retried forever (stop would never return): its
    // job stays running under its attempt in the database, and the sweeper rescues it after stallTimeout.
    // Log writes meeting contention stop retrying too, before the last flush below.
    this.writer.stopRetrying();
    if (left.length) {
      await this.writer.flushLogs();
      for (const round of oneAttemptPerJob(left, (a) => a.id)) {
        await this.store.jobReleaseMany(round.map((a) => ({ ...a.fenced, delayMs: 0, refund: true }))).catch((err) => this.events.error(err));
      }
    }
    await this.writer.drain();
    this.writer.dispose();
    await this.releaseStrangers().catch((err) => this.events.error(err));
    await this.listener?.close().catch(() => undefined);
    // A heartbeat still in flight would write the worker row back after its removal.
    await this.periodic.stop();
    await this.store.workerRemove(this.id).catch((err) => this.events.error(err));
    this.state = 'stopped';
    this.notifyIdle();
  }
}
