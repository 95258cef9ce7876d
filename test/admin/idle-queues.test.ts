/**
 * An idle queue can be paused before its jobs arrive (issue 16): the queues the serving process's
 * code names (default queue, define()'s queue, the queues option, worker.queues) are listed with no
 * job in them, and pausing one holds the jobs enqueued to it later.
 */
import { expect } from 'chai';
import express from 'express';
import { jobsAdmin } from '../../lib/index.ts';
import { forEachDialect } from '../helpers/dialects.ts';
import { client } from './helpers.ts';

const BASE = '/admin/jobs';

forEachDialect('admin: idle queues', ({ fresh }) => {
  it('lists the queues the code names while they are empty, and pausing one holds the jobs enqueued to it later', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, queues: ['default', 'mail', 'reports'] }, queues: { reports: { concurrency: 2 } } });
    jobs.define('send', async () => 'sent', { queue: 'mail' });
    expect(jobs.queues.known()).to.deep.equal(['default', 'mail', 'reports']);
    await jobs.start();
    const app = express();
    app.use(BASE, jobsAdmin(jobs));
    const { agent, token } = await client(app);
    const api = (await agent.get(`${BASE}/api/queues`).expect(200)).body as { items: { queue: string; pending: number; pausedAt: string | null }[] };
    expect(api.items.map((q) => q.queue)).to.deep.equal(['default', 'mail', 'reports']);
    expect(api.items.every((q) => q.pending === 0 && q.pausedAt === null)).to.equal(true);
    const page = (await agent.get(`${BASE}/queues`).expect(200)).text;
    expect(page).to.include(`<tr data-queue="mail">`).and.include(`action="${BASE}/queues/mail/pause"`);
    await agent.post(`${BASE}/api/queues/mail/pause`).set('x-csrf-token', token).expect(200);
    const { id } = await jobs.enqueue('send', {});
    await new Promise((r) => setTimeout(r, 500));
    expect((await jobs.get(id))?.state, 'held by the pause made while the queue was idle').to.equal('pending');
    expect(await jobs.queues.resume('mail')).to.equal(true);
    await jobs.drain();
    expect((await jobs.get(id))?.state).to.equal('completed');
    await jobs.stop();
  });
});
