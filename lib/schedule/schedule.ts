/**
 * Recurring schedules: what a schedule is, how it is validated, and when it fires next.
 * Cron expressions (5 fields, or 6 with seconds) are evaluated by croner in an IANA timezone,
 * which handles daylight-saving changes (a time in a spring gap fires at the first valid time
 * after it; a time in an autumn overlap fires once). Intervals are anchored at their start.
 */
import { createHash } from 'node:crypto';
import { Cron } from 'croner';
import { describe, JobValidationError, toJson, validateName, type EnqueueOptions, type JsonValue } from '../model.ts';

export type IntervalUnit = 'seconds' | 'minutes' | 'hours' | 'days';
const UNIT_MS: Record<IntervalUnit, number> = { seconds: 1000, minutes: 60_000, hours: 3_600_000, days: 86_400_000 };
/** The longest interval: 100 years (36,500 days), so that every next run is a date every database stores. */
const MAX_INTERVAL_MS = 36_500 * UNIT_MS.days;

/** When the previous run of a schedule is still live: run another beside it, skip the tick (recorded as a skipped job), or queue the tick until the previous run finishes. */
export type OverlapPolicy = 'allow' | 'skip' | 'queue';
export type MissedPolicy = 'latest' | 'all' | 'none';

/** A cron expression, or an interval with an optional start, end and run limit. */
export type ScheduleSpec = string | { every: number; unit: IntervalUnit; startAt?: Date; endAt?: Date; limit?: number };

export interface RecurringOptions extends Omit<EnqueueOptions, 'tx' | 'delay' | 'runAt' | 'refId'> {
  /** The job to enqueue (default: the schedule's key). */
  name?: string;
  /** IANA timezone of a cron expression. Default 'UTC'. */
  timezone?: string;
  /**
   * When the previous run is still live (pending or running): 'allow' another beside it, 'skip'
   * the tick (recorded as a skipped job), or 'queue' it: the tick fires as soon as the previous
   * run finishes, and the ticks that pass meanwhile collapse into it. Default 'allow'.
   */
  overlap?: OverlapPolicy;
  /** Ticks missed while nothing ran: 'latest' runs once, 'all' runs each (up to 100), 'none' runs none. Default 'latest'. */
  missed?: MissedPolicy;
}

/** A validated schedule, as stored. */
export interface ScheduleDef {
  key: string;
  name: string;
  cron: string | null;
  timezone: string | null;
  everyMs: number | null;
  startAt: number | null;
  endAt: number | null;
  maxRuns: number | null;
  payloadJson: string | null;
  optionsJson: string | null;
  overlap: OverlapPolicy;
  missed: MissedPolicy;
}

export interface ScheduleRecord {
  key: string;
  name: string;
  cron: string | null;
  timezone: string | null;
  everyMs: number | null;
  enabled: boolean;
  overlap: OverlapPolicy;
  missed: MissedPolicy;
  nextRunAt: Date | null;
  lastRunAt: Date | null;
  lastJobId: string | null;
  runs: number;
  maxRuns: number | null;
  payload: JsonValue | null;
}

const OPTION_KEYS = ['name', 'timezone', 'overlap', 'missed', 'priority', 'queue', 'maxAttempts', 'timeout', 'backoff', 'tag', 'batchId', 'createdBy', 'userId', 'replyTo', 'args', 'meta'];

function fail(key: string, field: string, what: string): never {
  throw new JobValidationError(`schedule "${key}": ${field} ${what}`, field, key);
}

/** The payload as an enqueue would store it, refused in the schedule's name (its key), not its job's. */
function payloadJson(key: string, payload: unknown): string {
  try {
    return toJson(undefined, 'payload', payload);
  } catch (err) {
    if (err instanceof JobValidationError) fail(key, err.field, err.message.slice(err.field.length + 1));
    throw err;
  }
}

export function buildSchedule(key: string, spec: ScheduleSpec, payload: unknown, opts: RecurringOptions, now: number): ScheduleDef {
  validateName(key, 'key');
  if (opts === null || typeof opts !== 'object') fail(key, 'options', `must be an object; got ${describe(opts)}`);
  for (const k of Object.keys(opts)) if (!OPTION_KEYS.includes(k)) fail(key, k, `is not a recurring option; allowed: ${OPTION_KEYS.join(', ')}`);
  const name = opts.name === undefined ? key : validateName(opts.name, 'name', key);
  const overlap = opts.overlap ?? 'allow';
  if (!['allow', 'skip', 'queue'].includes(overlap)) fail(key, 'overlap', `must be 'allow', 'skip' or 'queue'; got ${describe(overlap)}`);
  const missed = opts.missed ?? 'latest';
  if (!['latest', 'all', 'none'].includes(missed)) fail(key, 'missed', `must be 'latest', 'all' or 'none'; got ${describe(missed)}`);
  const { name: _n, timezone: _t, overlap: _o, missed: _m, ...enqueue } = opts;
  const base = {
    key,
    name,
    // JSON only, checked as an enqueue checks it: a Buffer, a Date or a Map would be stored as
    // something else (a schedule keeps its payload as JSON text).
    payloadJson: payload === undefined ? null : payloadJson(key, payload),
    optionsJson: Object.keys(enqueue).length ? JSON.stringify(enqueue) : null,
    overlap,
    missed,
  } as const;
  if (typeof spec === 'string') {
    const timezone = opts.timezone ?? 'UTC';
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    } catch {
      fail(key, 'timezone', `must be an IANA timezone such as 'Europe/Berlin'; got ${describe(timezone)}`);
    }
    let cron: Cron | undefined;
    try {
      cron = new Cron(spec, { timezone });
    } catch (err) {
      fail(key, 'schedule', `is not a valid cron expression (${(err as Error).message}); got ${describe(spec)}`);
    }
    // '0 0 30 2 *' (February 30th) would be stored enabled and never run. Not one whose year has
    // gone by: defined in code, it would refuse every start after that date (stored, it has ended).
    if (cron.nextRun(new Date(0)) === null) fail(key, 'schedule', `never fires (no date matches it); got ${describe(spec)}`);
    return { ...base, cron: spec, timezone, everyMs: null, startAt: null, endAt: null, maxRuns: null };
  }
  if (spec === null || typeof spec !== 'object') fail(key, 'schedule', `must be a cron expression or { every, unit }; got ${describe(spec)}`);
  if (!Number.isInteger(spec.every) || spec.every < 1) fail(key, 'schedule.every', `must be a positive integer; got ${describe(spec.every)}`);
  // Own keys only: 'toString' or 'constructor' are `in` every object.
  if (typeof spec.unit !== 'string' || !Object.hasOwn(UNIT_MS, spec.unit)) fail(key, 'schedule.unit', `must be 'seconds', 'minutes', 'hours' or 'days'; got ${describe(spec.unit)}`);
  if (spec.every * UNIT_MS[spec.unit] > MAX_INTERVAL_MS) fail(key, 'schedule.every', `must be at most ${MAX_INTERVAL_MS / UNIT_MS[spec.unit]} ${spec.unit} (100 years); got ${spec.every}`);
  for (const f of ['startAt', 'endAt'] as const) {
    if (spec[f] !== undefined && (!(spec[f] instanceof Date) || Number.isNaN(spec[f]!.getTime()))) fail(key, `schedule.${f}`, `must be a valid Date; got ${describe(spec[f])}`);
  }
  if (spec.limit !== undefined && (!Number.isInteger(spec.limit) || spec.limit < 1)) fail(key, 'schedule.limit', `must be a positive integer; got ${describe(spec.limit)}`);
  const startAt = spec.startAt?.getTime() ?? now;
  // Against a start given only: an end gone by is an ended schedule (defined in code, refusing it
  // would refuse every start after that date).
  if (spec.startAt !== undefined && spec.endAt !== undefined && spec.endAt.getTime() <= startAt) {
    fail(key, 'schedule.endAt', `must be after startAt (${spec.startAt.toISOString()}); got ${spec.endAt.toISOString()}`);
  }
  if (opts.timezone !== undefined) fail(key, 'timezone', 'applies to cron expressions only');
  return {
    ...base,
    cron: null,
    timezone: null,
    everyMs: spec.every * UNIT_MS[spec.unit],
    startAt,
    endAt: spec.endAt?.getTime() ?? null,
    maxRuns: spec.limit ?? null,
  };
}

/**
 * A fingerprint of a definition as written in code (spec, payload, options; key order ignored),
 * so that an instance re-applies it at start only when the code changed.
 */
export function definitionHash(spec: ScheduleSpec, payload: unknown, opts: RecurringOptions): string {
  const sorted = (_k: string, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v;
  return createHash('sha256').update(JSON.stringify([spec, payload ?? null, opts], sorted)).digest('hex').slice(0, 32);
}

/** The first nominal fire time strictly after `after` (ms), or null when the schedule has ended. */
export function nextFireAfter(def: Pick<ScheduleDef, 'cron' | 'timezone' | 'everyMs' | 'startAt' | 'endAt'>, after: number): number | null {
  let next: number | null;
  if (def.cron) {
    next = new Cron(def.cron, { timezone: def.timezone ?? 'UTC' }).nextRun(new Date(after))?.getTime() ?? null;
  } else {
    const start = def.startAt!;
    const every = def.everyMs!;
    next = after < start ? start : start + (Math.floor((after - start) / every) + 1) * every;
  }
  if (next !== null && def.endAt !== null && next > def.endAt) return null;
  return next;
}

/** The most ticks `missed: 'all'` fires after downtime: the latest ones. */
const MAX_CATCH_UP = 100;

/**
 * The last `keep` ticks due by `now` (from `from` on) and the first one after `now`. Ticks are
 * listed from a window before `now` that widens until it holds `keep` of them or reaches `from`:
 * after days of downtime a per-second schedule is not walked tick by tick from where it stopped
 * (a cap on that walk left the answer among the oldest ticks, and `next` in the past).
 */
function lastDueTicks(def: ScheduleDef, from: number, now: number, keep: number): { due: number[]; next: number | null } {
  if (def.everyMs !== null) return lastIntervalTicks(def, from, now, keep);
  for (let span = 60_000; ; span *= 4) {
    const start = Math.max(from, now - span);
    const due: number[] = [];
    let t: number | null = start === from ? from : nextFireAfter(def, start - 1);
    while (t !== null && t <= now) {
      due.push(t);
      if (due.length > keep) due.shift();
      t = nextFireAfter(def, t);
    }
    if (due.length >= keep || start === from) return { due, next: t };
  }
}

/** lastDueTicks of an interval, by arithmetic: no walk, however many ticks passed (an end during downtime too). */
function lastIntervalTicks(def: ScheduleDef, from: number, now: number, keep: number): { due: number[]; next: number | null } {
  const start = def.startAt!;
  const every = def.everyMs!;
  const until = def.endAt === null ? now : Math.min(now, def.endAt);
  if (from > until) return { due: [], next: from > now ? from : nextFireAfter(def, now) };
  const last = start + Math.floor((until - start) / every) * every;
  const due: number[] = [];
  for (let tick = last; tick >= from && due.length < keep; tick -= every) due.unshift(tick);
  return { due, next: nextFireAfter(def, now) };
}

/**
 * Which due ticks to fire now, by the missed-ticks policy, and the next one after them.
 * `waited`: the schedule's due tick waited for its previous run (overlap 'queue'); its ticks then
 * collapse into one queued run ('all': the oldest first, one run at a time).
 */
export function ticksToFire(def: ScheduleDef, nextRunAt: number, now: number, runsSoFar: number, waited = false): { fire: number[]; next: number | null } {
  const { due, next: after } = lastDueTicks(def, nextRunAt, now, def.missed === 'all' ? MAX_CATCH_UP : 1);
  // A tick is "on time" when it fell within the last few seconds; older ones were missed.
  const onTime = (tick: number) => now - tick < 5000;
  let fire: number[];
  if (waited) fire = def.missed === 'all' ? due.slice(0, 1) : due.slice(-1);
  else if (def.missed === 'all') fire = due;
  else if (def.missed === 'none') fire = due.filter(onTime).slice(-1);
  else fire = due.slice(-1);
  let next = after;
  if (def.overlap === 'queue' && fire.length > 1) {
    // One run at a time: the later ticks stay due and wait for this one.
    next = fire[1];
    fire = fire.slice(0, 1);
  }
  if (def.maxRuns !== null) fire = fire.slice(0, Math.max(0, def.maxRuns - runsSoFar));
  return { fire, next };
}
