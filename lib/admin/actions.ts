/** What the pages and the JSON API share: the facade the admin drives, filter parsing, job actions and bulk actions. */
import { utcMonth } from '../driver/month.ts';
import type { Jobs } from '../jobs.ts';
import { JOB_STATES, JobValidationError, idsMatching, isValidId, validateListFilter, validateName, type JobRecord, type JobState, type ListFilter, type RedriveResult } from '../model.ts';
import type { ScheduleRecord } from '../schedule/schedule.ts';
import type { BatchStatus } from '../driver/store.ts';
import { HttpError, type BodyFields } from './types.ts';

/** The part of a Jobs instance the admin uses (any job map). */
export type AdminJobs = Pick<
  Jobs,
  'list' | 'attempts' | 'logs' | 'cancel' | 'retry' | 'runNow' | 'delete' | 'deleteMany' | 'status' | 'throughput' | 'queues' | 'schedules' | 'links' | 'batchStatus' | 'historyMonths'
  | 'redriveDeadLetters'
> & { get(id: string): Promise<JobRecord | null> } & Partial<Pick<Jobs, 'transient' | 'defined' | 'metricsRegistry'>>;

export const JOB_ACTIONS = ['cancel', 'retry', 'run', 'delete'] as const;
export type JobAction = (typeof JOB_ACTIONS)[number];
/** What the jobs list's bulk form offers: the actions on one job, and redrive (dead-letter copies: retry their originals). */
export const BULK_ACTIONS = [...JOB_ACTIONS, 'redrive'] as const;
export type BulkAction = (typeof BULK_ACTIONS)[number];

/** The jobs filter as the form shows it: strings, and the args pairs in the order given. */
export interface FilterForm {
  state: string;
  queue: string;
  name: string;
  tag: string;
  batch: string;
  refId: string;
  userId: string;
  replyTo: string;
  args: [key: string, value: string][];
  /** `YYYY-MM`: finished in that UTC month (history only). */
  month: string;
}

/** The jobs filter as the form shows it and as list() takes it. */
export interface ParsedFilter {
  form: FilterForm;
  filter: ListFilter;
}

/** Every value a query or form field was given, in order (none when absent). */
export type FieldValues = (k: string) => string[];

const TEXT_FILTERS = [
  ['queue', 'queue'],
  ['name', 'name'],
  ['tag', 'tag'],
  ['batch', 'batchId'],
  ['refId', 'refId'],
  ['userId', 'userId'],
] as const;

/** The jobs filter's form with no field set. */
export function blankForm(): FilterForm {
  return { state: '', queue: '', name: '', tag: '', batch: '', refId: '', userId: '', replyTo: '', args: [], month: '' };
}

/**
 * The filter as query or form fields (what parseFilter reads back): links, the bulk form's hidden
 * fields and the confirm page repeat it. Each args pair is an argKey and an argValue field.
 */
export function filterFields(form: FilterForm): [string, string][] {
  const fields: [string, string][] = [];
  for (const k of ['state', ...TEXT_FILTERS.map(([field]) => field), 'replyTo', 'month'] as const) if (form[k]) fields.push([k, form[k]]);
  for (const [key, value] of form.args) fields.push(['argKey', key], ['argValue', value]);
  return fields;
}

/**
 * A field that takes one value: its value ('' when absent), refused when repeated (`?state=a&state=b`
 * answered the first one, as if the second had not been sent).
 */
export function once(all: FieldValues, field: string): string {
  const values = all(field);
  if (values.length > 1) throw new HttpError(400, `${field} must be given once; got ${values.length} values`);
  return values[0] ?? '';
}

/** Parse the jobs filter from query or form fields. Every value reaches SQL as a bound parameter only. */
export function parseFilter(all: FieldValues): ParsedFilter {
  const form = blankForm();
  const filter: ListFilter = {};
  const state = once(all, 'state').trim();
  if (state) {
    if (!(JOB_STATES as readonly string[]).includes(state)) throw new HttpError(400, `state must be one of ${JOB_STATES.join(', ')}; got ${JSON.stringify(state.slice(0, 40))}`);
    filter.state = state as JobState;
    form.state = state;
  }
  for (const [field, key] of TEXT_FILTERS) {
    const v = once(all, field).trim();
    if (!v) continue;
    if (v.length > 255) throw new HttpError(400, `${field} must be at most 255 characters`);
    // No stored name, queue, tag, batch, refId or userId holds a control character (PostgreSQL text cannot even hold NUL).
    if (/[\u0000-\u001f\u007f]/.test(v)) throw new HttpError(400, `${field} must not contain control characters`);
    filter[key] = v;
    form[field] = v;
  }
  // replyTo and args untrimmed: the job page links to the exact stored text, which may have edge spaces.
  form.replyTo = once(all, 'replyTo');
  if (form.replyTo) filter.replyTo = form.replyTo;
  form.args = argPairs(all);
  if (form.args.length) filter.args = Object.fromEntries(form.args);
  form.month = once(all, 'month').trim();
  if (form.month) Object.assign(filter, finishedIn(form.month));
  checkFilter(filter);
  return { form, filter };
}

/** The month filter (`YYYY-MM`, as an `<input type="month">` sends it): finished within that UTC month. */
function finishedIn(month: string): Pick<ListFilter, 'finishedAfter' | 'finishedBefore'> {
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  if (!m || Number(m[1]) < 1970 || Number(m[1]) > 9998 || Number(m[2]) < 1 || Number(m[2]) > 12) throw new HttpError(400, `month must be a UTC month as YYYY-MM from 1970-01 to 9998-12 (e.g. 2026-11); got ${JSON.stringify(month.slice(0, 40))}`);
  const { from, to } = utcMonth(new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1)));
  return { finishedAfter: from, finishedBefore: to };
}

/**
 * The args filter: the argKey and argValue fields paired by position. A value may be empty (it
 * matches a job whose arg is ''); a pair with neither is the form's blank row.
 */
function argPairs(all: FieldValues): [string, string][] {
  const keys = all('argKey');
  const values = all('argValue');
  if (keys.length !== values.length) {
    throw new HttpError(400, `argKey and argValue must come in pairs (argValue may be empty); got ${keys.length} argKey and ${values.length} argValue`);
  }
  const pairs = keys.map((k, i): [string, string] => [k, values[i]]).filter(([k, v]) => k !== '' || v !== '');
  const seen = new Set<string>();
  for (const [k] of pairs) {
    if (k === '') throw new HttpError(400, 'argKey must not be empty where an argValue is given');
    if (seen.has(k)) throw new HttpError(400, `argKey ${JSON.stringify(k.slice(0, 60))} is given twice; a job's arg has one value`);
    seen.add(k);
  }
  return pairs;
}

/** The list's own checks (lengths, NUL, at most 50 args), as a 400 naming the field. */
function checkFilter(filter: ListFilter): void {
  try {
    validateListFilter(filter);
  } catch (err) {
    if (err instanceof JobValidationError) throw new HttpError(400, err.message);
    throw err;
  }
}

/** The page's cursor and size, validated. */
export function parsePage(get: (k: string) => string | undefined, defaultLimit = 50): { cursor?: string; limit: number } {
  const cursor = get('cursor') || undefined;
  if (cursor !== undefined && !isValidId(cursor)) throw new HttpError(400, 'cursor must be a job id from a previous page');
  const raw = get('limit');
  // Digits only: Number() also took 0x2, 0b10 and 1e0.
  const limit = raw === undefined || raw === '' ? defaultLimit : /^\d{1,4}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new HttpError(400, `limit must be an integer from 1 to 500; got ${JSON.stringify(String(raw).slice(0, 20))}`);
  return { cursor, limit };
}

export function checkId(id: string): string {
  const shown = JSON.stringify(id.slice(0, 60));
  if (!isValidId(id)) throw new HttpError(400, `id must be a job id (lowercase UUID); got ${shown}`);
  return id;
}

export async function loadJob(jobs: AdminJobs, id: string): Promise<JobRecord> {
  const job = await jobs.get(checkId(id));
  if (!job) throw new HttpError(404, `job ${id} not found`);
  return job;
}

/** A batch id from the path: any text a batchId may hold (1-255 characters, no control character). */
export function checkBatch(id: string): string {
  if (id.length === 0 || id.length > 255) throw new HttpError(400, 'batch id must be 1-255 characters');
  if (/[\u0000-\u001f\u007f]/.test(id)) throw new HttpError(400, 'batch id must not contain control characters');
  return id;
}

export async function loadBatch(jobs: AdminJobs, id: string): Promise<BatchStatus> {
  const batch = await jobs.batchStatus(checkBatch(id));
  if (!batch) throw new HttpError(404, `batch ${id} not found`);
  return batch;
}

/** Whether an operator paused the queue (its pending jobs are not claimed until it is resumed). */
export async function queuePaused(jobs: AdminJobs, queue: string): Promise<boolean> {
  return (await jobs.queues.list()).some((q) => q.queue === queue && q.pausedAt !== null);
}

/** Apply one action. False when the job is not in a state that allows it. */
export async function applyJobAction(jobs: AdminJobs, id: string, action: JobAction): Promise<boolean> {
  try {
    switch (action) {
      case 'cancel':
        return await jobs.cancel(id);
      case 'retry':
        return await jobs.retry(id);
      case 'run':
        return await jobs.runNow(id);
      case 'delete':
        return await jobs.delete(id);
    }
  } catch (err) {
    if (err instanceof JobValidationError) throw new HttpError(400, err.message);
    if (err instanceof Error && /cannot retry/.test(err.message)) throw new HttpError(409, err.message);
    throw err;
  }
}

/** What an action on one job refused means, for the 409 message. */
export function refusal(action: JobAction, job: JobRecord): string {
  const allowed: Record<JobAction, string> = {
    cancel: 'pending or running',
    retry: 'failed, cancelled, completed, skipped or pending',
    run: 'pending',
    delete: 'pending or finished',
  };
  // A waiting job is pending too: "it is pending; run needs a job that is pending" would explain nothing.
  if (action === 'run' && job.state === 'pending' && job.waitingFor > 0) {
    return `cannot run job ${job.id}: it is waiting for ${job.waitingFor} parent${job.waitingFor === 1 ? '' : 's'} to complete; it runs once they have`;
  }
  return `cannot ${action} job ${job.id}: it is ${job.state}; ${action} needs a job that is ${allowed[action]}`;
}

export function parseAction(v: string | undefined): BulkAction {
  if (v && (BULK_ACTIONS as readonly string[]).includes(v)) return v as BulkAction;
  throw new HttpError(400, `action must be one of ${BULK_ACTIONS.join(', ')}; got ${JSON.stringify(String(v ?? '').slice(0, 40))}`);
}

/** A form or JSON body's field (the first, when repeated). */
export function bodyField(body: BodyFields): (k: string) => string | undefined {
  return (k) => (bodyValues(body)(k).length ? once(bodyValues(body), k) : undefined);
}

/** A query's field that takes one value (undefined when absent), refused when repeated. */
export function queryField(getAll: (k: string) => string[]): (k: string) => string | undefined {
  return (k) => (getAll(k).length ? once(getAll, k) : undefined);
}

/** A form or JSON body's field, every value it was given. */
export function bodyValues(body: BodyFields): FieldValues {
  return (k) => {
    const v = body[k];
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  };
}

/** The job ids a bulk request names (`ids`, once or repeated): at least one, at most cap. */
export function bodyIds(body: BodyFields, cap: number): string[] {
  const raw = body.ids;
  const ids = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  if (!ids.length) throw new HttpError(400, 'select at least one job (ids)');
  if (ids.length > cap) throw new HttpError(400, `at most ${cap} jobs at once`);
  return ids;
}

/** Ids of the jobs matching a filter, at most cap (more = true when others match beyond it). */
export function matchingIds(jobs: AdminJobs, filter: ListFilter, cap: number): Promise<{ ids: string[]; more: boolean }> {
  return idsMatching((f) => jobs.list(f), filter, cap);
}

/** A bulk action's counts; a redrive's skips also by reason. */
export interface BulkCounts {
  done: number;
  skipped: number;
  reasons?: RedriveResult['reasons'];
}

/** Apply an action to each job; jobs in a state that does not allow it are counted as skipped. */
export async function applyBulk(jobs: AdminJobs, ids: string[], action: BulkAction): Promise<BulkCounts> {
  ids.forEach(checkId);
  if (action === 'redrive') {
    const r = await redrive(jobs, ids);
    return { done: r.redriven, skipped: r.skipped, reasons: r.reasons };
  }
  if (action === 'delete') {
    const deleted = await jobs.deleteMany(ids);
    return { done: deleted.length, skipped: ids.length - deleted.length };
  }
  let done = 0;
  for (const id of ids) {
    try {
      if (await applyJobAction(jobs, id, action)) done++;
    } catch (err) {
      if (!(err instanceof HttpError && err.status === 409)) throw err;
    }
  }
  return { done, skipped: ids.length - done };
}

/**
 * Redrive dead-letter copies: these ids, or at most `cap` jobs of a filter, which must name their
 * queue (a dead-letter queue; the list offers redrive only when filtered by one).
 */
export async function redrive(jobs: AdminJobs, target: string[] | ListFilter, cap = 1000): Promise<RedriveResult> {
  if (!Array.isArray(target) && !target.queue) throw new HttpError(400, 'redrive needs a queue filter: the dead-letter queue whose copies to redrive');
  try {
    return await jobs.redriveDeadLetters(Array.isArray(target) ? target : { ...target, queue: target.queue!, limit: cap });
  } catch (err) {
    if (err instanceof JobValidationError) throw new HttpError(400, err.message);
    throw err;
  }
}

export function checkKey(key: string): string {
  try {
    return validateName(key, 'key');
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
}

export function checkQueue(queue: string): string {
  try {
    return validateName(queue, 'queue');
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
}

export async function schedulesWithOutcome(jobs: AdminJobs): Promise<(ScheduleRecord & { lastState: string | null })[]> {
  const list = await jobs.schedules.list();
  return Promise.all(list.map(async (s) => ({ ...s, lastState: s.lastJobId ? ((await jobs.get(s.lastJobId))?.state ?? 'deleted') : null })));
}
