/**
 * sqljobs demo: the small shop on Express 5 + PostgreSQL, with the request unit of work.
 *
 *   npm run example:express-postgres      # http://localhost:3001
 *   PORT=4001 DATABASE_URL=postgres://user@host/db npm run example:express-postgres
 *
 * app.use(jobsMiddleware(jobs)) gives every request `req.jobs`. Placing an order takes the pg
 * client already inside the request's BEGIN (`await req.jobs.transaction()`), INSERTs the order
 * on it and enqueues the order's jobs with `req.jobs.enqueue`: the middleware commits all of it
 * just before the redirect goes out, or rolls all of it back when the handler throws or answers
 * an error. The app never calls COMMIT, ROLLBACK or release() itself.
 *
 * Tables: demo_orders, and the jobs tables demo_jobs_* (created on startup).
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import pg from 'pg';
import { jobsAdmin, jobsMiddleware } from '../../lib/index.ts';
import { orderTag, setupShopJobs, type OrderPayload, type ShopJobs } from '../shared/shop-jobs.ts';

// Type req.jobs with the shop's jobs: names and payloads are checked at every enqueue.
// (An app imports from 'sqljobs' and augments that module the same way.)
declare module '../../lib/index.ts' {
  interface RequestJobMap extends ShopJobs {}
}
import {
  CATALOG, DEFAULT_DATABASE_URL, InvalidField, ORDER_COLUMNS, SimulatedCrash, crashNotice, emptyForm, formOf, invalidNotice,
  orderIdParam, ordersTable, portFromEnv, safeUrl, serveShop, validate, type ValidOrder,
} from '../shared/shop.ts';
import { createViews, html, type JobDetail, type Notice, type OrderForm } from '../shared/views.ts';

// ------------------------------------------------------------------ database and jobs

const databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
pool.on('error', (err) => console.error('[pg] idle client error:', err.message)); // e.g. the server restarted

const orders = ordersTable(pool, 'demo_orders');
const jobs = setupShopJobs(pool, { tablePrefix: 'demo_jobs_' });

const views = createViews({
  tag: 'sqljobs demo · Express + PostgreSQL',
  footer: 'Orders and their jobs live in one PostgreSQL database and commit in the request’s transaction.',
  hint: html`“Place order” INSERTs the order on <code>await req.jobs.transaction()</code> (the pg client, already
    inside the request’s BEGIN) and adds its workflow with <code>req.jobs.enqueue()</code> and <code>req.jobs.batch()</code>; the middleware commits just
    before the redirect. “Then crash” does the same and throws, so the middleware rolls the order and its jobs back
    together and the answer is a 500.`,
});

// ------------------------------------------------------------------ placing an order

/**
 * The heart of the demo: the order row and its jobs, in the request's transaction.
 * Nothing here commits: jobsMiddleware does, when the response goes out with a status below 400.
 */
async function placeOrder(req: Request, o: ValidOrder, opts: { crashAfterEnqueue?: boolean } = {}): Promise<number> {
  const c = await req.jobs.transaction<pg.PoolClient>(); // BEGIN already run; do not commit, roll back or release it
  const totalCents = o.item.priceCents * o.quantity;
  const { rows } = await c.query<{ id: number }>(
    `INSERT INTO ${orders.name} ${ORDER_COLUMNS} VALUES ($1, $2, $3, $4, $5) RETURNING id`,
    [o.email, o.item.name, o.quantity, totalCents, o.flaky],
  );
  const orderId = rows[0].id;
  const tag = orderTag(orderId);
  const payload: OrderPayload = { orderId, email: o.email, item: o.item.name, quantity: o.quantity, totalCents };
  // A workflow: the order is processed; then the receipt and the invoice run as one batch (both
  // wait for the order); when the last of them completes, the transaction that completes it
  // enqueues the batch's callback "order-complete" (or "order-failed" if either failed for good
  // or was cancelled). req.jobs.batch joins the request's transaction like req.jobs.enqueue.
  const processed = (await req.jobs.enqueue('process-order', payload, { tag })).id;
  const fulfilment = await req.jobs.batch(
    [
      { name: 'send-receipt', payload, tag, dependsOn: processed },
      { name: 'generate-invoice', payload, tag, dependsOn: processed },
    ],
    { onSuccess: { name: 'order-complete', payload: { orderId }, tag }, onFailure: { name: 'order-failed', payload: { orderId }, tag } },
  );
  const jobIds = [processed, ...fulfilment.ids];
  if (o.flaky) jobIds.push((await req.jobs.enqueue('flaky-export', { orderId }, { tag })).id);
  if (opts.crashAfterEnqueue) throw new SimulatedCrash(orderId, jobIds);
  return orderId;
}

// ------------------------------------------------------------------ HTTP

const app = express();
app.disable('x-powered-by');
// The jobs admin (loopback clients only without an authorize option), before the shop's own body parser and CSP.
app.use('/admin/jobs', jobsAdmin(jobs));
app.use(express.urlencoded({ extended: false, limit: '10kb' }));
app.use((_req, res, next) => {
  res.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  res.set('X-Content-Type-Options', 'nosniff');
  next();
});
// req.jobs on every request. The transaction opens on first use only: GET pages never touch it.
app.use(jobsMiddleware(jobs, { onCommitError: (err) => console.error('[http] commit failed; answered 500:', err) }));

async function renderHome(res: Response, opts: { status?: number; form?: OrderForm; notice?: Notice; invalidField?: string } = {}) {
  const [recent, { items }] = await Promise.all([orders.recent(), jobs.list({ limit: 20 })]);
  res.status(opts.status ?? 200).type('html').send(
    views.homePage({ catalog: CATALOG, orders: recent, jobs: items, form: opts.form ?? emptyForm, notice: opts.notice, invalidField: opts.invalidField }),
  );
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
    await renderHome(res, { status: 400, form, invalidField: err.field, notice: invalidNotice(err) });
    return null;
  }
}

app.post('/orders', async (req, res) => {
  const order = await validOrElse400(req, res);
  if (!order) return;
  const orderId = await placeOrder(req, order);
  res.redirect(303, `/orders/${orderId}`); // the commit runs here, before the 303 is sent
});

app.post('/orders-failing', async (req, res) => {
  const order = await validOrElse400(req, res);
  if (!order) return;
  await placeOrder(req, order, { crashAfterEnqueue: true }); // throws: Express 5 hands it to the error handler
});

app.get('/orders/:id', async (req, res) => {
  const id = orderIdParam(req.params.id);
  const order = id === null ? null : await orders.get(id);
  if (!order) {
    res.status(404).type('html').send(views.errorPage(404, `There is no order ${req.params.id}.`));
    return;
  }
  const { items } = await jobs.list({ tag: orderTag(order.id), limit: 20 });
  items.sort((a, b) => (a.id < b.id ? -1 : 1)); // in enqueue order (ids are time-ordered UUIDv7)
  const details: JobDetail[] = await Promise.all(
    items.map(async (job) => ({ job, attempts: await jobs.attempts(job.id), logs: await jobs.logs(job.id) })),
  );
  res.type('html').send(views.orderPage(order, details)); // refreshes itself while a job is pending or running
});

app.use((req, res) => {
  res.status(404).type('html').send(views.errorPage(404, `Nothing at ${req.method} ${req.path}.`));
});

app.use(async (err: unknown, req: Request, res: Response, _next: NextFunction) => {
  try {
    if (err instanceof SimulatedCrash) {
      // The request's transaction is still open here; sending this 500 makes the middleware roll
      // it back before the first byte goes out. Until then its rows are invisible to every other
      // connection, and after the rollback they are gone: either way, the pool cannot find them.
      const notice = await crashNotice(orders, jobs, err, html`Checked through the pool (other connections) just before this
        500 was sent; the middleware rolls the request’s transaction back as it goes out.`);
      return void (await renderHome(res, { status: 500, form: formOf(req.body), notice }));
    }
    const status = (err as { status?: number }).status ?? 500; // e.g. 400/413 from the body parser
    if (status >= 500) console.error(err);
    res.status(status).type('html').send(views.errorPage(status, status === 500 ? 'Something went wrong; see the server log.' : String((err as Error).message)));
  } catch (failure) {
    console.error(failure);
    if (!res.headersSent) res.status(500).type('text').send('Something went wrong; see the server log.');
  }
});

// ------------------------------------------------------------------ start and stop

await orders.create();
await jobs.start(); // applies the jobs schema (demo_jobs_*) first
serveShop({
  listen: (port, ready) => app.listen(port, ready),
  port: portFromEnv(3001),
  title: `sqljobs demo shop on Express + PostgreSQL (database: ${safeUrl(databaseUrl)})`,
  jobs,
  closeDatabase: () => pool.end(),
});
