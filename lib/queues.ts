/**
 * Queue settings as the app gives them (createJobs({ queues }), jobs.queues.configure): validated
 * into what the database stores. The limits are enforced by the claim (driver/portable/queues.ts).
 */
import { createHash } from 'node:crypto';
import { JobValidationError, describe, validateName } from './model.ts';
import type { StoredQueueSettings } from './driver/portable/queues.ts';

/** A queue's limits, global across every process (stored in the database). */
export interface QueueSettings {
  /** The most jobs of the queue running at once, in all processes together. */
  concurrency?: number | null;
  /** The most jobs of one group (the `group` enqueue option) running at once. */
  groupConcurrency?: number | null;
  /**
   * At most `limit` job starts in any window of `intervalMs` (a sliding window on the database
   * clock), counted for the whole queue or (`per: 'group'`) for each group.
   */
  rateLimit?: { limit: number; intervalMs: number; per?: 'queue' | 'group' } | null;
}

/** A managed queue (one with limits, or with grouped jobs) and its settings (null: no such limit). */
export interface QueueSettingsRecord {
  queue: string;
  concurrency: number | null;
  groupConcurrency: number | null;
  rateLimit: { limit: number; intervalMs: number; per: 'queue' | 'group' } | null;
  updatedAt: Date;
}

const SETTINGS_KEYS = ['concurrency', 'groupConcurrency', 'rateLimit'];
const RATE_KEYS = ['limit', 'intervalMs', 'per'];
/** Upper bounds: an INT column, and a window no longer than a day. */
const MAX_LIMIT = 1_000_000;
const MAX_INTERVAL_MS = 86_400_000;

function refuse(field: string, what: string): never {
  throw new JobValidationError(`queue settings: ${field} ${what}`, field);
}

function limitOf(field: string, v: unknown, max: number): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) refuse(field, `must be an integer from 1 to ${max}, or null for no limit; got ${describe(v)}`);
  return v;
}

/** Settings validated into their stored form; `field` names the queue's entry in errors. */
export function validateQueueSettings(field: string, v: unknown): StoredQueueSettings {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) refuse(field, `must be { concurrency?, groupConcurrency?, rateLimit? }; got ${describe(v)}`);
  const s = v as Record<string, unknown>;
  for (const k of Object.keys(s)) if (!SETTINGS_KEYS.includes(k)) refuse(`${field}.${k}`, `is not a queue setting; allowed: ${SETTINGS_KEYS.join(', ')}`);
  return {
    concurrency: limitOf(`${field}.concurrency`, s.concurrency, MAX_LIMIT),
    groupConcurrency: limitOf(`${field}.groupConcurrency`, s.groupConcurrency, MAX_LIMIT),
    rateLimit: rateLimitOf(`${field}.rateLimit`, s.rateLimit),
  };
}

function rateLimitOf(field: string, v: unknown): StoredQueueSettings['rateLimit'] {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) refuse(field, `must be { limit, intervalMs, per? } or null; got ${describe(v)}`);
  const r = v as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!RATE_KEYS.includes(k)) refuse(`${field}.${k}`, `is not allowed; rateLimit is { limit, intervalMs, per? }`);
  const limit = limitOf(`${field}.limit`, r.limit, MAX_LIMIT);
  const intervalMs = limitOf(`${field}.intervalMs`, r.intervalMs, MAX_INTERVAL_MS);
  if (limit === null) refuse(`${field}.limit`, 'is required (job starts per window)');
  if (intervalMs === null) refuse(`${field}.intervalMs`, 'is required (the window, in milliseconds)');
  if (r.per !== undefined && r.per !== 'queue' && r.per !== 'group') refuse(`${field}.per`, `must be 'queue' or 'group'; got ${describe(r.per)}`);
  return { limit, intervalMs, per: r.per === 'group' ? 'group' : 'queue' };
}

/** createJobs' queues option: each queue's settings, validated, with the hash that marks them as written from code. */
export function resolveQueues(v: unknown): Map<string, { settings: StoredQueueSettings; codeHash: string }> {
  const out = new Map<string, { settings: StoredQueueSettings; codeHash: string }>();
  if (v === undefined) return out;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TypeError(`createJobs: queues must be an object { [queue]: { concurrency?, groupConcurrency?, rateLimit? } }; got ${describe(v)}`);
  for (const [queue, s] of Object.entries(v)) {
    validateName(queue, 'queues key');
    const settings = validateQueueSettings(`queues.${queue}`, s);
    out.set(queue, { settings, codeHash: createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 32) });
  }
  return out;
}
