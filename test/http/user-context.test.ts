/**
 * The middlewares' `userId` option: every job enqueued through req.jobs / ctx.jobs carries the
 * request's user as userId and createdBy, unless the call sets them (issue 13).
 */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { jobsMiddleware, koaJobs, type Jobs, type RequestJobs } from '../../lib/index.ts';
import { forEachDialect } from '../helpers/dialects.ts';

type KoaCtx = Koa.ParameterizedContext & { jobs: RequestJobs };

/** The routes both apps answer: /plain, /own (the call sets both), /own-user (the call sets userId only), /many. */
async function enqueueFor(route: string, jobs: RequestJobs): Promise<string[]> {
  if (route === 'own') return [(await jobs.enqueue('r', {}, { userId: 'other', createdBy: 'cron' })).id];
  if (route === 'own-user') return [(await jobs.enqueue('r', {}, { userId: 'other', tag: 't' })).id];
  if (route === 'callbacks') {
    return [
      (await jobs.enqueue('r', {}, { delay: 3_600_000, onFailure: 'cb' })).id,
      (await jobs.enqueue('r', {}, { delay: 3_600_000, onFailure: { name: 'cb', payload: 2, createdBy: 'ops', onFailure: 'cb-of-cb' } })).id,
    ];
  }
  if (route === 'batch') {
    const { ids } = await jobs.batch([{ name: 'r', payload: 1, delay: 3_600_000 }], { onFailure: 'batch-cb' });
    return ids;
  }
  if (route === 'many') return (await jobs.enqueueMany([{ name: 'r', payload: 1 }, { name: 'r', payload: 2, createdBy: 'import' }])).map((r) => r.id);
  return [(await jobs.enqueue('r', {}, { replyTo: 'ws:session-1', args: { a: '1' } })).id];
}

async function check(jobs: Jobs, call: (route: string, user?: string) => Promise<string[]>): Promise<void> {
  const [plain] = await call('plain', 'alice');
  expect(await jobs.get(plain)).to.deep.include({ userId: 'alice', createdBy: 'alice', replyTo: 'ws:session-1', args: { a: '1' } });
  const [own] = await call('own', 'alice');
  expect(await jobs.get(own)).to.deep.include({ userId: 'other', createdBy: 'cron' });
  const [ownUser] = await call('own-user', 'alice');
  expect(await jobs.get(ownUser)).to.deep.include({ userId: 'other', createdBy: 'alice' });
  const [m1, m2] = await call('many', 'bob');
  expect(await jobs.get(m1)).to.deep.include({ userId: 'bob', createdBy: 'bob' });
  expect(await jobs.get(m2)).to.deep.include({ userId: 'bob', createdBy: 'import' });
  // A callback runs for the same user (it was stamped with no user): enqueued when its job is cancelled.
  const parents = await call('callbacks', 'carol');
  for (const id of parents) expect(await jobs.cancel(id)).to.equal(true);
  const callbacks = (await jobs.list({ name: 'cb' })).items;
  expect(callbacks.map((j) => [j.userId, j.createdBy]).sort()).to.deep.equal([['carol', 'carol'], ['carol', 'ops']]);
  expect(await jobs.cancel(callbacks.find((j) => j.createdBy === 'ops')!.id)).to.equal(true);
  expect((await jobs.list({ name: 'cb-of-cb' })).items.map((j) => [j.userId, j.createdBy]), 'a callback\'s own callback').to.deep.equal([['carol', 'carol']]);
  const [inBatch] = await call('batch', 'carol');
  expect(await jobs.cancel(inBatch)).to.equal(true);
  expect((await jobs.list({ name: 'batch-cb' })).items.map((j) => [j.userId, j.createdBy]), 'a batch\'s callback').to.deep.equal([['carol', 'carol']]);
  const [anonymous] = await call('plain');
  expect(await jobs.get(anonymous)).to.deep.include({ userId: null, createdBy: null });
  expect((await jobs.list({ userId: 'alice' })).items.map((j) => j.id).sort()).to.deep.equal([plain].sort());
}

forEachDialect('request user context', ({ fresh }) => {
  it('Express: jobsMiddleware(jobs, { userId }) stamps userId and createdBy unless the call sets them', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const app = express();
    app.use(jobsMiddleware(jobs, { userId: (req) => (req.headers['x-user'] as string | undefined) || undefined }));
    // The user is set by an auth middleware after jobsMiddleware: it is asked at the first enqueue.
    app.use((req, _res, next) => {
      if (req.headers['x-user'] === 'late') req.headers['x-user'] = 'alice';
      next();
    });
    app.post('/:route', async (req, res) => res.json({ ids: await enqueueFor(req.params.route, req.jobs) }));
    await check(jobs, async (route, user) => {
      const r = request(app).post(`/${route}`);
      if (user) r.set('x-user', user === 'alice' ? 'late' : user);
      return (await r.expect(200)).body.ids;
    });
  });

  it('Koa: koaJobs(jobs, { userId }) stamps userId and createdBy unless the call sets them', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const app = new Koa();
    app.silent = true;
    app.use(koaJobs(jobs, { userId: (ctx) => ctx.state.user as string | undefined }));
    app.use(async (ctx: KoaCtx) => {
      ctx.state.user = ctx.get('x-user') || undefined;
      ctx.body = { ids: await enqueueFor(ctx.path.slice(1), ctx.jobs) };
    });
    const server = app.callback();
    await check(jobs, async (route, user) => {
      const r = request(server).post(`/${route}`);
      if (user) r.set('x-user', user);
      return (await r.expect(200)).body.ids;
    });
  });

  it('without the option, nothing is stamped', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const app = express();
    app.use(jobsMiddleware(jobs));
    app.post('/:route', async (req, res) => res.json({ ids: await enqueueFor(req.params.route, req.jobs) }));
    const [id] = (await request(app).post('/plain').set('x-user', 'alice').expect(200)).body.ids;
    expect(await jobs.get(id)).to.deep.include({ userId: null, createdBy: null });
  });
});
