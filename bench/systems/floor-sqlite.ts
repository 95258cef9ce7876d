/**
 * Raw-SQL floor on SQLite: one connection (WAL, synchronous = NORMAL), autocommit INSERT per job,
 * one multi-row INSERT per batch, claim 100 with UPDATE ... RETURNING, run the batch's handlers,
 * then finish the batch with one statement (DELETE), or, archiving, INSERT ... SELECT into a history
 * table plus the DELETE in one transaction (what sqljobs does). An enqueue wakes the loop in-process;
 * the loop yields to the event loop once per batch.
 */
import type Database from 'better-sqlite3';
import type { SystemOptions } from '../lib/config.ts';
import { describeSqlite, openAppDb, openChecker, removeSqliteFile, sqliteFile } from '../lib/sqlite.ts';
import type { BenchSystem, Payload, Progress } from './types.ts';

export class FloorSqlite implements BenchSystem {
  readonly backend = 'sqlite' as const;
  private readonly file: string;
  private readonly t: string;
  private db!: Database.Database;
  private checker: Database.Database | null = null;
  private running = false;
  private looping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wakeUp: (() => void) | null = null;
  private insertOne!: Database.Statement;
  private insertMany!: Database.Statement;
  private claim!: Database.Statement;
  private finish!: () => (ids: string) => void;

  constructor(private readonly opts: SystemOptions & { archive: boolean }) {
    this.file = sqliteFile(opts.runId);
    this.t = `${opts.runId}_floor`;
  }

  async setup(): Promise<void> {
    const t = this.t;
    this.db = openAppDb(this.file);
    this.db.exec(`
      CREATE TABLE ${t} (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, payload TEXT, state TEXT NOT NULL DEFAULT 'pending',
        priority INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started_at INTEGER);
      CREATE INDEX ${t}_claim ON ${t} (priority DESC, run_at, id) WHERE state = 'pending';
      CREATE TABLE ${t}_history (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload TEXT, state TEXT NOT NULL,
        priority INTEGER NOT NULL, run_at INTEGER NOT NULL, attempts INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER NOT NULL);`);
    this.insertOne = this.db.prepare(`INSERT INTO ${t} (name, payload, run_at) VALUES ('noop', ?, ?)`);
    this.insertMany = this.db.prepare(`INSERT INTO ${t} (name, payload, run_at) SELECT 'noop', value, ? FROM json_each(?)`);
    this.claim = this.db.prepare(`UPDATE ${t} SET state = 'running', attempts = attempts + 1, started_at = ?
      WHERE id IN (SELECT id FROM ${t} WHERE state = 'pending' AND run_at <= ? ORDER BY priority DESC, run_at, id LIMIT 100)
      RETURNING id, payload`);
    const del = this.db.prepare(`DELETE FROM ${t} WHERE id IN (SELECT value FROM json_each(?))`);
    if (!this.opts.archive) {
      this.finish = () => (ids) => del.run(ids);
    } else {
      const move = this.db.prepare(`INSERT INTO ${t}_history (id, name, payload, state, priority, run_at, attempts, started_at, finished_at)
        SELECT id, name, payload, 'completed', priority, run_at, attempts, started_at, ? FROM ${t} WHERE id IN (SELECT value FROM json_each(?))`);
      const tx = this.db.transaction((ids: string) => {
        move.run(Date.now(), ids);
        del.run(ids);
      });
      this.finish = () => (ids) => tx(ids);
    }
  }

  async enqueueOne(p: Payload): Promise<void> {
    this.insertOne.run(JSON.stringify(p), Date.now());
    this.wake();
  }

  async enqueueBatch(ps: Payload[]): Promise<void> {
    this.insertMany.run(Date.now(), JSON.stringify(ps));
    this.wake();
  }

  private wake(): void {
    if (!this.running) return;
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  async startWorker(): Promise<void> {
    this.running = true;
    this.loopDone = this.loop();
  }

  private async loop(): Promise<void> {
    const finish = this.finish();
    while (this.running) {
      const now = Date.now();
      const rows = this.claim.all(now, now) as { id: number; payload: string }[];
      if (!rows.length) {
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve;
          setTimeout(resolve, 1000).unref();
        });
        continue;
      }
      await Promise.all(rows.map(async (r) => this.opts.onJob(JSON.parse(r.payload) as Payload)));
      finish(JSON.stringify(rows.map((r) => r.id)));
      // Let timers and I/O run once per batch: a floor that starves the app's event loop would not be a fair floor.
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  async progress(): Promise<Progress> {
    this.checker ??= openChecker(this.file);
    const n = (sql: string) => (this.checker!.prepare(sql).get() as { n: number }).n;
    return {
      unfinished: n(`SELECT COUNT(*) AS n FROM ${this.t}`),
      finished: this.opts.archive ? n(`SELECT COUNT(*) AS n FROM ${this.t}_history`) : null,
    };
  }

  async durability(): Promise<Record<string, string>> {
    return { 'the one connection': describeSqlite(this.db) };
  }

  async close(): Promise<void> {
    this.running = false;
    this.wakeUp?.();
    await this.loopDone;
    this.checker?.close();
    this.checker = null;
    this.db.close();
  }

  async cleanup(): Promise<void> {
    removeSqliteFile(this.file);
  }
}
