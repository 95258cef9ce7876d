/**
 * sqljobs demo: the small shop on Koa 3 + PostgreSQL, with the request unit of work.
 *
 *   npm run example:koa-postgres          # http://localhost:3002
 *   PORT=4002 DATABASE_URL=postgres://user@host/db npm run example:koa-postgres
 *
 * app.use(koaJobs(jobs)) gives every request `ctx.jobs`. Placing an order takes the pg client
 * already inside the request's BEGIN (`await ctx.jobs.transaction()`), INSERTs the order on it and
 * enqueues the order's jobs with `ctx.jobs.enqueue`. koaJobs commits right after the downstream
 * middleware returns with a status below 400, and rolls back when it throws or answers an error;
 * the app never calls COMMIT, ROLLBACK or release() itself.
 *
 * No router or body-parser dependency: a tiny router and a urlencoded reader are below.
 * Tables: demo_koa_orders, and the jobs tables demo_koa_jobs_* (created on startup).
 */
import Koa from 'koa';
import pg from 'pg';
import { koaJobs, koaJobsAdmin, type RequestJobs } from '../../lib/index.ts';
import { orderTag, setupShopJobs, type OrderPayload, type ShopJobs } from '../shared/shop-jobs.ts';
import {
  CATALOG, DEFAULT_DATABASE_URL, InvalidField, ORDER_COLUMNS, SimulatedCrash, crashNotice, emptyForm, formOf, invalidNotice,
  orderIdParam, ordersTable, portFromEnv, safeUrl, serveShop, validate, type ValidOrder,
} from '../shared/shop.ts';
import { createViews, html, type JobDetail, type Notice, type OrderForm } from '../shared/views.ts';

// ------------------------------------------------------------------ database and jobs

const databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
pool.on('error', (err) => console.error('[pg] idle client error:', err.message)); // e.g. the server restarted

const orders = ordersTable(pool, 'demo_koa_orders');
const jobs = setupShopJobs(pool, { tablePrefix: 'demo_koa_jobs_' });

const views = createViews({
  tag: 'sqljobs demo · Koa + PostgreSQL',
  footer: 'Orders and their jobs live in one PostgreSQL database and commit in the request’s transaction.',
  hint: html`“Place order” INSERTs the order on <code>await ctx.jobs.transaction()</code> (the pg client, already
    inside the request’s BEGIN) and adds its workflow with <code>ctx.jobs.enqueue()</code> and <code>ctx.jobs.batch()</code>; koaJobs commits when the
    handler returns. “Then crash” does the same and throws, so koaJobs rolls the order and its jobs back together
    and the answer is a 500.`,
});

// ------------------------------------------------------------------ Koa types

/** ctx.state: the submitted form, kept for re-rendering it after an error. */
type ShopState = { form?: OrderForm };
/** ctx.jobs, typed with the shop's job map so enqueue checks names and payloads. */
interface ShopContext {
  jobs: RequestJobs<ShopJobs>;
}
type Ctx = Koa.ParameterizedContext<ShopState, ShopContext>;

// ------------------------------------------------------------------ placing an order

/**
 * The heart of the demo: the order row and its jobs, in the request's transaction.
 * Nothing here commits: koaJobs does, after the router returns with a status below 400.
 */
async function placeOrder(ctx: Ctx, o: ValidOrder, opts: { crashAfterEnqueue?: boolean } = {}): Promise<number> {
  const c = await ctx.jobs.transaction<pg.PoolClient>(); // BEGIN already run; do not commit, roll back or release it
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
  // or was cancelled). ctx.jobs.batch joins the request's transaction like ctx.jobs.enqueue.
  const processed = (await ctx.jobs.enqueue('process-order', payload, { tag })).id;
  const fulfilment = await ctx.jobs.batch(
    [
      { name: 'send-receipt', payload, tag, dependsOn: processed },
      { name: 'generate-invoice', payload, tag, dependsOn: processed },
    ],
    { onSuccess: { name: 'order-complete', payload: { orderId }, tag }, onFailure: { name: 'order-failed', payload: { orderId }, tag } },
  );
  const jobIds = [processed, ...fulfilment.ids];
  if (o.flaky) jobIds.push((await ctx.jobs.enqueue('flaky-export', { orderId }, { tag })).id);
  if (opts.crashAfterEnqueue) throw new SimulatedCrash(orderId, jobIds);
  return orderId;
}

// ------------------------------------------------------------------ request helpers

const BODY_LIMIT = 10 * 1024;

/** A urlencoded body as an object of strings (the first value of a repeated field). */
async function readForm(ctx: Ctx): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) return {};
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > BODY_LIMIT) ctx.throw(413, `The form is larger than ${BODY_LIMIT / 1024} kB.`);
    chunks.push(chunk);
  }
  const fields: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) if (!(k in fields)) fields[k] = v;
  return fields;
}

function send(ctx: Ctx, status: number, page: string): void {
  ctx.status = status;
  ctx.type = 'html';
  ctx.body = page;
}

async function renderHome(ctx: Ctx, opts: { status?: number; form?: OrderForm; notice?: Notice; invalidField?: string } = {}) {
  const [recent, { items }] = await Promise.all([orders.recent(), jobs.list({ limit: 20 })]);
  send(ctx, opts.status ?? 200,
    views.homePage({ catalog: CATALOG, orders: recent, jobs: items, form: opts.form ?? emptyForm, notice: opts.notice, invalidField: opts.invalidField }));
}

/** Read and validate the form, or answer 400 with the form again and a message naming the field. */
async function validOrElse400(ctx: Ctx): Promise<ValidOrder | null> {
  const form = formOf(await readForm(ctx));
  ctx.state.form = form;
  try {
    return validate(form);
  } catch (err) {
    if (!(err instanceof InvalidField)) throw err;
    await renderHome(ctx, { status: 400, form, invalidField: err.field, notice: invalidNotice(err) });
    return null;
  }
}

// ------------------------------------------------------------------ routes (a tiny router)

type Route = { method: 'GET' | 'POST'; path: RegExp; handler: (ctx: Ctx, params: string[]) => Promise<void> };

const routes: Route[] = [
  {
    method: 'GET', path: /^\/$/,
    handler: async (ctx) => renderHome(ctx),
  },
  {
    method: 'POST', path: /^\/orders$/,
    handler: async (ctx) => {
      const order = await validOrElse400(ctx);
      if (!order) return;
      const orderId = await placeOrder(ctx, order);
      ctx.status = 303; // keep 303 (Koa's redirect defaults to 302): the browser follows with a GET
      ctx.redirect(`/orders/${orderId}`); // koaJobs commits after this returns, before Koa sends the 303
    },
  },
  {
    method: 'POST', path: /^\/orders-failing$/,
    handler: async (ctx) => {
      const order = await validOrElse400(ctx);
      if (!order) return;
      await placeOrder(ctx, order, { crashAfterEnqueue: true }); // throws: koaJobs rolls back, then the error middleware answers
    },
  },
  {
    method: 'GET', path: /^\/orders\/([^/]+)$/,
    handler: async (ctx, [idText]) => {
      const id = orderIdParam(idText);
      const order = id === null ? null : await orders.get(id);
      if (!order) return send(ctx, 404, views.errorPage(404, `There is no order ${idText}.`));
      const { items } = await jobs.list({ tag: orderTag(order.id), limit: 20 });
      items.sort((a, b) => (a.id < b.id ? -1 : 1)); // in enqueue order (ids are time-ordered UUIDv7)
      const details: JobDetail[] = await Promise.all(
        items.map(async (job) => ({ job, attempts: await jobs.attempts(job.id), logs: await jobs.logs(job.id) })),
      );
      send(ctx, 200, views.orderPage(order, details)); // refreshes itself while a job is pending or running
    },
  },
];

/** A path segment, decoded; a malformed escape is kept as it came (and then matches no order). */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

async function router(ctx: Ctx): Promise<void> {
  const method = ctx.method === 'HEAD' ? 'GET' : ctx.method; // Koa leaves the body out of HEAD responses
  const allowed: string[] = [];
  for (const route of routes) {
    const match = route.path.exec(ctx.path);
    if (!match) continue;
    if (route.method === method) return route.handler(ctx, match.slice(1).map(decode));
    allowed.push(route.method);
  }
  if (allowed.length) {
    ctx.set('Allow', allowed.join(', '));
    return send(ctx, 405, views.errorPage(405, `${ctx.method} is not allowed at ${ctx.path}; use ${allowed.join(' or ')}.`));
  }
  send(ctx, 404, views.errorPage(404, `Nothing at ${ctx.method} ${ctx.path}.`));
}

// ------------------------------------------------------------------ the app

const app = new Koa<ShopState, ShopContext>();

// Errors, outermost: by the time an error gets here, koaJobs (further in) has already rolled the
// request's transaction back, so the crash report below looks at the database after the rollback.
app.use(async (ctx, next) => {
  try {
    await next();
  } catch (err) {
    if (err instanceof SimulatedCrash) {
      const notice = await crashNotice(orders, jobs, err, html`Checked through the pool (other connections) after koaJobs
        rolled the request’s transaction back.`);
      return renderHome(ctx, { status: 500, form: ctx.state.form, notice });
    }
    const status = (err as { status?: number }).status ?? 500; // e.g. 413 from readForm
    if (status >= 500) console.error(err);
    send(ctx, status, views.errorPage(status, status >= 500 ? 'Something went wrong; see the server log.' : String((err as Error).message)));
  }
});

app.use(async (ctx, next) => {
  ctx.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  ctx.set('X-Content-Type-Options', 'nosniff');
  await next();
});

// The jobs admin below /admin/jobs (loopback clients only without an authorize option); it sets its own CSP.
app.use(koaJobsAdmin(jobs, { path: '/admin/jobs' }));

// ctx.jobs on every request. The transaction opens on first use only: GET pages never touch it.
app.use(koaJobs(jobs));
app.use(router);

// ------------------------------------------------------------------ start and stop

await orders.create();
await jobs.start(); // applies the jobs schema (demo_koa_jobs_*) first
serveShop({
  listen: (port, ready) => app.listen(port, ready),
  port: portFromEnv(3002),
  title: `sqljobs demo shop on Koa + PostgreSQL (database: ${safeUrl(databaseUrl)})`,
  jobs,
  closeDatabase: () => pool.end(),
});
