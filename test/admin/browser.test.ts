/**
 * The admin in a real browser (headless Chromium through playwright-core): live overview, a
 * running job's progress advancing without a reload, retrying a failed job until it completes,
 * pausing a queue. Screenshots of every page go to test/screenshots/, or with
 * SQLJOBS_UPDATE_SCREENSHOTS=1 to docs/screenshots/ (committed, linked from the README).
 * In CI a missing /usr/bin/chromium is a failure; on a developer's machine a loud skip.
 */
import { expect } from 'chai';
import Database from 'better-sqlite3';
import express from 'express';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createJobs, jobsAdmin, type Jobs } from '../../lib/index.ts';
import { isCI } from '../helpers/ci.ts';
import { until } from '../helpers/dialects.ts';
import { XSS } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
// Screenshots go to test/screenshots/ (not in git); SQLJOBS_UPDATE_SCREENSHOTS=1 refreshes the committed ones the README shows.
const SHOTS = path.resolve(import.meta.dirname, process.env.SQLJOBS_UPDATE_SCREENSHOTS === '1' ? '../../docs/screenshots' : '../screenshots');
const BASE = '/admin/jobs';

describe('admin in a browser (Chromium)', function () {
  this.timeout(90_000);
  let dir: string;
  let db: Database.Database;
  let jobs: Jobs;
  let server: Server;
  let browser: BrowserContext;
  let profile: string;
  let page: Page;
  let origin: string;
  const cspErrors: string[] = [];
  /** Every console error and failed request (a favicon 404 is one), per test. */
  const consoleErrors: string[] = [];
  let failing = true;

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      if (isCI()) throw new Error(`CI: ${CHROMIUM} is missing (apt-get install -y chromium)`);
      console.warn(`\n  !!! SKIPPING the browser tests: ${CHROMIUM} is missing (apt-get install -y chromium)\n`);
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-browser-'));
    db = new Database(path.join(dir, 'jobs.db'));
    jobs = createJobs({ db, worker: { pollInterval: 100, heartbeatInterval: 1000 } });
    jobs.define('slow-report', async (_p: { pages: number }, ctx) => {
      for (let i = 1; i <= 40; i++) {
        ctx.progress(i * 2.5, `page ${i} of 40`);
        ctx.log(`rendered page ${i}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      return { pages: 40 };
    });
    jobs.define('sync-crm', async (p: { customer: string }) => {
      if (failing) throw new Error(`CRM timed out for ${p.customer}`);
      return { synced: p.customer };
    }, { maxAttempts: 1 });
    jobs.define('send-email', async (p: { to: string }, ctx) => {
      ctx.log(`sent to ${p.to}`);
      return { accepted: true };
    });
    jobs.recurring('nightly-cleanup', '30 3 * * *', { olderThanDays: 30 }, { name: 'send-email' });
    jobs.recurring('heartbeat-mail', { every: 15, unit: 'minutes' }, { to: 'ops@example.com' }, { name: 'send-email' });
    await jobs.start();
    await jobs.enqueueMany(Array.from({ length: 12 }, (_, i) => ({ name: 'send-email' as const, payload: { to: `user${i}@example.com` }, tag: 'welcome', queue: 'mail' })));
    await jobs.enqueue('send-email', { to: XSS }, { queue: 'mail', tag: 'xss' });
    await jobs.enqueue('sync-crm', { customer: 'Globex' }, { tag: 'crm' }); // fails for good: a recent failure on the overview
    await jobs.enqueue('send-email', { to: 'later@example.com' }, { delay: 3_600_000, queue: 'mail' });
    const app = express();
    // Another site (localhost is not the same site as 127.0.0.1) that links to the admin, as chat or mail would.
    app.get('/elsewhere', (_req, res) => void res.send(`<!doctype html><a id="go" href="${origin}${BASE}/queues">the jobs admin</a>`));
    app.use(BASE, jobsAdmin(jobs));
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // A fresh profile each run (playwright passes it as --user-data-dir).
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1200, height: 860 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspErrors.push(m.text());
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('dialog', (d) => void d.accept());
    fs.mkdirSync(SHOTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    server?.close();
    await jobs?.close();
    db?.close();
    for (const d of [dir, profile]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  afterEach(() => {
    expect(cspErrors, 'no CSP violation').to.deep.equal([]);
  });

  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });

  it('opens the overview, and it updates itself while open', async () => {
    await page.goto(`${origin}${BASE}/`);
    await page.waitForFunction(() => 'htmx' in window);
    await until(async () => (await jobs.list({ state: 'pending', queue: 'mail' })).items.length === 1, 'the mail queue to drain');
    const marker = await page.evaluate(() => ((window as unknown as { marker: number }).marker = Math.random()));
    // A job enqueued now shows up in the pending count without a reload.
    await jobs.enqueue('send-email', { to: 'x@example.com' }, { delay: 3_600_000 });
    await page.waitForFunction(() => document.querySelector('#count-pending')?.textContent === '2', undefined, { timeout: 10_000 });
    expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).to.equal(marker);
    expect(await page.locator('svg rect.bar-completed').count()).to.be.greaterThan(0);
    await shot('overview');
  });

  it('shows a running job whose progress and logs advance, then completed with its result, every log line and no Cancel, without a reload or a console error', async () => {
    consoleErrors.length = 0;
    const { id } = await jobs.enqueue('slow-report', { pages: 40 });
    await until(async () => ((await jobs.get(id))?.progress ?? 0) > 0, 'the job to report progress');
    await page.goto(`${origin}${BASE}/jobs/${id}`);
    const marker = await page.evaluate(() => ((window as unknown as { marker: number }).marker = Math.random()));
    const first = Number(await page.locator('#progress').getAttribute('value'));
    await page.waitForFunction((v) => Number(document.querySelector('#progress')?.getAttribute('value')) > v + 10, first, { timeout: 15_000 });
    expect(await page.locator('#logs').textContent()).to.include('rendered page');
    expect(await page.locator('form[action$="/cancel"]').count(), 'Cancel while it runs').to.equal(1);
    expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).to.equal(marker);
    await shot('job-running');
    // It stops polling once the job finished: the poller is swapped out for a final fragment.
    await page.waitForSelector('#live[data-state="completed"]', { timeout: 20_000 });
    expect(await page.locator('#live[hx-trigger]').count()).to.equal(0);
    expect(await page.locator('#progress').getAttribute('value')).to.equal('100');
    // The whole job updated: badge, actions, result, times, the attempt and every line.
    expect(await page.locator('h1 .state').textContent()).to.equal('completed');
    expect(await page.locator('form[action$="/cancel"]').count(), 'no Cancel once it finished').to.equal(0);
    expect(await page.locator('#result').textContent()).to.include('"pages": 40');
    expect(await page.locator('.attempt strong').first().textContent()).to.equal('#1 completed');
    expect((await page.locator('#logs').textContent())!.match(/rendered page \d+/g)).to.have.length(40);
    // Times in the reader's local zone, UTC on hover.
    expect(await page.locator('time[data-local]').count()).to.be.greaterThan(2);
    expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).to.equal(marker);
    expect(consoleErrors, 'no console error (a missing favicon would be one)').to.deep.equal([]);
  });

  it('retries a failed job from its page and sees it complete', async () => {
    const { id } = await jobs.enqueue('sync-crm', { customer: 'ACME <b>Corp</b>' });
    await until(async () => (await jobs.get(id))?.state === 'failed', 'the job to fail');
    await page.goto(`${origin}${BASE}/jobs/${id}`);
    expect(await page.locator('.timeline .error').first().textContent()).to.include('CRM timed out for ACME <b>Corp</b>');
    await shot('job-failed');
    failing = false;
    await page.getByRole('button', { name: 'Retry' }).click();
    await page.waitForURL(/done=retry/);
    await page.waitForSelector('#live[data-state="completed"]', { timeout: 15_000 });
    expect((await jobs.get(id))?.state).to.equal('completed');
    await page.goto(`${origin}${BASE}/jobs/${id}`);
    expect(await page.locator('#result').textContent()).to.include('ACME <b>Corp</b>');
  });

  it('pauses a queue from the queues page; the worker stops taking its jobs', async () => {
    await page.goto(`${origin}${BASE}/queues`);
    const row = page.locator('tr[data-queue="mail"]');
    const sent = page.waitForRequest((r) => r.url().endsWith('/queues/mail/pause') && r.method() === 'POST');
    await row.getByRole('button', { name: 'Pause' }).click();
    // HTMX sent it (no page load), with the CSRF token in the header inherited from <body>.
    const request = await sent;
    expect(request.headers()['hx-request']).to.equal('true');
    expect(request.headers()['x-csrf-token']).to.match(/^[A-Za-z0-9_-]{43}$/);
    await page.waitForFunction(() => document.querySelector('tr[data-queue="mail"] .queue-state')?.textContent?.startsWith('paused'));
    expect((await jobs.queues.list()).find((q) => q.queue === 'mail')?.pausedAt).to.be.instanceOf(Date);
    const { id } = await jobs.enqueue('send-email', { to: 'paused@example.com' }, { queue: 'mail' });
    await new Promise((r) => setTimeout(r, 600));
    expect((await jobs.get(id))?.state).to.equal('pending');
    await shot('queues');
    await row.getByRole('button', { name: 'Resume' }).click();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the resumed queue to run');
  });

  it('a link from another site keeps the CSRF cookie (SameSite=Lax): the tab already open still acts', async () => {
    await jobs.enqueue('send-email', { to: 'lax@example.com' }, { queue: 'mail', delay: 3_600_000 });
    await page.goto(`${origin}${BASE}/queues`);
    const token = await page.locator('meta[name="sqljobs-csrf"]').getAttribute('content');
    const other = await browser.newPage();
    try {
      await other.goto(origin.replace('127.0.0.1', 'localhost') + '/elsewhere');
      await other.click('#go');
      await other.waitForURL(`${origin}${BASE}/queues`);
      expect(await other.locator('meta[name="sqljobs-csrf"]').getAttribute('content')).to.equal(token);
    } finally {
      await other.close();
    }
    await page.locator('tr[data-queue="mail"]').getByRole('button', { name: 'Pause' }).click();
    await page.waitForFunction(() => document.querySelector('tr[data-queue="mail"] .queue-state')?.textContent?.startsWith('paused'));
    expect(await page.locator('#request-error').isVisible()).to.equal(false);
    await page.locator('tr[data-queue="mail"]').getByRole('button', { name: 'Resume' }).click();
    await page.waitForFunction(() => document.querySelector('tr[data-queue="mail"] .queue-state')?.textContent === 'active');
  });

  it('a refused HTMX action shows an error banner instead of doing nothing', async () => {
    await page.goto(`${origin}${BASE}/queues`);
    await browser.clearCookies(); // the page's token no longer matches any cookie: the server refuses the action
    await page.locator('tr[data-queue="mail"]').getByRole('button', { name: 'Pause' }).click();
    await page.waitForSelector('#request-error:not([hidden])', { timeout: 10_000 });
    expect(await page.locator('#request-error').textContent()).to.match(/^The request failed \(403\): forbidden: missing or wrong CSRF token .*Reload the page to try again\.$/);
    expect((await jobs.queues.list()).find((q) => q.queue === 'mail')?.pausedAt).to.equal(null);
    // Reloading mints a new cookie and token; the action then works.
    await page.reload();
    await page.locator('tr[data-queue="mail"]').getByRole('button', { name: 'Pause' }).click();
    await until(async () => (await jobs.queues.list()).find((q) => q.queue === 'mail')?.pausedAt, 'the queue to pause after a reload');
    await jobs.queues.resume('mail');
  });

  it('renders the jobs list, recurring and workers pages (screenshots)', async () => {
    await page.goto(`${origin}${BASE}/jobs`);
    expect(await page.locator('table.jobs tbody tr').count()).to.be.greaterThan(10);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).to.equal(undefined);
    await shot('jobs');
    await page.goto(`${origin}${BASE}/recurring`);
    expect(await page.locator('body').textContent()).to.include('At 03:30');
    await shot('recurring');
    await page.goto(`${origin}${BASE}/workers`);
    expect(await page.locator('body').textContent()).to.include(String(process.pid));
    await shot('workers');
    await page.goto(`${origin}${BASE}/history`);
    expect(await page.locator('table.history tbody tr').count()).to.be.greaterThan(0);
    await shot('history');
    // The overview again, now that jobs ran, failed and were retried (the README's picture).
    await page.goto(`${origin}${BASE}/`);
    await shot('overview');
    for (const f of fs.readdirSync(SHOTS)) expect(fs.statSync(path.join(SHOTS, f)).size, f).to.be.below(150 * 1024);
  });

  it('fits a 390 px screen: no page is wider than the phone (a wide table scrolls inside itself)', async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    try {
      const { id } = await jobs.enqueue('send-email', { to: 'narrow@example.com' }, { delay: 3_600_000 });
      for (const p of ['/', '/jobs', `/jobs/${id}`, '/recurring', '/queues', '/history', '/workers']) {
        await page.goto(`${origin}${BASE}${p}`);
        const wide = await page.evaluate(() => document.documentElement.scrollWidth);
        expect(wide, p).to.be.at.most(390);
      }
    } finally {
      await page.setViewportSize({ width: 1200, height: 860 });
    }
  });
});
