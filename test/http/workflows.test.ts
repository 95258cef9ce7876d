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
});
