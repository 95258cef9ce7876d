/**
 * The demo (`npm run demo`, examples/express-sqlite) shows issue 13's workflow: an order placed
 * through its HTTP route runs process-order, then the receipt and the invoice as one batch, then
 * the batch's "order-complete" callback, which sees the batch's counts and both results. The demo
 * runs as the README starts it, in its own process, on a temporary SQLite file and a free port.
 * Its recurring jobs give every admin page something to show: a report that completes, a sync that
 * fails for good (issue 16).
 */
import { expect } from 'chai';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { createJobs, type JobRecord, type Jobs } from '../../lib/index.ts';
import { setupShopJobs, type OrderCompleteResult } from '../../examples/shared/shop-jobs.ts';
import { until } from '../helpers/dialects.ts';
import { spawnWorker, type WorkerProc } from '../helpers/processes.ts';

describe('the demo shop (npm run demo)', () => {
  let dir = '';
  let demo: WorkerProc | null = null;
  let reader: Jobs | null = null;
  afterEach(async () => {
    demo?.kill('SIGTERM');
    await demo?.exited;
    await reader?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The demo's jobs of one order, by name, once its "order-complete" callback completed. */
  async function finishedOrder(jobs: Jobs, orderId: number): Promise<Map<string, JobRecord>> {
    const ofOrder = async () => new Map((await jobs.list({ tag: `order-${orderId}` })).items.map((j) => [j.name, j]));
    await until(async () => (await ofOrder()).get('order-complete')?.state === 'completed', 'the order-complete callback to complete', 30_000, 100);
    return ofOrder();
  }

  it('an order placed through POST /orders ends in the "order-complete" callback of its receipt and invoice batch', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-demo-'));
    const file = path.join(dir, 'shop.db');
    demo = spawnWorker({ PORT: 0, SQLJOBS_DEMO_DB: file }, path.resolve('examples/express-sqlite/app.ts'));
    const shop = /http:\/\/localhost:\d+/.exec(await demo.waitFor(/Shop: +http:\/\/localhost:\d+\//))![0];

    const placed = await request(shop).post('/orders').type('form').send({ email: 'ada@example.com', item: 'kettle', quantity: '2' });
    expect(placed.status).to.equal(303);
    const orderId = Number(/^\/orders\/(\d+)$/.exec(placed.headers.location)![1]);

    // Read the demo's jobs from this process, on the same file (no worker: the demo runs them).
    reader = createJobs({ db: new Database(file), worker: false });
    const jobs = await finishedOrder(reader, orderId);
    expect([...jobs.keys()].sort()).to.deep.equal(['generate-invoice', 'order-complete', 'process-order', 'send-receipt']);
    const batchId = jobs.get('send-receipt')!.batchId!;
    expect(batchId, 'the receipt and the invoice are one batch').to.be.a('string');
    expect(jobs.get('generate-invoice')!.batchId).to.equal(batchId);
    expect(jobs.get('process-order')!.batchId, 'the order job is not in the batch').to.equal(null);
    expect(await reader.batchStatus(batchId)).to.deep.include({ total: 2, completed: 2, failed: 0, cancelled: 0, finished: true });
    expect((await reader.links(jobs.get('send-receipt')!.id)).parents.map((p) => p.name), 'the receipt waited for the order').to.deep.equal(['process-order']);

    // The callback saw ctx.batch (its id and counts) and read the batch's results.
    const expected: OrderCompleteResult = {
      orderId,
      batchId,
      completed: 2,
      receipt: { messageId: `<receipt-${orderId}@shop.example>` },
      invoice: { invoice: `INV-${String(orderId).padStart(5, '0')}`, totalCents: 2 * 5900 },
    };
    expect((await reader.get(jobs.get('order-complete')!.id))!.result).to.deep.equal(expected);
    expect((await reader.list({ name: 'order-failed' })).items, 'no failure callback').to.have.length(0);

    // The order page links the batch; the admin's batch page (loopback) links the job its callback enqueued.
    const orderPage = await request(shop).get(`/orders/${orderId}`);
    expect(orderPage.text).to.include(`/admin/jobs/batches/${batchId}`);
    const batchPage = await request(shop).get(`/admin/jobs/batches/${batchId}`);
    expect(batchPage.status).to.equal(200);
    expect(batchPage.text).to.match(new RegExp(`on success</dt><dd id="callback-onSuccess">\\s*<a href="/admin/jobs/jobs/${jobs.get('order-complete')!.id}">order-complete</a>`));

    // Something on every page: two recurring schedules, stored by the demo's worker at start.
    expect((await reader.schedules.list()).map((r) => [r.key, r.name, r.enabled])).to.deep.equal([
      ['legacy-crm-sync', 'sync-legacy-crm', true],
      ['sales-report', 'sales-report', true],
    ]);
    // The failing one runs seconds after start, not 5 minutes later: the admin has a failure to show at once.
    const crm = (await reader.schedules.list()).find((r) => r.key === 'legacy-crm-sync')!;
    expect(crm.lastRunAt !== null || crm.nextRunAt!.getTime() - Date.now() < 10_000, 'the CRM sync\'s first run within seconds').to.equal(true);
  });

  it('its recurring jobs: the sales report completes, the legacy CRM sync fails for good after its attempts', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-demo-'));
    const db = new Database(path.join(dir, 'shop.db'));
    const jobs = setupShopJobs(db, { logPrefix: '[test]' });
    reader = jobs as unknown as Jobs;
    await jobs.start();
    const report = await jobs.schedules.trigger('sales-report');
    const crm = await jobs.schedules.trigger('legacy-crm-sync');
    await until(async () => (await jobs.get(crm!.id))?.state === 'failed' && (await jobs.get(report!.id))?.state === 'completed', 'both runs to finish', 20_000, 100);
    expect((await jobs.get(report!.id))!.result).to.deep.equal({ ordersCompleted: 0, windowMinutes: 60 });
    const failed = (await jobs.get(crm!.id))!;
    expect(failed.attempts).to.equal(2);
    expect(failed.error!.message).to.include('fails for good, on purpose');
    expect((await jobs.attempts(crm!.id)).map((a) => a.outcome)).to.deep.equal(['failed', 'failed']);
  });
});
