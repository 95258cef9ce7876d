import { expect } from 'chai';
import Koa from 'koa';
import request from 'supertest';
import http from 'node:http';
import { koaJobs, type Jobs, type RequestJobs } from '../../lib/index.ts';
import { createRequire } from 'node:module';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { caughtFailure, failingCommitRoute, loseConnection, poolSettled, setupShop as setup, visible, writeOrder } from '../helpers/http.ts';

/** Koa 2, installed beside 3 as the npm alias koa2. */
const Koa2 = createRequire(import.meta.url)('koa2') as typeof Koa;

type Ctx = Koa.ParameterizedContext & { jobs: RequestJobs };


function shop(t: TestDb, jobs: Jobs, Framework: typeof Koa = Koa) {
  const app = new Framework();
  app.silent = true;
  app.use(koaJobs(jobs));
  app.use(async (ctx: Ctx) => {
    const [, route, item] = ctx.path.split('/');
    const order = async (name: string, code?: string) => {
      await writeOrder(t, ctx.jobs, name, code);
      return ctx.jobs.enqueue('receipt', { item: name }, { tag: name });
    };
    if (route === 'plain') return void (ctx.body = 'plain');
    if (route === 'dup') {
      await order(item, 'same');
      await order(`${item}-b`, 'same');
      return void (ctx.body = { ok: true });
    }
    if (route === 'lost') {
      await order(item);
      await loseConnection(t, ctx.jobs);
      return void (ctx.body = { ok: true });
    }
    if (route === 'late') {
      await sleep(300);
      await order(item);
      return void (ctx.body = { ok: true });
    }
    if (route === 'body-after') {
      // The request's body read after the enqueue: the request closes when it was read, the response has not.
      await order(item);
      let text = '';
      for await (const chunk of ctx.req) text += String(chunk);
      ctx.status = 201;
      return void (ctx.body = { read: text.length });
    }
    if (route === 'raw') {
      // The handler writes the response itself: Koa sends nothing after the middleware.
      const { id } = await order(item);
      ctx.respond = false;
      ctx.res.writeHead(201, { 'content-type': 'application/json' });
      ctx.res.end(JSON.stringify({ id }));
      return;
    }
    if (route === 'raw-later') {
      // The response written after the middleware returned (a callback, a stream piped later).
      const { id } = await order(item);
      ctx.respond = false;
      setImmediate(() => {
        ctx.res.writeHead(200, { 'content-type': 'application/json' });
        ctx.res.end(JSON.stringify({ id }));
      });
      return;
    }
    if (route === 'raw-dup') {
      await order(`${item}-a`, item);
      await order(`${item}-b`, item);
      ctx.respond = false;
      ctx.res.writeHead(201, { 'content-type': 'application/json' });
      ctx.res.end('{"ok":true}');
      return;
    }
    if (route === 'caught') {
      const { id } = await order(item);
      ctx.status = 201;
      ctx.body = { id, caught: await caughtFailure(t, ctx.jobs) };
      return;
    }
    if (route === 'slow') {
      await order(item);
      await sleep(300);
      return void (ctx.body = { ok: true });
    }
    const { id } = await order(item);
    if (route === 'throw') throw new Error('payment declined');
    if (route === '4xx') {
      ctx.status = 422;
      ctx.body = { error: 'bad address' };
      return;
    }
    ctx.status = 201;
    ctx.body = { id, sameOnState: ctx.state.jobs === ctx.jobs };
  });
  return app;
}



forEachDialect('Koa middleware', ({ fresh }) => {
  it('commits on 2xx, rolls back on throw and 4xx, answers 500 when the commit fails', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const server = http.createServer(shop(t, jobs).callback());
    const ok = await request(server).post('/ok/book').expect(201);
    expect(ok.body.sameOnState).to.equal(true);
    expect(await visible(t, jobs, 'book')).to.deep.equal({ job: true, row: true });
    await request(server).post('/throw/pen').expect(500);
    await request(server).post('/4xx/cup').expect(422);
    for (const item of ['pen', 'cup']) expect(await visible(t, jobs, item)).to.deep.equal({ job: false, row: false });
    const failed = await request(server).post(`/${failingCommitRoute(t)}/zip`);
    expect(failed.status).to.equal(500);
    expect(await visible(t, jobs, 'zip')).to.deep.equal({ job: false, row: false });
    await request(server).get('/plain').expect(200, 'plain');
    await poolSettled(t);
  });

  it('PostgreSQL: a statement of the app\'s that failed, caught, aborted the transaction: 500, nothing committed (COMMIT answered ROLLBACK)', async function () {
    const t = await fresh();
    if (t.dialect !== 'postgres') return this.skip();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const server = http.createServer(shop(t, jobs).callback());
    const res = await request(server).post('/caught/ink');
    expect(res.status).to.equal(500);
    expect(await visible(t, jobs, 'ink')).to.deep.equal({ job: false, row: false });
    await request(server).post('/ok/pad').expect(201);
    expect(await visible(t, jobs, 'pad')).to.deep.equal({ job: true, row: true });
    await poolSettled(t);
  });

  it('ctx.respond = false: the handler\'s own response waits for the commit; a failed commit becomes a 500, never its 201', async function () {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const errors: unknown[] = [];
    jobs.on('error', (err) => errors.push(err));
    await setup(t, jobs);
    const server = http.createServer(shop(t, jobs).callback());
    const ok = await request(server).post('/raw/lamp');
    expect(ok.status).to.equal(201);
    expect(await visible(t, jobs, 'lamp')).to.deep.equal({ job: true, row: true });
    const later = await request(server).post('/raw-later/vase');
    expect(later.status).to.equal(200);
    expect(await visible(t, jobs, 'vase')).to.deep.equal({ job: true, row: true });
    // PostgreSQL's deferred constraint fails at COMMIT (other databases: the commit itself cannot fail here).
    if (t.dialect !== 'postgres') return;
    const failed = await request(server).post('/raw-dup/desk');
    expect(failed.status).to.equal(500);
    expect(await visible(t, jobs, 'desk')).to.deep.equal({ job: false, row: false });
    expect(errors, 'the failed commit is heard').to.have.length(1);
    await poolSettled(t);
  });

  it('asks commitWhen once per request (the gate does not ask again as Koa answers)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    let asked = 0;
    const app = new Koa();
    app.silent = true;
    app.use(koaJobs(jobs, { commitWhen: (ctx) => (asked++, ctx.status < 400) }));
    app.use(async (ctx: Ctx) => {
      await ctx.jobs.enqueue('receipt', { item: 'once' }, { tag: 'once' });
      ctx.status = 201;
      ctx.body = { ok: true };
    });
    await request(http.createServer(app.callback())).post('/').expect(201);
    expect(asked).to.equal(1);
    expect((await jobs.list({ tag: 'once' })).items).to.have.length(1);
  });

  it('behaves the same on Koa 2', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const server = http.createServer(shop(t, jobs, Koa2).callback());
    await request(server).post('/ok/book2').expect(201);
    await request(server).post('/throw/pen2').expect(500);
    await request(server).post('/4xx/cup2').expect(422);
    expect(await visible(t, jobs, 'book2')).to.deep.equal({ job: true, row: true });
    for (const item of ['pen2', 'cup2']) expect(await visible(t, jobs, item)).to.deep.equal({ job: false, row: false });
    await poolSettled(t);
  });

  it('200 concurrent requests, half failing: exactly the successful ones commit, every connection returns', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const server = http.createServer(shop(t, jobs).callback()).listen(0);
    try {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => {
          const route = i % 2 ? (i % 3 ? '/throw' : '/4xx') : '/ok';
          return request(server).post(`${route}/item${i}`).then((r) => ({ i, status: r.status }));
        }),
      );
      const committed = new Set(results.filter((r) => r.status < 400).map((r) => `item${r.i}`));
      expect(committed.size).to.equal(100);
      expect(new Set((await jobs.list({ limit: 500 })).items.map((j) => j.tag))).to.deep.equal(committed);
      await poolSettled(t);
    } finally {
      server.close();
    }
  });

  it('rolls back and releases the connection when the client disconnects', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const server = http.createServer(shop(t, jobs).callback()).listen(0);
    try {
      const port = (server.address() as { port: number }).port;
      const r = http.request({ port, method: 'POST', path: '/slow/gone' });
      r.on('error', () => undefined);
      r.end();
      await sleep(100);
      r.destroy();
      // Gone before the first enqueue too (the route enqueues 300 ms in).
      const early = http.request({ port, method: 'POST', path: '/late/early' });
      early.on('error', () => undefined);
      early.end();
      await sleep(100);
      early.destroy();
      await sleep(600);
      expect(await visible(t, jobs, 'gone')).to.deep.equal({ job: false, row: false });
      expect(await visible(t, jobs, 'early')).to.deep.equal({ job: false, row: false });
      const read = await request(server).post('/body-after/late-read').send('x'.repeat(100_000));
      expect(read.status).to.equal(201);
      expect(await visible(t, jobs, 'late-read')).to.deep.equal({ job: true, row: true });
      await poolSettled(t);
    } finally {
      server.close();
    }
  });
});
