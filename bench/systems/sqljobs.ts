/**
 * sqljobs with its defaults: createJobs({ db, tablePrefix, worker: { concurrency } }) and nothing else.
 * A fresh tablePrefix per measurement. Done = the hot table `<prefix>jobs` is empty and
 * `<prefix>history` holds every job.
 */
import { pathToFileURL } from 'node:url';
import type Database from 'better-sqlite3';
import type pg from 'pg';
import type { Jobs } from '../../lib/index.ts';
import { SQLJOBS_ENTRY, type SystemOptions } from '../lib/config.ts';
import type mysql from 'mysql2/promise';
import { describeSqlite, openAppDb, openChecker, removeSqliteFile, sqliteFile } from '../lib/sqlite.ts';
import type { BenchSystem, Payload, Progress } from './types.ts';

type NoopJobs = Jobs<{ noop: Payload }>;

/**
 * The server backends' helpers load with the backend's system only: imported at the top they
 * would put pg and mysql2 (about 12 MB of RSS under the harness) into every SQLite memory figure.
 */
const pgHelpers = () => import('../lib/pg.ts');
const mysqlHelpers = () => import('../lib/mysql.ts');

/** lib/index.ts, or the run's snapshot of it (see SQLJOBS_ENTRY). */
const { createJobs } = (await import(pathToFileURL(SQLJOBS_ENTRY).href)) as typeof import('../../lib/index.ts');

abstract class SqljobsBase {
  protected jobs!: NoopJobs;
  protected readonly prefix: string;

  constructor(protected readonly opts: SystemOptions) {
    this.prefix = `${opts.runId}_`;
  }

  protected make(db: Database.Database | pg.Pool | mysql.Pool): void {
    this.jobs = createJobs<{ noop: Payload }>({ db, tablePrefix: this.prefix, worker: { concurrency: this.opts.concurrency } })
      .define('noop', (p) => {
        this.opts.onJob(p);
      }) as NoopJobs;
    this.jobs.on('error', (err) => console.error('sqljobs error:', err));
  }

  async enqueueOne(p: Payload): Promise<void> {
    await this.jobs.enqueue('noop', p);
  }

  async enqueueBatch(ps: Payload[]): Promise<void> {
    await this.jobs.enqueueMany(ps.map((payload) => ({ name: 'noop' as const, payload })));
  }

  async startWorker(): Promise<void> {
    await this.jobs.start();
  }
}

export class SqljobsSqlite extends SqljobsBase implements BenchSystem {
  readonly backend = 'sqlite' as const;
  private file = sqliteFile(this.opts.runId);
  private app!: Database.Database;
  private checker: Database.Database | null = null;

  async setup(): Promise<void> {
    this.app = openAppDb(this.file);
    this.make(this.app);
    await this.jobs.migrate();
  }

  async progress(): Promise<Progress> {
    this.checker ??= openChecker(this.file);
    const count = (t: string) => (this.checker!.prepare(`SELECT COUNT(*) AS n FROM ${this.prefix}${t}`).get() as { n: number }).n;
    return { unfinished: count('jobs'), finished: count('history') };
  }

  async durability(): Promise<Record<string, string>> {
    // The worker's own handle is private to the store; read its pragmas, not what we assume it set.
    const own = (this.jobs.store as unknown as { own?: Database.Database }).own;
    return {
      'app handle (enqueue)': describeSqlite(this.app),
      'sqljobs worker handle': own ? describeSqlite(own) : 'unknown',
    };
  }

  async close(): Promise<void> {
    await this.jobs.close();
    this.checker?.close();
    this.checker = null;
    if (this.app.open) this.app.close();
  }

  async cleanup(): Promise<void> {
    removeSqliteFile(this.file);
  }
}

export class SqljobsPg extends SqljobsBase implements BenchSystem {
  readonly backend = 'postgres' as const;
  private pool!: pg.Pool;
  private checker: pg.Client | null = null;

  async setup(): Promise<void> {
    this.pool = (await pgHelpers()).newPool();
    this.make(this.pool);
    await this.jobs.migrate();
  }

  async progress(): Promise<Progress> {
    this.checker ??= await (await pgHelpers()).newClient();
    const { rows } = await this.checker.query(
      `SELECT (SELECT count(*) FROM ${this.prefix}jobs)::int AS hot, (SELECT count(*) FROM ${this.prefix}history)::int AS hist`,
    );
    return { unfinished: rows[0].hot, finished: rows[0].hist };
  }

  async durability(): Promise<Record<string, string>> {
    return { 'app pool and worker pool': await (await pgHelpers()).describePg(this.pool) };
  }

  async close(): Promise<void> {
    await this.jobs.close();
    await this.checker?.end();
    this.checker = null;
    await this.pool.end();
  }

  async cleanup(): Promise<void> {
    await (await pgHelpers()).dropByPrefix(this.prefix);
  }
}

export class SqljobsMysql extends SqljobsBase implements BenchSystem {
  readonly backend = 'mysql' as const;
  private pool!: mysql.Pool;
  private checker: mysql.Pool | null = null;

  async setup(): Promise<void> {
    this.pool = (await mysqlHelpers()).newMysqlPool();
    this.make(this.pool);
    await this.jobs.migrate();
  }

  async progress(): Promise<Progress> {
    this.checker ??= (await mysqlHelpers()).newMysqlPool(1);
    const [rows] = await this.checker.query(
      `SELECT (SELECT COUNT(*) FROM ${this.prefix}jobs) AS hot, (SELECT COUNT(*) FROM ${this.prefix}history) AS hist`,
    );
    const r = (rows as { hot: number; hist: number }[])[0];
    return { unfinished: Number(r.hot), finished: Number(r.hist) };
  }

  async durability(): Promise<Record<string, string>> {
    return { 'server (app pool and worker pool)': await (await mysqlHelpers()).describeMysql(this.pool) };
  }

  async close(): Promise<void> {
    await this.jobs.close();
    await this.checker?.end();
    this.checker = null;
    await this.pool.end();
  }

  async cleanup(): Promise<void> {
    await (await mysqlHelpers()).dropMysqlByPrefix(this.prefix);
  }
}
