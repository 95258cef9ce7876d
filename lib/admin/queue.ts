/**
 * What the queues page, a queue's page and their JSON API share: the queues with their limits, a
 * queue's figures per group, the jobs held back and why (./held.ts), its reserved jobs, and the
 * settings form read into jobs.queues.configure.
 */
import { JobValidationError, type JobRecord } from '../model.ts';
import { validateQueueSettings, type QueueSettingsRecord } from '../queues.ts';
import type { StoredQueueSettings } from '../driver/portable/queues.ts';
import type { JobLink, QueueGroupCounts, QueueGroupStats, QueueStats } from '../driver/store.ts';
import type { AdminJobs } from './actions.ts';
import { groupHolds, queueHolds, whyHeld, type Hold, type QueueNow } from './held.ts';
import { HttpError, type BodyFields } from './types.ts';

/** Groups a queue's page shows (the busiest first). */
const GROUPS_SHOWN = 100;
/** Pending jobs a queue's page looks through for held ones (the newest). */
const PENDING_SCANNED = 200;
const RESERVED_SHOWN = 50;

/** A queue's figures and its limits (null: none). */
export type QueueRow = QueueStats & { settings: QueueSettingsRecord | null };

/** The figures of a queue without live jobs. */
function idle(queue: string): QueueStats {
  return { queue, pending: 0, due: 0, running: 0, oldestDueAgeMs: null, pausedAt: null };
}

/** Every queue with live jobs, paused, or managed (limits or groups), with its limits, by name. */
export async function queueRows(jobs: AdminJobs): Promise<QueueRow[]> {
  const [stats, settings] = await Promise.all([jobs.queues.list(), jobs.queues.settings()]);
  const byQueue = new Map(stats.map((q) => [q.queue, q]));
  // Queues with limits, and those the serving process's code names: listed (and pausable) while idle.
  for (const queue of [...settings.map((s) => s.queue), ...jobs.queues.known()]) if (!byQueue.has(queue)) byQueue.set(queue, idle(queue));
  const limits = new Map(settings.map((s) => [s.queue, s]));
  return [...byQueue.values()].map((q) => ({ ...q, settings: limits.get(q.queue) ?? null })).sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0));
}

/** One queue's row (a queue unknown so far has no jobs and no limits: it can still be configured). */
export async function queueRow(jobs: AdminJobs, queue: string): Promise<QueueRow> {
  return (await queueRows(jobs)).find((q) => q.queue === queue) ?? { ...idle(queue), settings: null };
}

/** The queue as the claim sees it, from its row and its groups' counts. */
function queueNow(row: QueueRow, counts: QueueGroupCounts[]): QueueNow {
  const groups = new Map<string, { running: number; starts: number | null }>();
  for (const g of counts.flatMap((c) => c.groups)) if (g.group !== null) groups.set(g.group, { running: g.running, starts: g.starts });
  return { queue: row.queue, paused: row.pausedAt !== null, settings: row.settings, running: row.running, starts: counts[0]?.starts ?? null, groups };
}

/**
 * Why a job is not running (./held.ts whyHeld), with its queue read now; `parents` are its
 * dependsOn links, which tell its parents from the job before it on its serial key.
 */
export async function jobHeld(jobs: AdminJobs, job: JobRecord, parents: JobLink[], now: number): Promise<Hold[]> {
  if (job.state !== 'pending') return [];
  const [row, counts, { workers }] = await Promise.all([
    queueRow(jobs, job.queue),
    jobs.queues.groups(job.queue, { groups: job.group === null ? [] : [job.group] }),
    jobs.status({ cap: 1 }),
  ]);
  const left = parents.filter((p) => p.state !== 'completed').length;
  return whyHeld(job, queueNow(row, [counts]), { now, parents: { total: parents.length, left }, workers });
}

/** A queue's page: its figures, limits, groups, what holds it back, its held and its reserved jobs. */
export interface QueueDetail {
  row: QueueRow;
  /** The holds on the whole queue now (paused, at its concurrency, rate window full). */
  holds: Hold[];
  groups: (QueueGroupStats & { holds: Hold[] })[];
  groupsCapped: boolean;
  /** Starts of the whole queue in its rate window (null: no rate limit). */
  starts: number | null;
  held: { job: JobRecord; holds: Hold[] }[];
  pendingScanned: number;
  reserved: JobRecord[];
}

export async function queueDetail(jobs: AdminJobs, queue: string, now: number): Promise<QueueDetail> {
  const [row, shown, pending, reserved, { workers }] = await Promise.all([
    queueRow(jobs, queue),
    jobs.queues.groups(queue, { limit: GROUPS_SHOWN }),
    jobs.list({ queue, state: 'pending', limit: PENDING_SCANNED }),
    jobs.list({ queue, reserved: true, limit: RESERVED_SHOWN }),
    jobs.status({ cap: 1 }),
  ]);
  // The held jobs' groups beyond the busiest ones shown are read too: each job's holds need its group's counts.
  const listed = new Set(shown.groups.map((g) => g.group));
  const missing = [...new Set(pending.items.flatMap((j) => (j.group !== null && !listed.has(j.group) ? [j.group] : [])))];
  const counts = missing.length ? [shown, await jobs.queues.groups(queue, { groups: missing })] : [shown];
  const q = queueNow(row, counts);
  return {
    row,
    holds: queueHolds(q),
    groups: shown.groups.map((g) => ({ ...g, holds: groupHolds(q, g.group) })),
    groupsCapped: shown.groups.length === GROUPS_SHOWN,
    starts: shown.starts,
    held: pending.items.map((job) => ({ job, holds: whyHeld(job, q, { now, workers }) })).filter((h) => h.holds.length > 0),
    pendingScanned: PENDING_SCANNED,
    reserved: reserved.items,
  };
}

// ---------------------------------------------------------------- settings

const RATE_FIELDS = ['rateLimit.limit', 'rateLimit.intervalMs', 'rateLimit.per'];
const SETTINGS_FIELDS = ['concurrency', 'groupConcurrency', ...RATE_FIELDS];

/** The settings form's fields as text ('' for no limit): from the stored settings, or as posted. */
export type SettingsForm = Record<string, string>;

/** A refused edit: 400, with the field at fault as the form names it. */
export class SettingsRefused extends HttpError {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(400, message);
  }
}

export function settingsForm(s: StoredQueueSettings | null): SettingsForm {
  const text = (v: number | null | undefined) => (v == null ? '' : String(v));
  return {
    concurrency: text(s?.concurrency),
    groupConcurrency: text(s?.groupConcurrency),
    'rateLimit.limit': text(s?.rateLimit?.limit),
    'rateLimit.intervalMs': text(s?.rateLimit?.intervalMs),
    'rateLimit.per': s?.rateLimit?.per ?? 'queue',
  };
}

/** A field no setting has is refused: a misspelt one left out would quietly remove that limit. */
function checkFields(body: BodyFields): void {
  for (const k of Object.keys(body)) {
    if (k !== '_csrf' && k !== 'rateLimit' && !SETTINGS_FIELDS.includes(k)) {
      throw new SettingsRefused(`${k} is not a queue setting; allowed: ${SETTINGS_FIELDS.join(', ')} (empty or left out: no limit)`, k);
    }
  }
}

/** The posted fields (a form's, or a JSON body's with rateLimit one level down: see body.ts). */
export function postedForm(body: BodyFields): SettingsForm {
  const field = (k: string) => {
    const v = body[k];
    if (Array.isArray(v) && v.length > 1) throw new SettingsRefused(`${k} must be given once; got ${v.length} values`, k);
    return (Array.isArray(v) ? (v[0] ?? '') : (v ?? '')).trim();
  };
  // rateLimit given as a plain value (not { limit, intervalMs }) is kept, for validation to name it.
  return Object.fromEntries([...SETTINGS_FIELDS, 'rateLimit'].map((k) => [k, field(k)]));
}

/** A field's text as the value validation sees: empty is no limit, a number is a number, the rest stays text (to be named). */
function valueOf(text: string): unknown {
  if (text === '' || text === 'null') return null;
  return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
}

/**
 * The posted settings, validated as jobs.queues.configure validates them. A rate limit exists when
 * its limit or window is given: the form's `per` select alone always sends a value.
 */
export function parseSettings(form: SettingsForm): StoredQueueSettings {
  const rate = form['rateLimit.limit'] || form['rateLimit.intervalMs']
    ? { limit: valueOf(form['rateLimit.limit']), intervalMs: valueOf(form['rateLimit.intervalMs']), ...(form['rateLimit.per'] ? { per: form['rateLimit.per'] } : {}) }
    : valueOf(form.rateLimit ?? '');
  try {
    return validateQueueSettings('settings', { concurrency: valueOf(form.concurrency), groupConcurrency: valueOf(form.groupConcurrency), rateLimit: rate });
  } catch (err) {
    if (err instanceof JobValidationError) throw new SettingsRefused(err.message, err.field.replace(/^settings\./, ''));
    throw err;
  }
}

/** Configure a queue from posted fields; answers its settings as stored. */
export async function configureQueue(jobs: AdminJobs, queue: string, body: BodyFields): Promise<QueueSettingsRecord | null> {
  checkFields(body);
  await jobs.queues.configure(queue, parseSettings(postedForm(body)));
  return (await jobs.queues.settings()).find((s) => s.queue === queue) ?? null;
}
