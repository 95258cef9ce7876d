/**
 * Flow control in the admin (issue 14): a queue's limits viewed and edited (manage and CSRF, like
 * pause and resume; a refused value is a 400 naming its field), its live jobs per group with the
 * starts in its rate window, why its pending jobs are held (its limits, their serial key, parents
 * or reservation) on its page, the job page and the JSON API, and its reserved jobs.
 */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { jobsAdmin, type AdminAccess, type Jobs } from '../../lib/index.ts';
import { forEachDialect, until, type TestDb } from '../helpers/dialects.ts';
import { XSS, client } from './helpers.ts';

const BASE = '/admin/jobs';
const HOUR = 3_600_000;
const ESCAPED = '&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;';

function appWith(jobs: Jobs, authorize?: () => AdminAccess) {
  const app = express();
  app.use(BASE, jobsAdmin(jobs, authorize ? { authorize } : {}));
  return app;
}

interface Held {
  job: { id: string };
  holds: { kind: string; text: string }[];
}

/** The holds of each held job the queue's API answers, by job id. */
const holdsById = (body: { held: Held[] }) => new Map(body.held.map((h) => [h.job.id, h.holds.map((x) => x.kind)]));

/** The text of the element holding `marker` up to its end tag `end`. */
function section(page: string, marker: string, end: string): string {
  const at = page.indexOf(marker);
  expect(at, marker).to.be.greaterThan(-1);
  return page.slice(at, page.indexOf(end, at));
}

forEachDialect('admin queues: limits', ({ fresh }) => {
  let jobs: Jobs;

  beforeEach(async () => {
    jobs = (await fresh()).jobs({ worker: false });
    await jobs.queues.configure('tenants', { concurrency: 4 });
  });

  const stored = async () => (await jobs.queues.settings()).find((s) => s.queue === 'tenants');
  const limitsOf = async () => {
    const s = await stored();
    return s && { concurrency: s.concurrency, groupConcurrency: s.groupConcurrency, rateLimit: s.rateLimit };
  };

  it('the queues page shows each queue\'s limits (a managed queue without jobs too); its page shows them in a form', async () => {
    await jobs.enqueue('step', {}, { queue: 'plain', delay: HOUR });
    const app = appWith(jobs);
    const list = (await request(app).get(`${BASE}/queues`).expect(200)).text;
    expect(section(list, '<tr data-queue="tenants">', '</tr>')).to.include('at most 4 running').and.include(`href="${BASE}/queues/tenants#limits">edit</a>`);
    expect(section(list, '<tr data-queue="plain">', '</tr>')).to.include('no limits');
    expect((await request(app).get(`${BASE}/fragments/queues`).expect(200)).text).to.include('at most 4 running');
    const items = (await request(app).get(`${BASE}/api/queues`).expect(200)).body.items;
    // The default queue too: the code names it (idle queues are listed, ./idle-queues.test.ts).
    expect(items.map((q: { queue: string }) => q.queue)).to.deep.equal(['default', 'plain', 'tenants']);
    expect(items[2].settings).to.include({ concurrency: 4, groupConcurrency: null, rateLimit: null });
    const page = (await request(app).get(`${BASE}/queues/tenants`).expect(200)).text;
    expect(page).to.include('<p id="limits-now">at most 4 running').and.include('id="settings-form"');
    expect(page).to.include('name="concurrency" min="1" step="1" value="4"').and.include('name="groupConcurrency" min="1" step="1" value=""');
    expect((await request(app).get(`${BASE}/api/queues/tenants/settings`).expect(200)).body).to.include({ queue: 'tenants', concurrency: 4, groupConcurrency: null });
    // A queue with no jobs and no limits yet can be opened, and configured from there.
    expect((await request(app).get(`${BASE}/queues/new-queue`).expect(200)).text).to.include('<p id="limits-now">no limits');
    expect((await request(app).get(`${BASE}/api/queues/new-queue/settings`).expect(200)).body).to.deep.equal({
      queue: 'new-queue', concurrency: null, groupConcurrency: null, rateLimit: null, updatedAt: null,
    });
  });

  it('manage edits them through the form (303 back, with a notice) and through the API (PUT or POST, JSON with rateLimit nested)', async () => {
    const app = appWith(jobs);
    const { agent, token } = await client(app);
    const form = { _csrf: token, concurrency: '2', groupConcurrency: '1', 'rateLimit.limit': '10', 'rateLimit.intervalMs': '1000', 'rateLimit.per': 'group' };
    const saved = await agent.post(`${BASE}/queues/tenants/settings`).type('form').send(form).expect(303);
    expect(saved.headers.location).to.equal(`${BASE}/queues/tenants?done=configured`);
    expect(await limitsOf()).to.deep.equal({ concurrency: 2, groupConcurrency: 1, rateLimit: { limit: 10, intervalMs: 1000, per: 'group' } });
    const back = (await agent.get(saved.headers.location).expect(200)).text;
    expect(back).to.include('Queue limits saved').and.include('at most 2 running · 1 per group · 10 starts per 1 s per group');
    expect(back).to.include('<option value="group" selected>');

    const put = await agent.put(`${BASE}/api/queues/tenants/settings`).set('x-csrf-token', token).send({ concurrency: 3, rateLimit: { limit: 5, intervalMs: 500 } }).expect(200);
    expect(put.body).to.deep.include({ ok: true, queue: 'tenants' });
    expect(put.body.settings).to.include({ concurrency: 3, groupConcurrency: null }).and.deep.include({ rateLimit: { limit: 5, intervalMs: 500, per: 'queue' } });
    // Empty fields are no limit: a form with every field blank removes them all.
    await agent.post(`${BASE}/queues/tenants/settings`).type('form').send({ _csrf: token, concurrency: '', 'rateLimit.per': 'queue' }).expect(303);
    expect(await limitsOf()).to.deep.equal({ concurrency: null, groupConcurrency: null, rateLimit: null });
    await agent.post(`${BASE}/api/queues/tenants/settings`).set('x-csrf-token', token).send({ groupConcurrency: 2, rateLimit: null }).expect(200);
    expect(await limitsOf()).to.deep.equal({ concurrency: null, groupConcurrency: 2, rateLimit: null });
  });

  it('a refused value is a 400 naming its field: JSON { error, field } from the API, the page again with the message and the values as posted', async () => {
    const app = appWith(jobs);
    const { agent, token } = await client(app);
    const put = (body: object) => agent.put(`${BASE}/api/queues/tenants/settings`).set('x-csrf-token', token).send(body);
    const cases: [object, string, RegExp][] = [
      [{ concurrency: 0 }, 'concurrency', /concurrency must be an integer from 1 to 1000000, or null for no limit; got 0/],
      [{ groupConcurrency: 'many' }, 'groupConcurrency', /groupConcurrency must be an integer .*got "many"/],
      [{ concurrency: 2.5 }, 'concurrency', /concurrency must be an integer .*got 2\.5/],
      [{ rateLimit: { limit: 5 } }, 'rateLimit.intervalMs', /rateLimit\.intervalMs is required/],
      [{ rateLimit: { limit: 5, intervalMs: 100, per: 'tenant' } }, 'rateLimit.per', /rateLimit\.per must be 'queue' or 'group'; got "tenant"/],
      [{ rateLimit: { limit: 5, intervalMs: 100_000_000 } }, 'rateLimit.intervalMs', /from 1 to 86400000/],
      [{ rateLimit: 5 }, 'rateLimit', /rateLimit must be \{ limit, intervalMs, per\? \} or null/],
      // A misspelt field is refused, not taken as "no limit".
      [{ concurency: 3 }, 'concurency', /concurency is not a queue setting; allowed: concurrency, groupConcurrency, rateLimit\.limit/],
    ];
    for (const [body, field, message] of cases) {
      const res = await put(body);
      expect(res.status, JSON.stringify(body)).to.equal(400);
      expect(res.body.field, JSON.stringify(body)).to.equal(field);
      expect(res.body.error, JSON.stringify(body)).to.match(message);
    }
    expect(await limitsOf(), 'nothing refused was written').to.deep.equal({ concurrency: 4, groupConcurrency: null, rateLimit: null });

    const res = await agent.post(`${BASE}/queues/tenants/settings`).type('form').send({ _csrf: token, concurrency: '2', 'rateLimit.limit': '5', 'rateLimit.intervalMs': `x${XSS}` }).expect(400);
    expect(res.headers['content-type']).to.match(/^text\/html/);
    expect(section(res.text, '<p class="error" role="alert" id="settings-error">', '</p>')).to.include('settings.rateLimit.intervalMs must be an integer');
    expect(res.text).to.include('name="rateLimit.intervalMs" min="1" step="1" value="x').and.include('aria-invalid="true"');
    expect(res.text).to.include('name="concurrency" min="1" step="1" value="2"');
    expect(res.text).to.include(ESCAPED).and.not.include('<script>window.pwned');
    expect(await limitsOf()).to.deep.equal({ concurrency: 4, groupConcurrency: null, rateLimit: null });
    // A bad queue name in the path is a 400 too.
    expect((await agent.put(`${BASE}/api/queues/${encodeURIComponent('bad queue!')}/settings`).set('x-csrf-token', token).send({})).status).to.equal(400);
  });

  it("'view' sees the limits without a form and every edit is refused (403); without the CSRF token too", async () => {
    const viewer = appWith(jobs, () => 'view');
    const page = (await request(viewer).get(`${BASE}/queues/tenants`).expect(200)).text;
    expect(page).to.include('<p id="limits-now">at most 4 running').and.not.include('id="settings-form"');
    expect((await request(viewer).get(`${BASE}/queues`).expect(200)).text).to.include('at most 4 running').and.not.include('#limits">edit</a>');
    expect((await request(viewer).get(`${BASE}/api/queues/tenants/settings`).expect(200)).body.concurrency).to.equal(4);
    const v = await client(viewer);
    expect((await v.agent.post(`${BASE}/queues/tenants/settings`).type('form').send({ _csrf: v.token, concurrency: '1' })).status).to.equal(403);
    const refused = await v.agent.put(`${BASE}/api/queues/tenants/settings`).set('x-csrf-token', v.token).send({ concurrency: 1 });
    expect(refused.status).to.equal(403);
    expect(refused.body.error).to.match(/read-only/);

    const app = appWith(jobs);
    const { agent, token } = await client(app);
    const attempts = [
      () => agent.post(`${BASE}/queues/tenants/settings`).type('form').send({ concurrency: '1' }),
      () => agent.post(`${BASE}/queues/tenants/settings`).type('form').send({ _csrf: token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'), concurrency: '1' }),
      () => agent.put(`${BASE}/api/queues/tenants/settings`).send({ concurrency: 1 }),
      () => agent.post(`${BASE}/api/queues/tenants/settings`).set('x-csrf-token', 'A'.repeat(43)).send({ concurrency: 1 }),
      () => request(app).put(`${BASE}/api/queues/tenants/settings`).set('x-csrf-token', token).send({ concurrency: 1 }), // no cookie
    ];
    for (const [i, send] of attempts.entries()) expect((await send()).status, `attempt ${i}`).to.equal(403);
    expect(await limitsOf()).to.deep.equal({ concurrency: 4, groupConcurrency: null, rateLimit: null });
  });
});

forEachDialect('admin queues: groups and held jobs', ({ fresh }) => {
  let t: TestDb;
  let jobs: Jobs;
  let release: () => void;

  beforeEach(async () => {
    t = await fresh();
    jobs = t.jobs({ worker: { concurrency: 6, pollInterval: 30 } });
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('work', async () => gate);
    jobs.define('step', async () => undefined);
  });
  afterEach(() => release());

  const running = async (queue: string, n: number) =>
    until(async () => (await jobs.list({ queue, state: 'running' })).items.length === n, `${n} running in ${queue}`);

  it('live counts per group, and the jobs a group at its groupConcurrency holds (queue page, job page, API)', async () => {
    await jobs.queues.configure('tenants', { groupConcurrency: 1 });
    const a = await jobs.enqueueMany([1, 2, 3].map(() => ({ name: 'work' as const, payload: {}, queue: 'tenants', group: 'acme' })));
    // A group name as odd as one may be (letters, digits and _ . : - /).
    const odd = 'b.eta/1:x_-';
    const b = await jobs.enqueue('work', {}, { queue: 'tenants', group: odd });
    const later = await jobs.enqueue('work', {}, { queue: 'tenants', group: odd, delay: HOUR });
    await jobs.start();
    await running('tenants', 2);
    const app = appWith(jobs);

    const api = (await request(app).get(`${BASE}/api/queues/tenants`).expect(200)).body;
    expect(api).to.include({ queue: 'tenants', pending: 3, due: 2, running: 2, starts: null });
    const byGroup = new Map(api.groups.map((g: { group: string }) => [g.group, g]));
    expect(byGroup.get('acme')).to.deep.include({ pending: 2, due: 2, running: 1, starts: null });
    expect(byGroup.get(odd)).to.deep.include({ pending: 1, due: 0, running: 1 });
    expect(byGroup.get('acme')).to.have.nested.property('holds[0].kind', 'groupConcurrency');
    const waitingA = a.map((r) => r.id).filter((id) => holdsById(api).has(id));
    expect(waitingA, 'the two acme jobs not running are held').to.have.length(2);
    for (const id of waitingA) expect(holdsById(api).get(id)).to.deep.equal(['groupConcurrency']);
    expect(holdsById(api).has(later.id), 'a job not due yet is not held').to.equal(false);
    expect(holdsById(api).has(b.id), 'a running job is not held').to.equal(false);

    const page = (await request(app).get(`${BASE}/queues/tenants`).expect(200)).text;
    expect(section(page, '<tr data-group="acme">', '</tr>')).to.include('group acme is at its groupConcurrency: 1 of 1 running');
    expect(section(page, '<section id="held">', '</section>')).to.include(`<tr data-job="${waitingA[0]}">`);
    expect(section(page, `<tr data-group="${odd}">`, '</tr>')).to.include(`<td>${odd}</td>`);
    // The part HTMX refreshes: the figures and tables, never the form.
    const live = (await request(app).get(`${BASE}/queues/tenants/live`).expect(200)).text;
    expect(live).to.match(/^\s*<section class="cards" id="queue-figures">/).and.include('<tr data-group="acme">').and.not.include('settings-form');

    const jobPage = (await request(app).get(`${BASE}/jobs/${waitingA[0]}`).expect(200)).text;
    expect(section(jobPage, '<ul id="holds">', '</ul>')).to.include('<li data-hold="groupConcurrency">group acme is at its groupConcurrency: 1 of 1 running</li>');
    expect((await request(app).get(`${BASE}/api/jobs/${waitingA[0]}`).expect(200)).body.holds).to.deep.equal([
      { kind: 'groupConcurrency', text: 'group acme is at its groupConcurrency: 1 of 1 running' },
    ]);
    expect((await request(app).get(`${BASE}/api/jobs/${b.id}`).expect(200)).body.holds).to.deep.equal([]);
    // The facade: only the groups asked for.
    expect((await jobs.queues.groups('tenants', { groups: ['acme'] })).groups.map((g) => g.group)).to.deep.equal(['acme']);
  });

  it('the queue at its concurrency with its rate window full: both holds, the starts in the window, then paused first', async () => {
    await jobs.queues.configure('metered', { concurrency: 1, rateLimit: { limit: 1, intervalMs: HOUR } });
    const ids = (await jobs.enqueueMany([1, 2, 3].map(() => ({ name: 'work' as const, payload: {}, queue: 'metered' })))).map((r) => r.id);
    await jobs.start();
    await running('metered', 1);
    const app = appWith(jobs);
    const api = (await request(app).get(`${BASE}/api/queues/metered`).expect(200)).body;
    expect(api).to.include({ running: 1, due: 2, starts: 1 });
    expect(api.holds.map((h: { kind: string }) => h.kind)).to.deep.equal(['concurrency', 'rateLimit']);
    expect(api.groups).to.deep.equal([{ group: null, pending: 2, due: 2, running: 1, starts: 1, holds: [] }]);
    const held = [...holdsById(api)];
    expect(held).to.have.length(2);
    for (const [id, kinds] of held) {
      expect(ids).to.include(id);
      expect(kinds).to.deep.equal(['concurrency', 'rateLimit']);
    }
    const page = (await request(app).get(`${BASE}/queues/metered`).expect(200)).text;
    expect(section(page, '<div class="card" id="rate-window">', '</div>')).to.include('1 / 1');
    expect(section(page, '<ul class="waiting" role="status" id="queue-holds">', '</ul>'))
      .to.include('queue metered is at its concurrency: 1 of 1 running').and.include('rate window full: 1 of 1 starts in the last 3600000 ms');

    await jobs.queues.pause('metered');
    const paused = (await request(app).get(`${BASE}/api/queues/metered`).expect(200)).body;
    expect(paused.holds.map((h: { kind: string }) => h.kind)).to.deep.equal(['paused', 'concurrency', 'rateLimit']);
    const jobPage = (await request(app).get(`${BASE}/jobs/${held[0][0]}`).expect(200)).text;
    expect(jobPage).to.include('>metered</a> is paused: this job will not run until the queue is resumed.');
    expect(section(jobPage, '<ul id="holds">', '</ul>')).to.include('data-hold="concurrency"').and.not.include('data-hold="paused"');
  });

  it('a job no live worker claims says why: a name no worker handles, a queue none claims from', async () => {
    const worker = t.jobs({ worker: { queues: ['orders'], pollInterval: 60_000 } });
    worker.define('step', async () => undefined);
    await worker.start();
    try {
      const misspelt = await jobs.enqueue('stepp', {}, { queue: 'orders' });
      const elsewhere = await jobs.enqueue('step', {}, { queue: 'bulk', delay: HOUR });
      const app = appWith(jobs);
      const page = (await request(app).get(`${BASE}/jobs/${misspelt.id}`).expect(200)).text;
      expect(section(page, '<ul id="holds">', '</ul>')).to.include('<li data-hold="noWorker">no live worker has a handler for &#34;stepp&#34; (they handle: step)');
      const api = (await request(app).get(`${BASE}/api/queues/bulk`).expect(200)).body;
      expect(api.held).to.deep.equal([{ job: api.held[0].job, holds: [{ kind: 'noWorker', text: 'no live worker claims from queue bulk; those handling "step" claim from orders' }] }]);
      expect(api.held[0].job.id).to.equal(elsewhere.id);
    } finally {
      await worker.stop();
    }
  });

  it('jobs held by their own record: a serial key, parents, a reservation; reserved jobs listed with their reservation', async () => {
    const first = await jobs.enqueue('step', {}, { queue: 'orders', serial: 'acct-7', reserve: true });
    const second = await jobs.enqueue('step', {}, { queue: 'orders', serial: 'acct-7' });
    const parent = await jobs.enqueue('step', {}, { queue: 'orders', delay: HOUR });
    const child = await jobs.enqueue('step', {}, { queue: 'orders', dependsOn: [parent.id] });
    const app = appWith(jobs);

    const api = (await request(app).get(`${BASE}/api/queues/orders`).expect(200)).body;
    const holds = holdsById(api);
    // No worker runs here: each job says so after its own holds (a delayed one, only that).
    expect(holds.get(first.id)).to.deep.equal(['reserved', 'noWorker']);
    expect(holds.get(second.id)).to.deep.equal(['serial', 'noWorker']);
    expect(holds.get(child.id)).to.deep.equal(['parents', 'noWorker']);
    expect(holds.get(parent.id), 'a delayed job is held by nothing else').to.deep.equal(['noWorker']);
    expect(api.reserved.map((j: { id: string }) => j.id)).to.deep.equal([first.id]);
    expect(new Date(api.reserved[0].reservedUntil).getTime()).to.be.greaterThan(Date.now());

    const page = (await request(app).get(`${BASE}/queues/orders`).expect(200)).text;
    const reserved = section(page, '<section id="reserved">', '</section>');
    expect(reserved).to.include(`<tr data-job="${first.id}">`).and.not.include(second.id);
    const until_ = (await jobs.get(first.id))!.reservedUntil!;
    expect(reserved).to.include(until_.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z'));
    expect(section(page, `<tr data-job="${second.id}">`, '</tr>')).to.include('waiting for 1 earlier job to finish (its parents, or the one before it on serial key');

    // The job page reads its links: the job before it on its key, told apart from parents.
    const secondPage = (await request(app).get(`${BASE}/jobs/${second.id}`).expect(200)).text;
    expect(section(secondPage, '<ul id="holds">', '</ul>')).to.include('<li data-hold="serial">waiting for the job before it on serial key');
    const childPage = (await request(app).get(`${BASE}/jobs/${child.id}`).expect(200)).text;
    expect(section(childPage, '<ul id="holds">', '</ul>')).to.include('<li data-hold="parents">waiting for 1 of 1 parent:');
    expect(section((await request(app).get(`${BASE}/jobs/${first.id}`).expect(200)).text, '<ul id="holds">', '</ul>'))
      .to.include('<li data-hold="reserved">reserved: it runs once committed');

    // jobs.list({ reserved: true }): live pending jobs only.
    expect((await jobs.list({ reserved: true })).items.map((j) => j.id)).to.deep.equal([first.id]);
    expect((await jobs.list({ reserved: true, state: 'completed' })).items).to.deep.equal([]);
    await jobs.commitReserved(first.id);
    expect((await jobs.list({ reserved: true })).items).to.deep.equal([]);
  });
});
