/**
 * pg-boss 12.38.0 with the options its docs give for throughput: work() with localConcurrency 10,
 * batchSize 100, burstWhenBatchFull; useListenNotify with a notify-enabled queue. A fresh schema
 * per measurement. Done = no job of the queue in state created, retry or active.
 */
import { PgBoss } from 'pg-boss';
import type pg from 'pg';
import { PG_URL, type SystemOptions } from '../lib/config.ts';
import { describePg, dropByPrefix, newClient } from '../lib/pg.ts';
import type { BenchSystem, Payload, Progress } from './types.ts';

export class PgBossSystem implements BenchSystem {
  readonly backend = 'postgres' as const;
  private readonly schema: string;
  private boss!: PgBoss;
  private checker: pg.Client | null = null;

  constructor(private readonly opts: SystemOptions) {
    this.schema = `${opts.runId}_boss`;
  }

  async setup(): Promise<void> {
    this.boss = new PgBoss({ connectionString: PG_URL, schema: this.schema, useListenNotify: true });
    this.boss.on('error', (err) => console.error('pg-boss error:', err));
    await this.boss.start();
    await this.boss.createQueue('noop', { notify: true });
  }

  async enqueueOne(p: Payload): Promise<void> {
    await this.boss.send('noop', p);
  }

  async enqueueBatch(ps: Payload[]): Promise<void> {
    await this.boss.insert('noop', ps.map((data) => ({ data })));
  }

  async startWorker(): Promise<void> {
    await this.boss.work<Payload>(
      'noop',
      { localConcurrency: this.opts.concurrency, batchSize: 100, burstWhenBatchFull: true },
      async (jobs) => {
        for (const job of jobs) this.opts.onJob(job.data);
      },
    );
  }

  async progress(): Promise<Progress> {
    this.checker ??= await newClient();
    const { rows } = await this.checker.query(
      `SELECT count(*) FILTER (WHERE state < 'completed')::int AS unfinished, count(*) FILTER (WHERE state = 'completed')::int AS done
       FROM "${this.schema}".job WHERE name = 'noop'`,
    );
    return { unfinished: rows[0].unfinished, finished: rows[0].done };
  }

  async durability(): Promise<Record<string, string>> {
    const c = await newClient();
    try {
      return { 'pg-boss pool (same server settings)': await describePg(c) };
    } finally {
      await c.end();
    }
  }

  async close(): Promise<void> {
    await this.boss.stop({ graceful: true, close: true });
    await this.checker?.end();
    this.checker = null;
  }

  async cleanup(): Promise<void> {
    await dropByPrefix(this.opts.runId, [this.schema]);
  }
}
