/**
 * Raw-SQL floor on MySQL/MariaDB: single-row INSERT per job, one 1000-row INSERT per batch, 4
 * claimers each claiming 100 in a short READ COMMITTED transaction (SELECT ... FOR UPDATE SKIP
 * LOCKED, then UPDATE ... WHERE id IN: neither server has UPDATE ... RETURNING) and finishing the
 * batch with one UPDATE to 'completed', or, archiving, INSERT ... SELECT into a history table +
 * DELETE in one transaction (what sqljobs does). No NOTIFY: an enqueue in this process wakes idle
 * claimers, otherwise they poll every second (as sqljobs on this database).
 */
import type mysql from 'mysql2/promise';
import type { SystemOptions } from '../lib/config.ts';
import { describeMysql, dropMysqlByPrefix, newMysqlPool } from '../lib/mysql.ts';
import type { BenchSystem, Payload, Progress } from './types.ts';

const CLAIMERS = 4;

export class FloorMysql implements BenchSystem {
  readonly backend = 'mysql' as const;
  private readonly t: string;
  private pool!: mysql.Pool;
  private workerPool: mysql.Pool | null = null;
  private checker: mysql.Pool | null = null;
  private running = false;
  private loops: Promise<void>[] = [];
  private sleepers: (() => void)[] = [];

  constructor(private readonly opts: SystemOptions & { archive: boolean }) {
    this.t = `${opts.runId}_floor`;
  }

  async setup(): Promise<void> {
    const t = this.t;
    this.pool = newMysqlPool();
    await this.pool.query(`CREATE TABLE ${t} (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) NOT NULL, payload JSON,
      state VARCHAR(16) NOT NULL DEFAULT 'pending', priority INT NOT NULL DEFAULT 0, run_at DATETIME(3) NOT NULL,
      attempts INT NOT NULL DEFAULT 0, started_at DATETIME(3), finished_at DATETIME(3),
      INDEX ${t}_claim (state, priority DESC, run_at, id)) ENGINE = InnoDB`);
    await this.pool.query(`CREATE TABLE ${t}_history (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, payload JSON, state VARCHAR(16) NOT NULL,
      priority INT NOT NULL, run_at DATETIME(3) NOT NULL, attempts INT NOT NULL, started_at DATETIME(3), finished_at DATETIME(3) NOT NULL) ENGINE = InnoDB`);
  }

  async enqueueOne(p: Payload): Promise<void> {
    await this.pool.query(`INSERT INTO ${this.t} (name, payload, run_at) VALUES ('noop', ?, UTC_TIMESTAMP(3))`, [JSON.stringify(p)]);
    this.wakeAll();
  }

  async enqueueBatch(ps: Payload[]): Promise<void> {
    await this.pool.query(`INSERT INTO ${this.t} (name, payload, run_at) VALUES ?`, [ps.map((p) => ['noop', JSON.stringify(p), new Date()])]);
    this.wakeAll();
  }

  async startWorker(): Promise<void> {
    this.running = true;
    this.workerPool = newMysqlPool(CLAIMERS);
    this.workerPool.pool.on('connection', (c) => c.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED'));
    for (let i = 0; i < CLAIMERS; i++) this.loops.push(this.loop());
  }

  private wakeAll(): void {
    for (const w of this.sleepers.splice(0)) w();
  }

  private async inTransaction<T>(fn: (c: mysql.PoolConnection) => Promise<T>): Promise<T> {
    const c = await this.workerPool!.getConnection();
    try {
      await c.query('START TRANSACTION');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK');
      throw err;
    } finally {
      c.release();
    }
  }

  private claim(): Promise<{ id: number; payload: string }[]> {
    const t = this.t;
    return this.inTransaction(async (c) => {
      const [rows] = await c.query(
        `SELECT id, payload FROM ${t} WHERE state = 'pending' AND run_at <= UTC_TIMESTAMP(3)
         ORDER BY priority DESC, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED`,
      );
      const got = rows as { id: number; payload: string }[];
      if (got.length) {
        await c.query(`UPDATE ${t} SET state = 'running', attempts = attempts + 1, started_at = UTC_TIMESTAMP(3) WHERE id IN (?)`, [got.map((r) => r.id)]);
      }
      return got;
    });
  }

  private async finish(ids: number[]): Promise<void> {
    const t = this.t;
    if (!this.opts.archive) {
      await this.workerPool!.query(`UPDATE ${t} SET state = 'completed', finished_at = UTC_TIMESTAMP(3) WHERE id IN (?)`, [ids]);
      return;
    }
    await this.inTransaction(async (c) => {
      await c.query(
        `INSERT INTO ${t}_history (id, name, payload, state, priority, run_at, attempts, started_at, finished_at)
         SELECT id, name, payload, 'completed', priority, run_at, attempts, started_at, UTC_TIMESTAMP(3) FROM ${t} WHERE id IN (?)`,
        [ids],
      );
      await c.query(`DELETE FROM ${t} WHERE id IN (?)`, [ids]);
    });
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const rows = await this.claim();
      if (!rows.length) {
        await new Promise<void>((resolve) => {
          this.sleepers.push(resolve);
          setTimeout(resolve, 1000).unref();
        });
        continue;
      }
      await Promise.all(rows.map(async (r) => this.opts.onJob((typeof r.payload === 'string' ? JSON.parse(r.payload) : r.payload) as Payload)));
      await this.finish(rows.map((r) => r.id));
    }
  }

  async progress(): Promise<Progress> {
    this.checker ??= newMysqlPool(1);
    const [rows] = await this.checker.query(
      `SELECT (SELECT COUNT(*) FROM ${this.t} WHERE state IN ('pending', 'running')) AS unfinished,
         ${this.opts.archive ? `(SELECT COUNT(*) FROM ${this.t}_history)` : `(SELECT COUNT(*) FROM ${this.t} WHERE state = 'completed')`} AS done`,
    );
    const r = (rows as { unfinished: number; done: number }[])[0];
    return { unfinished: Number(r.unfinished), finished: Number(r.done) };
  }

  async durability(): Promise<Record<string, string>> {
    return { server: await describeMysql(this.pool) };
  }

  async close(): Promise<void> {
    this.running = false;
    this.wakeAll();
    await Promise.all(this.loops);
    await this.workerPool?.end();
    await this.checker?.end();
    this.checker = null;
    await this.pool.end();
  }

  async cleanup(): Promise<void> {
    await dropMysqlByPrefix(this.t);
  }
}
