/**
 * The scheduler: every second, fire the ticks of due schedules. It runs on every instance with a
 * worker (on the leader only when leadership is on); each tick is fired at most once because its
 * (schedule, nominal fire time) row is inserted with the job under a primary key. Fire times are
 * the nominal slots computed from the stored next run, never "now".
 */
import { errorToRecord, type JobError, type NewJobRow } from '../model.ts';
import type { ScheduleStore, StoredSchedule } from '../driver/store.ts';
import { nextFireAfter, ticksToFire } from './schedule.ts';

export interface SchedulerHooks {
  /** Build the job row for a tick (validated like any enqueue). */
  row(s: StoredSchedule, fireAt: number): NewJobRow;
  /** Is a run of this schedule still live (pending or running)? */
  previousRunLive(s: StoredSchedule): Promise<boolean>;
  /** When the schedule's last fired run finished (ms), or null. */
  previousRunEndedAt(s: StoredSchedule): Promise<number | null>;
  /** May this instance fire now (leadership)? */
  leads(): boolean;
  fired(e: { key: string; fireAt: number; jobId: string; skipped: boolean }): void;
  error(err: unknown): void;
}

export class Scheduler {
  private timer: NodeJS.Timeout | null = null;
  private busy: Promise<void> | null = null;

  constructor(
    private readonly store: ScheduleStore,
    private readonly hooks: SchedulerHooks,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.tick();
    this.armNextRound();
  }

  private running = false;

  /**
   * Ticks fall on whole seconds (cron's finest field): a round just past each boundary fires them
   * within milliseconds of their slot, where a plain interval started at any instant fired them
   * up to a whole interval late.
   */
  private armNextRound(): void {
    if (!this.running) return;
    const now = Date.now();
    const delay = this.intervalMs - (now % this.intervalMs) + ROUND_AFTER_SLOT_MS;
    this.timer = setTimeout(() => {
      void this.tick();
      this.armNextRound();
    }, delay);
    this.timer.unref();
  }

  /** Fire whatever is due now (also callable directly). */
  tick(): Promise<void> {
    if (!this.hooks.leads()) return Promise.resolve();
    this.busy ??= this.fireDue()
      .catch((err) => this.hooks.error(err))
      .finally(() => (this.busy = null));
    return this.busy;
  }

  private async fireDue(): Promise<void> {
    const { now, due } = await this.store.scheduleListDue();
    for (const s of due) {
      // One schedule that cannot fire (its stored job refused, a write refused) must not hold back the others.
      await this.fireOne(s, now).catch((err) => this.hooks.error(new Error(`schedule ${s.key}: ${errorToRecord(err).message}`, { cause: err })));
    }
  }

  private async fireOne(s: StoredSchedule, now: number): Promise<void> {
    // overlap 'queue': not advanced while the previous run is live, so the tick stays due. Whether
    // it waited is read from the database (the previous run ended after the slot), so another
    // leader or a restarted process still treats a waited tick as queued rather than missed.
    if (s.overlap === 'queue' && (await this.hooks.previousRunLive(s))) return;
    const waited = s.overlap === 'queue' && ((await this.hooks.previousRunEndedAt(s)) ?? -Infinity) >= s.nextRunAt!;
    const { fire, next } = ticksToFire(s, s.nextRunAt!, now, s.runs, waited);
    for (const fireAt of fire) {
      const row = this.hooks.row(s, fireAt);
      const res = await this.store.scheduleFire({ key: s.key, fireAt, row, skipIfLive: s.overlap === 'allow' ? null : skippedTickError(s.key) });
      if (res) this.hooks.fired({ key: s.key, fireAt, ...res });
    }
    const ended = s.maxRuns !== null && s.runs + fire.length >= s.maxRuns;
    await this.store.scheduleAdvance({ key: s.key, from: s.nextRunAt!, nextRunAt: ended ? null : next });
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.busy?.catch(() => undefined);
  }
}

/** How long after a whole second a round looks: the database's clock may run a little behind ours. */
const ROUND_AFTER_SLOT_MS = 15;

/** What a tick skipped because its previous run was still live records as its error. */
export function skippedTickError(key: string): JobError {
  return { message: `skipped: the previous run of schedule "${key}" was still live (overlap: skip)` };
}

/** The first run of a newly defined or re-enabled schedule: the next slot after now. */
export function firstRun(s: Parameters<typeof nextFireAfter>[0], now: number): number | null {
  return nextFireAfter(s, now - 1);
}
