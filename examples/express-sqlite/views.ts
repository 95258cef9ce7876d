/**
 * Server-rendered HTML. `html` is a tagged template that escapes every interpolated value
 * unless it is already Html (the output of another `html` call), so user data cannot inject markup.
 */
import type { AttemptRecord, JobRecord, JobState, LogRecord } from '../../lib/index.ts';

export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

type Value = Html | string | number | boolean | null | undefined | Value[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function render(v: Value): string {
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === null || v === undefined || v === false) return '';
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0];
  values.forEach((v, i) => (out += render(v) + strings[i + 1]));
  return new Html(out);
}

// ------------------------------------------------------------------ data the pages show

export interface CatalogItem {
  sku: string;
  name: string;
  priceCents: number;
}

export interface Order {
  id: number;
  email: string;
  item: string;
  quantity: number;
  totalCents: number;
  flakyExport: boolean;
  createdAt: Date;
}

export interface OrderForm {
  email: string;
  sku: string;
  quantity: string;
  flaky: boolean;
}

export interface JobDetail {
  job: JobRecord;
  attempts: AttemptRecord[];
  logs: LogRecord[];
}

/** A banner at the top of the home page. */
export interface Notice {
  kind: 'error' | 'info';
  title: string;
  body: Html | string;
}

// ------------------------------------------------------------------ small helpers

export const ACTIVE_STATES: readonly JobState[] = ['pending', 'running'];

const money = (cents: number) => `$${(cents / 100).toFixed(2)}`;
const time = (d: Date | null) => (d ? d.toLocaleTimeString('en-GB') : '');
const shortId = (id: string) => html`<code title="${id}">…${id.slice(-8)}</code>`;

function duration(from: Date | null, to: Date | null): string {
  if (!from || !to) return '';
  return `${((to.getTime() - from.getTime()) / 1000).toFixed(1)} s`;
}

/** A job tagged "order-12" -> 12, for the link from a job back to its order. */
export function orderIdOf(job: JobRecord): number | null {
  const m = /^order-(\d+)$/.exec(job.tag ?? '');
  return m ? Number(m[1]) : null;
}

function badge(state: JobState): Html {
  return html`<span class="badge ${state}">${state}</span>`;
}

function progressBar(job: JobRecord): Html {
  const pct = job.state === 'completed' ? 100 : Math.round(job.progress ?? 0);
  const note = job.state === 'pending' && job.attempts > 0 && job.runAt.getTime() > Date.now()
    ? `retry in ${Math.ceil((job.runAt.getTime() - Date.now()) / 1000)} s`
    : job.progressMessage ?? (job.state === 'pending' ? 'waiting for a worker' : '');
  return html`<div class="progress ${job.state}">
      <div class="bar"><span style="width:${pct}%"></span></div>
      <small>${pct}% ${note ? html`· ${note}` : ''}</small>
    </div>`;
}

function attemptsText(job: JobRecord): string {
  return `${job.attempts} / ${job.maxAttempts}`;
}

// ------------------------------------------------------------------ layout

function layout(opts: { title: string; body: Html; refreshSeconds?: number }): string {
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  ${opts.refreshSeconds ? html`<meta http-equiv="refresh" content="${opts.refreshSeconds}">` : ''}
  <title>${opts.title} · Bean &amp; Kettle</title>
  <style>${new Html(CSS)}</style>
</head>
<body>
  <header>
    <a class="brand" href="/">Bean &amp; Kettle</a>
    <span class="tag">sqljobs demo · Express + SQLite</span>
    <nav><a href="/">Shop</a><a href="/admin/jobs">Jobs admin</a></nav>
  </header>
  <main>${opts.body}</main>
  <footer>Orders and their jobs live in one SQLite file and commit in one transaction.</footer>
</body>
</html>`.value;
}

// ------------------------------------------------------------------ pages

export function homePage(data: {
  catalog: CatalogItem[];
  orders: Order[];
  jobs: JobRecord[];
  form: OrderForm;
  notice?: Notice;
  invalidField?: string;
}): string {
  const { catalog, form, invalidField } = data;
  const invalid = (field: string) => (invalidField === field ? html` aria-invalid="true" class="invalid"` : '');
  const body = html`
    ${data.notice ? html`<div class="notice ${data.notice.kind}" role="alert"><strong>${data.notice.title}</strong><div>${data.notice.body}</div></div>` : ''}
    <div class="grid">
      <section class="card">
        <h2>Place an order</h2>
        <form method="post" action="/orders">
          <label>Customer email
            <input name="email" type="email" required maxlength="254" placeholder="ada@example.com" value="${form.email}"${invalid('email')}>
          </label>
          <div class="row">
            <label class="grow">Item
              <select name="item"${invalid('item')}>
                ${catalog.map((c) => html`<option value="${c.sku}"${c.sku === form.sku ? html` selected` : ''}>${c.name} — ${money(c.priceCents)}</option>`)}
              </select>
            </label>
            <label class="qty">Quantity
              <input name="quantity" type="number" min="1" max="99" required value="${form.quantity}"${invalid('quantity')}>
            </label>
          </div>
          <label class="check"><input type="checkbox" name="flaky" value="on"${form.flaky ? html` checked` : ''}>
            Flaky export <small>(also enqueue <code>flaky-export</code>: fails twice, succeeds on attempt 3)</small></label>
          <div class="buttons">
            <button type="submit">Place order</button>
            <button type="submit" class="danger" formaction="/orders-failing" formnovalidate
              title="Inserts the order and enqueues its jobs, then throws inside the same transaction">Place order, then crash</button>
          </div>
          <p class="hint">“Place order” runs one <code>db.transaction()</code>: INSERT the order, then
            <code>jobs.enqueueSync()</code> and <code>jobs.batchSync()</code> its workflow. “Then crash” throws
            inside that transaction, so the order and its jobs roll back together.</p>
        </form>
      </section>
      <section class="card">
        <h2>Recent orders</h2>
        ${data.orders.length === 0 ? html`<p class="empty">No orders yet. Place one!</p>` : html`
        <table>
          <thead><tr><th>#</th><th>Customer</th><th>Item</th><th class="num">Total</th><th>Placed</th></tr></thead>
          <tbody>${data.orders.map((o) => html`<tr>
            <td><a href="/orders/${o.id}">#${o.id}</a></td>
            <td>${o.email}</td>
            <td>${o.quantity} × ${o.item}${o.flakyExport ? html` <span class="pill">flaky export</span>` : ''}</td>
            <td class="num">${money(o.totalCents)}</td>
            <td>${time(o.createdAt)}</td>
          </tr>`)}</tbody>
        </table>`}
      </section>
    </div>
    <section class="card">
      <h2>Recent jobs <a class="small" href="/">refresh</a></h2>
      ${jobsTable(data.jobs)}
    </section>`;
  return layout({ title: 'Shop', body });
}

function jobsTable(jobs: JobRecord[], opts: { wide?: boolean } = {}): Html {
  if (jobs.length === 0) return html`<p class="empty">No jobs yet.</p>`;
  return html`<table>
    <thead><tr><th>Job</th><th>Name</th>${opts.wide ? html`<th>Queue</th>` : ''}<th>Order</th><th>State</th><th class="num">Attempts</th><th class="wide">Progress</th><th>Created</th>${opts.wide ? html`<th>Finished</th><th>Last error</th>` : ''}</tr></thead>
    <tbody>${jobs.map((j) => {
      const orderId = orderIdOf(j);
      return html`<tr>
        <td>${shortId(j.id)}</td>
        <td>${j.name}</td>
        ${opts.wide ? html`<td>${j.queue}</td>` : ''}
        <td>${orderId === null ? j.tag ?? '' : html`<a href="/orders/${orderId}">#${orderId}</a>`}</td>
        <td>${badge(j.state)}</td>
        <td class="num">${attemptsText(j)}</td>
        <td>${progressBar(j)}</td>
        <td>${time(j.createdAt)}</td>
        ${opts.wide ? html`<td>${time(j.finishedAt)}</td><td class="error-text">${j.state === 'completed' ? '' : j.error?.message ?? ''}</td>` : ''}
      </tr>`;
    })}</tbody>
  </table>`;
}

export function orderPage(order: Order, details: JobDetail[]): string {
  const live = details.some((d) => ACTIVE_STATES.includes(d.job.state));
  const body = html`
    <p><a href="/">← Back to the shop</a></p>
    <section class="card">
      <h2>Order #${order.id}</h2>
      <dl class="facts">
        <dt>Customer</dt><dd>${order.email}</dd>
        <dt>Item</dt><dd>${order.quantity} × ${order.item}</dd>
        <dt>Total</dt><dd>${money(order.totalCents)}</dd>
        <dt>Placed</dt><dd>${order.createdAt.toLocaleString('en-GB')}</dd>
        <dt>Jobs</dt><dd>tag <code>order-${order.id}</code> ·
          ${live ? html`<span class="live">● live: this page refreshes every 2 s until every job has finished</span>` : 'all jobs finished'}</dd>
        <dt>Workflow</dt><dd>${workflowLine(details)}</dd>
      </dl>
    </section>
    ${details.map(jobCard)}`;
  return layout({ title: `Order #${order.id}`, body, refreshSeconds: live ? 2 : undefined });
}

/** process-order → the receipt and invoice batch (linked to its admin page) → its callback. */
function workflowLine(details: JobDetail[]): Html {
  const batchId = details.find((d) => d.job.batchId)?.job.batchId;
  const batch = batchId
    ? html`<a href="/admin/jobs/batches/${encodeURIComponent(batchId)}">batch</a> of <code>send-receipt</code> + <code>generate-invoice</code>`
    : html`<code>send-receipt</code> + <code>generate-invoice</code>`;
  return html`<code>process-order</code> → ${batch} → callback <code>order-complete</code> (or <code>order-failed</code>)`;
}

function jobCard({ job, attempts, logs }: JobDetail): Html {
  return html`<section class="card job">
    <div class="job-head">
      <h3>${job.name}</h3>${badge(job.state)}
      <span class="muted">attempts ${attemptsText(job)} · ${shortId(job.id)}</span>
    </div>
    ${progressBar(job)}
    ${job.error && job.state !== 'completed' ? html`<p class="error-text">Last error: ${job.error.message}</p>` : ''}
    <div class="cols">
      <div>
        <h4>Attempts</h4>
        ${attempts.length === 0 ? html`<p class="empty">Not started yet.</p>` : html`<table>
          <thead><tr><th>#</th><th>Outcome</th><th>Started</th><th class="num">Took</th><th>Error</th></tr></thead>
          <tbody>${attempts.map((a) => html`<tr>
            <td>${a.attempt}</td>
            <td><span class="badge ${a.outcome}">${a.outcome}</span></td>
            <td>${time(a.startedAt)}</td>
            <td class="num">${duration(a.startedAt, a.finishedAt)}</td>
            <td class="error-text">${a.error?.message ?? ''}</td>
          </tr>`)}</tbody>
        </table>`}
      </div>
      <div>
        <h4>Log</h4>
        ${logs.length === 0 ? html`<p class="empty">No log lines yet.</p>` : html`<ol class="log">${logs.map((l) => html`<li><span class="muted">${time(l.at)} · #${l.attempt}</span> ${l.message}</li>`)}</ol>`}
      </div>
    </div>
  </section>`;
}

export function errorPage(status: number, message: string): string {
  return layout({
    title: `Error ${status}`,
    body: html`<section class="card"><h2>${status === 404 ? 'Not found' : `Error ${status}`}</h2><p>${message}</p><p><a href="/">← Back to the shop</a></p></section>`,
  });
}

const CSS = `
  :root { --bg:#f5f3ef; --card:#fff; --ink:#1f2328; --muted:#6b6f76; --line:#e6e1d8; --accent:#7a4b2a;
    --pending:#b7791f; --running:#2563eb; --completed:#15803d; --failed:#c62828; --cancelled:#6b7280; }
  * { box-sizing: border-box; }
  body { margin:0; background:var(--bg); color:var(--ink); font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display:flex; align-items:center; gap:16px; padding:14px 28px; background:#2b1d14; color:#f5ede4; }
  header a { color:inherit; text-decoration:none; }
  .brand { font-weight:700; font-size:19px; letter-spacing:.3px; }
  .tag { font-size:13px; opacity:.7; }
  nav { margin-left:auto; display:flex; gap:18px; font-size:14px; }
  nav a:hover { text-decoration:underline; }
  main { max-width:1120px; margin:24px auto; padding:0 20px; }
  footer { text-align:center; color:var(--muted); font-size:13px; padding:24px; }
  h2 { margin:0 0 14px; font-size:18px; } h3 { margin:0; font-size:16px; } h4 { margin:14px 0 6px; font-size:13px; text-transform:uppercase; letter-spacing:.5px; color:var(--muted); }
  a { color:var(--accent); } a.small { font-size:13px; font-weight:400; margin-left:8px; }
  code { font:12.5px ui-monospace, SFMono-Regular, Menlo, monospace; background:#f1ece4; padding:1px 5px; border-radius:4px; }
  .grid { display:grid; grid-template-columns: minmax(300px, 5fr) 7fr; gap:20px; }
  @media (max-width: 860px) { .grid { grid-template-columns: 1fr; } }
  .card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:20px 22px; margin-bottom:20px; box-shadow:0 1px 2px rgba(0,0,0,.04); overflow-x:auto; }
  label { display:block; font-weight:600; font-size:14px; margin-bottom:12px; }
  input[type=email], input[type=number], select { display:block; width:100%; margin-top:4px; padding:9px 10px; font:inherit; border:1px solid #cfc8bd; border-radius:8px; background:#fff; }
  input:focus, select:focus { outline:2px solid #c49a6c; border-color:transparent; }
  .invalid { border-color:var(--failed) !important; background:#fff5f5 !important; }
  .row { display:flex; gap:12px; } .grow { flex:1; } .qty { width:110px; }
  label.check { font-weight:400; display:flex; gap:8px; align-items:baseline; }
  .buttons { display:flex; gap:10px; flex-wrap:wrap; margin-top:6px; }
  button { font:inherit; font-weight:600; padding:9px 16px; border-radius:8px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; }
  button:hover { filter:brightness(1.1); }
  button.danger { background:#fff; color:var(--failed); border-color:var(--failed); }
  .hint { color:var(--muted); font-size:13px; margin:14px 0 0; }
  table { width:100%; border-collapse:collapse; font-size:14px; }
  th { text-align:left; font-size:12px; text-transform:uppercase; letter-spacing:.4px; color:var(--muted); font-weight:600; }
  th, td { padding:7px 8px; border-bottom:1px solid var(--line); vertical-align:middle; }
  tr:last-child td { border-bottom:0; }
  .num { text-align:right; white-space:nowrap; } th.wide { width:30%; }
  .empty, .muted { color:var(--muted); } .muted { font-size:13px; }
  .badge { display:inline-block; padding:1px 9px; border-radius:999px; font-size:12px; font-weight:600; color:#fff; background:var(--cancelled); }
  .badge.pending { background:var(--pending); } .badge.running { background:var(--running); }
  .badge.completed { background:var(--completed); } .badge.failed { background:var(--failed); }
  .pill { font-size:11px; padding:1px 7px; border-radius:999px; background:#f1ece4; color:var(--accent); }
  .progress .bar { height:8px; background:#eee8df; border-radius:99px; overflow:hidden; min-width:120px; }
  .progress .bar span { display:block; height:100%; background:var(--pending); transition:width .4s; }
  .progress.running .bar span { background:var(--running); } .progress.completed .bar span { background:var(--completed); }
  .progress.failed .bar span { background:var(--failed); }
  .progress small { color:var(--muted); }
  .notice { padding:12px 16px; border-radius:10px; margin-bottom:20px; border:1px solid; }
  .notice.error { background:#fff4f4; border-color:#f3c1c1; color:#8a1c1c; }
  .notice.info { background:#f2f7ff; border-color:#c9dbf7; color:#1e3a6b; }
  .notice ul { margin:6px 0 0; padding-left:20px; }
  .error-text { color:var(--failed); font-size:13px; }
  .facts { display:grid; grid-template-columns:110px 1fr; gap:6px 12px; margin:0; }
  .facts dt { color:var(--muted); } .facts dd { margin:0; }
  .live { color:var(--running); font-weight:600; }
  .job-head { display:flex; align-items:center; gap:12px; margin-bottom:10px; }
  .job-head .muted { margin-left:auto; }
  .cols { display:grid; grid-template-columns: 1fr 1fr; gap:20px; }
  @media (max-width: 860px) { .cols { grid-template-columns: 1fr; } }
  .log { list-style:none; margin:0; padding:10px 12px; background:#1f1a16; color:#efe6da; border-radius:8px; font:12.5px/1.7 ui-monospace, Menlo, monospace; max-height:220px; overflow:auto; }
  .log .muted { color:#a89b8b; font-size:12px; }
`;
