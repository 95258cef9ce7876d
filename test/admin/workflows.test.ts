/**
 * The admin's view of workflows (issue 13): a job's parents, dependents, callbacks and batch on
 * its page, the batch page with its counts and jobs, and the same in the JSON API. Everything a
 * user named is escaped, and a waiting job says what it waits for instead of "9999".
 */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { createRequire } from 'node:module';
import { jobsAdmin, koaJobsAdmin, type Jobs } from '../../lib/index.ts';
import { forEachDialect, until, type TestDb } from '../helpers/dialects.ts';
import { XSS, client } from './helpers.ts';

const BASE = '/admin/jobs';
const HOUR = 3_600_000;
const ESCAPED = '&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;';

function appWith(jobs: Jobs) {
  const app = express();
  app.use(BASE, jobsAdmin(jobs));
  return app;
}

/** Jobs that complete, on a database of their own; the worker runs only when a test drains. */
function workflowJobs(t: TestDb): Jobs {
  const jobs = t.jobs({ worker: { pollInterval: 50 } });
  // Names as odd as a job name may be (letters, digits and _ . : - /).
  for (const name of ['step', 'notify', 'alarm', 'flow/child:v1.2', 'a/../b']) jobs.define(name, async () => ({ done: name }));
  return jobs;
}

/** Express 4, installed beside 5 as the npm alias express4 (as in mount.test.ts). */
const express4 = createRequire(import.meta.url)('express4') as typeof express;

const idsIn = (links: { id: string }[]) => links.map((l) => l.id);

/** What the batch page says of one callback (`onComplete`, …), whitespace folded. */
function callbackCell(page: string, key: string): string {
  const cell = new RegExp(`<dd id="callback-${key}">([\\s\\S]*?)</dd>`).exec(page);
  expect(cell, `the batch page's ${key} callback`).to.not.equal(null);
  return cell![1].replace(/\s+/g, ' ').trim();
}

/**
 * The waiting job's stored run_at, the end of time, in any form a page could show it: ISO,
 * locale dates, epoch ms. Not a bare "9999", which a random token or an epoch can hold.
 */
const END_OF_TIME = /9999-12-31|31,? 9999|\/9999|9999\/|2534022144\d{5}/;

forEachDialect('admin workflows', ({ fresh }) => {
  let jobs: Jobs;

  beforeEach(async () => {
    jobs = workflowJobs(await fresh());
  });

  it('a dependent says "waiting for N of M parents", links each parent with its state, and runs "after its parents"', async () => {
    const a = await jobs.enqueue('step', {});
    const b = await jobs.enqueue('step', {}, { delay: HOUR });
    const c = await jobs.enqueue('step', {}, { delay: HOUR });
    const child = await jobs.enqueue('flow/child:v1.2', {}, { dependsOn: [a.id, b.id, c.id], onSuccess: 'notify', onFailure: 'alarm' });
    await jobs.drain();
    expect(await jobs.get(child.id)).to.deep.include({ state: 'pending', waitingFor: 2, callbacks: { onSuccess: 'notify', onFailure: 'alarm' } });
    const app = appWith(jobs);

    const page = (await request(app).get(`${BASE}/jobs/${child.id}`).expect(200)).text;
    expect(page).to.include('<li data-hold="parents">waiting for 2 of 3 parents: it runs once they have completed');
    expect(page).to.include('<dd id="run-at">after its parents</dd>').and.not.match(END_OF_TIME);
    for (const p of [a, b, c]) expect(page).to.include(`<a href="${BASE}/jobs/${p.id}">step</a>`);
    const parents = page.slice(page.indexOf('<div id="parents">'), page.indexOf('<div id="dependents">'));
    expect(parents).to.include('Parents (3)');
    expect(parents.match(/state-completed/g)).to.have.length(1);
    expect(parents.match(/state-pending/g)).to.have.length(2);
    // Its callbacks by name (each a link to the jobs of that name); none enqueued while it waits.
    expect(page).to.include(`<dt>on success</dt><dd><a href="${BASE}/jobs?name=notify">notify</a></dd>`);
    expect(page).to.include(`<dt>on failure</dt><dd><a href="${BASE}/jobs?name=alarm">alarm</a></dd>`);
    expect(page).to.include('Enqueued when this job finishes.');
    // Run now would be refused: the button is not offered, and the refusal says why.
    expect(page).to.include(`/jobs/${child.id}/cancel"`).and.not.include(`/jobs/${child.id}/run"`);
    const { agent, token } = await client(app);
    const refused = await agent.post(`${BASE}/api/jobs/${child.id}/run`).set('x-csrf-token', token).expect(409);
    expect(refused.body.error).to.match(/waiting for 2 parents to complete/);

    // The list: a state hint and no year 9999 for the waiting job.
    const list = (await request(app).get(`${BASE}/jobs?name=${encodeURIComponent('flow/child:v1.2')}`).expect(200)).text;
    expect(list).to.include('<span class="hint waiting-hint">waiting for 2 parents</span>').and.include('after its parents');
    expect(list).not.to.match(/in \d{5,}/);

    // The JSON API has the same: the record's waitingFor and callbacks, and the links.
    const api = (await request(app).get(`${BASE}/api/jobs/${child.id}`).expect(200)).body;
    expect(api).to.deep.include({ waitingFor: 2, callbacks: { onSuccess: 'notify', onFailure: 'alarm' } });
    expect(idsIn(api.parents)).to.deep.equal([a.id, b.id, c.id]);
    expect(api.parents.map((l: { state: string }) => l.state)).to.deep.equal(['completed', 'pending', 'pending']);
  });

  it("a parent's page lists its dependents with how long they still wait", async () => {
    const a = await jobs.enqueue('step', {}, { delay: HOUR });
    const b = await jobs.enqueue('step', {}, { delay: HOUR });
    const child = await jobs.enqueue('a/../b', {}, { dependsOn: [a.id, b.id] });
    const app = appWith(jobs);
    const page = (await request(app).get(`${BASE}/jobs/${a.id}`).expect(200)).text;
    const dependents = page.slice(page.indexOf('<div id="dependents">'), page.indexOf('</section>', page.indexOf('<div id="dependents">')));
    expect(dependents).to.include('Dependents (1)').and.include(`<a href="${BASE}/jobs/${child.id}">a/../b</a>`);
    expect(dependents).to.include('waiting for 2 parents');
    expect(page).to.include('None: it depends on no job.');
    expect(idsIn((await request(app).get(`${BASE}/api/jobs/${a.id}`).expect(200)).body.dependents)).to.deep.equal([child.id]);
    // A job outside any workflow shows no workflow section at all.
    const plain = await jobs.enqueue('step', {}, { delay: HOUR });
    expect((await request(app).get(`${BASE}/jobs/${plain.id}`).expect(200)).text).not.to.include('id="workflow"');
  });

  it("a callback's page links the job it reports on, and that job's page links the callback it enqueued", async () => {
    const parent = await jobs.enqueue('step', {}, { onSuccess: 'notify', onFailure: 'alarm' });
    await jobs.drain();
    await until(async () => (await jobs.list({ name: 'notify' })).items.length === 1, 'the onSuccess callback to be enqueued');
    const notify = (await jobs.list({ name: 'notify' })).items[0];
    const app = appWith(jobs);
    const page = (await request(app).get(`${BASE}/jobs/${notify.id}`).expect(200)).text;
    const callbackOf = page.slice(page.indexOf('<p id="callback-of">'), page.indexOf('</p>', page.indexOf('<p id="callback-of">')));
    expect(callbackOf).to.include('Callback of').and.include(`<a href="${BASE}/jobs/${parent.id}">step</a>`).and.include('state-completed');
    // The edge a callback hangs on is not a dependsOn: no "parents" for it, nothing to wait for.
    expect(page).to.include('None: it depends on no job.').and.not.include('waiting for');
    const parentPage = (await request(app).get(`${BASE}/jobs/${parent.id}`).expect(200)).text;
    const callbacks = parentPage.slice(parentPage.indexOf('<div id="callbacks">'));
    expect(callbacks).to.include('Enqueued when it finished:').and.include(`<a href="${BASE}/jobs/${notify.id}">notify</a>`);
    expect(parentPage).to.include('None: no job depends on it.');
    const api = (await request(app).get(`${BASE}/api/jobs/${notify.id}`).expect(200)).body;
    expect(api.parents).to.deep.equal([{ id: parent.id, name: 'step', state: 'completed', result: { done: 'step' }, error: null, waitingFor: 0, callback: true }]);
  });

  it('the batch page: counts, callbacks, the batch\'s jobs (keyset pages); its jobs and its callback link to it; 404 for an unknown batch', async () => {
    const { batchId, ids } = await jobs.batch(
      [{ name: 'step', payload: {} }, { name: 'step', payload: {}, delay: HOUR }, { name: 'flow/child:v1.2', payload: {}, delay: HOUR }],
      { onComplete: 'notify', onFailure: 'alarm' },
    );
    const outside = await jobs.enqueue('step', {}, { delay: HOUR });
    await jobs.drain();
    const app = appWith(jobs);
    const href = `${BASE}/batches/${batchId}`;

    const page = (await request(app).get(href).expect(200)).text;
    for (const [k, n] of Object.entries({ total: 3, pending: 2, running: 0, completed: 1, failed: 0, cancelled: 0 })) {
      expect(page, k).to.include(`<span class="value" id="batch-${k}">${n}</span>`);
    }
    expect(page).to.include('in progress').and.include('<dt>finished</dt><dd>not yet</dd>');
    // Its callbacks, while it runs: by name, not yet a job (no link to every job of that name).
    expect(callbackCell(page, 'onComplete')).to.equal('notify <span class="hint">enqueued once the batch finishes</span>');
    expect(callbackCell(page, 'onFailure')).to.equal('alarm <span class="hint">enqueued once the batch finishes</span>');
    expect(page).not.to.include('<dt>on success</dt>').and.not.include(`${BASE}/jobs?name=notify`);
    for (const id of ids) expect(page).to.include(`<a href="${BASE}/jobs/${id}">`);
    expect(page).not.to.include(`/jobs/${outside.id}"`);
    // The bulk form acts on the batch's jobs (its filter is the batch).
    expect(page).to.include(`<input type="hidden" name="batch" value="${batchId}">`);
    // Keyset pages stay on the batch page, at the size asked for.
    const first = (await request(app).get(`${href}?limit=2`).expect(200)).text;
    const next = /href="([^"]+)" rel="next"/.exec(first)?.[1].replace(/&amp;/g, '&');
    expect(next).to.match(new RegExp(`^${href}\\?limit=2&cursor=`));
    const second = (await request(app).get(next!).expect(200)).text;
    expect(ids.filter((id) => second.includes(`/jobs/${id}"`))).to.have.length(1);
    expect(second).to.include(`href="${href}?limit=2">« first page</a>`);

    // A job of the batch links to its page (the page and the list).
    expect((await request(app).get(`${BASE}/jobs/${ids[0]}`).expect(200)).text).to.include(`<dd id="batch"><a href="${href}">${batchId}</a></dd>`);
    expect((await request(app).get(`${BASE}/jobs?batch=${batchId}`).expect(200)).text).to.include(`<a href="${href}">${batchId}</a>`);
    // The jobs list's batch filter still finds exactly its jobs.
    const filtered = (await request(app).get(`${BASE}/api/jobs?batch=${batchId}`).expect(200)).body.items;
    expect(idsIn(filtered).sort()).to.deep.equal([...ids].sort());

    // The JSON API.
    const status = (await request(app).get(`${BASE}/api/batches/${batchId}`).expect(200)).body;
    expect(status).to.deep.include({ batchId, total: 3, pending: 2, completed: 1, finished: false, finishedAt: null, callbacks: { onComplete: 'notify', onFailure: 'alarm' }, callbackJobs: {} });
    expect(Date.parse(status.createdAt)).to.be.a('number').and.not.NaN;

    // The batch finishes: its onComplete callback links back to the batch.
    for (const id of ids.slice(1)) await jobs.runNow(id);
    await jobs.drain();
    await until(async () => (await jobs.list({ name: 'notify' })).items.length === 1, 'the batch callback');
    const callback = (await jobs.list({ name: 'notify' })).items[0];
    expect(callback.callbackOf).to.equal(batchId);
    const cbPage = (await request(app).get(`${BASE}/jobs/${callback.id}`).expect(200)).text;
    expect(cbPage).to.match(new RegExp(`<p id="callback-of">Callback of\\s+batch <a href="${href}">${batchId}</a>`));
    const done = (await request(app).get(href).expect(200)).text;
    expect(done).to.include(`<span class="value" id="batch-completed">3</span>`).and.include('>finished</span>');
    expect(done).not.to.include('not yet');
    // Each callback links the job it enqueued, or says why it enqueued none; the API answers the ids.
    expect(callbackCell(done, 'onComplete')).to.equal(`<a href="${BASE}/jobs/${callback.id}">notify</a> <span class="hint">enqueued</span>`);
    expect(callbackCell(done, 'onFailure')).to.equal('alarm <span class="hint">not enqueued: every job completed</span>');
    expect((await jobs.batchStatus(batchId))!.callbackJobs).to.deep.equal({ onComplete: callback.id });
    expect((await request(app).get(`${BASE}/api/batches/${batchId}`).expect(200)).body.callbackJobs).to.deep.equal({ onComplete: callback.id });

    // Unknown and malformed batch ids.
    const unknown = 'no-such-batch';
    expect((await request(app).get(`${BASE}/batches/${unknown}`).expect(404)).text).to.include(`batch ${unknown} not found`);
    expect((await request(app).get(`${BASE}/api/batches/${unknown}`).expect(404)).body.error).to.equal(`batch ${unknown} not found`);
    expect((await request(app).get(`${BASE}/api/batches/${'x'.repeat(300)}`).expect(400)).body.error).to.match(/1-255/);
    expect((await request(app).get(`${BASE}/api/batches/a%01b`).expect(400)).body.error).to.match(/control characters/);
  });

  it('escapes hostile batch ids, tags and names on the job page, the batch page and the list', async () => {
    const dependent = await jobs.enqueue('a/../b', {}, { delay: HOUR });
    const labelled = await jobs.enqueue('step', {}, { batchId: XSS, tag: XSS, delay: HOUR });
    const child = await jobs.enqueue('a/../b', {}, { dependsOn: [labelled.id, dependent.id], batchId: XSS });
    const app = appWith(jobs);
    const href = `${BASE}/batches/${encodeURIComponent(XSS)}`;
    const pages = [`/jobs/${labelled.id}`, `/jobs/${child.id}`, `/jobs/${dependent.id}`, `/batches/${encodeURIComponent(XSS)}`, `/jobs?batch=${encodeURIComponent(XSS)}`, `/jobs?state=pending`];
    for (const p of pages) {
      const text = (await request(app).get(BASE + p).expect(200)).text;
      expect(text, p).not.to.include('<script>window').and.not.include('<img src=x');
    }
    const jobPage = (await request(app).get(`${BASE}/jobs/${child.id}`).expect(200)).text;
    expect(jobPage).to.include(`<dd id="batch"><a href="${href}">${ESCAPED}</a></dd>`);
    expect(jobPage).to.include(`<a href="${BASE}/jobs/${labelled.id}">step</a>`).and.include('waiting for 2 of 2 parents');
    // A batchId label (not made by jobs.batch) has a page too: counts, no callbacks, its jobs.
    const batchPage = (await request(app).get(href).expect(200)).text;
    expect(batchPage).to.include(`<h1>Batch <code>${ESCAPED}</code>`);
    expect(batchPage).to.include('<span class="value" id="batch-total">2</span>').and.include('share the batchId label');
    expect(batchPage).to.include(`/jobs/${labelled.id}"`).and.include(`/jobs/${child.id}"`).and.not.include(`/jobs/${dependent.id}"`);
    expect(batchPage).to.include(`<input type="hidden" name="batch" value="${ESCAPED}">`);
    expect(batchPage).to.include(`href="${BASE}/jobs?batch=${encodeURIComponent(XSS).replace(/%20/g, '+')}&amp;state=failed"`);
    const api = (await request(app).get(`${BASE}/api/batches/${encodeURIComponent(XSS)}`).expect(200)).body;
    expect(api).to.deep.include({ batchId: XSS, total: 2, pending: 2, createdAt: null, callbacks: {}, callbackJobs: {} });
    // "." and ".." cannot be a path segment: such a batch links to the jobs list filtered by it.
    const dot = await jobs.enqueue('step', {}, { batchId: '..', delay: HOUR });
    expect((await request(app).get(`${BASE}/jobs/${dot.id}`).expect(200)).text).to.include(`<dd id="batch"><a href="${BASE}/jobs?batch=..">..</a></dd>`);
  });

  it('the batch page of an id holding "/" is reached under Express 4 and Koa too (the id is one encoded segment)', async () => {
    const id = 'import/2026-12:run.1';
    const job = await jobs.enqueue('step', {}, { batchId: id, delay: HOUR });
    const href = `${BASE}/batches/${encodeURIComponent(id)}`;
    const app4 = express4();
    app4.use(BASE, jobsAdmin(jobs));
    const koa = new Koa();
    koa.use(koaJobsAdmin(jobs, { path: BASE }));
    for (const [label, server] of [['Express 4', app4], ['Koa', koa.callback()]] as const) {
      expect((await request(server).get(`${BASE}/jobs/${job.id}`).expect(200)).text, label).to.include(`<dd id="batch"><a href="${href}">${id}</a></dd>`);
      const page = (await request(server).get(href).expect(200)).text;
      expect(page, label).to.include(`<h1>Batch <code>${id}</code>`).and.include(`/jobs/${job.id}"`);
      expect((await request(server).get(`${BASE}/api/batches/${encodeURIComponent(id)}`).expect(200)).body, label).to.deep.include({ batchId: id, total: 1 });
    }
  });
});

forEachDialect('admin transient runs', ({ fresh }) => {
  it('the overview and the jobs page list this process\'s transient runs while they run, escaped, and drop them when done', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('thumb', async (_p: unknown, ctx) => {
      ctx.progress(55, XSS);
      ctx.log(`resizing ${XSS}`);
      await gate;
      return 1;
    });
    const app = appWith(jobs);
    const running = jobs.runTransient('thumb', {}, { serial: XSS });
    for (const path of ['/', '/jobs', '/fragments/overview']) {
      const page = (await request(app).get(`${BASE}${path}`).expect(200)).text;
      expect(page, path).to.include('Transient runs in this process').and.include('thumb').and.include('55 %');
      expect(page, path).to.include(ESCAPED).and.not.include('<script>window.pwned');
    }
    release();
    await running;
    expect((await request(app).get(`${BASE}/jobs`).expect(200)).text).to.not.include('Transient runs in this process');
  });
});

forEachDialect('admin flow control', ({ fresh }) => {
  it('a job page shows its serial, unique and debounce keys and its reservation, escaped, and says why it waits', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const app = appWith(jobs);
    const first = await jobs.enqueue('step', {}, { serial: XSS, reserve: true });
    const second = await jobs.enqueue('step', {}, { serial: XSS, unique: { key: XSS } });
    const debounced = await jobs.enqueue('step', {}, { debounce: { key: 'd-key', ms: HOUR } });
    const firstPage = (await request(app).get(`${BASE}/jobs/${first.id}`).expect(200)).text;
    expect(firstPage).to.include('id="reserved-until"').and.include('reserved: it runs once committed').and.include('once committed');
    expect(firstPage).to.include(ESCAPED).and.not.include('<script>window.pwned');
    const secondPage = (await request(app).get(`${BASE}/jobs/${second.id}`).expect(200)).text;
    // Its links tell the job before it on its serial key from parents: it has none.
    expect(secondPage).to.include('id="serial-key"').and.include('unique key').and.include(`<li data-hold="serial">waiting for the job before it on serial key ${ESCAPED} to finish</li>`);
    expect(secondPage).to.not.match(END_OF_TIME).and.not.include('<script>window.pwned');
    expect((await request(app).get(`${BASE}/jobs/${debounced.id}`).expect(200)).text).to.include('debounce key').and.include('d-key');
  });
});
