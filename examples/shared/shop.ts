/**
 * What the shop examples have in common apart from the database and the HTTP framework: the
 * catalog, the order form and its validation, the PostgreSQL orders table, the report shown after
 * "Place order, then crash", and starting and stopping the server.
 *
 * The part each example is about (the order row and its jobs in the request's transaction) stays
 * in its app.ts.
 */
import type pg from 'pg';
import type { Server } from 'node:http';
import type { Jobs } from '../../lib/index.ts';
import type { ShopJobs } from './shop-jobs.ts';
import { html, type CatalogItem, type Html, type Notice, type Order, type OrderForm } from './views.ts';

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

export const CATALOG: CatalogItem[] = [
  { sku: 'beans', name: 'Espresso beans, 1 kg', priceCents: 2400 },
  { sku: 'pourover', name: 'Ceramic pour-over dripper', priceCents: 3200 },
  { sku: 'kettle', name: 'Gooseneck kettle', priceCents: 5900 },
  { sku: 'filters', name: 'Paper filters, 100 pack', priceCents: 650 },
];

export const emptyForm: OrderForm = { email: '', sku: CATALOG[0].sku, quantity: '1', flaky: false };

// ------------------------------------------------------------------ the order form

export interface ValidOrder {
  email: string;
  item: CatalogItem;
  quantity: number;
  flaky: boolean;
}

export class InvalidField extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}

/** Thrown inside the request's transaction by POST /orders-failing; carries what was written before the throw. */
export class SimulatedCrash extends Error {
  constructor(readonly orderId: number, readonly jobIds: string[]) {
    super(`simulated crash after inserting order #${orderId} and enqueueing its jobs, inside the request's transaction`);
    this.name = 'SimulatedCrash';
  }
}

/** The parsed urlencoded body, as the form's fields (missing or repeated fields become ''). */
export function formOf(body: unknown): OrderForm {
  const b = (body ?? {}) as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === 'string' ? v : '');
  return { email: text(b.email).trim(), sku: text(b.item), quantity: text(b.quantity).trim(), flaky: b.flaky === 'on' };
}

export function validate(form: OrderForm): ValidOrder {
  if (form.email.length > 254 || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(form.email)) {
    throw new InvalidField('email', 'enter a valid email address, like ada@example.com');
  }
  const item = CATALOG.find((c) => c.sku === form.sku);
  if (!item) throw new InvalidField('item', `choose one of: ${CATALOG.map((c) => c.name).join(', ')}`);
  const quantity = Number(form.quantity);
  if (!/^\d+$/.test(form.quantity) || quantity < 1 || quantity > 99) {
    throw new InvalidField('quantity', 'must be a whole number from 1 to 99');
  }
  return { email: form.email, item, quantity, flaky: form.flaky };
}

export function invalidNotice(err: InvalidField): Notice {
  return { kind: 'error', title: 'Please check the order', body: err.message };
}

// ------------------------------------------------------------------ the orders table

interface OrderRow {
  id: number;
  email: string;
  item: string;
  quantity: number;
  total_cents: number;
  flaky: boolean;
  created_at: Date;
}

const toOrder = (r: OrderRow): Order => ({
  id: r.id, email: r.email, item: r.item, quantity: r.quantity, totalCents: r.total_cents, flakyExport: r.flaky, createdAt: r.created_at,
});

/** Columns of the INSERT each app runs on the request's transaction. */
export const ORDER_COLUMNS = '(email, item, quantity, total_cents, flaky)';

/** Reads of the orders table go through the pool: they see only committed orders. */
export function ordersTable(pool: pg.Pool, table: string) {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table)) throw new TypeError(`orders table: not a plain identifier: ${JSON.stringify(table)}`);
  return {
    name: table,
    create: async (): Promise<void> => {
      await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (
        id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        email       text        NOT NULL,
        item        text        NOT NULL,
        quantity    integer     NOT NULL,
        total_cents integer     NOT NULL,
        flaky       boolean     NOT NULL DEFAULT false,
        created_at  timestamptz NOT NULL DEFAULT now()
      )`);
    },
    get: async (id: number): Promise<Order | null> => {
      const { rows } = await pool.query<OrderRow>(`SELECT * FROM ${table} WHERE id = $1`, [id]);
      return rows.length ? toOrder(rows[0]) : null;
    },
    recent: async (): Promise<Order[]> => {
      const { rows } = await pool.query<OrderRow>(`SELECT * FROM ${table} ORDER BY id DESC LIMIT 20`);
      return rows.map(toOrder);
    },
  };
}

export type OrdersTable = ReturnType<typeof ordersTable>;

/** "/orders/12" -> 12; anything else -> null. */
export function orderIdParam(text: string): number | null {
  return /^\d{1,9}$/.test(text) ? Number(text) : null;
}

// ------------------------------------------------------------------ after "then crash"

/**
 * Look for what the crashed request wrote, through the pool (other connections), and say what was
 * found. `when` tells the reader at which point the check ran.
 */
export async function crashNotice(orders: OrdersTable, jobs: Jobs<ShopJobs>, crash: SimulatedCrash, when: Html | string): Promise<Notice> {
  const orderExists = (await orders.get(crash.orderId)) !== null;
  const jobsFound = (await Promise.all(crash.jobIds.map((id) => jobs.get(id)))).filter(Boolean).length;
  const rolledBack = !orderExists && jobsFound === 0;
  const body = html`Inside the request's transaction, order #${crash.orderId} was inserted and ${crash.jobIds.length} jobs were enqueued
    (<code>${crash.jobIds.map((id) => `…${id.slice(-8)}`).join(', ')}</code>); then the handler threw, and this page is a 500.
    ${when}
    <ul>
      <li>Order #${crash.orderId} in <code>${orders.name}</code>: <strong>${orderExists ? 'found' : 'not found'}</strong></li>
      <li>Its jobs via <code>jobs.get(id)</code>: <strong>${jobsFound} of ${crash.jobIds.length} found</strong></li>
    </ul>`;
  return {
    kind: rolledBack ? 'info' : 'error',
    title: rolledBack ? 'Rolled back: neither the order nor its jobs exist.' : 'Unexpected: something survived the rollback!',
    body,
  };
}

// ------------------------------------------------------------------ process

export function portFromEnv(fallback: number): number {
  const port = Number(process.env.PORT || fallback);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a port number; got ${JSON.stringify(process.env.PORT)}`);
  return port;
}

/** The URL with any password masked, for the startup banner. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

/**
 * Listen, print the URLs, and on SIGINT/SIGTERM stop gracefully: the worker gets 5 s to finish
 * running jobs, the server stops taking requests, then the library's connections and the app's
 * database close (a second signal exits at once).
 */
export function serveShop(opts: {
  listen: (port: number, ready: () => void) => Server;
  port: number;
  title: string;
  jobs: { stop(o: { timeout: number }): Promise<void>; close(): Promise<void> };
  closeDatabase: () => Promise<void> | void;
}): void {
  const server = opts.listen(opts.port, () => {
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : opts.port;
    console.log(opts.title);
    console.log(`  Shop:        http://localhost:${actual}/`);
    console.log(`  Jobs admin:  http://localhost:${actual}/admin/jobs   (from this machine only)`);
  });
  server.on('error', (err) => {
    console.error(`Cannot listen on port ${opts.port}:`, err.message);
    process.exit(1);
  });
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      console.log('Second signal: exiting now.');
      process.exit(1);
    }
    stopping = true;
    console.log(`${signal}: stopping the worker (running jobs get up to 5 s to finish)...`);
    await opts.jobs.stop({ timeout: 5000 });
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections(); // keep-alive sockets from the self-refreshing order page
      setTimeout(() => server.closeAllConnections(), 3000).unref();
    });
    await opts.jobs.close(); // the library's own connections
    await opts.closeDatabase(); // the app's database, after the last request is done with it
    console.log('Bye.');
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}
