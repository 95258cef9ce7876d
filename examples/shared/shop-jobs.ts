/**
 * The shop's background jobs, on any database sqljobs supports (a better-sqlite3 Database or a
 * pg Pool), used by every example. Each handler reports progress and log lines, and stops
 * promptly when ctx.signal fires (timeout, cancel, shutdown): every wait below is given that signal.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createJobs, type BatchStatus, type JobContext, type Jobs, type SupportedDb } from '../../lib/index.ts';

export interface OrderPayload {
  orderId: number;
  email: string;
  item: string;
  quantity: number;
  totalCents: number;
}

/** Job name -> payload type, so enqueue and the handlers are type-checked against each other. */
export type ShopJobs = {
  'process-order': OrderPayload;
  'send-receipt': OrderPayload;
  'generate-invoice': OrderPayload;
  'order-complete': { orderId: number };
  'order-failed': { orderId: number };
  'flaky-export': { orderId: number };
  'sales-report': { windowMinutes: number };
  'sync-legacy-crm': { system: string };
};

/** The tag on every job of an order (the callbacks too): its page and the admin's tag filter find them all by it. */
export const orderTag = (orderId: number): string => `order-${orderId}`;

/** What "order-complete" answers: the batch's counts and what the receipt and the invoice returned. */
export interface OrderCompleteResult {
  orderId: number;
  batchId: string;
  completed: number;
  receipt: unknown;
  invoice: unknown;
}

export interface ShopJobsOptions {
  /** Table name prefix for the jobs tables (default 'sqljobs_'). */
  tablePrefix?: string;
  /** Shown in front of each terminal line, e.g. "[jobs]". */
  logPrefix?: string;
}

/** Report a step (progress bar + log line), then do its "work": an abortable wait. */
async function step(ctx: JobContext, percent: number, message: string, ms: number): Promise<void> {
  ctx.progress(percent, message);
  ctx.log(message);
  await sleep(ms, undefined, { signal: ctx.signal });
}

const money = (cents: number) => `$${(cents / 100).toFixed(2)}`;

/** A batch callback's ctx.batch (null only for a job that is not one: a mistake in this file). */
function batchOf(ctx: JobContext): BatchStatus {
  if (!ctx.batch) throw new Error(`${ctx.name} runs as a batch's callback; it has no ctx.batch`);
  return ctx.batch;
}

export function setupShopJobs(db: SupportedDb, options: ShopJobsOptions = {}): Jobs<ShopJobs> {
  // Receipts go through the mail queue: at most 2 sent at once across every process, and at most
  // 5 a second (the admin's queues page shows these limits and edits them at run time).
  const jobs = createJobs<ShopJobs>({ db, tablePrefix: options.tablePrefix, queues: { mail: { concurrency: 2, rateLimit: { limit: 5, intervalMs: 1000 } } } });

  // Each order is a workflow: "process-order", then the receipt and the invoice as one batch
  // (both dependsOn the order), then the batch's callback: "order-complete" when both completed,
  // "order-failed" when either failed for good or was cancelled. Each app's placeOrder enqueues it.
  jobs.define(
    'process-order',
    async (order, ctx) => {
      await step(ctx, 30, `Reserving ${order.quantity} × ${order.item}`, 600);
      await step(ctx, 70, `Charging ${money(order.totalCents)}`, 700);
      ctx.progress(100, 'Order processed');
      return { charged: order.totalCents };
    },
    { maxAttempts: 3, timeout: 30_000 },
  );

  // The batch's onSuccess callback: enqueued once, by the transaction that completed the last of
  // the receipt and the invoice. ctx.batch holds the batch's counts; its jobs give their results.
  jobs.define(
    'order-complete',
    async ({ orderId }, ctx): Promise<OrderCompleteResult> => {
      const batch = batchOf(ctx);
      const results = new Map<string, unknown>();
      for (const { id, name } of (await jobs.list({ batchId: batch.batchId })).items) {
        results.set(name, (await jobs.get(id))?.result ?? null); // list leaves results out; get has them
        ctx.log(`${name}: ${JSON.stringify(results.get(name))}`);
      }
      ctx.progress(100, `Order #${orderId} complete: ${batch.completed} of ${batch.total} jobs of its batch completed`);
      return { orderId, batchId: batch.batchId, completed: batch.completed, receipt: results.get('send-receipt'), invoice: results.get('generate-invoice') };
    },
    { maxAttempts: 3 },
  );

  // The batch's onFailure callback: a receipt or an invoice failed for good, or both were cancelled
  // because process-order failed. A real shop would alert someone or refund here.
  jobs.define('order-failed', async ({ orderId }, ctx) => {
    const { failed, cancelled } = batchOf(ctx);
    ctx.log(`Order #${orderId} needs attention: ${failed} failed, ${cancelled} cancelled`);
    return { orderId, failed, cancelled };
  });

  jobs.define(
    'send-receipt',
    async (order, ctx) => {
      await step(ctx, 10, `Rendering receipt for order #${order.orderId}`, 700);
      await step(ctx, 40, 'Connecting to smtp.shop.example', 900);
      await step(ctx, 75, `Sending receipt to ${order.email}`, 1200);
      ctx.progress(100, 'Receipt delivered');
      ctx.log('250 OK: message queued');
      return { messageId: `<receipt-${order.orderId}@shop.example>` };
    },
    { maxAttempts: 3, timeout: 30_000, queue: 'mail' },
  );

  jobs.define(
    'generate-invoice',
    async (order, ctx) => {
      const invoice = `INV-${String(order.orderId).padStart(5, '0')}`;
      await step(ctx, 5, `Loading order #${order.orderId}`, 500);
      await step(ctx, 25, `Totals: ${order.quantity} × ${order.item} = ${money(order.totalCents)}`, 900);
      await step(ctx, 50, 'Rendering PDF page 1 of 2', 1100);
      await step(ctx, 75, 'Rendering PDF page 2 of 2', 1100);
      await step(ctx, 90, `Uploading invoices/${invoice}.pdf`, 800);
      ctx.progress(100, `Invoice ${invoice} ready`);
      ctx.log(`Stored invoices/${invoice}.pdf`);
      return { invoice, totalCents: order.totalCents };
    },
    { maxAttempts: 3, timeout: 30_000 },
  );

  // Fails on attempts 1 and 2 and succeeds on 3, to show retries with backoff (about 2 s, then 4 s).
  jobs.define(
    'flaky-export',
    async ({ orderId }, ctx) => {
      await step(ctx, 20, `Attempt ${ctx.attempt} of ${ctx.maxAttempts}: connecting to the warehouse API`, 800);
      if (ctx.attempt < 3) {
        ctx.log('Warehouse API answered 503 Service Unavailable');
        throw new Error(`warehouse API unavailable (simulated failure on attempt ${ctx.attempt})`);
      }
      await step(ctx, 60, `Uploading order #${orderId}`, 700);
      ctx.progress(100, 'Exported to the warehouse');
      ctx.log('Warehouse accepted the order');
      return { exported: true };
    },
    { maxAttempts: 5, backoff: { baseMs: 2000 }, timeout: 30_000 },
  );

  // Recurring: every minute, a report of the orders completed in the last hour (the Recurring page
  // shows its schedule, next run and last outcome).
  jobs.define('sales-report', async ({ windowMinutes }, ctx) => {
    const since = new Date(Date.now() - windowMinutes * 60_000);
    const done = (await jobs.list({ name: 'order-complete', states: ['completed'], finishedAfter: since, limit: 500 })).items.length;
    ctx.log(`${done} order${done === 1 ? '' : 's'} completed in the last ${windowMinutes} minutes`);
    return { ordersCompleted: done, windowMinutes };
  });
  jobs.recurring('sales-report', '* * * * *', { windowMinutes: 60 });

  // Recurring too, and it fails for good every time: the legacy CRM it syncs with is switched off in
  // the demo, so every page has a failure to show (its attempts, its error at the top of its page).
  jobs.define(
    'sync-legacy-crm',
    async ({ system }, ctx) => {
      await step(ctx, 30, `Attempt ${ctx.attempt} of ${ctx.maxAttempts}: pushing customers to ${system}`, 400);
      ctx.log(`${system} answered 410 Gone`);
      throw new Error(`${system} is switched off in this demo (410 Gone): this job fails for good, on purpose`);
    },
    { maxAttempts: 2, backoff: { baseMs: 1000 }, timeout: 30_000 },
  );
  // Its first run comes seconds after the demo starts, so the admin has a failure to show at once.
  jobs.recurring('legacy-crm-sync', { every: 5, unit: 'minutes', startAt: new Date(Date.now() + 5_000) }, { system: 'crm.legacy.example' }, { name: 'sync-legacy-crm' });

  // A line in the terminal for each outcome, so the demo is easy to follow there too.
  const tag = options.logPrefix ?? '[jobs]';
  const short = (id: string) => id.slice(-8);
  jobs.on('completed', (e) => console.log(`${tag} ${e.name} …${short(e.id)} completed (attempt ${e.attempt})`));
  jobs.on('retrying', (e) => console.log(`${tag} ${e.name} …${short(e.id)} attempt ${e.attempt} failed: ${e.error.message}; retrying in ${(e.delayMs / 1000).toFixed(1)} s`));
  jobs.on('failed', (e) => console.log(`${tag} ${e.name} …${short(e.id)} failed for good: ${e.error.message}`));
  jobs.on('error', (err) => console.error(`${tag} error:`, err));

  return jobs;
}
