/**
 * The worker's settings, the events it emits and transient runs, as types: the public declarations reach these
 * without the worker's own module (and what it imports).
 */
import type { JobError } from '../model.ts';

export interface WorkerOptions {
  /** Jobs run at once by this process. Default 10. */
  concurrency: number;
  /** Only these queues (default: every queue). */
  queues?: string[];
  /** Per-queue limits within this process, e.g. { email: 2 }. */
  queueConcurrency?: Record<string, number>;
  /** Safety-net poll, ms. Default 1000. */
  pollInterval: number;
  /**
   * Poll period where the database normally wakes workers but this store cannot listen
   * (PostgreSQL behind a transaction pooler), ms: pollInterval when the app set it, else 200.
   */
  pollUnheard: number;
  /** Heartbeat period, ms. Default 5000. */
  heartbeatInterval: number;
  /** A running job whose worker sent no heartbeat for this long is rescued, ms. Default 30000. */
  stallTimeout: number;
  /** How long stop() waits for running jobs before aborting them, ms. Default 10000. */
  shutdownTimeout: number;
  /**
   * Most jobs claimed ahead of free slots while jobs are short (< 50 ms on average over the last
   * ones; about 100 ms of work at their rate), so that one claim serves many runs. Long jobs are
   * never claimed ahead, so they spread over all workers. 0 turns it off. Default 500.
   */
  prefetch: number;
  /** Log/progress flush period, ms. Default 200. */
  logFlushInterval: number;
  /** Delete history older than this many ms (leader duty; any worker may run it safely). */
  retentionMs: number | null;
  /** Priority aging: one step up per this many ms of waiting (the leader's chore), or null. */
  agingMs: number | null;
  /** Claim jobs only while this instance is the elected leader (needs `leader`). */
  leaderOnly?: boolean;
  /** Largest result, checkpoint, progress message or log line, in UTF-8 bytes (the createJobs option). */
  maxOutputBytes: number;
}

export interface JobEventPayload {
  id: string;
  name: string;
  queue: string;
  attempt: number;
}

export interface WorkerEvents {
  started(e: JobEventPayload): void;
  completed(e: JobEventPayload & { result: unknown }): void;
  retrying(e: JobEventPayload & { error: JobError; delayMs: number }): void;
  failed(e: JobEventPayload & { error: JobError }): void;
  snoozed(e: JobEventPayload & { delayMs: number }): void;
  aborted(e: JobEventPayload & { reason: string }): void;
  error(err: unknown): void;
}

export interface TransientOptions {
  /** Runs with the same key run one at a time, in call order. */
  serial?: string;
  /** Abort the run (its signal fires, the promise rejects) after this many milliseconds. Default: the definition's timeout. */
  timeout?: number;
}

/** A transient run as jobs.transient() lists it. */
export interface TransientRun {
  id: string;
  name: string;
  /** `waiting`: queued behind an earlier run with the same serial key. */
  state: 'waiting' | 'running';
  serial: string | null;
  createdAt: Date;
  startedAt: Date | null;
  progress: number | null;
  progressMessage: string | null;
  /** The latest log lines (the last 100). */
  logs: { at: Date; message: string }[];
}
