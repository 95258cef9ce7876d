/**
 * An app route as a job (issue 13): jobs.useApp(app) + jobs.enqueueRequest(...). A worker runs the
 * request through the app in-process (light-my-request), the response is the job's result, the
 * job's user reaches the app's own middleware through jobRequest(req), the routed request's
 * req.jobs / ctx.jobs commit their jobs, a 5xx is retried and a 4xx fails for good.
 */
import { expect } from 'chai';
import express from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
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

/** How a route fails its first attempts: each kind of throw the issue names as a failed attempt. */
type Throw = 'express sync throw' | 'express async rejection' | 'express next(err)' | 'koa throw' | 'plain sync throw' | 'plain async rejection';

/** An app whose GET /boom fails its first `failures` requests with `how`, then answers 200 "recovered". */
function throwingApp(how: Throw, failures: { left: number }) {
  const fail = () => failures.left-- > 0;
  const boom = () => new Error(`boom (${how})`);
  if (how.startsWith('express')) {
    const app = express();
    app.set('env', 'test'); // Express's final handler still answers 500, without logging the error
    app.get('/boom', (req, res, next) => {
      if (!fail()) return void res.type('text').send('recovered');
      if (how === 'express sync throw') throw boom();
      if (how === 'express next(err)') return void setImmediate(() => next(boom()));
      return Promise.reject(boom()); // Express 5 passes an async handler's rejection to next
    });
    return app;
  }
  if (how === 'koa throw') {
    const app = new Koa();
    app.silent = true; // Koa answers 500 for a thrown error; the test needs no log of it
    app.use(async (ctx) => {
      if (fail()) throw boom();
      ctx.body = 'recovered';
    });
    return app;
  }
  const recover = (res: ServerResponse) => {
    res.setHeader('content-type', 'text/plain');
    res.end('recovered');
  };
  if (how === 'plain sync throw') {
    return (_req: IncomingMessage, res: ServerResponse) => {
      if (fail()) throw boom();
      recover(res);
    };
  }
  return async (_req: IncomingMessage, res: ServerResponse) => {
    await new Promise((r) => setImmediate(r)); // rejects later, not in the call
    if (fail()) throw boom();
    recover(res);
  };
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

  it('a plain (req, res) handler runs the request; the result is { status, headers, body }', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.useApp((req: IncomingMessage, res: ServerResponse) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (text += chunk));
      req.on('end', () => {
        res.statusCode = 201;
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.setHeader('x-order', '42');
        res.end(JSON.stringify({ method: req.method, url: req.url, got: JSON.parse(text), user: jobRequest(req)?.userId ?? null }));
      });
    });
    await jobs.start();
    const { id } = await jobs.enqueueRequest({ method: 'PUT', url: '/orders/42?lang=en', body: { lines: 3 }, userId: 'bob' });
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the request job to complete');
    const result = (await jobs.get(id))!.result as { status: number; headers: Record<string, string>; body: unknown };
    expect(result.status).to.equal(201);
    expect(result.headers).to.include({ 'x-order': '42' });
    expect(result.body).to.deep.equal({ method: 'PUT', url: '/orders/42?lang=en', got: { lines: 3 }, user: 'bob' });
    await jobs.stop();
  });

  for (const how of ['express sync throw', 'express async rejection', 'express next(err)', 'koa throw', 'plain sync throw', 'plain async rejection'] as const) {
    it(`${how}: a failed attempt, retried until the route succeeds`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 50 } });
      jobs.useApp(throwingApp(how, { left: 2 }));
      await jobs.start();
      const { id } = await jobs.enqueueRequest({ method: 'GET', url: '/boom' }, { backoff: { type: 'fixed', baseMs: 10 } });
      await until(async () => (await jobs.get(id))?.state === 'completed', 'the request job to complete on its third attempt');
      const job = (await jobs.get(id))!;
      expect(job.attempts).to.equal(3);
      expect((job.result as { status: number; body: unknown })).to.deep.include({ status: 200, body: 'recovered' });
      const tries = await jobs.attempts(id);
      expect(tries.map((a) => a.outcome)).to.deep.equal(['failed', 'failed', 'completed']);
      expect(tries[0]!.error!.message, 'the first attempt failed').to.match(/500|boom/);
      await jobs.stop();
    });
  }

  for (const kind of ['Express 5', 'Koa 3', 'plain handler'] as const) {
    it(`${kind}: a 4xx (thrown or answered) fails for good on its first attempt`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ worker: { pollInterval: 50 } });
      let calls = 0;
      jobs.useApp(teapot(kind, () => calls++));
      await jobs.start();
      const { id } = await jobs.enqueueRequest({ method: 'DELETE', url: '/orders/1' }, { maxAttempts: 5, backoff: { type: 'fixed', baseMs: 10 } });
      await until(async () => (await jobs.get(id))?.state === 'failed', 'the request job to fail');
      await new Promise((r) => setTimeout(r, 200)); // room for a retry that must not come
      const job = (await jobs.get(id))!;
      expect(job).to.deep.include({ state: 'failed', attempts: 1 });
      expect(job.error!.message).to.equal('DELETE /orders/1 answered 422');
      expect(calls, 'the app saw the request once').to.equal(1);
      await jobs.stop();
    });
  }

  it('Express: an error after the response started fails the attempt (its final handler destroys the socket) and the process lives', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    const app = express();
    app.set('env', 'test');
    app.get('/late-error', (_req, res, next) => {
      res.write('partial');
      next(new Error('failed mid-stream'));
    });
    app.get('/twice', (_req, res) => {
      res.json({ a: 1 });
      res.json({ b: 2 });
    });
    jobs.useApp(app);
    await jobs.start();
    const late = await jobs.enqueueRequest({ method: 'GET', url: '/late-error' }, { maxAttempts: 1 });
    const twice = await jobs.enqueueRequest({ method: 'GET', url: '/twice' }, { maxAttempts: 1 });
    await until(async () => (await jobs.get(late.id))?.state === 'failed', 'the late error to fail the attempt');
    // Express's final handler closes the socket without the error: the attempt says so.
    expect((await jobs.get(late.id))!.error!.message).to.match(/the app closed the connection before its response ended/);
    // The first answer was complete: it is the result; the second one's error only closes the socket.
    await until(async () => (await jobs.get(twice.id))?.state === 'completed', 'the answered request to complete');
    expect(((await jobs.get(twice.id))!.result as { body: unknown }).body).to.deep.equal({ a: 1 });
    await jobs.stop();
  });

  it('a 2xx whose body is over maxOutputBytes completes without the body (the route ran: no retry runs it again)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 }, maxOutputBytes: 4096 });
    let runs = 0;
    const app = express();
    app.get('/report', (_req, res) => void (runs++, res.type('text').send('x'.repeat(10_000))));
    app.get('/small', (_req, res) => void res.json({ ok: true }));
    // A binary body (a PDF holds NUL bytes) and JSON nested past 31 levels cannot be stored either.
    app.get('/pdf', (_req, res) => void (runs++, res.type('application/pdf').send(Buffer.from('%PDF-1.7\0\x01binary'))));
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    app.get('/deep', (_req, res) => void (runs++, res.json(deep)));
    jobs.useApp(app);
    await jobs.start();
    const big = await jobs.enqueueRequest({ method: 'GET', url: '/report' });
    const small = await jobs.enqueueRequest({ method: 'GET', url: '/small' });
    await until(async () => (await jobs.get(big.id))?.state === 'completed', 'the big answer to complete');
    const job = (await jobs.get(big.id))!;
    expect(job.attempts).to.equal(1);
    expect(runs).to.equal(1);
    expect(job.result).to.deep.include({ status: 200, body: null, bodyBytes: 10_000 });
    const pdf = await jobs.enqueueRequest({ method: 'GET', url: '/pdf' });
    const nested = await jobs.enqueueRequest({ method: 'GET', url: '/deep' });
    for (const { id } of [pdf, nested]) {
      await until(async () => (await jobs.get(id))?.state === 'completed', 'the unstorable answer to complete');
      expect((await jobs.get(id))!).to.deep.include({ attempts: 1 });
      expect((await jobs.get(id))!.result).to.deep.include({ status: 200, body: null });
    }
    expect(runs, 'each route ran once').to.equal(3);
    await until(async () => (await jobs.get(small.id))?.state === 'completed', 'the small answer to complete');
    expect((await jobs.get(small.id))!.result).to.deep.include({ body: { ok: true } }).and.not.have.property('bodyBytes');
    await jobs.stop();
  });

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
      [{ method: 'GET', url: '/a b' }, 'url'],
      [{ method: 'GET', url: '/a\r\nX-Injected: 1' }, 'url'],
      [{ method: 'GET', url: '/', headers: { 'bad name': 'x' } }, 'headers'],
      [{ method: 'GET', url: '/', headers: { 'x-a': 'one\r\nx-b: two' } }, 'headers'],
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

/** An app that refuses every request with 422: Express and Koa by a thrown HTTP error, a plain handler by answering it. */
function teapot(kind: 'Express 5' | 'Koa 3' | 'plain handler', seen: () => void) {
  const refusal = () => Object.assign(new Error('order 1 cannot be deleted'), { status: 422, expose: true });
  if (kind === 'Express 5') {
    const app = express();
    app.set('env', 'test');
    app.use(() => {
      seen();
      throw refusal(); // Express's final handler answers the error's status
    });
    return app;
  }
  if (kind === 'Koa 3') {
    const app = new Koa();
    app.silent = true;
    app.use((ctx) => {
      seen();
      ctx.throw(422, 'order 1 cannot be deleted');
    });
    return app;
  }
  return (_req: IncomingMessage, res: ServerResponse) => {
    seen();
    res.statusCode = 422;
    res.end('order 1 cannot be deleted');
  };
}
