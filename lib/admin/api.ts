/** The JSON API under <mount>/api: the same data and actions as the pages, errors as { error }. */
import { HttpError } from './types.ts';
import { json } from './respond.ts';
import type { Route, RouteContext } from './route.ts';
import {
  applyJobAction, bodyIds, bodyValues, checkId, checkKey, checkQueue, loadBatch, loadJob, parseFilter, parsePage, queryField, queuePaused, redrive, refusal, schedulesWithOutcome,
  type JobAction,
} from './actions.ts';
import { SettingsRefused, configureQueue, jobHeld, queueDetail, queueRow, queueRows } from './queue.ts';

const ID = '([^/]+)';
const query = (c: RouteContext) => queryField((k) => c.req.query.getAll(k));

async function listJobs(c: RouteContext) {
  const { filter } = parseFilter((k) => c.req.query.getAll(k));
  const { cursor, limit } = parsePage(query(c));
  return json(200, await c.jobs.list({ ...filter, cursor, limit }));
}

async function jobDetail(c: RouteContext) {
  const job = await loadJob(c.jobs, c.params[0]);
  const [attempts, logs, links] = await Promise.all([c.jobs.attempts(job.id), c.jobs.logs(job.id, { limit: 1000 }), c.jobs.links(job.id)]);
  const payload = Buffer.isBuffer(job.payload) ? { binary: job.payload.toString('base64'), bytes: job.payload.length } : job.payload;
  const holds = await jobHeld(c.jobs, job, links.parents.filter((l) => !l.callback), Date.now());
  // `attempts` stays the job's count of runs; the attempt records go under their own name.
  return json(200, { ...job, payload, attemptHistory: attempts, logs, parents: links.parents, dependents: links.dependents, holds });
}

async function jobAction(c: RouteContext, action: JobAction) {
  const id = checkId(c.params[0]);
  if (await applyJobAction(c.jobs, id, action)) {
    if (action !== 'run') return json(200, { ok: true, id, action });
    // Made due, but a paused queue's jobs are not claimed: say so rather than let "ok" suggest it runs.
    const job = await c.jobs.get(id);
    return json(200, { ok: true, id, action, queuePaused: job ? await queuePaused(c.jobs, job.queue) : false });
  }
  const job = await c.jobs.get(id);
  if (!job) throw new HttpError(404, `job ${id} not found`);
  throw new HttpError(409, refusal(action, job));
}

/**
 * Redrive dead-letter copies: the `ids` given, or the jobs the filter fields (as api/jobs takes
 * them; `queue` required) match, at most bulkCap. No confirmation here: the caller asked for it.
 */
async function jobsRedrive(c: RouteContext) {
  const ids = c.body.ids === undefined ? null : bodyIds(c.body, c.settings.bulkCap);
  const target = ids ?? parseFilter(bodyValues(c.body)).filter;
  return json(200, { ok: true, ...(await redrive(c.jobs, target, c.settings.bulkCap)) });
}

/** A batch's counts and callbacks; its jobs are api/jobs?batch=<id>. */
async function batchStatus(c: RouteContext) {
  return json(200, await loadBatch(c.jobs, c.params[0]));
}

async function recurringList(c: RouteContext) {
  return json(200, { items: await schedulesWithOutcome(c.jobs) });
}

async function findSchedule(c: RouteContext) {
  const key = checkKey(c.params[0]);
  const s = (await c.jobs.schedules.list()).find((x) => x.key === key);
  if (!s) throw new HttpError(404, `schedule ${key} not found`);
  return s;
}

async function recurringToggle(c: RouteContext) {
  const s = await findSchedule(c);
  const raw = c.body.enabled;
  const enabled = raw === undefined ? !s.enabled : raw === 'true' ? true : raw === 'false' ? false : null;
  if (enabled === null) throw new HttpError(400, 'enabled must be true or false');
  await c.jobs.schedules.toggle(s.key, enabled);
  return json(200, { ok: true, key: s.key, enabled });
}

async function recurringTrigger(c: RouteContext) {
  const s = await findSchedule(c);
  const res = await c.jobs.schedules.trigger(s.key);
  return json(200, { ok: true, key: s.key, jobId: res?.id ?? null });
}

async function recurringDelete(c: RouteContext) {
  const s = await findSchedule(c);
  await c.jobs.schedules.remove(s.key);
  return json(200, { ok: true, key: s.key });
}

async function queueAction(c: RouteContext, action: 'pause' | 'resume') {
  const queue = checkQueue(c.params[0]);
  if (action === 'pause') await c.jobs.queues.pause(queue);
  else if (!(await c.jobs.queues.resume(queue))) throw new HttpError(409, `queue ${queue} is not paused`);
  return json(200, { ok: true, queue, paused: action === 'pause' });
}

/** A queue's figures, limits, groups, the holds on it, its held jobs (each with its holds) and its reserved jobs. */
async function queueInfo(c: RouteContext) {
  const { row, ...detail } = await queueDetail(c.jobs, checkQueue(c.params[0]), Date.now());
  return json(200, { ...row, ...detail });
}

/** A queue's settings as jobs.queues.settings() has them (every limit null, updatedAt null, for a queue without). */
async function queueSettings(c: RouteContext) {
  const { queue, settings } = await queueRow(c.jobs, checkQueue(c.params[0]));
  return json(200, settings ?? { queue, concurrency: null, groupConcurrency: null, rateLimit: null, updatedAt: null });
}

/** Replace a queue's settings (a limit left out is removed): 400 names the field a refused value is in. */
async function queueConfigure(c: RouteContext) {
  const queue = checkQueue(c.params[0]);
  try {
    return json(200, { ok: true, queue, settings: await configureQueue(c.jobs, queue, c.body) });
  } catch (err) {
    if (err instanceof SettingsRefused) return json(400, { error: err.message, field: err.field });
    throw err;
  }
}

async function stats(c: RouteContext) {
  const [status, queues, throughput] = await Promise.all([c.jobs.status({ cap: c.settings.countCap }), c.jobs.queues.list(), c.jobs.throughput()]);
  return json(200, { ...status, countCap: c.settings.countCap, queues, throughput });
}

export const apiRoutes: Route[] = [
  { method: 'GET', pattern: /^\/api\/jobs$/, handler: listJobs },
  { method: 'GET', pattern: /^\/api\/history$/, handler: async (c) => json(200, await c.jobs.historyMonths({ cap: c.settings.countCap })) },
  { method: 'POST', pattern: /^\/api\/jobs\/redrive$/, handler: jobsRedrive },
  { method: 'GET', pattern: new RegExp(`^/api/jobs/${ID}$`), handler: jobDetail },
  { method: 'DELETE', pattern: new RegExp(`^/api/jobs/${ID}$`), handler: (c) => jobAction(c, 'delete') },
  ...(['cancel', 'retry', 'run'] as const).map((a): Route => ({ method: 'POST', pattern: new RegExp(`^/api/jobs/${ID}/${a}$`), handler: (c) => jobAction(c, a) })),
  { method: 'GET', pattern: new RegExp(`^/api/batches/${ID}$`), handler: batchStatus },
  { method: 'GET', pattern: /^\/api\/recurring$/, handler: recurringList },
  { method: 'POST', pattern: new RegExp(`^/api/recurring/${ID}/toggle$`), handler: recurringToggle },
  { method: 'POST', pattern: new RegExp(`^/api/recurring/${ID}/trigger$`), handler: recurringTrigger },
  { method: 'DELETE', pattern: new RegExp(`^/api/recurring/${ID}$`), handler: recurringDelete },
  { method: 'GET', pattern: /^\/api\/queues$/, handler: async (c) => json(200, { items: await queueRows(c.jobs) }) },
  { method: 'GET', pattern: new RegExp(`^/api/queues/${ID}$`), handler: queueInfo },
  { method: 'GET', pattern: new RegExp(`^/api/queues/${ID}/settings$`), handler: queueSettings },
  ...(['PUT', 'POST'] as const).map((method): Route => ({ method, pattern: new RegExp(`^/api/queues/${ID}/settings$`), handler: queueConfigure })),
  ...(['pause', 'resume'] as const).map((a): Route => ({ method: 'POST', pattern: new RegExp(`^/api/queues/${ID}/${a}$`), handler: (c) => queueAction(c, a) })),
  { method: 'GET', pattern: /^\/api\/stats$/, handler: stats },
];
