import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import os from 'node:os';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { jobsAdmin, type AdminAccess, type Jobs } from '../../lib/index.ts';
import { isLoopback } from '../../lib/admin/access.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';
import { XSS, client, seededJobs, type SeededIds } from './helpers.ts';

const BASE = '/admin/jobs';

function appWith(jobs: Jobs, authorize?: (req: express.Request) => AdminAccess) {
  const app = express();
  app.use(BASE, jobsAdmin<express.Request>(jobs, authorize ? { authorize } : {}));
  return app;
}

forEachDialect('admin (Express 5)', ({ fresh }) => {
  let jobs: Jobs;
  let ids: SeededIds;

  beforeEach(async () => {
    ({ jobs, ids } = await seededJobs(fresh, (j) => j.recurring('nightly', '0 2 * * 1', { n: 3 }, { name: 'ok' })));
  });

  it('serves every page and fragment, and every GET of the JSON API', async () => {
    const app = appWith(jobs);
    const pages = ['/', '/fragments/overview', '/jobs', '/jobs?state=failed', `/jobs/${ids.failed}`, `/jobs/${ids.pending}/live`, '/recurring', '/queues', '/fragments/queues', '/workers'];
    for (const p of pages) {
      const res = await request(app).get(BASE + p);
      expect(res.status, p).to.equal(200);
      expect(res.headers['content-type'], p).to.match(/^text\/html/);
    }
    const overview = await request(app).get(`${BASE}/`);
    expect(overview.text).to.include('hx-trigger="every 2s"').and.include('<svg').and.include('Leader');
    expect((await request(app).get(`${BASE}/recurring`)).text).to.include('At 02:00, only on Monday (UTC)');
    const list = await request(app).get(`${BASE}/api/jobs?state=failed`).expect(200);
    expect(list.body.items.map((j: { id: string }) => j.id)).to.deep.equal([ids.failed]);
    const detail = await request(app).get(`${BASE}/api/jobs/${ids.failed}`).expect(200);
    expect(detail.body.attempts, 'the count of runs').to.equal(2);
    expect(detail.body.attemptHistory).to.have.length(2);
    expect(detail.body.attemptHistory[0].error.message).to.equal(`failure ${XSS}`);
    const bin = await request(app).get(`${BASE}/api/jobs/${ids.binary}`).expect(200);
    expect(bin.body.payload).to.deep.equal({ binary: '3q2+7w==', bytes: 4 });
    const stats = await request(app).get(`${BASE}/api/stats`).expect(200);
    expect(stats.body.finished.find((f: { state: string }) => f.state === 'completed').count).to.equal(1);
    expect(stats.body.queues.map((q: { queue: string }) => q.queue)).to.deep.equal(['default', 'mail']);
    expect(stats.body.throughput.buckets.reduce((n: number, b: { failed: number }) => n + b.failed, 0)).to.equal(1);
    const rec = await request(app).get(`${BASE}/api/recurring`).expect(200);
    expect(rec.body.items[0]).to.include({ key: 'nightly', enabled: true });
    expect((await request(app).get(`${BASE}/api/queues`).expect(200)).body.items).to.have.length(2);
  });

  it('keyset pagination: pages follow one another without overlap', async () => {
    await jobs.enqueueMany(Array.from({ length: 7 }, (_, i) => ({ name: 'ok', payload: { n: i }, delay: 3_600_000, tag: 'page' })));
    const app = appWith(jobs);
    const first = await request(app).get(`${BASE}/api/jobs?tag=page&limit=4`).expect(200);
    const second = await request(app).get(`${BASE}/api/jobs?tag=page&limit=4&cursor=${first.body.nextCursor}`).expect(200);
    expect(first.body.items).to.have.length(4);
    expect(second.body.items).to.have.length(3);
    expect(second.body.nextCursor).to.equal(null);
    const html = await request(app).get(`${BASE}/jobs?tag=page&limit=4`).expect(200);
    expect(html.text).to.include(`cursor=${first.body.nextCursor}`);
  });

  it('escapes user data everywhere: payload, result, tag, logs, error messages and stacks', async () => {
    const app = appWith(jobs);
    for (const p of [`/jobs/${ids.completed}`, `/jobs/${ids.failed}`, '/jobs', `/jobs?tag=${encodeURIComponent(XSS)}`, '/', `/jobs/${ids.completed}/live`]) {
      const res = await request(app).get(BASE + p).expect(200);
      expect(res.text, p).not.to.include('<script>window');
      expect(res.text, p).not.to.include('<img src=x');
      expect(res.text, p).to.include('&lt;script&gt;window.pwned=1&lt;/script&gt;');
    }
    // The hostile tag is a filter too, bound as a value: it finds its job.
    const byTag = await request(app).get(`${BASE}/api/jobs?tag=${encodeURIComponent(XSS)}`).expect(200);
    expect(byTag.body.items.map((j: { id: string }) => j.id)).to.deep.equal([ids.completed]);
  });

  it('shows userId, replyTo and args escaped on the job page, and filters the list by userId', async () => {
    const app = appWith(jobs);
    const mine = (await jobs.enqueue('ok', { n: 9 }, { delay: 3_600_000, userId: XSS, replyTo: `reply ${XSS}`, args: { [XSS]: `value ${XSS}`, plain: 'v-1' } })).id;
    const other = (await jobs.enqueue('ok', { n: 10 }, { delay: 3_600_000, userId: 'user-2' })).id;
    const page = await request(app).get(`${BASE}/jobs/${mine}`).expect(200);
    expect(page.text).not.to.include('<script>window');
    expect(page.text).not.to.include('<img src=x');
    const escaped = '&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;';
    expect(page.text).to.include(`>${escaped}</a>`).and.include(`href="${BASE}/jobs?userId=${encodeURIComponent(XSS)}"`);
    // The reply-to and each arg link to the list filtered by them (the query built by URLSearchParams, then HTML-escaped).
    const href = (fields: string[][]) => `${BASE}/jobs?${new URLSearchParams(fields).toString().replaceAll('&', '&amp;')}`;
    expect(page.text).to.include(`<dd id="reply-to"><a href="${href([['replyTo', `reply ${XSS}`]])}">reply ${escaped}</a></dd>`);
    expect(page.text).to.include(`<dt>${escaped}</dt><dd><a href="${href([['argKey', XSS], ['argValue', `value ${XSS}`]])}" title="jobs with this arg">value ${escaped}</a></dd>`);
    expect(page.text).to.include(`<dt>plain</dt><dd><a href="${BASE}/jobs?argKey=plain&amp;argValue=v-1" title="jobs with this arg">v-1</a></dd>`);
    const unset = await request(app).get(`${BASE}/jobs/${ids.pending}`).expect(200);
    expect(unset.text).to.include('<dd id="user-id">—</dd>').and.include('<dd id="reply-to">—</dd>');
    expect(unset.text).not.to.include('id="args"');
    // The list filter, in the JSON API and the page (its form keeps the value, escaped).
    const api = await request(app).get(`${BASE}/api/jobs?userId=${encodeURIComponent(XSS)}`).expect(200);
    expect(api.body.items.map((j: { id: string }) => j.id)).to.deep.equal([mine]);
    expect(api.body.items[0]).to.deep.include({ userId: XSS, replyTo: `reply ${XSS}`, args: { [XSS]: `value ${XSS}`, plain: 'v-1' } });
    expect((await request(app).get(`${BASE}/api/jobs?userId=user-2`).expect(200)).body.items.map((j: { id: string }) => j.id)).to.deep.equal([other]);
    const html = await request(app).get(`${BASE}/jobs?userId=user-2`).expect(200);
    expect(html.text).to.include(`/jobs/${other}"`).and.include('name="userId" value="user-2"');
    expect(html.text).not.to.include(`/jobs/${mine}"`);
    // The list shows each job's user, linked to the list filtered by it.
    expect(html.text).to.include(`<td class="user"><a href="${BASE}/jobs?userId=user-2">user-2</a></td>`);
    const hostile = await request(app).get(`${BASE}/jobs?userId=${encodeURIComponent(XSS)}`).expect(200);
    expect(hostile.text).to.include(`/jobs/${mine}"`);
    expect(hostile.text).not.to.include('<script>window');
    expect(hostile.text).to.include(`<td class="user"><a href="${BASE}/jobs?userId=${encodeURIComponent(XSS)}">${escaped}</a></td>`);
  });

  it('filters the list by replyTo and args (argKey/argValue pairs), in the JSON API, the page and the links of the job page', async () => {
    const app = appWith(jobs);
    const a = (await jobs.enqueue('ok', { n: 1 }, { delay: 3_600_000, userId: 'u-1', replyTo: `reply ${XSS}`, args: { [XSS]: `v ${XSS}`, 'a.b': 'x', empty: '' } })).id;
    const b = (await jobs.enqueue('ok', { n: 2 }, { delay: 3_600_000, userId: 'u-2', replyTo: `reply ${XSS}`, args: { 'a.b': 'x', region: 'eu' } })).id;
    await jobs.cancel(b);
    const c = (await jobs.enqueue('ok', { n: 3 }, { delay: 3_600_000, replyTo: 'reply', args: { 'a.b': 'y', a: 'x' } })).id;
    const api = async (query: string) => (await request(app).get(`${BASE}/api/jobs?${query}`).expect(200)).body.items.map((j: { id: string }) => j.id).sort();
    const q = (fields: string[][]) => new URLSearchParams(fields).toString();
    expect(await api(q([['replyTo', `reply ${XSS}`]])), 'live and finished').to.deep.equal([a, b].sort());
    expect(await api(q([['replyTo', `reply ${XSS}`], ['userId', 'u-2']]))).to.deep.equal([b]);
    expect(await api(q([['argKey', 'a.b'], ['argValue', 'x']]))).to.deep.equal([a, b].sort());
    expect(await api(q([['argKey', 'a.b'], ['argValue', 'x'], ['argKey', 'region'], ['argValue', 'eu']])), 'every pair').to.deep.equal([b]);
    expect(await api(q([['argKey', XSS], ['argValue', `v ${XSS}`]]))).to.deep.equal([a]);
    expect(await api(q([['argKey', 'empty'], ['argValue', '']])), 'an empty value').to.deep.equal([a]);
    expect(await api(q([['argKey', ''], ['argValue', ''], ['argKey', 'a.b'], ['argValue', 'y']])), 'a blank pair is left out').to.deep.equal([c]);
    expect(await api(q([['argKey', 'a.b'], ['argValue', 'x'], ['state', 'cancelled']]))).to.deep.equal([b]);
    // The page: the form keeps the values (escaped) with a blank row more, the table lists the matches, the bulk form repeats the filter.
    const html = await request(app).get(`${BASE}/jobs?${q([['replyTo', `reply ${XSS}`], ['argKey', XSS], ['argValue', `v ${XSS}`]])}`).expect(200);
    const escaped = '&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;';
    expect(html.text).not.to.include('<script>window').and.not.include('<img src=x');
    expect(html.text).to.include(`/jobs/${a}"`).and.not.include(`/jobs/${b}"`);
    expect(html.text).to.include(`name="replyTo" value="reply ${escaped}"`);
    expect(html.text).to.include(`name="argKey" value="${escaped}"`).and.include(`name="argValue" value="v ${escaped}"`);
    expect(html.text.match(/name="argKey"/g), 'the pair given and a blank one').to.have.length(2 + 1);
    expect(html.text).to.include(`<input type="hidden" name="argKey" value="${escaped}"><input type="hidden" name="argValue" value="v ${escaped}">`);
    // The job page's links open these lists.
    const page = await request(app).get(`${BASE}/jobs/${b}`).expect(200);
    const regionLink = /href="([^"]*argKey=region[^"]*)"/.exec(page.text)![1].replaceAll('&amp;', '&');
    const linked = await request(app).get(regionLink.replace(`${BASE}/jobs`, `${BASE}/api/jobs`)).expect(200);
    expect(linked.body.items.map((j: { id: string }) => j.id)).to.deep.equal([b]);
    // Refused: unpaired fields, a value without a key, a key twice, and what list() refuses.
    const refused = async (query: string, message: RegExp) => expect((await request(app).get(`${BASE}/api/jobs?${query}`).expect(400)).body.error).to.match(message);
    await refused('argKey=a', /argKey and argValue must come in pairs \(argValue may be empty\); got 1 argKey and 0 argValue/);
    await refused('argKey=&argValue=x', /argKey must not be empty where an argValue is given/);
    await refused('argKey=a&argValue=1&argKey=a&argValue=2', /argKey "a" is given twice/);
    await refused(`argKey=${'k'.repeat(101)}&argValue=1`, /args keys must be 1-100 characters/);
    await refused('argKey=a&argValue=%00', /args\.a contains a NUL/);
    await refused(`replyTo=${'r'.repeat(2001)}`, /replyTo must be a string of at most 2000 characters/);
    expect((await request(app).get(`${BASE}/jobs?argKey=a`)).status).to.equal(400);
  });

  it('bulk "all matching" keeps the replyTo and args filter through the confirm page', async () => {
    await jobs.enqueueMany(Array.from({ length: 3 }, (_, i) => ({ name: 'ok', payload: { n: i }, delay: 3_600_000, replyTo: 'r', args: { k: i === 0 ? 'other' : 'v', 'a=b': '&' } })));
    const { agent, token } = await client(appWith(jobs));
    const filter = 'replyTo=r&argKey=k&argValue=v&argKey=a%3Db&argValue=%26';
    const ask = await agent.post(`${BASE}/jobs/bulk`).type('form').send(`_csrf=${token}&action=cancel&scope=all&${filter}`).expect(200);
    expect(ask.text).to.include('<strong>2</strong> jobs').and.include('<dt>args.a=b</dt><dd>&amp;</dd>').and.include('<dt>replyTo</dt><dd>r</dd>');
    expect(ask.text).to.include('<input type="hidden" name="argKey" value="a=b"><input type="hidden" name="argValue" value="&amp;">');
    expect(ask.text).to.include(`href="${BASE}/jobs?${filter.replaceAll('&', '&amp;')}">Cancel</a>`);
    expect(ask.text).to.include('>Yes, cancel 2 jobs</button>');
    const one = await agent.post(`${BASE}/jobs/bulk`).type('form').send(`_csrf=${token}&action=cancel&scope=all&replyTo=r&argKey=k&argValue=other`).expect(200);
    expect(one.text).to.include('>Yes, cancel 1 job</button>');
    await agent.post(`${BASE}/jobs/bulk`).type('form').send(`_csrf=${token}&action=cancel&scope=all&${filter}&confirm=yes`).expect(303);
    expect((await jobs.list({ args: { k: 'v' }, state: 'cancelled' })).items).to.have.length(2);
    expect((await jobs.list({ args: { k: 'other' }, state: 'pending' })).items).to.have.length(1);
  });

  it('hostile filter strings are values, never SQL; bad filters are 400 with a message', async () => {
    const app = appWith(jobs);
    for (const v of ["' OR 1=1 --", '"; DROP TABLE x; --', '%', '_', '\\', '🦄'.repeat(10), 'a/b:c.d-e']) {
      for (const field of ['queue', 'name', 'tag', 'batch', 'refId', 'userId']) {
        const res = await request(app).get(`${BASE}/api/jobs?${field}=${encodeURIComponent(v)}`);
        expect(res.status, `${field}=${v}`).to.equal(200);
        expect(res.body.items, `${field}=${v}`).to.deep.equal([]);
        expect((await request(app).get(`${BASE}/jobs?${field}=${encodeURIComponent(v)}`)).status).to.equal(200);
      }
    }
    expect((await request(app).get(`${BASE}/api/jobs`).expect(200)).body.items.length).to.equal(5);
    const bad = await request(app).get(`${BASE}/api/jobs?state=${encodeURIComponent("failed' --")}`).expect(400);
    expect(bad.body.error).to.match(/state must be one of/);
    expect((await request(app).get(`${BASE}/api/jobs?name=${'x'.repeat(300)}`).expect(400)).body.error).to.match(/at most 255/);
    expect((await request(app).get(`${BASE}/api/jobs?cursor=nope`).expect(400)).body.error).to.match(/cursor/);
    expect((await request(app).get(`${BASE}/api/jobs?limit=100000`).expect(400)).body.error).to.match(/limit/);
    expect((await request(app).get(`${BASE}/jobs?state=nope`)).status).to.equal(400);
    expect((await request(app).get(`${BASE}/api/jobs?tag=a%00b`).expect(400)).body.error).to.match(/control characters/);
    // A field that takes one value, given twice, is refused naming it (the first was taken silently).
    for (const q of ['state=pending&state=failed', 'queue=a&queue=b', 'name=a&name=b', 'limit=2&limit=9999', 'cursor=a&cursor=b']) {
      const field = q.split('=')[0];
      const res = await request(app).get(`${BASE}/api/jobs?${q}`).expect(400);
      expect(res.body.error, q).to.equal(`${field} must be given once; got 2 values`);
    }
    for (const limit of ['0x2', '0b10', '1e0', '2.0']) expect((await request(app).get(`${BASE}/api/jobs?limit=${limit}`)).status, limit).to.equal(400);
    const { agent, token } = await client(app);
    const settings = await agent.put(`${BASE}/api/queues/q/settings`).set('x-csrf-token', token).send({ concurrency: ['1', '2'] });
    expect([settings.status, settings.body.field]).to.deep.equal([400, 'concurrency']);
    const redrive = await agent.post(`${BASE}/api/jobs/redrive`).set('x-csrf-token', token).send({ queue: ['a', 'b'] });
    expect([redrive.status, redrive.body.error]).to.deep.equal([400, 'queue must be given once; got 2 values']);
    const ids = await agent.post(`${BASE}/api/jobs/redrive`).set('x-csrf-token', token).send({ ids: ['01890000-0000-7000-8000-000000000000', 123] });
    expect(ids.status, 'a number among ids is refused, not dropped').to.equal(400);
  });

  it('a body over the limit is 413 on a kept-alive connection too, request after request (the connection was reset mid-body: ECONNRESET)', async () => {
    const server = appWith(jobs).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const body = JSON.stringify({ ids: ['x'.repeat(780_000)] });
    try {
      const answers: (number | string)[] = [];
      for (let i = 0; i < 4; i++) {
        answers.push(await new Promise<number | string>((resolve) => {
          const req = http.request({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', method: 'POST', path: `${BASE}/api/jobs/redrive`, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
          req.end(body);
        }));
      }
      expect(answers).to.deep.equal([413, 413, 413, 413]);
    } finally {
      agent.destroy();
      server.close();
    }
  });

  it('malformed ids are 400 and unknown ids 404, as JSON errors on the API', async () => {
    const { agent, token } = await client(appWith(jobs));
    const unknown = '01890000-0000-7000-8000-000000000000';
    for (const id of ['nope', '1', "x' OR '1'='1", 'ABCDEF00-0000-7000-8000-000000000000', '%E0%A4%A']) {
      const res = await agent.get(`${BASE}/api/jobs/${id}`);
      expect(res.status, id).to.equal(400);
      expect(res.body.error, id).to.be.a('string');
      expect((await agent.get(`${BASE}/jobs/${id}`)).status, id).to.equal(400);
      expect((await agent.post(`${BASE}/api/jobs/${id}/retry`).set('x-csrf-token', token)).status, id).to.equal(400);
    }
    expect((await agent.get(`${BASE}/api/jobs/${unknown}`).expect(404)).body.error).to.include('not found');
    expect((await agent.get(`${BASE}/jobs/${unknown}`)).status).to.equal(404);
    // The live fragment of an unknown (deleted) job is a 200 that ends the polling (security.test.ts).
    expect((await agent.get(`${BASE}/jobs/${unknown}/live`)).text).to.include('data-state="deleted"');
    for (const a of ['cancel', 'retry', 'run']) expect((await agent.post(`${BASE}/api/jobs/${unknown}/${a}`).set('x-csrf-token', token)).status, a).to.equal(404);
    expect((await agent.delete(`${BASE}/api/jobs/${unknown}`).set('x-csrf-token', token)).status).to.equal(404);
    expect((await agent.post(`${BASE}/api/recurring/nope/trigger`).set('x-csrf-token', token)).status).to.equal(404);
    expect((await agent.post(`${BASE}/api/recurring/${encodeURIComponent('bad key!')}/trigger`).set('x-csrf-token', token)).status).to.equal(400);
    expect((await agent.post(`${BASE}/api/queues/${encodeURIComponent('bad queue!')}/pause`).set('x-csrf-token', token)).status).to.equal(400);
    expect((await agent.get(`${BASE}/api/nothing`)).status).to.equal(404);
    expect((await agent.put(`${BASE}/api/jobs`)).status).to.equal(405);
  });

  it('job actions through the API: retry a failed job (it runs again), cancel, run now, delete; 409 when the state does not allow it', async () => {
    const { agent, token } = await client(appWith(jobs));
    const post = (p: string) => agent.post(`${BASE}${p}`).set('x-csrf-token', token);
    expect((await post(`/api/jobs/${ids.failed}/retry`)).body).to.include({ ok: true, action: 'retry' });
    await until(async () => (await jobs.get(ids.failed))?.state === 'failed' && (await jobs.get(ids.failed))!.attempts === 3, 'the retried job to run and fail again');
    expect((await post(`/api/jobs/${ids.pending}/run`)).status).to.equal(200);
    await until(async () => (await jobs.get(ids.pending))?.state === 'completed', 'the job made due to run');
    expect((await post(`/api/jobs/${ids.pending}/run`)).status).to.equal(409);
    expect((await post(`/api/jobs/${ids.delayed}/cancel`)).status).to.equal(200);
    expect((await jobs.get(ids.delayed))?.state).to.equal('cancelled');
    const again = await post(`/api/jobs/${ids.delayed}/cancel`);
    expect(again.status).to.equal(409);
    expect(again.body.error).to.match(/cannot cancel job .*: it is cancelled/);
    expect((await agent.delete(`${BASE}/api/jobs/${ids.completed}`).set('x-csrf-token', token)).status).to.equal(200);
    expect(await jobs.get(ids.completed)).to.equal(null);
  });

  it('page actions post forms with the _csrf field and redirect (303) back', async () => {
    const { agent, token } = await client(appWith(jobs));
    const res = await agent.post(`${BASE}/jobs/${ids.delayed}/cancel`).type('form').send({ _csrf: token });
    expect(res.status).to.equal(303);
    expect(res.headers.location).to.equal(`${BASE}/jobs/${ids.delayed}?done=cancel`);
    expect((await agent.get(res.headers.location)).text).to.include('Job cancelled.');
    expect((await agent.post(`${BASE}/jobs/${ids.delayed}/cancel`).type('form').send({ _csrf: token })).status).to.equal(409);
    const del = await agent.post(`${BASE}/jobs/${ids.delayed}/delete`).type('form').send({ _csrf: token }).expect(303);
    expect(del.headers.location).to.equal(`${BASE}/jobs?done=delete`);
    expect(await jobs.get(ids.delayed)).to.equal(null);
  });

  it('CSRF: every state change without the token, with a wrong one or without the cookie is refused (403) and changes nothing', async () => {
    const app = appWith(jobs);
    const { agent, token } = await client(app);
    const attempts = [
      () => agent.post(`${BASE}/api/jobs/${ids.delayed}/cancel`),
      () => agent.post(`${BASE}/api/jobs/${ids.delayed}/cancel`).set('x-csrf-token', 'A'.repeat(43)),
      () => agent.post(`${BASE}/jobs/${ids.delayed}/cancel`).type('form').send({ _csrf: token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A') }),
      () => request(app).post(`${BASE}/api/jobs/${ids.delayed}/cancel`).set('x-csrf-token', token), // no cookie
      () => agent.delete(`${BASE}/api/jobs/${ids.delayed}`),
      () => agent.post(`${BASE}/api/queues/mail/pause`),
      () => agent.post(`${BASE}/api/recurring/nightly/toggle`),
      () => agent.post(`${BASE}/jobs/bulk`).type('form').send({ action: 'cancel', ids: ids.delayed }),
    ];
    for (const [i, send] of attempts.entries()) {
      const res = await send();
      expect(res.status, `attempt ${i}`).to.equal(403);
    }
    expect((await agent.post(`${BASE}/api/jobs/${ids.delayed}/cancel`).set('x-csrf-token', 'x')).body.error).to.match(/CSRF/);
    expect((await jobs.get(ids.delayed))?.state).to.equal('pending');
    expect(await jobs.queues.list().then((q) => q.every((x) => !x.pausedAt))).to.equal(true);
    expect((await jobs.schedules.list())[0].enabled).to.equal(true);
  });

  it('queues: pause and resume through a plain form, HTMX (header token, fragment back) and the API', async () => {
    const { agent, token } = await client(appWith(jobs));
    const form = await agent.post(`${BASE}/queues/mail/pause`).type('form').send({ _csrf: token }).expect(303);
    expect(form.headers.location).to.equal(`${BASE}/queues?done=paused`);
    expect((await jobs.queues.list()).find((q) => q.queue === 'mail')?.pausedAt).to.be.instanceOf(Date);
    const hx = await agent.post(`${BASE}/queues/mail/resume`).set('hx-request', 'true').set('x-csrf-token', token).expect(200);
    expect(hx.text).to.match(/^<table id="queues">/);
    expect(hx.text).to.include('/queues/mail/pause');
    expect((await agent.post(`${BASE}/api/queues/mail/pause`).set('x-csrf-token', token).expect(200)).body).to.deep.equal({ ok: true, queue: 'mail', paused: true });
    expect((await agent.post(`${BASE}/api/queues/mail/resume`).set('x-csrf-token', token).expect(200)).body.paused).to.equal(false);
    expect((await agent.post(`${BASE}/api/queues/mail/resume`).set('x-csrf-token', token)).status).to.equal(409);
  });

  it('recurring: toggle, trigger and delete (page and API)', async () => {
    const { agent, token } = await client(appWith(jobs));
    await agent.post(`${BASE}/recurring/nightly/toggle`).type('form').send({ _csrf: token }).expect(303);
    expect((await jobs.schedules.list())[0].enabled).to.equal(false);
    expect((await agent.post(`${BASE}/api/recurring/nightly/toggle`).set('x-csrf-token', token).send({ enabled: true }).expect(200)).body.enabled).to.equal(true);
    const trig = await agent.post(`${BASE}/api/recurring/nightly/trigger`).set('x-csrf-token', token).expect(200);
    await until(async () => (await jobs.get(trig.body.jobId))?.state === 'completed', 'the triggered job to run');
    expect((await jobs.get(trig.body.jobId))?.createdBy).to.equal('schedule:nightly');
    await agent.delete(`${BASE}/api/recurring/nightly`).set('x-csrf-token', token).expect(200);
    expect(await jobs.schedules.list()).to.deep.equal([]);
  });

  it('bulk: selected ids at once; "all matching" asks to confirm, then applies up to the cap', async () => {
    await jobs.enqueueMany(Array.from({ length: 5 }, (_, i) => ({ name: 'ok', payload: { n: i }, delay: 3_600_000, tag: 'many' })));
    const app = express();
    app.use(BASE, jobsAdmin(jobs, { bulkCap: 3 }));
    const { agent, token } = await client(app);
    const sel = await agent.post(`${BASE}/jobs/bulk`).type('form').send(`_csrf=${token}&action=cancel&scope=selected&ids=${ids.pending}&ids=${ids.delayed}&ids=${ids.failed}`).expect(303);
    expect(sel.headers.location).to.equal(`${BASE}/jobs?done=bulk&n=2%2C1`);
    // Back to the list as it was filtered: the list's form repeats its filter.
    const filtered = await agent.post(`${BASE}/jobs/bulk`).type('form').send(`_csrf=${token}&action=retry&scope=selected&state=failed&ids=${ids.failed}`).expect(303);
    expect(filtered.headers.location).to.match(new RegExp(`^${BASE}/jobs\\?state=failed&done=bulk&n=\\d%2C\\d$`));
    expect((await agent.get(filtered.headers.location).expect(200)).text).to.include('Bulk action applied.');
    expect((await jobs.get(ids.pending))?.state).to.equal('cancelled');
    const ask = await agent.post(`${BASE}/jobs/bulk`).type('form').send({ _csrf: token, action: 'delete', scope: 'all', tag: 'many' }).expect(200);
    expect(ask.text).to.include('Confirm').and.include('more match');
    expect((await jobs.list({ tag: 'many' })).items).to.have.length(5);
    const all = await agent.post(`${BASE}/jobs/bulk`).type('form').send({ _csrf: token, action: 'delete', scope: 'all', tag: 'many', confirm: 'yes' }).expect(303);
    expect(all.headers.location).to.equal(`${BASE}/jobs?tag=many&done=bulk&n=3%2C0`);
    expect((await jobs.list({ tag: 'many' })).items).to.have.length(2);
    expect((await agent.post(`${BASE}/jobs/bulk`).type('form').send({ _csrf: token, action: 'explode', scope: 'all' })).status).to.equal(400);
  });

  it("authorize: 'view' sees pages without action buttons and every action is refused; false is 403", async () => {
    const viewer = appWith(jobs, () => 'view');
    const { agent, token } = await client(viewer);
    const page = await agent.get(`${BASE}/jobs/${ids.failed}`).expect(200);
    expect(page.text).to.include('read-only');
    expect(page.text).not.to.match(/\/(retry|cancel|delete|run)"/);
    expect((await agent.get(`${BASE}/queues`)).text).not.to.include('/pause');
    expect((await agent.get(`${BASE}/recurring`)).text).not.to.include('/trigger');
    expect((await agent.get(`${BASE}/jobs`)).text).not.to.include('Apply to');
    for (const send of [
      () => agent.post(`${BASE}/api/jobs/${ids.failed}/retry`).set('x-csrf-token', token),
      () => agent.post(`${BASE}/jobs/${ids.failed}/retry`).type('form').send({ _csrf: token }),
      () => agent.delete(`${BASE}/api/jobs/${ids.failed}`).set('x-csrf-token', token),
      () => agent.post(`${BASE}/api/queues/mail/pause`).set('x-csrf-token', token),
      () => agent.post(`${BASE}/api/recurring/nightly/trigger`).set('x-csrf-token', token),
    ]) {
      const res = await send();
      expect(res.status).to.equal(403);
    }
    expect((await jobs.get(ids.failed))?.attempts).to.equal(2);
    const denied = appWith(jobs, () => false);
    expect((await request(denied).get(`${BASE}/`)).status).to.equal(403);
    expect((await request(denied).get(`${BASE}/api/jobs`).expect(403)).body.error).to.match(/forbidden/);
    const seen: string[] = [];
    const byHeader = appWith(jobs, (req) => (seen.push(req.get('x-user') ?? ''), req.get('x-user') === 'ops' ? 'manage' : false));
    expect((await request(byHeader).get(`${BASE}/jobs`).set('x-user', 'ops')).status).to.equal(200);
    expect((await request(byHeader).get(`${BASE}/jobs`).set('x-user', 'eve')).status).to.equal(403);
    expect(seen).to.deep.equal(['ops', 'eve']);
  });
});

describe('admin access without authorize', () => {
  it('isLoopback: only the loopback addresses', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a), a).to.equal(true);
    for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '192.168.1.1', 'fe80::1', '', undefined, '127.0.0.1.evil', '::ffff:1.2.3.4']) expect(isLoopback(a), String(a)).to.equal(false);
  });

  it('serves loopback clients and refuses others (403), whatever X-Forwarded-For says', async function () {
    const external = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    const jobs = { } as unknown as Jobs; // never reached: access is decided before any job is read
    const app = express();
    app.use(BASE, jobsAdmin(jobs));
    const server = app.listen(0, '0.0.0.0');
    await new Promise((r) => server.once('listening', r));
    try {
      const port = (server.address() as AddressInfo).port;
      if (!external) {
        console.warn('\n  !!! SKIPPING the non-loopback half: this machine has no non-internal IPv4 address\n');
      } else {
        const res = await fetch(`http://${external}:${port}${BASE}/api/jobs`, { headers: { 'x-forwarded-for': '127.0.0.1' } });
        expect(res.status).to.equal(403);
        expect(((await res.json()) as { error: string }).error).to.match(/loopback/);
        expect((await fetch(`http://${external}:${port}${BASE}/static/htmx-000000000000.js`)).status).to.equal(403);
      }
      const local = await fetch(`http://127.0.0.1:${port}${BASE}/nothing-here`);
      expect(local.status).to.equal(404); // past the access check
    } finally {
      server.close();
    }
  });
});
