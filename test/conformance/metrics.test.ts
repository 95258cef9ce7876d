/**
 * Metrics after a known workload: an OpenTelemetry reader (the SDK, registered as the app would)
 * and the admin's `GET metrics` parsed by a Prometheus text parser read the same, exact numbers;
 * the queue gauges come from the database (every dialect).
 */
import { expect } from 'chai';
import { createNoopMeter, metrics } from '@opentelemetry/api';
import express from 'express';
import request from 'supertest';
import { jobsAdmin, jobsMiddleware, type Jobs } from '../../lib/index.ts';
import { forEachDialect, sleep, until } from '../helpers/dialects.ts';
import { otelMetrics, parsePrometheus, type Snapshot } from '../helpers/metrics.ts';

const FAST_RETRY = { type: 'fixed', baseMs: 0, jitter: 0 } as const;
const HOUR_AGO_S = 3600;

/** Series keys as the snapshots write them. */
const job = (queue: string, name: string) => `name=${name},queue=${queue}`;
const outcome = (queue: string, name: string, kind: string) => `name=${name},outcome=${kind},queue=${queue}`;

/**
 * 5 jobs completed (one enqueued twice under one refId), 2 failed after a retry each, 1 retried
 * then completed, 1 running (its handler blocks), 3 due in queue `a` with no handler here, and 1
 * claimed by a worker that is gone, rescued as failed.
 */
async function workload(jobs: Jobs): Promise<{ release(): void }> {
  let release!: () => void;
  const blocked = new Promise<void>((r) => (release = r));
  let blocking = false;
  jobs.define('ok', async () => 'done');
  jobs.define('boom', async () => {
    throw new Error('boom');
  }, { maxAttempts: 2, backoff: FAST_RETRY });
  jobs.define('flaky', async (_p, ctx) => {
    if (ctx.attempt === 1) throw new Error('first time');
    return 'second time';
  }, { maxAttempts: 3, backoff: FAST_RETRY });
  jobs.define('block', async () => {
    blocking = true;
    await blocked;
  }, { queue: 'slow' });
  await jobs.migrate();
  // Claimed by a worker that never sends a heartbeat: this instance's sweeper rescues it (its last attempt: failed).
  const lost = await jobs.enqueue('lost', {}, { maxAttempts: 1 });
  expect(await jobs.store.jobClaim({ workerId: 'gone', names: ['lost'], limit: 1 })).to.have.length(1);
  const rescued = new Promise<void>((resolve) => jobs.on('rescued', (r) => r.id === lost.id && resolve()));
  const hourAgo = new Date(Date.now() - HOUR_AGO_S * 1000);
  for (let i = 0; i < 3; i++) await jobs.enqueue('waiting', { i }, { queue: 'a', runAt: hourAgo });
  // Both before the worker starts, so the first is still live when the second finds it.
  const once = await jobs.enqueue('ok', { n: 5 }, { refId: 'once' });
  expect((await jobs.enqueue('ok', { n: 5 }, { refId: 'once' })).existed, 'the refId found its job').to.equal(true);
  await jobs.start();
  const ids = [
    once.id,
    ...(await jobs.enqueueMany([1, 2, 3, 4].map((n) => ({ name: 'ok' as const, payload: { n } })))).map((r) => r.id),
    (await jobs.enqueue('boom', {})).id,
    (await jobs.enqueue('boom', {})).id,
    (await jobs.enqueue('flaky', {})).id,
  ];
  await jobs.enqueue('block', {});
  for (const id of ids) await jobs.waitFor(id);
  await until(() => blocking, 'the blocking handler to start');
  await rescued;
  return { release };
}

const EXPECTED_COUNTERS: Snapshot = {
  sqljobs_jobs_enqueued_total: { [job('default', 'ok')]: 5, [job('default', 'boom')]: 2, [job('default', 'flaky')]: 1, [job('slow', 'block')]: 1, [job('a', 'waiting')]: 3, [job('default', 'lost')]: 1 },
  sqljobs_jobs_started_total: { [job('default', 'ok')]: 5, [job('default', 'boom')]: 4, [job('default', 'flaky')]: 2, [job('slow', 'block')]: 1 },
  sqljobs_jobs_completed_total: { [job('default', 'ok')]: 5, [job('default', 'flaky')]: 1 },
  sqljobs_jobs_failed_total: { [job('default', 'boom')]: 2 },
  sqljobs_jobs_retried_total: { [job('default', 'boom')]: 2, [job('default', 'flaky')]: 1 },
  sqljobs_jobs_rescued_total: { [outcome('default', 'lost', 'failed')]: 1 },
  // One per attempt started, and one per attempt ended (the blocked one has not).
  sqljobs_jobs_start_latency_seconds_count: { [job('default', 'ok')]: 5, [job('default', 'boom')]: 4, [job('default', 'flaky')]: 2, [job('slow', 'block')]: 1 },
  sqljobs_jobs_duration_seconds_count: {
    [outcome('default', 'ok', 'completed')]: 5,
    [outcome('default', 'boom', 'retrying')]: 2,
    [outcome('default', 'boom', 'failed')]: 2,
    [outcome('default', 'flaky', 'retrying')]: 1,
    [outcome('default', 'flaky', 'completed')]: 1,
  },
  // Live jobs by queue: `a` holds 3 due, `slow` runs 1; `default` has none left.
  sqljobs_queue_depth: { 'queue=a': 3, 'queue=slow': 0 },
  sqljobs_queue_running: { 'queue=a': 0, 'queue=slow': 1 },
};

/** The snapshot without the figures that are not whole counts (sums, ages), checked apart. */
function counts(s: Snapshot): Snapshot {
  return Object.fromEntries(Object.entries(s).filter(([name]) => !name.endsWith('_sum') && name !== 'sqljobs_queue_oldest_due_age_seconds'));
}

forEachDialect('metrics', ({ fresh }) => {
  let otel: ReturnType<typeof otelMetrics>;
  beforeEach(() => {
    otel = otelMetrics();
  });
  afterEach(async () => {
    await otel.stop();
  });

  it('after a known workload, the OpenTelemetry reader and GET metrics read the same exact counters, histograms and queue gauges (one database read for both)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, heartbeatInterval: 100, stallTimeout: 300 } });
    const app = express().use('/admin/jobs', jobsAdmin(jobs));
    await request(app).get('/admin/jobs/metrics').expect(200); // Prometheus counts from the first scrape
    const { release } = await workload(jobs);
    let reads = 0;
    const queueLive = jobs.store.queueLive.bind(jobs.store);
    jobs.store.queueLive = () => (reads++, queueLive());

    const [fromOtel, scrape] = await Promise.all([otel.collect(), request(app).get('/admin/jobs/metrics').expect(200)]);
    expect(scrape.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
    const fromProm = parsePrometheus(scrape.text);
    expect(reads, 'reads of the queue figures for two readers collecting at once').to.equal(1);
    expect(counts(fromOtel)).to.deep.equal(EXPECTED_COUNTERS);
    expect(counts(fromProm)).to.deep.equal(EXPECTED_COUNTERS);
    expect(fromProm, 'every figure, sums and ages included').to.deep.equal(fromOtel);

    const age = fromOtel.sqljobs_queue_oldest_due_age_seconds;
    expect(age['queue=a'], 'the oldest due job of a waited an hour, by the database clock').to.be.within(HOUR_AGO_S - 5, HOUR_AGO_S + 120);
    expect(age['queue=slow'], 'nothing due waits in slow').to.equal(0);
    const latency = fromOtel.sqljobs_jobs_start_latency_seconds_sum;
    for (const [series, seconds] of Object.entries(latency)) expect(seconds, series).to.be.within(0, 60);
    release();
  });

  it('gauges read the database at each collection; a failed read is reported, and the collection goes on', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const errors: unknown[] = [];
    jobs.on('error', (err) => errors.push(err));
    const far = await jobs.enqueue('far', {}, { queue: 'b', delay: 3_600_000 });
    await jobs.enqueueMany([{ name: 'due', payload: {}, queue: 'b' }, { name: 'due', payload: {}, queue: 'b' }]);
    const first = await otel.collect();
    expect(first.sqljobs_queue_depth).to.deep.equal({ 'queue=b': 2 });
    expect(first.sqljobs_queue_running).to.deep.equal({ 'queue=b': 0 });
    // Nothing this process records says the delayed job became due: only the database does.
    await jobs.runNow(far.id);
    await sleep(1100); // past the second a read serves
    expect((await otel.collect()).sqljobs_queue_depth).to.deep.equal({ 'queue=b': 3 });

    jobs.store.queueLive = () => Promise.reject(new Error('the database is away'));
    await sleep(1100);
    const away = await otel.collect();
    expect(away.sqljobs_queue_depth, 'no gauge from a failed read').to.equal(undefined);
    expect(away.sqljobs_jobs_enqueued_total, 'counters still read').to.deep.equal({ [job('b', 'far')]: 1, [job('b', 'due')]: 2 });
    expect(errors.map((e) => String(e))).to.deep.equal(['Error: the database is away']);
    const registry = jobs.metricsRegistry()!;
    expect(parsePrometheus(await registry.metrics()).sqljobs_queue_depth, 'nor from the scrape').to.equal(undefined);
  });

  it('a MeterProvider registered after createJobs gets the instruments at the next measurement; one that throws is reported and fails no job', async () => {
    const t = await fresh();
    await otel.stop();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('ok', async () => 'done');
    otel = otelMetrics();
    const first = await jobs.enqueue('ok', {});
    await jobs.start();
    const second = await jobs.enqueue('ok', {});
    for (const { id } of [first, second]) await jobs.waitFor(id);
    // waitFor hears the job in history (on PostgreSQL by NOTIFY at the commit), possibly before the
    // worker has its answer and counts the completion: drain() waits for the worker's attempts to settle.
    await jobs.drain();
    const later = await otel.collect();
    expect(later.sqljobs_jobs_enqueued_total).to.deep.equal({ [job('default', 'ok')]: 2 });
    expect(later.sqljobs_jobs_completed_total).to.deep.equal({ [job('default', 'ok')]: 2 });

    const errors: unknown[] = [];
    jobs.on('error', (err) => errors.push(err));
    // Over the no-op meter, not into it: createNoopMeter() answers the API's one shared meter (the trace SDK's own metrics use it).
    const broken = Object.assign(Object.create(createNoopMeter()) as ReturnType<typeof createNoopMeter>, {
      createCounter: () => ({ add: () => { throw new Error('the exporter threw'); } }),
    });
    metrics.disable();
    metrics.setGlobalMeterProvider({ getMeter: () => broken });
    const { id } = await jobs.enqueue('ok', {});
    expect(await jobs.waitFor(id)).to.include({ state: 'completed', result: 'done' });
    expect(errors.length, 'each throw reported').to.be.greaterThan(0);
    expect(errors.map((e) => String(e))).to.satisfy((all: string[]) => all.every((e) => e === 'Error: the exporter threw'));
  });

  it('an enqueue in the app\'s transaction is not counted (it may roll back); metrics: false records nothing and serves no registry', async function () {
    const t = await fresh();
    const off = t.jobs({ worker: false, metrics: false });
    await off.enqueue('x', {});
    expect(off.metricsRegistry()).to.equal(null);
    const jobs = t.jobs({ worker: false });
    if (t.driver === 'better-sqlite3') {
      const db = t.db as import('better-sqlite3').Database;
      db.transaction(() => jobs.enqueueSync('x', {}))();
    } else if (t.driver === 'pg') {
      const client = await (t.db as import('pg').Pool).connect();
      await client.query('BEGIN');
      await jobs.enqueue('x', {}, { tx: client });
      await client.query('ROLLBACK');
      client.release();
    } else {
      return this.skip();
    }
    const snapshot = await otel.collect();
    expect(snapshot.sqljobs_jobs_enqueued_total).to.equal(undefined);
  });

  it("a request's enqueues (jobsMiddleware) are counted once the request commits, and not when it rolls back", async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const app = express();
    app.use(jobsMiddleware(jobs));
    app.post('/ok', async (req, res) => {
      await req.jobs.enqueueMany([{ name: 'x', payload: {} }, { name: 'x', payload: {} }]);
      res.status(201).end();
    });
    app.post('/fails', async (req, res) => {
      await req.jobs.enqueue('x', {});
      res.status(500).end(); // an error status rolls the request back
    });
    await request(app).post('/fails').expect(500);
    expect((await otel.collect()).sqljobs_jobs_enqueued_total, 'rolled back: not counted').to.equal(undefined);
    await request(app).post('/ok').expect(201);
    expect((await otel.collect()).sqljobs_jobs_enqueued_total).to.deep.equal({ 'name=x,queue=default': 2 });
  });
});
