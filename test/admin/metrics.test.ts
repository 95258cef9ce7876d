/**
 * `GET metrics` on the admin mount: who may read it (the admin's rules, or metricsAuthorize alone),
 * what it answers, on Express and Koa (test/conformance/metrics.test.ts checks its figures).
 */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { jobsAdmin, koaJobsAdmin, type AdminOptions, type ExpressLikeRequest, type Jobs } from '../../lib/index.ts';
import { forEachDialect, type TestDb } from '../helpers/dialects.ts';
import { parsePrometheus } from '../helpers/metrics.ts';
import { FIGURES_WAIT_MS } from '../../lib/telemetry/metrics.ts';

const BASE = '/admin/jobs';
const bearer = (req: ExpressLikeRequest) => req.headers.authorization === 'Bearer scraper-token';

forEachDialect('admin GET metrics', ({ fresh }) => {
  let jobs: Jobs;
  let t: TestDb;
  beforeEach(async () => {
    t = await fresh();
    jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('ok', async () => 'done');
  });

  const app = (opts: AdminOptions<ExpressLikeRequest> = {}, on: Jobs = jobs) => express().use(BASE, jobsAdmin(on, opts));
  const metrics = (a: express.Express) => request(a).get(`${BASE}/metrics`);

  it('counts from the first scrape (a counter\'s baseline): a job run after it is in the next one, in the Prometheus text format, with no CSRF cookie', async () => {
    const a = app();
    await jobs.start();
    const first = await metrics(a).expect(200);
    expect(parsePrometheus(first.text), 'families without samples yet').to.deep.equal({});
    expect(first.text).to.match(/^# TYPE sqljobs_jobs_completed_total counter$/m);
    const { id } = await jobs.enqueue('ok', {}, { queue: 'mounted' });
    await jobs.waitFor(id);
    const res = await metrics(a).expect(200);
    expect(res.headers['content-type']).to.equal('text/plain; version=0.0.4; charset=utf-8');
    expect(res.headers['set-cookie'], 'a scrape gets no CSRF cookie').to.equal(undefined);
    expect(res.headers['cache-control']).to.equal('no-store');
    const figures = parsePrometheus(res.text);
    expect(figures.sqljobs_jobs_completed_total['name=ok,queue=mounted']).to.equal(1);
    expect(figures.sqljobs_jobs_duration_seconds_count['name=ok,outcome=completed,queue=mounted']).to.equal(1);
    const head = await request(a).head(`${BASE}/metrics`).expect(200);
    expect(head.headers['content-type'], 'HEAD answers as GET would').to.equal('text/plain; version=0.0.4; charset=utf-8');
  });

  it('without metricsAuthorize, the admin\'s rules: loopback only without authorize (no proxy header, a loopback Host); authorize decides otherwise', async () => {
    await metrics(app()).expect(200);
    const proxied = await metrics(app()).set('X-Forwarded-For', '203.0.113.7').expect(403);
    expect(proxied.body.error).to.match(/came through a proxy/);
    const rebound = await metrics(app()).set('Host', 'evil.example').expect(403);
    expect(rebound.body.error).to.match(/Host must be localhost/);
    await metrics(app({ authorize: () => false })).expect(403);
    await metrics(app({ authorize: () => 'view' })).set('X-Forwarded-For', '203.0.113.7').expect(200);
  });

  it('metricsAuthorize governs GET metrics alone: it serves a scraper the admin refuses, refuses with 403, and leaves the admin\'s pages to authorize', async () => {
    const opts: AdminOptions<ExpressLikeRequest> = { authorize: () => false, metricsAuthorize: bearer };
    const served = await metrics(app(opts)).set('Authorization', 'Bearer scraper-token').set('X-Forwarded-For', '203.0.113.7').expect(200);
    expect(served.text).to.match(/^# HELP sqljobs_/m);
    const refused = await metrics(app(opts)).set('Authorization', 'Bearer wrong').expect(403);
    expect(refused.body.error).to.equal('forbidden: metricsAuthorize refused this request');
    await request(app(opts)).get(`${BASE}/api/stats`).set('Authorization', 'Bearer scraper-token').expect(403);
    const operator: AdminOptions<ExpressLikeRequest> = { authorize: () => 'manage', metricsAuthorize: async () => false };
    await metrics(app(operator)).expect(403);
    await request(app(operator)).get(`${BASE}/api/stats`).expect(200);
    await metrics(app({ metricsAuthorize: () => 'view' })).set('Host', 'metrics.internal').expect(200);
  });

  it('read-only: POST is 405; an answer metricsAuthorize may not give is an internal error; a bad option is refused at mount', async () => {
    const a = app({ metricsAuthorize: () => true });
    await request(a).post(`${BASE}/metrics`).expect(405);
    const errors: unknown[] = [];
    const odd = app({ metricsAuthorize: () => 'yes' as never, onError: (err) => errors.push(err) });
    await metrics(odd).expect(500);
    expect(String(errors[0])).to.match(/metricsAuthorize must return true, 'view', 'manage' or false/);
    expect(() => jobsAdmin(jobs, { metricsAuthorize: 'token' as never })).to.throw(/metricsAuthorize must be a function/);
  });

  it('a read of the queues\' figures that does not answer (a silent database): the scrape answers within the wait without gauges, and with them once reads answer (it waited without end, and every later scrape with it)', async () => {
    const a = app();
    await jobs.enqueue('ok', {}, { queue: 'waiting' }); // due, and no worker started: depth 1
    const store = jobs.store;
    const real = store.queueLive.bind(store);
    const held: (() => void)[] = [];
    store.queueLive = () => new Promise((resolve, reject) => held.push(() => void real().then(resolve, reject)));
    const heard: unknown[] = [];
    jobs.on('error', (err) => heard.push(err));
    FIGURES_WAIT_MS.ms = 300;
    const gauge = /^sqljobs_queue_depth\{queue="waiting"\} 1$/m;
    try {
      for (let scrape = 0; scrape < 3; scrape++) {
        const t0 = performance.now();
        const res = await metrics(a).expect(200);
        expect(performance.now() - t0, `scrape ${scrape}`).to.be.below(1500);
        expect(res.text, 'this process\'s own families are there').to.match(/^# TYPE sqljobs_jobs_completed_total counter$/m);
        expect(res.text).not.to.match(gauge);
        await new Promise((r) => setTimeout(r, 350)); // past the wait: the next scrape starts a read of its own (two at most)
      }
      expect(held, 'two reads left unanswered at most (each may hold a connection)').to.have.length(2);
      expect(heard.map(String).join('\n')).to.match(/did not answer within 300 ms: this collection has no gauges/);
      store.queueLive = real;
      for (const answer of held) answer();
      await new Promise((r) => setTimeout(r, 50));
      expect((await metrics(a).expect(200)).text, 'the gauges once reads answer').to.match(gauge);
    } finally {
      FIGURES_WAIT_MS.ms = 3000;
      store.queueLive = real;
    }
  });

  it('an instance created with metrics: false answers 404', async () => {
    const off = t.jobs({ worker: false, metrics: false });
    const res = await metrics(app({}, off)).expect(404);
    expect(res.body.error).to.match(/metrics are off/);
  });

  it('Koa: the same endpoint under koaJobsAdmin, with metricsAuthorize given the context', async () => {
    const koa = new Koa();
    koa.silent = true;
    koa.use(koaJobsAdmin(jobs, { path: BASE, authorize: () => false, metricsAuthorize: (ctx) => ctx.req.headers.authorization === 'Bearer scraper-token' }));
    const res = await request(koa.callback()).get(`${BASE}/metrics`).set('Authorization', 'Bearer scraper-token').expect(200);
    expect(res.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
    expect(res.text).to.match(/^# TYPE sqljobs_jobs_started_total counter$/m);
    await request(koa.callback()).get(`${BASE}/metrics`).expect(403);
  });
});
