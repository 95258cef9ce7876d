/** Mounting: Express 4 and 5 (host view settings untouched), Koa 2 and 3 (own prefix, or below a mount), static files. */
import { expect } from 'chai';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jobsAdmin, koaJobsAdmin, type Jobs, type KoaAdminOptions } from '../../lib/index.ts';
import type { KoaLikeAdminContext } from '../../lib/admin/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';
import { XSS, client, seededJobs, type SeededIds } from './helpers.ts';

/** Express 4, installed beside 5 as the npm alias express4. */
const express4 = createRequire(import.meta.url)('express4') as typeof express;
const Koa2 = createRequire(import.meta.url)('koa2') as typeof Koa;
const BASE = '/admin/jobs';

/** A host app with its own view engine and views folder, which the admin must leave alone. */
function hostViews(): { dir: string; engine: (file: string, data: object, cb: (err: Error | null, html?: string) => void) => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-views-'));
  fs.writeFileSync(path.join(dir, 'home.tpl'), 'host home {{who}}');
  return { dir, engine: (file, data, cb) => cb(null, fs.readFileSync(file, 'utf8').replace('{{who}}', String((data as { who: string }).who))) };
}

forEachDialect('admin mounting', ({ fresh }) => {
  let jobs: Jobs;
  let ids: SeededIds;
  beforeEach(async () => {
    ({ jobs, ids } = await seededJobs(fresh));
  });

  for (const [label, make] of [['Express 5', () => express()], ['Express 4', () => express4()]] as const) {
    it(`${label}: the host keeps its own view engine and views; links use the mount path`, async () => {
      const app = make();
      const { dir, engine } = hostViews();
      app.engine('tpl', engine);
      app.set('views', dir);
      app.set('view engine', 'tpl');
      app.use(express.urlencoded({ extended: false })); // the host parses bodies itself: the admin reads req.body
      app.get('/', (_req, res) => res.render('home', { who: 'shop' }));
      app.use('/ops/jobs', jobsAdmin(jobs));
      expect((await request(app).get('/').expect(200)).text).to.equal('host home shop');
      const page = await request(app).get(`/ops/jobs/jobs/${ids.failed}`).expect(200);
      expect(page.text).to.include('href="/ops/jobs/jobs?queue=mail"');
      expect((await request(app).get('/').expect(200)).text).to.equal('host home shop');
      expect(app.get('view engine')).to.equal('tpl');
      const { agent, token } = await client(app, '/ops/jobs');
      await agent.post(`/ops/jobs/jobs/${ids.delayed}/cancel`).type('form').send({ _csrf: token }).expect(303);
      expect((await jobs.get(ids.delayed))?.state).to.equal('cancelled');
    });
  }

  it('static files: htmx from the htmx.org package and our CSS, versioned and cached for a year; no CDN anywhere', async () => {
    const app = express();
    app.use(BASE, jobsAdmin(jobs));
    const page = (await request(app).get(`${BASE}/`).expect(200)).text;
    const scripts = [...page.matchAll(/<script src="([^"]+)"/g)].map((m) => m[1]);
    const css = /<link rel="stylesheet" href="([^"]+)"/.exec(page)![1];
    expect(scripts).to.have.length(2);
    for (const url of [...scripts, css]) expect(url.startsWith(`${BASE}/static/`), url).to.equal(true);
    const htmx = await request(app).get(scripts[0]).expect(200);
    const shipped = fs.readFileSync(createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js'));
    expect(Buffer.from(htmx.text)).to.deep.equal(shipped);
    expect(htmx.headers['cache-control']).to.equal('public, max-age=31536000, immutable');
    expect(htmx.headers['content-type']).to.match(/^text\/javascript/);
    expect((await request(app).get(css).expect(200)).headers['content-type']).to.match(/^text\/css/);
    expect((await request(app).get(`${BASE}/static/htmx-000000000000.js`)).status).to.equal(404);
    // No inline script, no inline style, no inline event handler on any page.
    for (const p of ['/', '/jobs', `/jobs/${ids.failed}`, '/recurring', '/queues', '/workers']) {
      const html = (await request(app).get(BASE + p)).text;
      expect(html, p).not.to.match(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(html, p).not.to.match(/\sstyle=|<style/);
      expect(html, p).not.to.match(/<[^>]*\son[a-z]+=/i);
      expect(html, p).not.to.match(/https?:\/\//);
    }
  });

  for (const [label, Framework] of [['Koa 3', Koa], ['Koa 2', Koa2]] as const) {
    it(`${label}: answers below its path, passes everything else on, and acts with CSRF`, async () => {
      const app = new Framework();
      app.silent = true;
      app.use(koaJobsAdmin(jobs, { path: BASE }));
      app.use(async (ctx) => {
        ctx.body = `host ${ctx.path}`;
      });
      const server = app.callback();
      expect((await request(server).get('/').expect(200)).text).to.equal('host /');
      expect((await request(server).get('/admin/jobsx').expect(200)).text).to.equal('host /admin/jobsx');
      const page = await request(server).get(`${BASE}/jobs/${ids.completed}`).expect(200);
      expect(page.text).not.to.include('<script>window');
      expect(page.text).to.include(`href="${BASE}/jobs?tag=`);
      expect(page.headers['content-security-policy']).to.include("script-src 'self'");
      const { agent, token } = await client(server);
      expect((await agent.post(`${BASE}/api/jobs/${ids.failed}/retry`)).status).to.equal(403);
      expect((await agent.post(`${BASE}/api/jobs/${ids.failed}/retry`).set('x-csrf-token', token)).status).to.equal(200);
      await until(async () => (await jobs.get(ids.failed))?.attempts === 3, 'the retried job to run');
      await agent.post(`${BASE}/jobs/${ids.delayed}/cancel`).type('form').send({ _csrf: token }).expect(303);
      expect((await jobs.get(ids.delayed))?.state).to.equal('cancelled');
      expect((await agent.get(`${BASE}/api/jobs/nope`)).status).to.equal(400);
      expect((await request(server).get(`${BASE}/api/jobs?tag=${encodeURIComponent(XSS)}`).expect(200)).body.items).to.have.length(1);
    });
  }

  it('Koa: authorize receives the context; view is read-only; under a mount, links use ctx.mountPath', async () => {
    type Ctx = KoaLikeAdminContext & { get(h: string): string };
    const opts: KoaAdminOptions<Ctx> = { authorize: (ctx) => (ctx.get('x-role') === 'ops' ? 'manage' : ctx.get('x-role') === 'viewer' ? 'view' : false) };
    const app = new Koa();
    app.silent = true;
    const admin = koaJobsAdmin<Ctx>(jobs, opts);
    // A minimal koa-mount: strip the prefix and set ctx.mountPath, as koa-mount does.
    app.use(async (ctx, next) => {
      if (!ctx.path.startsWith('/ops/')) return next();
      const orig = ctx.path;
      ctx.path = ctx.path.slice(4);
      (ctx as unknown as { mountPath: string }).mountPath = '/ops';
      try {
        await admin(ctx as unknown as Ctx, next);
      } finally {
        ctx.path = orig;
      }
    });
    const server = app.callback();
    expect((await request(server).get('/ops/jobs')).status).to.equal(403);
    const viewed = await request(server).get(`/ops/jobs/${ids.failed}`).set('x-role', 'viewer').expect(200);
    expect(viewed.text).to.include('read-only').and.include('href="/ops/jobs?queue=mail"');
    expect(viewed.text).not.to.include('/retry"');
    const ops = await request(server).get(`/ops/jobs/${ids.failed}`).set('x-role', 'ops').expect(200);
    expect(ops.text).to.include(`action="/ops/jobs/${ids.failed}/retry"`);
    expect(ops.headers['set-cookie'][0]).to.include('Path=/ops');
  });
});
