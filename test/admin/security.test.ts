/**
 * The admin's security review, one block per finding (numbered as in the review): DNS rebinding,
 * proxies, CSRF, CORS, host body parsers, path confusion, dot names, error details, stale tokens
 * and deleted jobs, paused queues, and the small ones. Express 4 and 5, Koa 2 and 3, on SQLite
 * (nothing here depends on the dialect; the dialect suites cover the data).
 */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import {
  createJobs, jobsAdmin, koaJobsAdmin, JobValidationError,
  type AdminAccess, type AdminOptions, type ExpressLikeRequest, type Jobs, type KoaAdminOptions, type KoaLikeAdminContext,
} from '../../lib/index.ts';
import { validateName } from '../../lib/model.ts';
import { CSP } from '../../lib/admin/router.ts';
import { DIALECTS, until, type TestDb } from '../helpers/dialects.ts';
import { isCI } from '../helpers/ci.ts';
import { client } from './helpers.ts';

const express4 = createRequire(import.meta.url)('express4') as typeof express;
const Koa2 = createRequire(import.meta.url)('koa2') as typeof Koa;
const BASE = '/admin/jobs';
const sqlite = DIALECTS.find((d) => d.name === 'sqlite')!;
const EXPRESS = [['Express 5', express], ['Express 4', express4]] as const;
const KOA = [['Koa 3', Koa], ['Koa 2', Koa2]] as const;
const SECRET = 'a shared secret of the tests, long enough 0123456789';

describe('admin security review [sqlite]', function () {
  let t: TestDb;
  let jobs: Jobs;

  before(async () => {
    t = await sqlite.create();
    jobs = createJobs({ db: t.db, tablePrefix: t.prefix, worker: { pollInterval: 50 } });
    jobs.define('ok', async () => 'done');
    await jobs.start();
  });
  after(async () => {
    await jobs.close();
    await t.cleanup();
  });

  /** An Express app (4 or 5) with the host's own middleware first, then the admin at BASE. */
  function expressApp(framework: typeof express = express, opts: AdminOptions<ExpressLikeRequest> = {}, host: (app: express.Express) => void = () => undefined) {
    const app = framework();
    host(app);
    app.use(BASE, jobsAdmin(jobs, opts));
    return app;
  }

  /** A Koa app (2 or 3): the host's middleware, the admin below BASE, then a host route. */
  function koaApp(Framework: typeof Koa, opts: KoaAdminOptions<KoaLikeAdminContext> = {}, host: (app: Koa) => void = () => undefined) {
    const app = new Framework();
    app.silent = true;
    host(app);
    app.use(koaJobsAdmin(jobs, { path: BASE, ...opts }));
    app.use(async (ctx) => {
      ctx.body = `host ${ctx.path}`;
    });
    return app.callback();
  }

  const delayed = async (queue = 'default') => (await jobs.enqueue('ok', {}, { delay: 3_600_000, queue })).id;
  const pausedAt = async (queue: string) => (await jobs.queues.list()).find((q) => q.queue === queue)?.pausedAt ?? null;
  const cookieOf = (res: request.Response) => String(res.headers['set-cookie']?.[0] ?? '').split(';')[0];
  const tokenOf = (html: string) => /<meta name="sqljobs-csrf" content="([^"]+)">/.exec(html)?.[1] ?? '';

  describe('1. DNS rebinding: without authorize, the Host must be a loopback name', () => {
    async function checkHosts(get: (host: string) => Promise<request.Response>) {
      for (const h of ['evil.example', 'rebind.attacker.example:3000', 'localhost.evil.example', '127.0.0.1.nip.io', 'localhost@evil.example']) {
        const res = await get(h);
        expect(res.status, h).to.equal(403);
        expect(res.body.error, h).to.match(/Host must be localhost/);
      }
      for (const h of ['localhost', 'localhost:8080', 'admin.localhost:3000', 'LOCALHOST:1', '127.0.0.1', '127.0.0.2:8080', '[::1]:8080']) {
        expect((await get(h)).status, h).to.equal(200);
      }
    }
    for (const [label, framework] of EXPRESS) {
      it(`${label}: Host evil.example from 127.0.0.1 is 403; loopback names are served`, async () => {
        const app = expressApp(framework);
        await checkHosts((h) => request(app).get(`${BASE}/api/stats`).set('Host', h));
      });
    }
    for (const [label, Framework] of KOA) {
      it(`${label}: Host evil.example from 127.0.0.1 is 403; loopback names are served`, async () => {
        const app = koaApp(Framework);
        await checkHosts((h) => request(app).get(`${BASE}/api/stats`).set('Host', h));
      });
    }
    it('allowedHosts adds names; with authorize the Host is left to it', async () => {
      const app = expressApp(express, { allowedHosts: ['myapp.test'] });
      expect((await request(app).get(`${BASE}/api/stats`).set('Host', 'myapp.test:8080')).status).to.equal(200);
      expect((await request(app).get(`${BASE}/api/stats`).set('Host', 'other.test')).status).to.equal(403);
      const authorized = expressApp(express, { authorize: () => 'manage' });
      expect((await request(authorized).get(`${BASE}/api/stats`).set('Host', 'admin.example.com')).status).to.equal(200);
      expect(() => jobsAdmin(jobs, { allowedHosts: ['myapp.test:80'] })).to.throw(TypeError, /allowedHosts must be an array of host names without port/);
      expect(() => jobsAdmin(jobs, { allowedHosts: 'myapp.test' as never })).to.throw(TypeError, /allowedHosts/);
    });
  });

  describe('2. behind a proxy every request is from 127.0.0.1: a forwarded request is not loopback', () => {
    const HEADERS = [['Forwarded', 'for=203.0.113.9'], ['X-Forwarded-For', '203.0.113.9'], ['X-Real-IP', '203.0.113.9'], ['X-Forwarded-Host', 'admin.example.com'], ['X-Forwarded-Proto', 'https'], ['Via', '1.1 edge'],
      // CDNs' and load balancers' own client-address headers (Cloudflare, Akamai, Fastly, others).
      ['CF-Connecting-IP', '203.0.113.9'], ['True-Client-IP', '203.0.113.9'], ['X-Client-IP', '203.0.113.9'], ['X-Cluster-Client-IP', '203.0.113.9'], ['Fastly-Client-IP', '203.0.113.9'], ['X-Original-Forwarded-For', '203.0.113.9']] as const;
    it('Express and Koa: each proxy header makes a loopback request 403 without authorize; authorize serves it', async () => {
      const apps = [expressApp(express), expressApp(express4), koaApp(Koa), koaApp(Koa2)];
      const authorized = [expressApp(express, { authorize: () => 'view' }), koaApp(Koa, { authorize: () => 'view' })];
      for (const [h, v] of HEADERS) {
        for (const app of apps) {
          const res = await request(app).get(`${BASE}/api/stats`).set(h, v);
          expect(res.status, h).to.equal(403);
          expect(res.body.error, h).to.match(/came through a proxy .* needs an authorize option/);
        }
        for (const app of authorized) expect((await request(app).get(`${BASE}/api/stats`).set(h, v)).status, h).to.equal(200);
      }
    });
  });

  describe('3. CSRF: signed double-submit token, Origin and Sec-Fetch-Site, __Host- cookie over HTTPS', () => {
    it('a planted cookie value (never signed here) is refused, alone or shadowing the real cookie; the real one still works', async () => {
      const app = expressApp();
      const q = 'csrf-planted';
      const planted = 'A'.repeat(43);
      const form = (cookie: string, token: string) => request(app).post(`${BASE}/queues/${q}/pause`).set('Cookie', cookie).type('form').send({ _csrf: token });
      expect((await form(`sqljobs_csrf=${planted}`, planted)).status).to.equal(403);
      const real = cookieOf(await request(app).get(`${BASE}/`));
      // A cookie with a longer Path is sent first by browsers: it must not win.
      expect((await form(`sqljobs_csrf=${planted}; ${real}`, planted)).status).to.equal(403);
      expect(await pausedAt(q)).to.equal(null);
      expect((await form(`sqljobs_csrf=${planted}; ${real}`, real.split('=')[1])).status).to.equal(303);
      expect(await pausedAt(q)).to.be.instanceOf(Date);
      await jobs.queues.resume(q);
    });

    it('a token signed with another secret is refused; instances sharing `secret` accept each other\'s (load balancer)', async () => {
      const q = 'csrf-secret';
      const first = await request(expressApp(express, { secret: SECRET })).get(`${BASE}/`).expect(200);
      const cookie = cookieOf(first);
      const token = tokenOf(first.text);
      const post = (app: express.Express) => request(app).post(`${BASE}/api/queues/${q}/pause`).set('Cookie', cookie).set('x-csrf-token', token);
      expect((await post(expressApp(express, { secret: 'another secret, just as long 0123456789' }))).status).to.equal(403);
      expect((await post(expressApp())).status).to.equal(403); // the per-process default secret
      expect(await pausedAt(q)).to.equal(null);
      expect((await post(expressApp(express4, { secret: SECRET }))).status).to.equal(200);
      expect(await pausedAt(q)).to.be.instanceOf(Date);
      await jobs.queues.resume(q);
      expect(() => jobsAdmin(jobs, { secret: 'short' })).to.throw(TypeError, /secret must be a string of at least 32 characters/);
    });

    it('a state change from another Origin or Sec-Fetch-Site is refused even with a valid token; same-origin passes', async () => {
      const q = 'csrf-origin';
      const { agent, token } = await client(expressApp());
      const post = () => agent.post(`${BASE}/api/queues/${q}/pause`).set('x-csrf-token', token).set('Host', 'localhost:4000');
      const refused = [['Origin', 'https://evil.example'], ['Origin', 'http://localhost:4001'], ['Origin', 'http://app.localhost:4000'], ['Origin', 'null'],
        ['Sec-Fetch-Site', 'same-site'], ['Sec-Fetch-Site', 'cross-site']] as const;
      for (const [h, v] of refused) {
        const res = await post().set(h, v);
        expect(res.status, `${h}: ${v}`).to.equal(403);
        expect(res.body.error, `${h}: ${v}`).to.match(/Origin|Sec-Fetch-Site|cross-site/);
      }
      // A browser without fetch metadata still sends Origin on a same-site post: held to it.
      expect((await post().set('Origin', 'http://app.localhost:4000').set('Sec-Fetch-Site', 'same-site')).status).to.equal(403);
      expect(await pausedAt(q)).to.equal(null);
      expect((await post().set('Origin', 'http://localhost:4000')).status).to.equal(200);
      await jobs.queues.resume(q);
      // Sec-Fetch-Site, computed by the browser, decides when sent: behind a proxy that rewrites
      // Host (nginx's default), the page's own Origin differs from the Host the app sees.
      expect((await post().set('Origin', 'https://admin.example.com').set('Sec-Fetch-Site', 'same-origin')).status).to.equal(200);
      await jobs.queues.resume(q);
    });

    it('over HTTPS (TLS socket, or X-Forwarded-Proto "https,http" behind a proxy) the cookie is __Host-sqljobs_csrf; Secure, Path=/', async function () {
      let dir: string | undefined;
      try {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-tls-'));
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-days', '1',
          '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
      } catch (err) {
        if (isCI()) throw err;
        console.warn(`\n  !!! SKIPPING the HTTPS half: openssl could not make a certificate (${(err as Error).message})\n`);
      }
      const cert = dir && fs.existsSync(path.join(dir, 'cert.pem')) ? { key: fs.readFileSync(path.join(dir, 'key.pem')), cert: fs.readFileSync(path.join(dir, 'cert.pem')) } : null;
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
      if (cert) {
        const server = https.createServer(cert, expressApp()).listen(0, '127.0.0.1');
        try {
          await new Promise((r) => server.once('listening', r));
          const page = await request(server).get(`${BASE}/`).disableTLSCerts().expect(200);
          const setCookie = String(page.headers['set-cookie'][0]);
          expect(setCookie).to.match(/^__Host-sqljobs_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
          const res = await request(server).post(`${BASE}/api/queues/tls/pause`).disableTLSCerts().set('Cookie', cookieOf(page)).set('x-csrf-token', tokenOf(page.text));
          expect(res.status).to.equal(200);
          // The plain-HTTP cookie name is not read over HTTPS.
          const plain = await request(server).post(`${BASE}/api/queues/tls/resume`).disableTLSCerts().set('Cookie', cookieOf(page).replace('__Host-', '')).set('x-csrf-token', tokenOf(page.text));
          expect(plain.status).to.equal(403);
          await jobs.queues.resume('tls');
        } finally {
          server.close();
        }
      }
      const proxied = expressApp(express, { authorize: () => 'manage' });
      const viaHttps = String((await request(proxied).get(`${BASE}/`).set('X-Forwarded-Proto', 'https,http')).headers['set-cookie'][0]);
      expect(viaHttps).to.match(/^__Host-sqljobs_csrf=.*; Path=\/; .*Secure$/);
      const viaHttp = String((await request(proxied).get(`${BASE}/`).set('X-Forwarded-Proto', 'http')).headers['set-cookie'][0]);
      expect(viaHttp).to.match(/^sqljobs_csrf=.*; Path=\/admin\/jobs; HttpOnly; SameSite=Lax$/);
    });
  });

  describe("4. a host's permissive CORS does not open the admin to other sites", () => {
    async function checkCors(app: Parameters<typeof request>[0], id: string) {
      const res = await request(app).get(`${BASE}/api/jobs/${id}`).set('Origin', 'https://any-website.example');
      expect(res.status).to.equal(200);
      expect(res.headers['access-control-allow-origin']).to.equal(undefined);
      expect(res.headers['access-control-allow-credentials']).to.equal(undefined);
      expect(res.headers['cross-origin-resource-policy']).to.equal('same-origin');
      const fetched = await request(app).get(`${BASE}/api/jobs/${id}`).set('Origin', 'https://any-website.example').set('Sec-Fetch-Site', 'cross-site').set('Sec-Fetch-Mode', 'cors').set('Sec-Fetch-Dest', 'empty');
      expect(fetched.status).to.equal(403);
      expect(fetched.text).not.to.include(id);
      const embedded = await request(app).get(`${BASE}/`).set('Sec-Fetch-Site', 'cross-site').set('Sec-Fetch-Mode', 'no-cors').set('Sec-Fetch-Dest', 'iframe');
      expect(embedded.status).to.equal(403);
      // A link from another site (chat, mail) is a top-level navigation: it opens the page.
      const linked = await request(app).get(`${BASE}/jobs/${id}`).set('Sec-Fetch-Site', 'cross-site').set('Sec-Fetch-Mode', 'navigate').set('Sec-Fetch-Dest', 'document');
      expect(linked.status).to.equal(200);
      // The host's own routes keep their CORS headers.
      expect((await request(app).get('/elsewhere')).headers['access-control-allow-origin']).to.equal('*');
    }
    for (const [label, framework] of EXPRESS) {
      it(`${label}: cors()-style headers are removed, CORP same-origin is set, cross-site fetches are 403`, async () => {
        const id = await delayed();
        const app = expressApp(framework, {}, (a) => {
          a.use((_req, res, next) => {
            res.setHeader('Access-Control-Allow-Origin', '*');
            res.setHeader('Access-Control-Allow-Credentials', 'true');
            next();
          });
          a.get('/elsewhere', (_req, res) => void res.send('host'));
        });
        await checkCors(app, id);
      });
    }
    for (const [label, Framework] of KOA) {
      it(`${label}: @koa/cors-style headers are removed, CORP same-origin is set, cross-site fetches are 403`, async () => {
        const id = await delayed();
        const app = koaApp(Framework, {}, (a) =>
          a.use(async (ctx, next) => {
            ctx.set('Access-Control-Allow-Origin', '*');
            ctx.set('Access-Control-Allow-Credentials', 'true');
            await next();
          }),
        );
        await checkCors(app, id);
      });
    }
  });

  describe('5. a host body parser that skipped the request leaves req.body = {}: the admin still reads the form', () => {
    for (const [label, framework] of EXPRESS) {
      it(`${label} with a global express.json(): plain forms keep their _csrf field, ids and action`, async () => {
        const app = expressApp(framework, {}, (a) => a.use(framework.json()));
        const { agent, token } = await client(app);
        const run = await delayed();
        const form = await agent.post(`${BASE}/jobs/${run}/run`).type('form').send({ _csrf: token });
        expect(form.status).to.equal(303);
        await until(async () => (await jobs.get(run))?.state === 'completed', 'the job made due to run');
        const [gone, cancelled] = [await delayed(), await delayed()];
        await agent.post(`${BASE}/jobs/bulk`).set('x-csrf-token', token).type('form').send(`action=delete&scope=selected&ids=${gone}`).expect(303);
        expect(await jobs.get(gone)).to.equal(null);
        // JSON the host did parse is taken from req.body.
        await agent.post(`${BASE}/jobs/bulk`).set('x-csrf-token', token).send({ action: 'cancel', scope: 'selected', ids: [cancelled] }).expect(303);
        expect((await jobs.get(cancelled))?.state).to.equal('cancelled');
      });
    }
    for (const [label, Framework] of KOA) {
      it(`${label} with a koa-bodyparser-style parser (ctx.request.body = {} for a form it does not parse)`, async () => {
        const app = koaApp(Framework, {}, (a) =>
          a.use(async (ctx, next) => {
            if (!ctx.is('json')) (ctx.request as { body?: unknown }).body = {};
            await next();
          }),
        );
        const { agent, token } = await client(app);
        const id = await delayed();
        await agent.post(`${BASE}/jobs/${id}/cancel`).type('form').send({ _csrf: token }).expect(303);
        expect((await jobs.get(id))?.state).to.equal('cancelled');
      });
    }
  });

  describe('6. the admin serves the path the framework routed, never a re-parsed one', () => {
    const CONFUSING = ['/x/%2e%2e/api/stats', '/x/%2E%2E/api/stats', '/x/.%2e/api/stats', '/%2e%2e/api/stats', '//x/api/stats', '/jobs/%2e%2e/api/stats', '/%2e/api/stats', '/api//stats'];
    async function checkGate(app: Parameters<typeof request>[0]) {
      expect((await request(app).get(`${BASE}/api/stats`)).status).to.equal(401); // the host's gate
      for (const p of CONFUSING) {
        const res = await request(app).get(BASE + p);
        expect(res.status, p).to.be.oneOf([401, 404]);
        expect(res.text, p).not.to.include('countCap');
      }
      // A name holding '/' is one encoded segment, and still reachable.
      const { agent, token } = await client(app);
      expect((await agent.get(`${BASE}/jobs?queue=a%2Fb`)).status).to.equal(200);
      expect((await agent.post(`${BASE}/queues/a%2Fb/pause`).type('form').send({ _csrf: token })).status).to.equal(303);
      expect(await pausedAt('a/b')).to.be.instanceOf(Date);
      await jobs.queues.resume('a/b');
    }
    for (const [label, framework] of EXPRESS) {
      it(`${label}: with a host gate on ${BASE}/api, dot segments and '//' are 404, never the API`, async () => {
        await checkGate(expressApp(framework, {}, (a) => a.use(`${BASE}/api`, (_req, res) => void res.status(401).json({ error: 'API key required' }))));
      });
    }
    for (const [label, framework] of EXPRESS) {
      it(`${label}: with a host gate on ${BASE}/metrics, '//metrics' and dot segments are 404, never the exposition (Express 4 served it past the gate)`, async () => {
        const app = expressApp(framework, { metricsAuthorize: () => true }, (a) => a.use(`${BASE}/metrics`, (_req, res) => void res.status(401).end()));
        expect((await request(app).get(`${BASE}/metrics`)).status).to.equal(401);
        for (const p of ['//metrics', '//metrics?x=1', '/./metrics', '/x/../metrics', '/%2e/metrics']) {
          const res = await request(app).get(BASE + p);
          expect(res.status, p).to.be.oneOf([401, 404]);
          expect(res.text, p).not.to.include('# HELP');
        }
      });
    }
    for (const [label, Framework] of KOA) {
      it(`${label}: with a host gate on ${BASE}/api, dot segments and '//' are 404, never the API`, async () => {
        await checkGate(
          koaApp(Framework, {}, (a) =>
            a.use(async (ctx, next) => {
              if (ctx.path === `${BASE}/api` || ctx.path.startsWith(`${BASE}/api/`)) {
                ctx.status = 401;
                ctx.body = { error: 'API key required' };
                return;
              }
              await next();
            }),
          ),
        );
      });
    }
  });

  describe('7. names "." and ".." (a URL segment cannot carry them)', () => {
    it('are refused for queues, job names and schedule keys with a clear message; other dotted names pass', async () => {
      for (const n of ['.', '..']) {
        expect(() => validateName(n, 'queue')).to.throw(JobValidationError, /^queue must not be "\." or "\.\." \(a URL path segment cannot carry them\); got "\.{1,2}"$/);
        let err: unknown;
        await jobs.enqueue('ok', {}, { queue: n }).catch((e) => (err = e));
        expect(String(err)).to.match(/queue must not be "\." or "\.\."/);
        err = undefined;
        await jobs.queues.pause(n).catch((e) => (err = e));
        expect(String(err)).to.match(/queue must not be/);
        expect(() => jobs.define(n, async () => 1)).to.throw(/name must not be/);
        expect(() => jobs.recurring(n, '0 3 * * *', {}, { name: 'ok' })).to.throw(/key must not be/);
      }
      for (const n of ['...', 'a.b', '.hidden', 'v1..2', 'a/..']) expect(validateName(n, 'queue')).to.equal(n);
      const { agent, token } = await client(expressApp());
      expect((await agent.post(`${BASE}/api/queues/%2E%2E/pause`).set('x-csrf-token', token)).status).to.equal(404);
      expect((await jobs.queues.list()).some((q) => q.queue.startsWith('.'))).to.equal(false);
    });
  });

  describe('8. unexpected errors: an id for the client, the details for onError', () => {
    it('authorize threw, or the database failed: no message reaches the client; onError gets it with the same id', async () => {
      const seen: { err: unknown; id: string; method: string; path: string }[] = [];
      const onError = (err: unknown, info: { id: string; method: string; path: string }) => void seen.push({ err, ...info });
      const app = expressApp(express, { onError, authorize: async () => {
        throw new Error('connect ECONNREFUSED (session store redis://:hunter2@10.0.3.7)');
      } });
      const api = await request(app).get(`${BASE}/api/stats`);
      expect(api.status).to.equal(500);
      expect(api.body).to.deep.equal({ error: `internal error (id ${seen[0].id})` });
      expect(seen[0]).to.include({ method: 'GET', path: '/api/stats' });
      expect((seen[0].err as Error).message).to.include('hunter2');
      const page = await request(app).get(`${BASE}/`);
      expect(page.status).to.equal(500);
      expect(page.text).to.include(`internal error (id ${seen[1].id})`).and.not.include('hunter2');
      expect(seen[1].id).not.to.equal(seen[0].id);

      const other = await sqlite.create();
      const broken = createJobs({ db: other.db, tablePrefix: other.prefix, worker: false });
      try {
        await broken.migrate();
        await other.query(`DROP TABLE ${other.prefix}history`);
        const dbApp = express().use(BASE, jobsAdmin(broken, { onError }));
        const res = await request(dbApp).get(`${BASE}/api/jobs?state=failed`);
        expect(res.status).to.equal(500);
        expect(res.text).not.to.include(other.prefix).and.not.include('no such table');
        expect(res.body.error).to.equal(`internal error (id ${seen[2].id})`);
        expect(String(seen[2].err)).to.include(`no such table: ${other.prefix}history`);
      } finally {
        await broken.close();
        await other.cleanup();
      }
      // A logger that throws changes nothing for the client.
      const throwing = expressApp(express, { onError: () => {
        throw new Error('logger down');
      }, authorize: () => {
        throw new Error('secret detail');
      } });
      const res = await request(throwing).get(`${BASE}/api/stats`);
      expect(res.status).to.equal(500);
      expect(res.body.error).to.match(/^internal error \(id [0-9a-f]{12}\)$/);
      // An async reporter whose service is down rejects: nothing reaches the process as an unhandled rejection.
      const unhandled: unknown[] = [];
      const trap = (err: unknown) => unhandled.push(err);
      process.on('unhandledRejection', trap);
      try {
        const rejecting = expressApp(express, { onError: async () => {
          throw new Error('reporter down');
        }, authorize: () => {
          throw new Error('secret detail');
        } });
        expect((await request(rejecting).get(`${BASE}/api/stats`)).status).to.equal(500);
        await new Promise((r) => setTimeout(r, 50));
      } finally {
        process.off('unhandledRejection', trap);
      }
      expect(unhandled).to.deep.equal([]);
      expect(() => jobsAdmin(jobs, { onError: 'console' as never })).to.throw(TypeError, /onError must be a function/);
    });
  });

  describe('9. stale tokens and dead pollers', () => {
    it('the cookie is SameSite=Lax; a failed HTMX request has a banner to fill; a deleted job\'s live fragment ends the polling (200)', async () => {
      const app = expressApp();
      const page = await request(app).get(`${BASE}/`).expect(200);
      expect(String(page.headers['set-cookie'][0])).to.include('SameSite=Lax').and.not.include('Strict');
      expect(page.text).to.include('<p id="request-error" class="request-error" role="alert" hidden></p>'); // filled by admin.js (browser.test.ts)
      const id = await delayed();
      expect((await request(app).get(`${BASE}/jobs/${id}/live`).expect(200)).text).to.include('hx-trigger="every 2s"');
      await jobs.delete(id);
      const gone = await request(app).get(`${BASE}/jobs/${id}/live`);
      expect(gone.status).to.equal(200);
      expect(gone.text).to.include('data-state="deleted"').and.include('it was deleted');
      expect(gone.text).not.to.match(/hx-(get|trigger)/);
    });
  });

  describe('10. "Run now" on a paused queue', () => {
    it('says the queue is paused: on the job page, in the notice, and as queuePaused in the API', async () => {
      const q = 'paused-run';
      const [viaApi, viaForm] = [await delayed(q), await delayed(q)];
      await jobs.queues.pause(q);
      const { agent, token } = await client(expressApp());
      const api = await agent.post(`${BASE}/api/jobs/${viaApi}/run`).set('x-csrf-token', token).expect(200);
      expect(api.body).to.deep.equal({ ok: true, id: viaApi, action: 'run', queuePaused: true });
      expect((await agent.get(`${BASE}/jobs/${viaApi}`)).text).to.include(`>${q}</a> is paused: this job will not run until the queue is resumed.`);
      const form = await agent.post(`${BASE}/jobs/${viaForm}/run`).type('form').send({ _csrf: token }).expect(303);
      expect((await agent.get(form.headers.location)).text).to.include(`Job made due now, but its queue ${q} is paused: it runs once the queue is resumed.`);
      expect((await jobs.get(viaApi))?.state).to.equal('pending');
      await jobs.queues.resume(q);
      await until(async () => (await jobs.get(viaForm))?.state === 'completed' && (await jobs.get(viaApi))?.state === 'completed', 'the resumed queue to run');
      const free = await delayed(q);
      expect((await agent.post(`${BASE}/api/jobs/${free}/run`).set('x-csrf-token', token).expect(200)).body.queuePaused).to.equal(false);
      expect((await agent.get(`${BASE}/jobs/${free}`)).text).not.to.include('is paused');
    });
  });

  describe('11. small ones', () => {
    it('?done= shows only known notices (constructor, __proto__, toString show none)', async () => {
      const app = expressApp();
      for (const d of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
        const res = await request(app).get(`${BASE}/?done=${d}&n=1,2`);
        expect(res.status, d).to.equal(200);
        expect(res.text, d).not.to.include('class="notice"');
      }
      expect((await request(app).get(`${BASE}/?done=paused`)).text).to.include('<p class="notice" role="status">Queue paused');
    });

    it('the README states the exact Content-Security-Policy sent', async () => {
      const sent = (await request(expressApp()).get(`${BASE}/`)).headers['content-security-policy'];
      expect(sent).to.equal(CSP);
      const readme = fs.readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8').replace(/\s*\n\s*/g, ' ');
      expect(readme).to.include(`Content-Security-Policy: ${sent}`);
    });

    it('ExpressLikeRequest and KoaLikeAdminContext are exported from the package root (a typed authorize compiles)', () => {
      const byHeader = (req: ExpressLikeRequest): AdminAccess => (req.headers['x-role'] === 'ops' ? 'manage' : false);
      const byCtx = (ctx: KoaLikeAdminContext): AdminAccess => (ctx.req.headers['x-role'] === 'ops' ? 'view' : false);
      expect(typeof jobsAdmin(jobs, { authorize: byHeader })).to.equal('function');
      expect(typeof koaJobsAdmin(jobs, { authorize: byCtx })).to.equal('function');
    });
  });

  describe("12. Express 4 routes /admin/jobs//api/… as /api/…: past a host gate on a sub-path", () => {
    const gated = `${BASE}/api`;
    const gatedBulk = `${BASE}/jobs/bulk`;
    /** Paths a gate on BASE/api does not see, each holding an empty or dot segment. */
    const PAST_GATE = ['//api/stats', '///api/stats', '/./api/stats', '/%2e/api/stats', '/x/../api/stats', '/jobs/../api/stats', '/jobs/%2E%2E/api/stats'];
    /** Empty and dot segments anywhere else below the mount. */
    const ANYWHERE = ['/api/./stats', '/api//stats', '/api/stats/.', '/api/x/..', '/jobs//', '/queues/.', '/.', '/..', '//'];
    let cases = 0;

    async function checkAdmin404(app: Parameters<typeof request>[0], paths: string[], prefix = BASE) {
      for (const p of paths) {
        const res = await request(app).get(prefix + p);
        expect(res.status, p).to.equal(404);
        expect(res.text, p).to.include('empty, . or .. segment');
      }
    }

    /** Every way past the gate is the admin's 404, and nothing changed in the database. */
    async function checkBypass(app: Parameters<typeof request>[0], open: Parameters<typeof request>[0]) {
      expect((await request(app).get(`${BASE}/api/stats`)).status).to.equal(403); // the host's gate holds
      await checkAdmin404(app, PAST_GATE);
      await checkAdmin404(open, [...PAST_GATE, ...ANYWHERE]);
      const { agent, token } = await client(app);
      const q = `gated-${++cases}`; // its own queue: a failing case leaves nothing paused for the next
      const [a, b] = [await delayed(q), await delayed(q)];
      const refused = {
        pause: agent.post(`${BASE}//api/queues/${q}/pause`).set('x-csrf-token', token),
        pauseDot: agent.post(`${BASE}/./api/queues/${q}/pause`).set('x-csrf-token', token),
        delete: agent.delete(`${BASE}//api/jobs/${a}`).set('x-csrf-token', token),
        bulk: agent.post(`${BASE}//jobs/bulk`).type('form').send(`_csrf=${token}&action=delete&scope=selected&ids=${a}&ids=${b}`),
        bulkDots: agent.post(`${BASE}/x/../jobs/bulk`).type('form').send(`_csrf=${token}&action=delete&scope=selected&ids=${a}`),
      };
      for (const [what, pending] of Object.entries(refused)) {
        const res = await pending;
        expect(res.status, what).to.equal(404);
        expect(res.text, what).to.include('empty, . or .. segment');
      }
      expect(await pausedAt(q)).to.equal(null);
      expect((await jobs.get(a))?.state).to.equal('pending');
      expect((await jobs.get(b))?.state).to.equal('pending');
      // The admin's own pages are still served, with and without the trailing slash.
      for (const p of ['', '/', `/jobs?queue=${q}`, '/jobs/']) expect((await agent.get(BASE + p)).status, p).to.equal(200);
    }
    const gate = (a: express.Express) => {
      a.use(gated, (_req, res) => void res.status(403).end());
      a.use(gatedBulk, (_req, res) => void res.status(403).end());
    };
    /** The admin below a parent router at /admin, as `app.use('/admin', router)` with `router.use('/jobs', admin)`. */
    function nested(framework: typeof express, host: (app: express.Express) => void) {
      const app = framework();
      host(app);
      const parent = framework.Router();
      parent.use('/jobs', jobsAdmin(jobs));
      app.use('/admin', parent);
      return app;
    }
    for (const [label, framework] of EXPRESS) {
      it(`${label}: //api, dot and empty segments below the mount are the admin's 404; no queue paused, no job deleted`, async () => {
        await checkBypass(expressApp(framework, {}, gate), expressApp(framework));
      });
      it(`${label}: below a parent router, an empty or dot segment above the mount (/admin//jobs/api) is refused too`, async () => {
        const app = nested(framework, gate);
        await checkBypass(app, nested(framework, () => undefined));
        for (const p of ['/admin//jobs/api/stats', '/admin/./jobs/api/stats', '/admin/x/../jobs/api/stats']) {
          const res = await request(app).get(p);
          expect(res.status, p).to.equal(404);
          expect(res.text, p).not.to.include('countCap');
        }
      });
    }
    for (const [label, Framework] of KOA) {
      it(`${label}: //api, dot and empty segments below the mount are the admin's 404; no queue paused, no job deleted`, async () => {
        const koaGate = (a: Koa) =>
          a.use(async (ctx, next) => {
            if ([gated, gatedBulk].some((g) => ctx.path === g || ctx.path.startsWith(`${g}/`))) return void (ctx.status = 403);
            await next();
          });
        await checkBypass(koaApp(Framework, {}, koaGate), koaApp(Framework));
      });
    }
  });
});
