/**
 * Dead-letter redrive in the admin: the jobs list filtered by a queue offers "redrive" beside the
 * other bulk actions (confirmed first when applied to all matching), the JSON API has
 * POST api/jobs/redrive, both need 'manage' and the CSRF token, and a copy's page links its original.
 */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { jobsAdmin, type AdminAccess, type Jobs } from '../../lib/index.ts';
import { forEachDialect } from '../helpers/dialects.ts';
import { XSS, client } from './helpers.ts';

const BASE = '/admin/jobs';

function appWith(jobs: Jobs, authorize?: () => AdminAccess) {
  const app = express();
  app.use(BASE, jobsAdmin(jobs, { bulkCap: 10, ...(authorize ? { authorize } : {}) }));
  return app;
}

/** Two jobs that failed for good, each copied to `charge-dlq`, and a job of that queue that is no copy. */
async function deadLetters(jobs: Jobs) {
  let declined = true;
  jobs.define('charge', async () => {
    if (declined) throw new Error('card declined');
    return 'charged';
  }, { deadLetter: 'charge-dlq', maxAttempts: 1 });
  const originals = [(await jobs.enqueue('charge', { n: 1 })).id, (await jobs.enqueue('charge', { n: 2 })).id];
  await jobs.drain();
  const copies = (await jobs.list({ queue: 'charge-dlq' })).items.map((c) => c.id);
  const stray = (await jobs.enqueue('charge', {}, { queue: 'charge-dlq', tag: XSS })).id;
  return { originals, copies, stray, fix: () => (declined = false) };
}

forEachDialect('admin dead-letter redrive', ({ fresh }) => {
  let jobs: Jobs;
  let dl: Awaited<ReturnType<typeof deadLetters>>;

  beforeEach(async () => {
    jobs = (await fresh()).jobs({ worker: { queues: ['default'] } });
    dl = await deadLetters(jobs);
  });

  it("a copy's page and the list link its original; the original's page links its dead-letter queue", async () => {
    const app = appWith(jobs);
    const [copy] = dl.copies;
    const original = (await jobs.get(copy))!.deadLetterOf!;
    const page = (await request(app).get(`${BASE}/jobs/${copy}`).expect(200)).text;
    expect(page).to.match(new RegExp(`<dt>dead letter of</dt><dd id="dead-letter-of"><a href="${BASE}/jobs/${original}">charge</a> <span class="state state-failed">`));
    // Its edge to the original is not a callback's: no "Callback of", no workflow section.
    expect(page).not.to.include('Callback of').and.not.include('id="workflow"');
    const list = (await request(app).get(`${BASE}/jobs?queue=charge-dlq`).expect(200)).text;
    expect(list).to.include(`dead letter of <a href="${BASE}/jobs/${original}">`);
    const originalPage = (await request(app).get(`${BASE}/jobs/${original}`).expect(200)).text;
    expect(originalPage).to.include(`<dd id="dead-letter-queue">a copy to queue <a href="${BASE}/jobs?queue=charge-dlq">charge-dlq</a>`);
    expect(originalPage).to.include(`<a href="${BASE}/jobs/${copy}">charge</a>`);
    expect((await request(app).get(`${BASE}/api/jobs/${copy}`).expect(200)).body.deadLetterOf).to.equal(original);
    // A deleted original: the copy still names it.
    await jobs.delete(original);
    expect((await request(app).get(`${BASE}/jobs/${copy}`).expect(200)).text).to.include(`<dd id="dead-letter-of"><code>${original}</code> <span class="muted">(deleted)</span>`);
  });

  it('the list filtered by queue offers redrive; "all matching" confirms, then retries the originals once, with the reasons for the rest', async () => {
    const app = appWith(jobs);
    const { agent, token } = await client(app);
    expect((await agent.get(`${BASE}/jobs`).expect(200)).text).not.to.include('value="redrive"');
    expect((await agent.get(`${BASE}/jobs?queue=charge-dlq`).expect(200)).text).to.include('<option value="redrive">');
    const form = { _csrf: token, action: 'redrive', scope: 'all', queue: 'charge-dlq' };
    const ask = await agent.post(`${BASE}/jobs/bulk`).type('form').send(form).expect(200);
    expect(ask.text).to.include('Confirm: redrive all matching jobs').and.include('<strong>3</strong> jobs').and.include('the original runs again');
    expect(ask.text).to.include('<input type="hidden" name="queue" value="charge-dlq">');
    for (const id of dl.originals) expect((await jobs.get(id))?.state, 'nothing before the confirmation').to.equal('failed');

    dl.fix();
    const done = await agent.post(`${BASE}/jobs/bulk`).type('form').send({ ...form, confirm: 'yes' }).expect(303);
    // Back to the list as it was filtered (by the dead-letter queue), with the counts.
    expect(done.headers.location).to.equal(`${BASE}/jobs?${new URLSearchParams({ queue: 'charge-dlq', done: 'redrive', n: '2,1', why: 'notDeadLetter:1' })}`);
    expect((await agent.get(done.headers.location).expect(200)).text).to.include('Redrive applied. 2 originals retried, 1 skipped (1 not a dead-letter copy).');
    for (const id of dl.copies) expect((await jobs.get(id))?.state).to.equal('cancelled');
    const again = await agent.post(`${BASE}/jobs/bulk`).type('form').send({ ...form, confirm: 'yes' }).expect(303);
    expect(again.headers.location).to.include('n=0%2C3');
    const notice = (await agent.get(again.headers.location).expect(200)).text;
    expect(notice).to.include('1 not a dead-letter copy; 2 original pending or running, redriven or retried already');
    await jobs.drain();
    for (const id of dl.originals) expect(await jobs.get(id)).to.deep.include({ state: 'completed', attempts: 2 });

    // "All matching" needs the queue; an unknown reason in the notice's query is not shown.
    const unfiltered = await agent.post(`${BASE}/jobs/bulk`).type('form').send({ _csrf: token, action: 'redrive', scope: 'all', tag: 'x' }).expect(400);
    expect(unfiltered.text).to.include('needs the list filtered by queue');
    expect((await agent.get(`${BASE}/jobs?done=redrive&n=1,1&why=constructor:1,${encodeURIComponent(XSS)}:2`).expect(200)).text)
      .to.include('Redrive applied. 1 original retried, 1 skipped.').and.not.include('<script>window');
  });

  it('redrive of selected copies; a selected job that is no copy is skipped', async () => {
    const { agent, token } = await client(appWith(jobs));
    const ids = [dl.copies[0], dl.stray].map((id) => `ids=${id}`).join('&');
    const res = await agent.post(`${BASE}/jobs/bulk`).type('form').send(`_csrf=${token}&action=redrive&scope=selected&queue=charge-dlq&${ids}`).expect(303);
    expect(res.headers.location).to.equal(`${BASE}/jobs?${new URLSearchParams({ queue: 'charge-dlq', done: 'redrive', n: '1,1', why: 'notDeadLetter:1' })}`);
    const redriven = (await jobs.get(dl.copies[0]))!.deadLetterOf!;
    expect((await jobs.get(redriven))?.state).to.equal('pending');
    expect((await jobs.get(dl.copies[1]))?.state, 'a copy not selected is left').to.equal('pending');
  });

  it('the JSON API: POST api/jobs/redrive by filter (queue required) or ids, with counts and reasons; 400 for bad input', async () => {
    const { agent, token } = await client(appWith(jobs));
    const post = (body: object) => agent.post(`${BASE}/api/jobs/redrive`).set('x-csrf-token', token).send(body);
    const byFilter = (await post({ queue: 'charge-dlq', state: 'pending' }).expect(200)).body;
    expect(byFilter).to.deep.equal({ ok: true, redriven: 2, skipped: 1, reasons: { notDeadLetter: 1 }, originals: [...dl.originals].reverse(), more: false });
    const byIds = (await post({ ids: dl.copies }).expect(200)).body;
    expect(byIds).to.deep.include({ redriven: 0, skipped: 2, reasons: { originalLive: 2 } });
    expect((await post({ state: 'pending' }).expect(400)).body.error).to.match(/queue filter/);
    expect((await post({ queue: 'bad queue!' }).expect(400)).body.error).to.match(/queue must be/);
    expect((await post({ ids: ['nope'] }).expect(400)).body.error).to.match(/ids\[0\] must be a job id/);
    expect((await post({ ids: Array.from({ length: 11 }, () => dl.copies[0]) }).expect(400)).body.error).to.match(/at most 10 jobs/);
    // Filtered to more than bulkCap jobs: the first bulkCap, newest first, and more: true.
    await jobs.enqueueMany(Array.from({ length: 10 }, () => ({ name: 'charge', payload: {}, queue: 'charge-dlq' })));
    expect((await post({ queue: 'charge-dlq' }).expect(200)).body).to.deep.include({ redriven: 0, skipped: 10, more: true });
  });

  it("needs 'manage' and the CSRF token: a viewer sees no redrive and is refused; a post without the token is refused", async () => {
    const viewer = await client(appWith(jobs, () => 'view'));
    expect((await viewer.agent.get(`${BASE}/jobs?queue=charge-dlq`).expect(200)).text).not.to.include('value="redrive"');
    await viewer.agent.post(`${BASE}/api/jobs/redrive`).set('x-csrf-token', viewer.token).send({ queue: 'charge-dlq' }).expect(403);
    await viewer.agent.post(`${BASE}/jobs/bulk`).type('form').send({ _csrf: viewer.token, action: 'redrive', scope: 'all', queue: 'charge-dlq', confirm: 'yes' }).expect(403);
    const manager = await client(appWith(jobs));
    await manager.agent.post(`${BASE}/api/jobs/redrive`).send({ queue: 'charge-dlq' }).expect(403);
    await manager.agent.post(`${BASE}/jobs/bulk`).type('form').send({ action: 'redrive', scope: 'all', queue: 'charge-dlq', confirm: 'yes' }).expect(403);
    for (const id of dl.originals) expect((await jobs.get(id))?.state).to.equal('failed');
    for (const id of dl.copies) expect((await jobs.get(id))?.state).to.equal('pending');
  });
});
