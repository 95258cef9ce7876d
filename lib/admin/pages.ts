/** The HTML pages and the fragments HTMX polls. Forms post and redirect (303), so every page works without JavaScript. */
import type { AdminResponse } from './types.ts';
import { HttpError } from './types.ts';
import { render } from './render.ts';
import { helpers, throughputChart } from './present.ts';
import { html, redirect } from './respond.ts';
import type { Route, RouteContext } from './route.ts';
import { REDRIVE_SKIPS, type JobRecord, type ListFilter, type RedriveSkip } from '../model.ts';
import type { JobLink } from '../driver/store.ts';
import {
  applyBulk, applyJobAction, blankForm, bodyField, bodyIds, bodyValues, checkId, checkKey, checkQueue, filterFields, loadBatch, loadJob, matchingIds, parseAction, parseFilter, parsePage,
  queryField, refusal, schedulesWithOutcome, type BulkAction, type BulkCounts, type JobAction,
} from './actions.ts';
import { staticUrl } from './render.ts';
import { SettingsRefused, configureQueue, jobHeld, postedForm, queueDetail, queueRows, settingsForm, type SettingsForm } from './queue.ts';

const ID = '([^/]+)';
// A Map, not an object: ?done=constructor must not find Object.prototype's members.
const NOTICES = new Map(Object.entries({
  cancel: 'Job cancelled.',
  retry: 'Job queued to run again.',
  run: 'Job made due now.',
  delete: 'Job deleted.',
  paused: 'Queue paused: workers stop claiming its jobs.',
  resumed: 'Queue resumed.',
  configured: 'Queue limits saved: every worker applies them from its next claim of the queue.',
  toggled: 'Schedule updated.',
  triggered: 'Schedule triggered: its job was enqueued.',
  removed: 'Schedule deleted.',
  bulk: 'Bulk action applied.',
  redrive: 'Redrive applied.',
}));

/** The notice a page shows after an action (`done`), with a bulk action's counts (`n`) and a redrive's skip reasons (`why`). */
function noticeOf(query: URLSearchParams): string | null {
  const done = query.get('done') ?? '';
  const notice = NOTICES.get(done) ?? null;
  const counted = query.get('n');
  if (!notice || !counted || !/^\d+,\d+$/.test(counted)) return notice;
  const [n, skipped] = counted.split(',').map(Number);
  if (done !== 'redrive') return `${notice} ${n} done, ${skipped} skipped (not in a state that allows it).`;
  const why = skipReasons(query.get('why') ?? '');
  return `${notice} ${n} original${n === 1 ? '' : 's'} retried, ${skipped} skipped${why ? ` (${why})` : ''}.`;
}

/** A redrive's skip reasons from the query (`originalLive:2,notDeadLetter:1`) in words; what is not a known reason is dropped. */
function skipReasons(param: string): string {
  const words: string[] = [];
  for (const [key, count] of param.split(',').map((p) => p.split(':'))) {
    if (Object.hasOwn(REDRIVE_SKIPS, key) && /^\d+$/.test(count ?? '')) words.push(`${count} ${REDRIVE_SKIPS[key as RedriveSkip]}`);
  }
  return words.join('; ');
}

/** A redrive's skip reasons as the query noticeOf reads. */
function reasonsParam(reasons: BulkCounts['reasons'] = {}): string {
  return Object.entries(reasons).map(([k, n]) => `${k}:${n}`).join(',');
}

/** What every page's layout needs. */
function common(c: RouteContext, page: string) {
  return {
    base: c.req.base,
    title: c.settings.title,
    page,
    csrf: c.csrf,
    canManage: c.access === 'manage',
    notice: noticeOf(c.req.query),
    h: helpers,
    now: Date.now(),
    css: staticUrl(c.req.base, 'admin.css'),
    htmx: staticUrl(c.req.base, 'htmx.js'),
    js: staticUrl(c.req.base, 'admin.js'),
    icon: staticUrl(c.req.base, 'favicon.svg'),
  };
}

async function page(c: RouteContext, view: string, name: string, data: object, status = 200): Promise<AdminResponse> {
  return html(status, await render(view, { ...common(c, name), ...data }));
}

// ------------------------------------------------------------------ overview

async function overviewData(c: RouteContext) {
  const [status, queues, tp, failures] = await Promise.all([
    c.jobs.status({ cap: c.settings.countCap }),
    c.jobs.queues.list(),
    c.jobs.throughput(),
    c.jobs.list({ state: 'failed', limit: 10 }),
  ]);
  const live = { pending: 0, running: 0 };
  for (const r of status.live) live[r.state] += Number(r.count);
  return { status, live, queues, chart: throughputChart(tp), failures: failures.items, countCap: c.settings.countCap, transient: transientRuns(c) };
}

/** Transient runs of the process serving the page (none when the admin was given a Jobs without them). */
function transientRuns(c: RouteContext) {
  return c.jobs.transient?.() ?? [];
}

async function overview(c: RouteContext) {
  return page(c, 'overview', 'overview', await overviewData(c));
}

async function overviewFragment(c: RouteContext) {
  return html(200, await render('partials/overview-live', { ...common(c, 'overview'), ...(await overviewData(c)) }));
}

// ------------------------------------------------------------------ history

/** History per month, with the retention and the next drop. */
async function history(c: RouteContext) {
  const cap = c.settings.countCap;
  return page(c, 'history', 'history', { overview: await c.jobs.historyMonths({ cap }), cap });
}

// ------------------------------------------------------------------ jobs

const query = (c: RouteContext) => queryField((k) => c.req.query.getAll(k));

/**
 * One keyset page of jobs for the jobs table (partials/jobs-table), with the query strings of the
 * first and next pages: the filter's fields, and the page size when the URL chose one (a next
 * page of another size than the first would surprise).
 */
async function jobsListing(c: RouteContext, filter: ListFilter, params: URLSearchParams) {
  const { cursor, limit } = parsePage(query(c));
  const list = await c.jobs.list({ ...filter, cursor, limit });
  const keep = new URLSearchParams([...params, ...(c.req.query.get('limit') ? [['limit', String(limit)]] : [])]);
  const next = list.nextCursor ? `?${new URLSearchParams([...keep, ['cursor', list.nextCursor]])}` : null;
  return { items: list.items, next, first: cursor ? `?${keep}` : null, bulkCap: c.settings.bulkCap };
}

async function jobsPage(c: RouteContext) {
  const { form, filter } = parseFilter((k) => c.req.query.getAll(k));
  const params = new URLSearchParams(filterFields(form));
  return page(c, 'jobs', 'jobs', { form, ...(await jobsListing(c, filter, params)), listPath: `${c.req.base}/jobs`, transient: transientRuns(c) });
}

/** A batch's counts and callbacks, above its jobs (the jobs table filtered by the batch, with its bulk actions). */
async function batchPage(c: RouteContext) {
  const batch = await loadBatch(c.jobs, c.params[0]);
  const form = { ...blankForm(), batch: batch.batchId };
  const listing = await jobsListing(c, { batchId: batch.batchId }, new URLSearchParams());
  return page(c, 'batch', 'jobs', { batch, form, ...listing, listPath: helpers.batchHref(c.req.base, batch.batchId) });
}

/** Everything the job's page shows (partials/job-live): the page at first, then each poll while the job is live. */
async function jobView(c: RouteContext, job: JobRecord) {
  // The latest 1,000 lines: a long job's tail is what its page is opened for.
  const [attempts, logs, links] = await Promise.all([c.jobs.attempts(job.id), c.jobs.logs(job.id, { limit: 1000, last: true }), c.jobs.links(job.id)]);
  const flow = workflow(job, links);
  // Only a pending job is held, and only a pending job waits on its queue: "Run now" on a paused queue must not look like it ran.
  const holds = await jobHeld(c.jobs, job, flow.parents, Date.now());
  return { job, attempts, logs, queuePaused: holds.some((h) => h.kind === 'paused'), holds, definedTimeout: c.jobs.defined?.(job.name)?.timeoutMs ?? null, ...flow };
}

async function jobDetail(c: RouteContext) {
  const data = await jobView(c, await loadJob(c.jobs, c.params[0]));
  if (data.queuePaused && c.req.query.get('done') === 'run') {
    return page(c, 'job', 'jobs', { ...data, notice: `Job made due now, but its queue ${data.job.queue} is paused: it runs once the queue is resumed.` });
  }
  return page(c, 'job', 'jobs', data);
}

/**
 * The job's place in a workflow: the parents it depends on (or, for a callback, the job it
 * reports on; for a dead-letter copy, its original), its dependents and callbacks enqueued so
 * far. (Why it waits is in its holds: ./held.ts.)
 */
function workflow(job: JobRecord, links: { parents: JobLink[]; dependents: JobLink[] }) {
  // A copy hangs on its original by a callback's edge: shown as "dead letter of", not "callback of".
  const isOriginal = (l: JobLink) => l.callback && l.id === job.deadLetterOf;
  return {
    parents: links.parents.filter((l) => !l.callback),
    reportsOn: links.parents.filter((l) => l.callback && !isOriginal(l)),
    original: links.parents.find(isOriginal) ?? null,
    dependents: links.dependents.filter((l) => !l.callback),
    callbackJobs: links.dependents.filter((l) => l.callback),
  };
}

/** The whole job again; keeps polling (itself) while the job is pending or running. A deleted job ends the polling. */
async function jobLive(c: RouteContext) {
  const id = checkId(c.params[0]);
  const job = await c.jobs.get(id);
  // 200, not 404: HTMX swaps only 2xx, so a 404 would leave the poller asking forever.
  if (!job) return html(200, await render('partials/job-deleted', { id }));
  return html(200, await render('partials/job-live', { ...common(c, 'jobs'), ...(await jobView(c, job)) }));
}

async function jobAction(c: RouteContext, action: JobAction) {
  const job = await loadJob(c.jobs, c.params[0]);
  if (!(await applyJobAction(c.jobs, job.id, action))) throw new HttpError(409, refusal(action, job));
  return redirect(action === 'delete' ? `${c.req.base}/jobs?done=delete` : `${c.req.base}/jobs/${job.id}?done=${action}`);
}

/**
 * Selected ids at once; "all matching" first shows how many and asks to confirm. Redrive acts on
 * a dead-letter queue: "all matching" needs the list filtered by queue.
 */
async function jobsBulk(c: RouteContext) {
  const field = bodyField(c.body);
  const action = parseAction(field('action'));
  if (field('scope') !== 'all') return bulkDone(c, action, await applyBulk(c.jobs, bodyIds(c.body, c.settings.bulkCap), action), listedWith(c));
  const { form, filter } = parseFilter(bodyValues(c.body));
  if (action === 'redrive' && !filter.queue) throw new HttpError(400, 'redrive all matching needs the list filtered by queue (the dead-letter queue)');
  const { ids, more } = await matchingIds(c.jobs, filter, c.settings.bulkCap);
  if (field('confirm') !== 'yes') {
    return page(c, 'confirm', 'jobs', { action, form, count: ids.length, more, cap: c.settings.bulkCap });
  }
  return bulkDone(c, action, await applyBulk(c.jobs, ids, action), filterFields(form));
}

/** The list's filter a selection was made under (its form repeats it), or none if it does not parse. */
function listedWith(c: RouteContext): [string, string][] {
  try {
    return filterFields(parseFilter(bodyValues(c.body)).form);
  } catch {
    return [];
  }
}

/** Back to the jobs list as it was filtered, which tells the counts (a redrive's with its reasons). */
function bulkDone(c: RouteContext, action: BulkAction, n: BulkCounts, filtered: [string, string][]) {
  const told: [string, string][] = [['done', action === 'redrive' ? 'redrive' : 'bulk'], ['n', `${n.done},${n.skipped}`]];
  if (action === 'redrive') told.push(['why', reasonsParam(n.reasons)]);
  return redirect(helpers.jobsHref(c.req.base, [...filtered, ...told]));
}

// ------------------------------------------------------------------ recurring, queues, workers


async function recurring(c: RouteContext) {
  return page(c, 'recurring', 'recurring', { schedules: await schedulesWithOutcome(c.jobs) });
}


async function recurringAction(c: RouteContext, action: 'toggle' | 'trigger' | 'delete') {
  const key = checkKey(c.params[0]);
  const existing = (await c.jobs.schedules.list()).find((s) => s.key === key);
  if (!existing) throw new HttpError(404, `schedule ${key} not found`);
  if (action === 'toggle') await c.jobs.schedules.toggle(key, !existing.enabled);
  else if (action === 'trigger') await c.jobs.schedules.trigger(key);
  else await c.jobs.schedules.remove(key);
  return redirect(`${c.req.base}/recurring?done=${{ toggle: 'toggled', trigger: 'triggered', delete: 'removed' }[action]}`);
}

async function queuesData(c: RouteContext) {
  return { queues: await queueRows(c.jobs) };
}

async function queues(c: RouteContext) {
  return page(c, 'queues', 'queues', await queuesData(c));
}

async function queuesFragment(c: RouteContext) {
  return html(200, await render('partials/queues-table', { ...common(c, 'queues'), ...(await queuesData(c)) }));
}


/** Pause or resume; an HTMX request gets the refreshed table, a plain form a redirect. */
async function queueAction(c: RouteContext, action: 'pause' | 'resume') {
  const queue = checkQueue(c.params[0]);
  if (action === 'pause') await c.jobs.queues.pause(queue);
  else await c.jobs.queues.resume(queue);
  if (c.req.headers['hx-request'] === 'true') return queuesFragment(c);
  return redirect(`${c.req.base}/queues?done=${action === 'pause' ? 'paused' : 'resumed'}`);
}

/** A queue's page: its limits (an edit form with manage), then its live part (queueLive). */
async function queuePage(c: RouteContext, refused?: { error: SettingsRefused; form: SettingsForm }) {
  const queue = checkQueue(c.params[0]);
  const detail = await queueDetail(c.jobs, queue, Date.now());
  const form = refused?.form ?? settingsForm(detail.row.settings);
  return page(c, 'queue', 'queues', { queue, detail, form, refused: refused?.error ?? null }, refused ? 400 : 200);
}

/** The part of a queue's page that HTMX refreshes: figures, groups, held and reserved jobs (never the form being edited). */
async function queueLive(c: RouteContext) {
  const queue = checkQueue(c.params[0]);
  return html(200, await render('partials/queue-live', { ...common(c, 'queues'), queue, detail: await queueDetail(c.jobs, queue, Date.now()) }));
}

/** Save a queue's limits; a refused edit shows the page again (400) with the message, the field marked and the values as posted. */
async function queueSettings(c: RouteContext) {
  const queue = checkQueue(c.params[0]);
  try {
    await configureQueue(c.jobs, queue, c.body);
  } catch (err) {
    if (!(err instanceof SettingsRefused)) throw err;
    return queuePage(c, { error: err, form: postedForm(c.body) });
  }
  return redirect(`${helpers.queueHref(c.req.base, queue)}?done=configured`);
}

async function workers(c: RouteContext) {
  const [status, running] = await Promise.all([c.jobs.status({ cap: 1 }), c.jobs.list({ state: 'running', limit: 500 })]);
  const byWorker = new Map<string, number>();
  for (const j of running.items) if (j.workerId) byWorker.set(j.workerId, (byWorker.get(j.workerId) ?? 0) + 1);
  return page(c, 'workers', 'workers', { workers: status.workers, leader: status.leader, byWorker, runningCapped: running.nextCursor !== null });
}

export const pageRoutes: Route[] = [
  { method: 'GET', pattern: /^\/?$/, handler: overview },
  { method: 'GET', pattern: /^\/fragments\/overview$/, handler: overviewFragment },
  { method: 'GET', pattern: /^\/jobs\/?$/, handler: jobsPage },
  { method: 'POST', pattern: /^\/jobs\/bulk$/, handler: jobsBulk },
  { method: 'GET', pattern: new RegExp(`^/jobs/${ID}$`), handler: jobDetail },
  { method: 'GET', pattern: new RegExp(`^/jobs/${ID}/live$`), handler: jobLive },
  { method: 'GET', pattern: new RegExp(`^/batches/${ID}$`), handler: batchPage },
  ...(['cancel', 'retry', 'run', 'delete'] as const).map((a): Route => ({ method: 'POST', pattern: new RegExp(`^/jobs/${ID}/${a}$`), handler: (c) => jobAction(c, a) })),
  { method: 'GET', pattern: /^\/recurring\/?$/, handler: recurring },
  ...(['toggle', 'trigger', 'delete'] as const).map((a): Route => ({ method: 'POST', pattern: new RegExp(`^/recurring/${ID}/${a}$`), handler: (c) => recurringAction(c, a) })),
  { method: 'GET', pattern: /^\/queues\/?$/, handler: queues },
  { method: 'GET', pattern: /^\/fragments\/queues$/, handler: queuesFragment },
  ...(['pause', 'resume'] as const).map((a): Route => ({ method: 'POST', pattern: new RegExp(`^/queues/${ID}/${a}$`), handler: (c) => queueAction(c, a) })),
  { method: 'GET', pattern: new RegExp(`^/queues/${ID}$`), handler: (c) => queuePage(c) },
  { method: 'GET', pattern: new RegExp(`^/queues/${ID}/live$`), handler: queueLive },
  { method: 'POST', pattern: new RegExp(`^/queues/${ID}/settings$`), handler: queueSettings },
  { method: 'GET', pattern: /^\/history\/?$/, handler: history },
  { method: 'GET', pattern: /^\/workers\/?$/, handler: workers },
];
