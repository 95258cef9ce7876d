/** What the measurement child drives: every system (library or raw-SQL floor) implements this. */
import type { SystemOptions } from '../lib/config.ts';

export type Payload = { i: number };

export type Backend = 'sqlite' | 'postgres' | 'mysql';

/** How tables name a backend. */
export const BACKEND_LABEL: Record<Backend, string> = { sqlite: 'SQLite', postgres: 'PG', mysql: 'MariaDB' };

export interface Progress {
  /** Jobs the database still holds as pending or running. */
  unfinished: number;
  /** Jobs recorded as finished (history rows, completed rows), or null where finished jobs are deleted. */
  finished: number | null;
}

export interface BenchSystem {
  readonly backend: Backend;
  /** Fresh storage (file, tables, schema) and the clients; no worker running yet. */
  setup(): Promise<void>;
  enqueueOne(p: Payload): Promise<void>;
  enqueueBatch(ps: Payload[]): Promise<void>;
  startWorker(): Promise<void>;
  /** Read from a separate connection, so it sees only what is committed. */
  progress(): Promise<Progress>;
  /** Durability-relevant settings of every connection the system writes through. */
  durability(): Promise<Record<string, string>>;
  /** Stop the worker and close the system's clients. */
  close(): Promise<void>;
  /** Drop what setup created (tables, schemas, files). */
  cleanup(): Promise<void>;
}

export type SystemFactory = (opts: SystemOptions) => BenchSystem;
