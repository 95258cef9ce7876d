/** Settings shared by the orchestrator and the measurement children. */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_URL = process.env.BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

/** Every table, schema and file this harness creates starts with this, so a sweep can find leftovers. */
export const NAME_PREFIX = 'bx_';

export const BENCH_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const REPO_DIR = path.dirname(BENCH_DIR);
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');
/**
 * The sqljobs entry the children load. The orchestrator points this at a snapshot of lib/ and
 * migrations/ taken when the run starts, so every measurement of one run runs the same code even
 * while lib/ is being edited.
 */
export const SQLJOBS_ENTRY = process.env.BENCH_SQLJOBS_LIB ?? path.join(REPO_DIR, 'lib', 'index.ts');
/** SQLite files live here (same disk as the repo on this machine), one file per measurement. */
export const SQLITE_DIR = path.join(os.tmpdir(), 'sqljobs-bench');

/** A fresh lowercase identifier per measurement: bx_<time36><rand>. */
export function newRunId(): string {
  return `${NAME_PREFIX}${Date.now().toString(36).slice(-6)}${Math.random().toString(36).slice(2, 6)}`;
}

/** The job handler every system runs: a no-op that records when it started. */
export type OnJob = (payload: { i: number }) => void;

export interface SystemOptions {
  runId: string;
  concurrency: number;
  onJob: OnJob;
}
