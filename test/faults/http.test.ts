/**
 * The app's own hooks in the middleware (commitWhen, onCommitError) may throw: the request is
 * rolled back and answers 500, its connection goes back to the pool, the next request works,
 * and nothing escapes as an uncaught exception or unhandled rejection.
 */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { jobsMiddleware, koaJobs, type Jobs, type RequestJobs } from '../../lib/index.ts';
import { forEachDialect } from '../helpers/dialects.ts';
import { failingCommitRoute, loseConnection, poolSettled, setupShop, visible, writeOrder } from '../helpers/http.ts';
import { trapCrashes } from '../helpers/traps.ts';
import type { TestDb } from '../helpers/dialects.ts';

/** commitWhen throws for items named "bad"; onCommitError always throws. */
const commitWhen = (item: string) => {
  if (item.startsWith('bad')) throw new Error('commitWhen broke');
  return true;
};

async function order(t: TestDb, jobs: RequestJobs, item: string, route: string): Promise<void> {
  const code = route === 'dup' ? 'same' : undefined;
  await writeOrder(t, jobs, item, code);
  await jobs.enqueue('receipt', { item }, { tag: item });
  if (route === 'dup') {
    await writeOrder(t, jobs, `${item}-b`, code);
    await jobs.enqueue('receipt', { item: `${item}-b` }, { tag: `${item}-b` });
  }
  if (route === 'lost') await loseConnection(t, jobs);
}

function expressApp(t: TestDb, jobs: Jobs, hook: 'throws' | 'rejects' = 'throws') {
  const app = express();
  app.use(jobsMiddleware(jobs, {
    commitWhen: (req) => commitWhen(String(req.url).split('/')[2]),
    // An async error reporter whose service is down rejects: left unhandled, that ends the process.
    onCommitError: hook === 'throws' ? () => {
      throw new Error('onCommitError broke');
    } : async () => {
      throw new Error('error reporter down');
    },
  }));
  app.post('/bad-status/:item', async (req, res) => {
    await order(t, req.jobs, req.params.item, 'ok');
    res.statusCode = 1000; // invalid: Node throws when the gate replays the response
    res.end('never');
  });
  app.post('/:route/:item', async (req, res) => {
    await order(t, req.jobs, req.params.item, req.params.route);
    res.status(201).json({ ok: true });
  });
  return app.listen(0);
}

function koaApp(t: TestDb, jobs: Jobs) {
  const app = new Koa();
  app.silent = true;
  app.use(koaJobs(jobs, { commitWhen: (ctx) => commitWhen(String((ctx as { path?: string }).path).split('/')[2]) }));
  app.use(async (ctx: Koa.ParameterizedContext & { jobs: RequestJobs }) => {
    const [, route, item] = ctx.path.split('/');
    await order(t, ctx.jobs, item, route);
    ctx.status = 201;
  });
  return app.listen(0);
}

forEachDialect('faults: the middleware contains the app hooks', ({ fresh }) => {
  const crashes = trapCrashes();

  for (const [framework, listen] of [['Express', expressApp], ['Koa', koaApp]] as const) {
    it(`${framework}: a commitWhen that throws rolls back and answers 500; the next request commits`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ worker: false });
      await setupShop(t, jobs);
      const server = listen(t, jobs);
      try {
        await request(server).post('/ok/bad-1').expect(500);
        expect(await visible(t, jobs, 'bad-1')).to.deep.equal({ job: false, row: false });
        await poolSettled(t);
        await request(server).post('/ok/good-1').expect(201);
        expect(await visible(t, jobs, 'good-1')).to.deep.equal({ job: true, row: true });
        await poolSettled(t);
      } finally {
        server.close();
      }
      crashes.expectNone();
    });
  }

  it('Express: a response the app made invalid (status 1000) ends the connection instead of crashing the process', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setupShop(t, jobs);
    const server = expressApp(t, jobs);
    try {
      const err = await request(server).post('/bad-status/odd-1').then(() => null, (e: Error) => e);
      expect(err, 'the client sees its connection end').to.be.instanceOf(Error);
      await poolSettled(t);
      await request(server).post('/ok/ok-4').expect(201);
    } finally {
      server.close();
    }
    crashes.expectNone();
  });

  it('Express: an async onCommitError hook whose promise rejects: the client gets its 500, the process no unhandled rejection', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setupShop(t, jobs);
    const server = expressApp(t, jobs, 'rejects');
    try {
      await request(server).post('/ok/bad-5').expect(500);
      await poolSettled(t);
      await new Promise((r) => setTimeout(r, 50)); // an unhandled rejection is reported after the microtasks
    } finally {
      server.close();
    }
    crashes.expectNone();
  });

  it('Express: an onCommitError hook that throws still leaves the client its 500', async function () {
    const t = await fresh();
    const route = failingCommitRoute(t);
    if (route === 'ok') this.skip(); // SQLite's commit point has no failing commit here (the SQLite refusal is tested in http/)
    const jobs = t.jobs({ worker: false });
    await setupShop(t, jobs);
    const server = expressApp(t, jobs);
    try {
      await request(server).post(`/${route}/ok-2`).expect(500);
      expect((await visible(t, jobs, 'ok-2')).job).to.equal(false);
      await poolSettled(t);
      await request(server).post('/ok/ok-3').expect(201);
    } finally {
      server.close();
    }
    crashes.expectNone();
  });
});
