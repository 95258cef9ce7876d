/**
 * plainjob 0.0.14 (better-sqlite3). One worker: plainjob runs one job at a time and has no
 * concurrency option. Its 1 s default poll is kept (it does not wake on a same-process add).
 * Done = no job with status Pending (0) or Processing (1).
 */
import type Database from 'better-sqlite3';
import { better, defineQueue, defineWorker } from 'plainjob';
import type { SystemOptions } from '../lib/config.ts';
import { describeSqlite, openChecker, removeSqliteFile, sqliteFile } from '../lib/sqlite.ts';
import DatabaseCtor from 'better-sqlite3';
import type { BenchSystem, Payload, Progress } from './types.ts';

const silent = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

type Queue = ReturnType<typeof defineQueue>;
type Worker = ReturnType<typeof defineWorker>;

export class Plainjob implements BenchSystem {
  readonly backend = 'sqlite' as const;
  private readonly file: string;
  private db!: Database.Database;
  private queue!: Queue;
  private worker: Worker | null = null;
  private running: Promise<void> | null = null;
  private checker: Database.Database | null = null;

  constructor(private readonly opts: SystemOptions) {
    this.file = sqliteFile(opts.runId);
  }

  async setup(): Promise<void> {
    // plainjob sets journal_mode = WAL and synchronous = NORMAL on the connection itself.
    this.db = new DatabaseCtor(this.file);
    this.queue = defineQueue({ connection: better(this.db), logger: silent });
  }

  async enqueueOne(p: Payload): Promise<void> {
    this.queue.add('noop', p);
  }

  async enqueueBatch(ps: Payload[]): Promise<void> {
    this.queue.addMany('noop', ps);
  }

  async startWorker(): Promise<void> {
    this.worker = defineWorker('noop', (job) => this.opts.onJob(JSON.parse(job.data) as Payload), { queue: this.queue, logger: silent });
    this.running = this.worker.start();
  }

  async progress(): Promise<Progress> {
    this.checker ??= openChecker(this.file);
    const row = this.checker
      .prepare(`SELECT SUM(status IN (0, 1)) AS unfinished, SUM(status = 2) AS done FROM plainjob_jobs`)
      .get() as { unfinished: number | null; done: number | null };
    return { unfinished: row.unfinished ?? 0, finished: row.done ?? 0 };
  }

  async durability(): Promise<Record<string, string>> {
    return { 'plainjob connection': describeSqlite(this.db) };
  }

  async close(): Promise<void> {
    await this.worker?.stop();
    await this.running;
    this.checker?.close();
    this.checker = null;
    this.queue.close();
  }

  async cleanup(): Promise<void> {
    removeSqliteFile(this.file);
  }
}
