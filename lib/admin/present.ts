/** Formatting for the views: ages, times, JSON, binary previews, schedules in words, the throughput chart. No I/O. */
import { createRequire } from 'node:module';
import type Cronstrue from 'cronstrue';
import type { ThroughputBuckets } from '../driver/store.ts';
import type { ScheduleRecord } from '../schedule/schedule.ts';
import type { StoredQueueSettings } from '../driver/portable/queues.ts';
import { jobHolds, type HeldJob } from './held.ts';
import { filterFields } from './actions.ts';

/** A duration in the largest sensible unit: "850 ms", "12 s", "4 min", "3 h", "2 d". */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 60_000) return `${Math.round(ms / 1000)} s`;
  if (a < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (a < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/** "3 min ago" / "in 5 s" relative to now. */
export function ago(d: Date | null | undefined, now = Date.now()): string {
  if (!d) return '—';
  const ms = now - d.getTime();
  return ms >= 0 ? `${duration(ms)} ago` : `in ${duration(-ms)}`;
}

/** UTC time to the second, e.g. "2026-11-22 14:05:09Z". */
export function time(d: Date | null | undefined): string {
  if (!d) return '—';
  return d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A time as HTML: a <time> holding its UTC text (what a page shows without script), which admin.js
 * turns into the reader's local time with the UTC text on hover. Nothing in it comes from input.
 */
export function when(d: Date | number | null | undefined): string {
  if (d === null || d === undefined) return '—';
  const at = d instanceof Date ? d : new Date(d);
  if (Number.isNaN(at.getTime())) return '—';
  const utc = time(at);
  return `<time datetime="${at.toISOString()}" title="${utc}">${utc}</time>`;
}

export function num(n: number): string {
  return n.toLocaleString('en-US');
}

/** A size on disk in binary units (1.5 GiB), or — where the database does not tell it. */
export function bytes(n: number | null): string {
  if (n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/**
 * A payload or result for display: pretty JSON, or a binary's size and the hex of its first bytes.
 * A payload that is null was given as null (none is undefined), so it shows as `null`; a result
 * record says null for none, so there null is none.
 */
export function showValue(v: unknown, nullIsNone = true): { kind: 'none' | 'json' | 'binary'; text: string } {
  if (v === undefined || (v === null && nullIsNone)) return { kind: 'none', text: '' };
  if (Buffer.isBuffer(v)) {
    const hex = v.subarray(0, 64).toString('hex').replace(/(..)/g, '$1 ').trim();
    return { kind: 'binary', text: `${num(v.length)} bytes: ${hex}${v.length > 64 ? ' …' : ''}` };
  }
  return { kind: 'json', text: JSON.stringify(v, null, 2) };
}

/**
 * What holds a pending job back by its own record, in words ("waiting for 2 parents", held.ts
 * jobHolds); null for a job nothing in its record holds.
 */
export function waiting(job: HeldJob): string | null {
  return jobHolds(job).map((h) => h.text).join('; ') || null;
}

/**
 * When a job runs, as HTML (a <time>, shown in the reader's zone as the other times are): a
 * waiting job's stored run_at is the end of time (9999), which says nothing to a reader.
 */
export function runAt(job: HeldJob & { runAt: Date }): string {
  if (!waiting(job)) return when(job.runAt);
  if (job.reservedUntil && job.waitingFor === 1) return 'once committed';
  return job.reservedUntil || job.serialKey ? 'after the jobs it waits for' : 'after its parents';
}

/**
 * The admin's page of a batch. A batchId is free text: "." or ".." cannot be a path segment
 * (browsers collapse it, and the router refuses it), so those open the jobs list filtered by it.
 */
export function batchHref(base: string, id: string): string {
  return id === '.' || id === '..' ? `${base}/jobs?batch=${encodeURIComponent(id)}` : `${base}/batches/${encodeURIComponent(id)}`;
}

/** A queue's limits in words: "at most 3 running · 1 per group · 10 starts per 1 s per group", or "no limits". */
export function limits(s: StoredQueueSettings | null): string {
  if (!s) return 'no limits';
  const parts: string[] = [];
  if (s.concurrency !== null) parts.push(`at most ${num(s.concurrency)} running`);
  if (s.groupConcurrency !== null) parts.push(`${num(s.groupConcurrency)} per group`);
  if (s.rateLimit) parts.push(`${num(s.rateLimit.limit)} starts per ${duration(s.rateLimit.intervalMs)}${s.rateLimit.per === 'group' ? ' per group' : ''}`);
  return parts.length ? parts.join(' · ') : 'no limits';
}

/** The admin's page of a queue (a queue name is never "." or "..": see validateName). */
export function queueHref(base: string, queue: string): string {
  return `${base}/queues/${encodeURIComponent(queue)}`;
}

/** cronstrue, loaded at its first use: at import it cost every process about 5 MB of memory, admin or not (issue 17). */
let cronWords: typeof Cronstrue | null = null;

/** A schedule's expression in words ("At 02:00 AM, only on Monday (Europe/Paris)", "every 5 min"). */
export function scheduleInWords(s: Pick<ScheduleRecord, 'cron' | 'everyMs' | 'timezone'>): string {
  if (s.cron) {
    let words: string;
    try {
      cronWords ??= createRequire(import.meta.url)('cronstrue') as typeof Cronstrue;
      words = cronWords.toString(s.cron, { use24HourTimeFormat: true, verbose: false });
    } catch {
      words = s.cron;
    }
    return s.timezone ? `${words} (${s.timezone})` : `${words} (UTC)`;
  }
  return s.everyMs ? `Every ${duration(s.everyMs)}` : '—';
}

export interface ChartBar {
  x: number;
  y: number;
  height: number;
  cls: 'completed' | 'failed';
  label: string;
}

export interface ChartTick {
  /** Along its axis, in the plot's coordinates. */
  at: number;
  label: string;
}

export interface Chart {
  /** The whole drawing; the plot is inset by `left` (the scale's labels), its floor at `base` (the time's labels below). */
  width: number;
  height: number;
  left: number;
  base: number;
  plotWidth: number;
  plotHeight: number;
  barWidth: number;
  bars: ChartBar[];
  /** The scale: 0, half and the top, in jobs per bucket. */
  yTicks: ChartTick[];
  /** Every 10 minutes back from now. */
  xTicks: ChartTick[];
  max: number;
  totalCompleted: number;
  totalFailed: number;
}

/** A round top for the scale at or above `n` (1, 2, 5 × a power of ten), so its labels read well. */
function niceCeiling(n: number): number {
  const power = 10 ** Math.floor(Math.log10(Math.max(1, n)));
  return [1, 2, 5, 10].map((f) => f * power).find((v) => v >= n) ?? 10 * power;
}

/**
 * Stacked bars (completed below, failed above) per minute over the last hour, the oldest on the
 * left and every minute in its place (a quiet minute is a gap, not a missing bar), with a scale of
 * jobs per minute and the time as minutes before now (the reader's clock needs no time zone).
 */
export function throughputChart(tp: ThroughputBuckets, bucketMs = 60_000, count = 60): Chart {
  // The plot's top is `top` down, so the scale's top label is not cut; its floor is at `base`.
  const [width, height, left, bottom, top] = [640, 150, 40, 18, 8];
  const [plotWidth, plotHeight] = [width - left, height - bottom - top];
  const base = top + plotHeight;
  const barWidth = plotWidth / count;
  const last = Math.floor(tp.now / bucketMs) * bucketMs;
  const byStart = new Map(tp.buckets.map((b) => [b.start, b]));
  const series = Array.from({ length: count }, (_, i) => {
    const start = last - (count - 1 - i) * bucketMs;
    return { start, completed: byStart.get(start)?.completed ?? 0, failed: byStart.get(start)?.failed ?? 0 };
  });
  const peak = Math.max(0, ...series.map((b) => b.completed + b.failed));
  const ceiling = niceCeiling(peak);
  const bars: ChartBar[] = [];
  series.forEach((b, i) => {
    const x = left + i * barWidth;
    const hc = (b.completed / ceiling) * plotHeight;
    const hf = (b.failed / ceiling) * plotHeight;
    const ago = count - 1 - i;
    const when = ago === 0 ? 'this minute' : `${ago} min ago`;
    if (b.completed) bars.push({ x, y: base - hc, height: hc, cls: 'completed', label: `${when}: ${b.completed} completed` });
    if (b.failed) bars.push({ x, y: base - hc - hf, height: hf, cls: 'failed', label: `${when}: ${b.failed} failed` });
  });
  const minutes = (count * bucketMs) / 60_000;
  const xTicks = [0, 10, 20, 30, 40, 50, 60].filter((m) => m <= minutes)
    .map((m) => ({ at: left + plotWidth * (1 - m / minutes), label: m === 0 ? 'now' : `−${m} min` }));
  const yTicks = (ceiling < 2 ? [0, ceiling] : [0, ceiling / 2, ceiling]).map((v) => ({ at: base - (v / ceiling) * plotHeight, label: num(v) }));
  return {
    width, height, left, base, plotWidth, plotHeight, barWidth, bars, yTicks, xTicks, max: peak,
    totalCompleted: series.reduce((n, b) => n + b.completed, 0),
    totalFailed: series.reduce((n, b) => n + b.failed, 0),
  };
}

/** Helpers every view receives. */
/** The jobs list filtered by these query fields (as parseFilter reads them), e.g. [['replyTo', r]] or an argKey and argValue. */
export function jobsHref(base: string, fields: [string, string][]): string {
  return `${base}/jobs?${new URLSearchParams(fields)}`;
}

export const helpers = { duration, ago, time, when, num, bytes, showValue, scheduleInWords, waiting, runAt, batchHref, queueHref, limits, jobsHref, filterFields };
