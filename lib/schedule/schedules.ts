/**
 * An instance's schedules, behind jobs.recurring() and jobs.schedules: the ones defined in code
 * (stored when the worker starts), the stored ones listed and edited at run time, and the
 * scheduler that fires their ticks while the worker runs.
 */
import type { EnqueueOptions, EnqueueResult, NewJobRow } from '../model.ts';
import type { JobReads, ScheduleStore, StorePlumbing, StoredSchedule } from '../driver/store.ts';
import { buildSchedule, definitionHash, type RecurringOptions, type ScheduleDef, type ScheduleRecord, type ScheduleSpec } from './schedule.ts';
import { Scheduler, firstRun } from './scheduler.ts';

/** What the schedules need from the facade: its enqueue path and its events. */
export interface SchedulesHooks {
  /** Build a job row as an enqueue does (validated, the job's defined defaults applied). */
  row(name: string, payload: unknown, opts: EnqueueOptions): NewJobRow;
  /** Write rows as an enqueue does (waking the worker, telling 'enqueued'). */
  enqueue(rows: NewJobRow[]): Promise<EnqueueResult[]>;
  /** Whether the worker runs: a schedule defined in code meanwhile is stored at once. */
  running(): boolean;
  fired(e: { key: string; fireAt: Date; jobId: string; skipped: boolean }): void;
  error(err: unknown, context: string): void;
}

export class Schedules {
  /** Schedules defined in code, with the hash of their definition. */
  private readonly defined = new Map<string, { def: ScheduleDef; hash: string }>();
  /** Interval definitions given no startAt (anchored when first stored: see keepAnchor). */
  private readonly floating = new WeakSet<ScheduleDef>();
  private scheduler: Scheduler | null = null;

  constructor(
    private readonly store: ScheduleStore & Pick<JobReads, 'jobGet' | 'jobList'> & Pick<StorePlumbing, 'clockNow'>,
    private readonly hooks: SchedulesHooks,
  ) {}

  /** A schedule defined in code: stored when the worker starts, or at once if it runs. */
  define(key: string, spec: ScheduleSpec, payload: unknown, options: RecurringOptions): void {
    const def = this.build(key, spec, payload, options);
    const hash = definitionHash(spec, payload, options);
    this.defined.set(key, { def, hash });
    if (this.hooks.running()) void this.save(def, hash).catch((err) => this.hooks.error(err, `saving schedule ${key}`));
  }

  /** Create or edit a stored schedule at run time. */
  async set(key: string, spec: ScheduleSpec, payload: unknown, options: RecurringOptions): Promise<void> {
    await this.save(this.build(key, spec, payload, options), null);
  }

  async list(): Promise<ScheduleRecord[]> {
    return (await this.store.scheduleList()).map(toScheduleRecord);
  }

  async toggle(key: string, enabled: boolean): Promise<boolean> {
    const s = await this.find(key);
    if (!s) return false;
    const next = enabled ? firstRun(s, await this.store.clockNow()) : null;
    return this.store.scheduleSetEnabled({ key, enabled, nextRunAt: next });
  }

  async remove(key: string): Promise<boolean> {
    this.defined.delete(key);
    return this.store.scheduleRemove(key);
  }

  /** Enqueue the schedule's job now, outside its ticks. */
  async trigger(key: string): Promise<EnqueueResult | null> {
    const s = await this.find(key);
    if (!s) return null;
    const row = this.row(s, Date.now());
    row.runAt = null;
    const enqueued = (await this.hooks.enqueue([row]))[0];
    // A run like a tick's: its row shows it (a live previous run answered instead is not a new one).
    if (enqueued && !enqueued.existed) await this.store.scheduleRecordRun({ key, jobId: enqueued.id });
    return enqueued;
  }

  /** Store the schedules defined in code, then fire due ticks while `leads()`; `stopped()`: stop() was called meanwhile. */
  async start(leads: () => boolean, stopped: () => boolean): Promise<void> {
    for (const { def, hash } of this.defined.values()) await this.save(def, hash);
    if (stopped()) return;
    this.scheduler = new Scheduler(this.store, {
      row: (s, fireAt) => this.row(s, fireAt),
      previousRunLive: async (s) => (await this.store.jobList({ refId: scheduleRefId(s.key), states: ['pending', 'running'], limit: 1 })).items.length > 0,
      previousRunEndedAt: async (s) => (s.lastJobId ? ((await this.store.jobGet(s.lastJobId))?.finishedAt?.getTime() ?? null) : null),
      leads,
      fired: (e) => this.hooks.fired({ ...e, fireAt: new Date(e.fireAt) }),
      error: (err) => this.hooks.error(err, 'scheduler'),
    });
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    const scheduler = this.scheduler;
    this.scheduler = null;
    await scheduler?.stop();
  }

  /** Validate a schedule and the job it enqueues (payload and options) now, not at its first tick. */
  private build(key: string, spec: ScheduleSpec, payload: unknown, options: RecurringOptions): ScheduleDef {
    const def = buildSchedule(key, spec, payload, options, Date.now());
    if (typeof spec === 'object' && spec !== null && spec.startAt === undefined) this.floating.add(def);
    this.row({ ...def, enabled: true, nextRunAt: null, lastRunAt: null, lastJobId: null, runs: 0 }, Date.now());
    return def;
  }

  private async save(def: ScheduleDef, codeHash: string | null): Promise<void> {
    def = await this.keepAnchor(def);
    await this.store.scheduleUpsert({ def, nextRunAt: firstRun(def, await this.store.clockNow()), codeHash });
  }

  /**
   * An interval given no startAt is anchored when first stored; an edit or a deploy that keeps its
   * length keeps that anchor (its payload or options changed, not its timing). Anchored anew at
   * each save, it ran at once or an interval later, at random (which clock read first).
   */
  private async keepAnchor(def: ScheduleDef): Promise<ScheduleDef> {
    if (def.everyMs === null || !this.floating.has(def)) return def;
    const stored = await this.find(def.key);
    if (!stored || stored.everyMs !== def.everyMs || stored.startAt === null) return def;
    return { ...def, startAt: stored.startAt };
  }

  private async find(key: string): Promise<StoredSchedule | undefined> {
    return (await this.store.scheduleList()).find((x) => x.key === key);
  }

  /** The job a tick of this schedule enqueues. */
  private row(s: StoredSchedule, fireAt: number): NewJobRow {
    const options = (s.optionsJson ? JSON.parse(s.optionsJson) : {}) as EnqueueOptions;
    return this.hooks.row(s.name, s.payloadJson === null ? undefined : JSON.parse(s.payloadJson), {
      createdBy: `schedule:${s.key}`,
      ...options,
      runAt: new Date(fireAt),
      refId: s.overlap === 'allow' ? undefined : scheduleRefId(s.key),
    });
  }
}

/** The refId a schedule's runs carry when overlap is 'skip' or 'queue': at most one is live at a time. */
function scheduleRefId(key: string): string {
  return `schedule:${key}`;
}

function toScheduleRecord(s: StoredSchedule): ScheduleRecord {
  const at = (ms: number | null) => (ms === null ? null : new Date(ms));
  return {
    key: s.key,
    name: s.name,
    cron: s.cron,
    timezone: s.timezone,
    everyMs: s.everyMs,
    enabled: s.enabled,
    overlap: s.overlap,
    missed: s.missed,
    nextRunAt: at(s.nextRunAt),
    lastRunAt: at(s.lastRunAt),
    lastJobId: s.lastJobId,
    runs: s.runs,
    maxRuns: s.maxRuns,
    payload: s.payloadJson === null ? null : JSON.parse(s.payloadJson),
  };
}
