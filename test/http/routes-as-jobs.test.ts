/**
 * An app route as a job (issue 13): jobs.useApp(app) + jobs.enqueueRequest(...). A worker runs the
 * request through the app in-process (light-my-request), the response is the job's result, the
 * job's user reaches the app's own middleware through jobRequest(req), the routed request's
 * req.jobs / ctx.jobs commit their jobs, a 5xx is retried and a 4xx fails for good.
 */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { JobValidationError, jobRequest, jobsMiddleware, koaJobs, type Jobs, type RequestJobs } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

type KoaCtx = Koa.ParameterizedContext & { jobs: RequestJobs };

function expressApp(jobs: Jobs, flaky: { failures: number }) {
  const app = express();
  app.use(express.json());
  app.use(jobsMiddleware(jobs, { userId: (req) => jobRequest(req)?.userId ?? undefined }));
  app.post('/orders/:id/invoice', async (req, res) => {
    const { id } = await (req as unknown as { jobs: RequestJobs }).jobs.enqueue('email', { order: req.params.id });
    res.json({ order: req.params.id, lines: req.body.lines, emailJob: id, user: jobRequest(req)?.userId ?? null, fromJob: jobRequest(req)?.jobId ?? null });
  });
  app.get('/flaky', (_req, res) => void (flaky.failures-- > 0 ? res.status(503).send('busy') : res.type('text').send('fine')));
  app.get('/missing', (_req, res) => void res.status(404).json({ error: 'no such thing' }));
  return app;
}

function koaApp(jobs: Jobs, flaky: { failures: number }) {
  const app = new Koa();
  app.use(koaJobs(jobs, { userId: (ctx) => jobRequest(ctx.req)?.userId ?? undefined }));
  app.use(async (ctx: KoaCtx) => {
    if (ctx.path.startsWith('/orders/')) {
      const order = ctx.path.split('/')[2];
      const { id } = await ctx.jobs.enqueue('email', { order });
      ctx.body = { order, emailJob: id, user: jobRequest(ctx.req)?.userId ?? null };
    } else if (ctx.path === '/flaky') {
      ctx.status = flaky.failures-- > 0 ? 500 : 200;
      ctx.body = ctx.status === 200 ? 'fine' : 'busy';
    } else {
      ctx.status = 404;
    }
  });
  return app;
}

forEachDialect('routes as jobs', ({ fresh }) => {
  for (const kind of ['Express 5', 'Koa 3'] as const) {
    it(`${kind}: the response is the result; the user reaches the app; the route's own req.jobs commit`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 50 } });
      jobs.define('email', async () => 'sent');
      const app = kind === 'Express 5' ? expressApp(jobs, { failures: 0 }) : koaApp(jobs, { failures: 0 });
      jobs.useApp(app);
      await jobs.start();
      const { id } = await jobs.enqueueRequest({ method: 'POST', url: '/orders/42/invoice', body: { lines: 3 }, userId: 'alice' });
      await until(async () => (await jobs.get(id))?.state === 'completed', 'the request job to complete');
      const job = await jobs.get(id);
      expect(job).to.deep.include({ userId: 'alice' });
      const result = job!.result as { status: number; headers: Record<string, string>; body: Record<string, unknown> };
      expect(result.status).to.equal(200);
      expect(result.headers['content-type']).to.match(/application\/json/);
      expect(result.body).to.deep.include({ order: '42', user: 'alice' });
      if (kind === 'Express 5') expect(result.body).to.deep.include({ lines: 3, fromJob: id });
      const email = await jobs.get(String(result.body.emailJob));
      expect(email, 'the job the route enqueued through req.jobs').to.not.equal(null);
      expect(email).to.deep.include({ userId: 'alice' });
      await until(async () => (await jobs.get(email!.id))?.state === 'completed', 'the route\'s own job to run');
      // The app still serves real HTTP afterwards: injection left its framework's prototypes alone.
      const real = await request(kind === 'Express 5' ? app as express.Express : (app as Koa).callback()).post('/orders/9/invoice').send({ lines: 2 });
      expect(real.status).to.equal(200);
      expect(real.body).to.deep.include({ order: '9', user: null });
      await jobs.stop();
    });

    it(`${kind}: a 5xx is a failed attempt (retried), a 4xx fails for good`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 50 } });
      jobs.define('email', async () => 'sent');
      jobs.useApp(kind === 'Express 5' ? expressApp(jobs, { failures: 2 }) : koaApp(jobs, { failures: 2 }));
      await jobs.start();
      const flaky = await jobs.enqueueRequest({ method: 'GET', url: '/flaky' }, { backoff: { type: 'fixed', baseMs: 10 } });
      const missing = await jobs.enqueueRequest({ method: 'get', url: '/missing' });
      await until(async () => (await jobs.get(flaky.id))?.state === 'completed' && (await jobs.get(missing.id))?.state === 'failed', 'both to finish');
      expect(await jobs.get(flaky.id)).to.deep.include({ attempts: 3 });
      expect(((await jobs.get(flaky.id))!.result as { body: unknown }).body).to.equal('fine');
      const failed = await jobs.get(missing.id);
      expect(failed).to.deep.include({ attempts: 1 });
      expect(failed!.error!.message).to.equal('GET /missing answered 404');
      await jobs.stop();
    });
  }

  it('a request from the network never carries a job user, whatever its headers say', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const app = expressApp(jobs, { failures: 0 });
    jobs.define('email', async () => 'sent');
    const res = await request(app).post('/orders/7/invoice').set('x-sqljobs-user', 'mallory').send({ lines: 1 });
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.include({ user: null, fromJob: null });
  });

  it('refuses a bad request with the field named', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    for (const [bad, field] of [
      [{ method: 'TRACE', url: '/' }, 'method'],
      [{ method: 'GET', url: 'http://evil.example/' }, 'url'],
      [{ method: 'GET', url: '//evil.example/' }, 'url'],
      [{ method: 'GET', url: '/', headers: { a: 1 } }, 'headers'],
      [{ method: 'GET', url: '/', cookies: {} }, 'cookies'],
    ] as const) {
      await jobs.enqueueRequest(bad as never).then(
        () => expect.fail(`${JSON.stringify(bad)} should be refused`),
        (err) => {
          expect(err, JSON.stringify(bad)).to.be.instanceOf(JobValidationError);
          expect(err.field).to.equal(field);
        },
      );
    }
    expect(() => jobs.useApp(42 as never)).to.throw(TypeError, /Express app, a Koa app or a \(req, res\) handler/);
  });
});
