/**
 * The singleton duties besides the scheduler: rescuing the jobs of silent workers and deleting
 * history past its retention. Every started instance runs the service; each round acts only
 * while the instance leads (or always, without election: both duties are safe to overlap).
 */
import type { RescuedJob, JobWrites, WorkerLiveness } from '../driver/store.ts';
import { Periodic } from '../periodic.ts';
import { heartbeatLate, rescueStalled, type HeldWorkers } from './rescuer.ts';

/**
 * How often the leader prunes history, ms. Not an option (retention is days; a minute is fine
 * grain): internal, so a test can see pruning happen without waiting a minute.
 */
export const PRUNE_EVERY = { ms: 60_000 };
/**
 * How often the leader makes the coming months' history partitions, or moves closed months to
 * their files (SQLite monthly files), ms (internal, as PRUNE_EVERY).
 * Hourly: the next month is made a month ahead, so a leader that misses rounds still has weeks.
 */
export const UPKEEP_EVERY = { ms: 3_600_000 };
/**
 * How often the leader counts what finished into the throughput counters, ms (internal, as
 * PRUNE_EVERY): the chart counts in history only what finished since (this and a couple of
 * seconds' worth).
 */
export const THROUGHPUT_EVERY = { ms: 5_000 };
/** Throughput counters are kept this long at most (and no longer than history, with a retention). */
const THROUGHPUT_KEEP_MS = 31 * 86_400_000;
/** How often the leader cancels reservations that ran out, ms (internal, as PRUNE_EVERY). */
export const RESERVATIONS_EVERY = { ms: 5_000 };
/** How often the leader forgets idle fair groups, and after how long without an enqueue. */
const GROUPS_PRUNE_EVERY_MS = 600_000;
const GROUP_IDLE_MS = 86_400_000;
/** Reservations cancelled per round at most. */
const RESERVATIONS_BATCH = 500;

/** Jobs raised per statement by priority aging. */
const AGING_BATCH = 1000;

/**
 * How often the leader looks for jobs to age: a tenth of everyMs (25 ms to 1 s), so a job gets
 * its step at most a tenth of a step late (a job waiting 10 × everyMs has gained its 10 steps by
 * then, give or take a tenth of one). Rounds that often cost the leader reads, not writes: each
 * round is two index range reads, empty while no job is due for a step, and a job is still written
 * once per everyMs (a round raises it by all the steps it waited: see jobsRaise).
 */
export function agingRoundMs(everyMs: number): number {
  return Math.max(25, Math.min(1000, Math.floor(everyMs / 10)));
}

/** History rows deleted per statement. */
const PRUNE_BATCH = 1000;

export interface MaintenanceHooks {
  leads(): boolean;
  rescued(job: RescuedJob): void;
  /** Rescued jobs are due now: claim. */
  wake(): void;
  error(err: unknown): void;
}

export class Maintenance {
  private readonly periodic: Periodic;
  /** Since when rescue rounds are skipped for a late heartbeat of ours (performance.now()), and whether that was said. */
  private deferred: { since: number; said: boolean } | null = null;
  /** Silent workers whose row the last round found held, and those said to be skipped (until a round finds the row free). */
  private heldBefore = new Set<string>();
  private heldSaid = new Set<string>();

  constructor(
    private readonly store: WorkerLiveness & Pick<JobWrites, 'jobFailMany' | 'jobCancelExpiredReservations' | 'jobsAgePriority' | 'queueGroupsPrune'>,
    private readonly opts: { workerId: string; heartbeatInterval: number; stallTimeout: number; retentionMs: number | null; agingMs: number | null },
    private readonly hooks: MaintenanceHooks,
  ) {
    this.periodic = new Periodic((err) => hooks.error(err));
  }

  start(): void {
    this.periodic.every(Math.max(1000, Math.floor(this.opts.stallTimeout / 2)), () => this.rescue());
    if (this.opts.retentionMs !== null) this.periodic.every(PRUNE_EVERY.ms, () => this.prune());
    if (this.store.historyUpkeep) {
      // At start on every instance, not only the leader (one may not be chosen yet): idempotent (no
      // DDL when the months exist), and months that fell behind while nothing ran are made at once.
      this.periodic.once(() => this.store.historyUpkeep!());
      this.periodic.every(UPKEEP_EVERY.ms, () => this.upkeep());
    }
    this.periodic.every(RESERVATIONS_EVERY.ms, () => this.expireReservations());
    this.periodic.every(THROUGHPUT_EVERY.ms, () => this.countThroughput());
    this.periodic.every(GROUPS_PRUNE_EVERY_MS, () => this.pruneGroups());
    const aging = this.opts.agingMs;
    if (aging !== null) this.periodic.every(agingRoundMs(aging), () => this.age(aging));
  }

  /** Priority aging: raise the jobs that waited another step, in batches. */
  private async age(everyMs: number): Promise<void> {
    if (!this.hooks.leads()) return;
    while (!this.stopping && (await this.store.jobsAgePriority({ everyMs, limit: AGING_BATCH })) >= AGING_BATCH);
  }

  /** Reserved jobs never committed in time are cancelled (their serial key moves on; onFailure runs). */
  private async expireReservations(): Promise<void> {
    if (!this.hooks.leads()) return;
    while (!this.stopping && (await this.store.jobCancelExpiredReservations(RESERVATIONS_BATCH)) === RESERVATIONS_BATCH);
  }

  /** Fair groups idle for a day are forgotten (a group keyed by tenant or request would grow the table forever). */
  private async pruneGroups(): Promise<void> {
    if (!this.hooks.leads()) return;
    while (!this.stopping && (await this.store.queueGroupsPrune({ idleMs: GROUP_IDLE_MS, limit: PRUNE_BATCH })) === PRUNE_BATCH);
  }

  /** What finished since the last round into the throughput counters (lib/driver/portable/throughput.ts). */
  private async countThroughput(): Promise<void> {
    if (!this.hooks.leads()) return;
    await this.store.throughputRollup({ keepMs: Math.min(THROUGHPUT_KEEP_MS, this.opts.retentionMs ?? Infinity) });
  }

  private async rescue(): Promise<void> {
    // Held rows are said once two rounds in a row found them (sayHeld): a round called off forgets them.
    const heldBefore = this.heldBefore;
    this.heldBefore = new Set();
    if (!this.hooks.leads()) return;
    const { workerId, heartbeatInterval: heartbeatMs, stallTimeout } = this.opts;
    const ownHeartbeatLate = () => heartbeatLate(this.store, { workerId, heartbeatMs }, stallTimeout);
    const late = await ownHeartbeatLate();
    if (late) return this.deferRescue(late.ageMs);
    this.deferred = null;
    const rescued = await rescueStalled(this.store, stallTimeout, {
      afterMs: Math.ceil(heartbeatMs * 1.5),
      waitAndCheck: async (ms) => (await this.pause(ms)) && this.hooks.leads() && !(await ownHeartbeatLate()),
    }, (held) => this.sayHeld(held, heldBefore));
    for (const r of rescued) this.hooks.rescued(r);
    if (rescued.some((r) => r.outcome === 'retry')) this.hooks.wake();
  }

  /**
   * Said once per stretch of skipped rounds, once it lasts stallTimeout (by the heartbeat's age or
   * the stretch's own length): a heartbeat a little late is jitter, not news.
   */
  private deferRescue(ageMs: number | null): void {
    const now = performance.now();
    const d = (this.deferred ??= { since: now, said: false });
    if (d.said || Math.max(ageMs ?? 0, now - d.since) < this.opts.stallTimeout) return;
    d.said = true;
    const heartbeat = ageMs === null ? 'is not registered (its row was removed, and not written back since)' : `was last written ${Math.round(ageMs)} ms ago`;
    this.hooks.error(new Error(
      `rescue of stalled jobs deferred: this worker's own heartbeat ${heartbeat} (stallTimeout ${this.opts.stallTimeout} ms), ` +
      'so heartbeats are being held back (a lock on the workers table, a database not writing, or this process paused) and every worker would look silent; ' +
      'workers still silent once this one\'s heartbeats are written again are rescued then'));
  }

  /**
   * Said once per worker while its row stays held: an operator's open transaction or a backup tool
   * holding it keeps a dead worker's jobs waiting. Only once two rounds in a row found it so: a
   * worker whose heartbeat landed just as the round looked is counted with the held ones (its
   * jobs are left alone all the same), and is current by the next round.
   */
  private sayHeld(held: HeldWorkers, before: Set<string>): void {
    for (const id of this.heldSaid) if (!held.has(id)) this.heldSaid.delete(id);
    this.heldBefore = new Set(held.keys());
    for (const [id, jobs] of held) {
      if (this.heldSaid.has(id) || !before.has(id)) continue;
      this.heldSaid.add(id);
      this.hooks.error(new Error(
        `rescue of worker ${id}'s ${jobs} stalled job${jobs === 1 ? '' : 's'} deferred: it sent no heartbeat for over ${this.opts.stallTimeout} ms, ` +
        'but another session holds its row in the workers table locked, and its heartbeat may be waiting behind that lock; ' +
        'they are rescued once the row is free if the worker is still silent'));
    }
  }

  private async upkeep(): Promise<void> {
    if (this.hooks.leads()) await this.store.historyUpkeep?.();
  }

  private async prune(): Promise<void> {
    if (!this.hooks.leads()) return;
    try {
      for (let more = false; !this.stopping; more = true) {
        if ((await this.store.historyPrune({ olderThanMs: this.opts.retentionMs!, limit: PRUNE_BATCH, more })) < PRUNE_BATCH) break;
      }
    } finally {
      await this.pruneLeftovers();
    }
  }

  /** Keys, batches and ticks past the retention, also when the round's history failed (an unreadable month file fails every round). */
  private async pruneLeftovers(): Promise<void> {
    if (this.stopping || !this.hooks.leads()) return;
    try {
      await this.store.retentionLeftoversPrune(this.opts.retentionMs!);
    } catch (err) {
      this.hooks.error(err);
    }
  }

  private stopping = false;
  /** Ends the pauses under way (a rescue round's confirmation) when the service stops. */
  private readonly pauses = new Set<() => void>();

  /** Wait ms, or less when the service stops: true when it did not. */
  private pause(ms: number): Promise<boolean> {
    if (this.stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      const end = () => {
        clearTimeout(timer);
        this.pauses.delete(end);
        resolve(!this.stopping);
      };
      const timer = setTimeout(end, ms);
      timer.unref?.(); // as the Periodic's timers: a round's pause keeps no process alive
      this.pauses.add(end);
    });
  }

  /** Stop, and wait for a round under way (it must not write after its instance stopped). */
  stop(): Promise<void> {
    this.stopping = true;
    for (const end of [...this.pauses]) end();
    return this.periodic.stop();
  }
}
