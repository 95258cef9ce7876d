/**
 * Workflows inside a request's unit of work (issue 13): req.jobs.enqueue with dependsOn naming a
 * job enqueued earlier in the same request, enqueueMany with same-call indexes, and req.jobs.batch.
 * They exist only if the request commits; a rolled-back request leaves no job, edge or batch.
 */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { jobsMiddleware, type RequestJobs } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

forEachDialect('workflows in a request', ({ fresh }) => {
  it('a workflow enqueued through req.jobs runs in order when the request commits, and leaves nothing when it fails', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    const ran: string[] = [];
    for (const name of ['order', 'invoice', 'receipt', 'complete', 'batch-done']) {
      jobs.define(name, async (_p: unknown, ctx) => {
        ran.push(name);
        return { name, parents: ctx.parents.map((p) => p.name) };
      });
    }
    const app = express();
    app.use(express.json());
    app.use(jobsMiddleware(jobs));
    app.post('/checkout', async (req, res) => {
      const rj = (req as unknown as { jobs: RequestJobs }).jobs;
      const order = await rj.enqueue('order', { n: 1 });
      const [invoice, receipt] = await rj.enqueueMany([
        { name: 'invoice', payload: {}, dependsOn: order.id },
        { name: 'receipt', payload: {}, dependsOn: order.id },
      ]);
      const complete = await rj.enqueue('complete', {}, { dependsOn: [invoice.id, receipt.id] });
      const { batchId } = await rj.batch([{ name: 'receipt', payload: 1 }, { name: 'receipt', payload: 2, dependsOn: 0 }], { onComplete: 'batch-done' });
      if (req.body.fail) return void res.status(500).json({ error: 'no' });
      res.json({ complete: complete.id, batchId });
    });
    await jobs.migrate();
    const failed = await request(app).post('/checkout').send({ fail: true });
    expect(failed.status).to.equal(500);
    for (const table of ['jobs', 'deps', 'batches']) {
      expect(Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}${table}`))[0].n), `${table} after a rolled-back request`).to.equal(0);
    }
    const ok = await request(app).post('/checkout').send({});
    expect(ok.status).to.equal(200);
    await jobs.start();
    await until(async () => (await jobs.get(ok.body.complete))?.state === 'completed', 'the last job of the workflow');
    await until(async () => (await jobs.batchStatus(ok.body.batchId))?.finished === true && ran.includes('batch-done'), 'the batch and its callback');
    expect(ran.indexOf('complete')).to.be.greaterThan(Math.max(ran.indexOf('invoice'), ran.indexOf('receipt')));
    expect(ran.indexOf('invoice')).to.be.greaterThan(ran.indexOf('order'));
    expect((await jobs.get(ok.body.complete))?.result).to.deep.equal({ name: 'complete', parents: ['invoice', 'receipt'] });
    await jobs.stop();
  });

  it('Express: a dependsOn naming no job fails the request, and the error is heard: the instance\'s error listeners hear it without onCommitError (on SQLite it met the commit, and went nowhere)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const heard: unknown[] = [];
    jobs.on('error', (err) => heard.push(err));
    const app = express();
    app.use(jobsMiddleware(jobs));
    app.post('/', async (req, res, next) => {
      try {
        await (req as unknown as { jobs: RequestJobs }).jobs.enqueue('child', {}, { dependsOn: '0190a4f2-1b2c-7d3e-8f40-123456789abc' });
        res.status(201).json({ ok: true });
      } catch (err) {
        next(err);
      }
    });
    app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      heard.push(err);
      res.status(400).json({ error: err.message });
    });
    await jobs.migrate();
    const answer = await request(app).post('/');
    // PostgreSQL and MariaDB write at enqueue (the app's error middleware answers); SQLite buffers the request's rows until its commit (500).
    expect(answer.status).to.be.oneOf([400, 500]);
    expect(heard, 'heard by the app or by the instance\'s error listeners').to.have.length(1);
    expect(heard[0]).to.have.property('field', 'dependsOn');
    expect(Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n)).to.equal(0);
  });
});
