/**
 * sqljobs demo: a small shop on Express 5 + better-sqlite3.
 *
 *   npm run demo                      # http://localhost:3000
 *   PORT=4000 SQLJOBS_DEMO_DB=/tmp/shop.db npm run demo
 *
 * Placing an order inserts the order row and enqueues its workflow in ONE synchronous
 * db.transaction(), so the order and its jobs commit or roll back together: process-order, then
 * the receipt and the invoice as a batch, then the batch's "order-complete" callback.
 */
import Database from 'better-sqlite3';
import express, { type NextFunction, type Request, type Response } from 'express';
import { fileURLToPath } from 'node:url';
import { orderTag, setupJobs } from './jobs.ts';
import { jobsAdmin } from '../../lib/index.ts';
import { CATALOG, InvalidField, SimulatedCrash, emptyForm, formOf, portFromEnv, serveShop, validate, type ValidOrder } from '../shared/shop.ts';
import {
  errorPage, homePage, html, orderPage,
  type JobDetail, type Notice, type Order, type OrderForm,
} from './views.ts';

// ------------------------------------------------------------------ database and jobs

const dbPath = process.env.SQLJOBS_DEMO_DB || fileURLToPath(new URL('./shop.db', import.meta.url));
const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.exec(`CREATE TABLE IF NOT EXISTS orders (
  id          INTEGER PRIMARY KEY,
  email       TEXT    NOT NULL,
  item        TEXT    NOT NULL,
  quantity    INTEGER NOT NULL,
  total_cents INTEGER NOT NULL,
  flaky       INTEGER NOT NULL DEFAULT 0,
  created_at  INTEGER NOT NULL
)`);

const jobs = setupJobs(db);

interface OrderRow { id: number; email: string; item: string; quantity: number; total_cents: number; flaky: number; created_at: number }
const toOrder = (r: OrderRow): Order => ({
  id: r.id, email: r.email, item: r.item, quantity: r.quantity, totalCents: r.total_cents, flakyExport: r.flaky === 1, createdAt: new Date(r.created_at),
});
const insertOrder = db.prepare('INSERT INTO orders (email, item, quantity, total_cents, flaky, created_at) VALUES (?, ?, ?, ?, ?, ?)');
const selectOrder = db.prepare('SELECT * FROM orders WHERE id = ?');
const recentOrders = db.prepare('SELECT * FROM orders ORDER BY id DESC LIMIT 20');

// ------------------------------------------------------------------ placing an order

/** The heart of the demo: the order row and its jobs are written in one transaction. */
function placeOrder(o: ValidOrder, opts: { crashAfterEnqueue?: boolean } = {}): number {
  return db.transaction(() => {
    const totalCents = o.item.priceCents * o.quantity;
    const orderId = Number(insertOrder.run(o.email, o.item.name, o.quantity, totalCents, o.flaky ? 1 : 0, Date.now()).lastInsertRowid);
    const tag = orderTag(orderId);
    const payload = { orderId, email: o.email, item: o.item.name, quantity: o.quantity, totalCents };
    // A workflow: the order is processed; then the receipt and the invoice run as one batch (both
    // wait for the order); when the last of them completes, the transaction that completes it
    // enqueues the batch's callback "order-complete" (or "order-failed" if either failed for good
    // or was cancelled). All of it commits or rolls back with the order.
    const processed = jobs.enqueueSync('process-order', payload, { tag }).id;
    const fulfilment = jobs.batchSync(
      [
        { name: 'send-receipt', payload, tag, dependsOn: processed },
        { name: 'generate-invoice', payload, tag, dependsOn: processed },
      ],
      { onSuccess: { name: 'order-complete', payload: { orderId }, tag }, onFailure: { name: 'order-failed', payload: { orderId }, tag } },
    );
    const jobIds = [processed, ...fulfilment.ids];
    if (o.flaky) jobIds.push(jobs.enqueueSync('flaky-export', { orderId }, { tag }).id);
    if (opts.crashAfterEnqueue) throw new SimulatedCrash(orderId, jobIds);
    return orderId;
  })();
}

// ------------------------------------------------------------------ HTTP

const app = express();
app.disable('x-powered-by');
// The jobs admin: its own pages, CSP, CSRF and JSON API. No authorize option, so only loopback
// clients (this machine) are served; pass authorize: (req) => 'manage' | 'view' | false otherwise.
app.use('/admin/jobs', jobsAdmin(jobs));
app.use(express.urlencoded({ extended: false, limit: '10kb' }));
app.use((_req, res, next) => {
  res.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  res.set('X-Content-Type-Options', 'nosniff');
  next();
});


async function renderHome(res: Response, opts: { status?: number; form?: OrderForm; notice?: Notice; invalidField?: string } = {}) {
  const orders = (recentOrders.all() as OrderRow[]).map(toOrder);
  const { items } = await jobs.list({ limit: 20 });
  res.status(opts.status ?? 200).type('html').send(homePage({ catalog: CATALOG, orders, jobs: items, form: opts.form ?? emptyForm, notice: opts.notice, invalidField: opts.invalidField }));
}

app.get('/', async (_req, res) => {
  await renderHome(res);
});

/** Validate the form, or answer 400 with the form again and a message naming the field. */
async function validOrElse400(req: Request, res: Response): Promise<ValidOrder | null> {
  const form = formOf(req.body);
  try {
    return validate(form);
  } catch (err) {
    if (!(err instanceof InvalidField)) throw err;
    await renderHome(res, { status: 400, form, invalidField: err.field, notice: { kind: 'error', title: 'Please check the order', body: err.message } });
    return null;
  }
}

app.post('/orders', async (req, res) => {
  const order = await validOrElse400(req, res);
  if (!order) return;
  const orderId = placeOrder(order);
  res.redirect(303, `/orders/${orderId}`);
});

/** Place the order with a throw inside its transaction; returns what had been written before the throw. */
function placeOrderAndCrash(o: ValidOrder): SimulatedCrash {
  try {
    placeOrder(o, { crashAfterEnqueue: true });
  } catch (err) {
    if (err instanceof SimulatedCrash) return err;
    throw err;
  }
  throw new Error('placeOrder was asked to crash but returned');
}

app.post('/orders-failing', async (req, res) => {
  const order = await validOrElse400(req, res);
  if (!order) return;
  const crash = placeOrderAndCrash(order);
  // Look for what was written before the throw: the rollback took all of it.
  const orderExists = selectOrder.get(crash.orderId) !== undefined;
  const jobsFound = (await Promise.all(crash.jobIds.map((id) => jobs.get(id)))).filter(Boolean).length;
  const rolledBack = !orderExists && jobsFound === 0;
  const body = html`Inside the transaction, order #${crash.orderId} was inserted and ${crash.jobIds.length} jobs were enqueued
    (<code>${crash.jobIds.map((id) => `…${id.slice(-8)}`).join(', ')}</code>); then the handler threw.
    <ul>
      <li>Order #${crash.orderId} in <code>orders</code>: <strong>${orderExists ? 'found' : 'not found'}</strong></li>
      <li>Its jobs via <code>jobs.get(id)</code>: <strong>${jobsFound} of ${crash.jobIds.length} found</strong></li>
    </ul>`;
  await renderHome(res, {
    form: formOf(req.body),
    notice: {
      kind: rolledBack ? 'info' : 'error',
      title: rolledBack ? 'Rolled back: neither the order nor its jobs exist.' : 'Unexpected: something survived the rollback!',
      body,
    },
  });
});

app.get('/orders/:id', async (req, res) => {
  const row = /^\d{1,15}$/.test(req.params.id) ? (selectOrder.get(Number(req.params.id)) as OrderRow | undefined) : undefined;
  if (!row) {
    res.status(404).type('html').send(errorPage(404, `There is no order ${req.params.id}.`));
    return;
  }
  const { items } = await jobs.list({ tag: orderTag(row.id), limit: 20 });
  items.sort((a, b) => (a.id < b.id ? -1 : 1)); // in enqueue order (ids are time-ordered UUIDv7)
  const details: JobDetail[] = await Promise.all(
    items.map(async (job) => ({ job, attempts: await jobs.attempts(job.id), logs: await jobs.logs(job.id) })),
  );
  res.type('html').send(orderPage(toOrder(row), details));
});

app.use((req, res) => {
  res.status(404).type('html').send(errorPage(404, `Nothing at ${req.method} ${req.path}.`));
});

app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
  const status = (err as { status?: number }).status ?? 500; // e.g. 400/413 from the body parser
  if (status >= 500) console.error(err);
  res.status(status).type('html').send(errorPage(status, status === 500 ? 'Something went wrong; see the server log.' : String((err as Error).message)));
});

// ------------------------------------------------------------------ start and stop

await jobs.start();
serveShop({
  listen: (port, ready) => app.listen(port, ready),
  port: portFromEnv(3000),
  title: `sqljobs demo shop (database: ${dbPath})`,
  jobs,
  closeDatabase: () => void db.close(),
});
