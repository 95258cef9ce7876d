/**
 * Raw-SQL floor on PostgreSQL: single-row INSERT (+ pg_notify in the same statement) per job, one
 * 1000-row INSERT per batch, 4 claimers each claiming 100 with FOR UPDATE SKIP LOCKED and finishing
 * the batch with one statement: UPDATE to 'completed', or, archiving, DELETE ... RETURNING into a
 * history table (what sqljobs does). Idle claimers wake on LISTEN/NOTIFY (one listener connection).
 */
import type pg from 'pg';
import type { SystemOptions } from '../lib/config.ts';
import { describePg, dropByPrefix, newClient, newPool } from '../lib/pg.ts';
import type { BenchSystem, Payload, Progress } from './types.ts';

const CLAIMERS = 4;

export class FloorPg implements BenchSystem {
  readonly backend = 'postgres' as const;
  private readonly t: string;
  private pool!: pg.Pool;
  private workerPool: pg.Pool | null = null;
  private listener: pg.Client | null = null;
  private checker: pg.Client | null = null;
  private running = false;
  private loops: Promise<void>[] = [];
  private sleepers: (() => void)[] = [];

  constructor(private readonly opts: SystemOptions & { archive: boolean }) {
    this.t = `${opts.runId}_floor`;
  }

  async setup(): Promise<void> {
    const t = this.t;
    this.pool = newPool();
    await this.pool.query(`
      CREATE TABLE ${t} (id bigserial PRIMARY KEY, name text NOT NULL, payload json, state text NOT NULL DEFAULT 'pending',
        priority int NOT NULL DEFAULT 0, run_at timestamptz NOT NULL DEFAULT now(), attempts int NOT NULL DEFAULT 0,
        started_at timestamptz, finished_at timestamptz);
      CREATE INDEX ${t}_claim ON ${t} (priority DESC, run_at, id) WHERE state = 'pending';
      CREATE TABLE ${t}_history (id bigint PRIMARY KEY, name text NOT NULL, payload json, state text NOT NULL,
        priority int NOT NULL, run_at timestamptz NOT NULL, attempts int NOT NULL, started_at timestamptz, finished_at timestamptz NOT NULL);`);
  }

  private get channel(): string {
    return this.t;
  }

  async enqueueOne(p: Payload): Promise<void> {
    await this.pool.query(
      `WITH ins AS (INSERT INTO ${this.t} (name, payload) VALUES ('noop', $1) RETURNING id) SELECT pg_notify($2, '') FROM ins`,
      [JSON.stringify(p), this.channel],
    );
  }

  async enqueueBatch(ps: Payload[]): Promise<void> {
    await this.pool.query(
      `WITH ins AS (INSERT INTO ${this.t} (name, payload) SELECT 'noop', p FROM unnest($1::json[]) AS p RETURNING 1)
       SELECT pg_notify($2, '') WHERE EXISTS (SELECT 1 FROM ins)`,
      [ps.map((p) => JSON.stringify(p)), this.channel],
    );
  }

  async startWorker(): Promise<void> {
    this.running = true;
    this.workerPool = newPool(CLAIMERS);
    this.listener = await newClient();
    this.listener.on('notification', () => this.wakeAll());
    await this.listener.query(`LISTEN "${this.channel}"`);
    for (let i = 0; i < CLAIMERS; i++) this.loops.push(this.loop());
  }

  private wakeAll(): void {
    for (const w of this.sleepers.splice(0)) w();
  }

  private async loop(): Promise<void> {
    const t = this.t;
    const claim = `WITH next AS (SELECT id FROM ${t} WHERE state = 'pending' AND run_at <= now()
        ORDER BY priority DESC, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED)
      UPDATE ${t} j SET state = 'running', attempts = j.attempts + 1, started_at = now() FROM next WHERE j.id = next.id
      RETURNING j.id, j.payload`;
    const finish = this.opts.archive
      ? `WITH done AS (DELETE FROM ${t} WHERE id = ANY($1::bigint[]) RETURNING *)
         INSERT INTO ${t}_history (id, name, payload, state, priority, run_at, attempts, started_at, finished_at)
         SELECT id, name, payload, 'completed', priority, run_at, attempts, started_at, now() FROM done`
      : `UPDATE ${t} SET state = 'completed', finished_at = now() WHERE id = ANY($1::bigint[])`;
    while (this.running) {
      const { rows } = await this.workerPool!.query(claim);
      if (!rows.length) {
        await new Promise<void>((resolve) => {
          this.sleepers.push(resolve);
          setTimeout(resolve, 1000).unref();
        });
        continue;
      }
      await Promise.all(rows.map(async (r) => this.opts.onJob(r.payload as Payload)));
      await this.workerPool!.query(finish, [rows.map((r) => r.id)]);
    }
  }

  async progress(): Promise<Progress> {
    this.checker ??= await newClient();
    const { rows } = await this.checker.query(
      `SELECT (SELECT count(*) FROM ${this.t} WHERE state IN ('pending', 'running'))::int AS unfinished,
         ${this.opts.archive ? `(SELECT count(*) FROM ${this.t}_history)::int` : `(SELECT count(*) FROM ${this.t} WHERE state = 'completed')::int`} AS done`,
    );
    return { unfinished: rows[0].unfinished, finished: rows[0].done };
  }

  async durability(): Promise<Record<string, string>> {
    return { 'pool': await describePg(this.pool) };
  }

  async close(): Promise<void> {
    this.running = false;
    this.wakeAll();
    await Promise.all(this.loops);
    await this.listener?.end();
    await this.workerPool?.end();
    await this.checker?.end();
    this.checker = null;
    await this.pool.end();
  }

  async cleanup(): Promise<void> {
    await dropByPrefix(this.t);
  }
}
