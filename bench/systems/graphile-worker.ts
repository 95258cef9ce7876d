/**
 * graphile-worker 0.18.0, tuned as its performance docs suggest: localQueue.size 100 and
 * completeJobBatchDelay 0 (preset.worker options in 0.18), concurrency 10, LISTEN/NOTIFY (built in).
 * A fresh schema per measurement. Completed jobs are deleted: done = `_private_jobs` is empty.
 */
import { Logger, makeWorkerUtils, run, type Runner, type WorkerUtils } from 'graphile-worker';
import type pg from 'pg';
import type { SystemOptions } from '../lib/config.ts';
import { describePg, dropByPrefix, newClient, newPool } from '../lib/pg.ts';
import type { BenchSystem, Payload, Progress } from './types.ts';

const silent = new Logger(() => () => undefined);

export class GraphileWorker implements BenchSystem {
  readonly backend = 'postgres' as const;
  private readonly schema: string;
  private pool!: pg.Pool;
  private utils!: WorkerUtils;
  private runner: Runner | null = null;
  private checker: pg.Client | null = null;

  constructor(private readonly opts: SystemOptions) {
    this.schema = `${opts.runId}_gw`;
  }

  async setup(): Promise<void> {
    this.pool = newPool();
    this.utils = await makeWorkerUtils({ pgPool: this.pool, schema: this.schema, logger: silent });
    await this.utils.migrate();
  }

  async enqueueOne(p: Payload): Promise<void> {
    await this.utils.addJob('noop', p);
  }

  async enqueueBatch(ps: Payload[]): Promise<void> {
    await this.utils.addJobs(ps.map((payload) => ({ identifier: 'noop', payload })));
  }

  async startWorker(): Promise<void> {
    this.runner = await run({
      pgPool: this.pool,
      schema: this.schema,
      concurrency: this.opts.concurrency,
      noHandleSignals: true,
      logger: silent,
      taskList: {
        noop: async (payload) => {
          this.opts.onJob(payload as Payload);
        },
      },
      preset: { worker: { localQueue: { size: 100 }, completeJobBatchDelay: 0 } },
    });
  }

  async progress(): Promise<Progress> {
    this.checker ??= await newClient();
    const { rows } = await this.checker.query(`SELECT count(*)::int AS n FROM "${this.schema}"._private_jobs`);
    return { unfinished: rows[0].n, finished: null };
  }

  async durability(): Promise<Record<string, string>> {
    return { 'pool': await describePg(this.pool) };
  }

  async close(): Promise<void> {
    await this.runner?.stop();
    await this.utils.release();
    await this.checker?.end();
    this.checker = null;
    await this.pool.end();
  }

  async cleanup(): Promise<void> {
    await dropByPrefix(this.opts.runId, [this.schema]);
  }
}
