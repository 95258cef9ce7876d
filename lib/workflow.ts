/**
 * The facade's side of workflows (the database's side is lib/driver/portable/flow.ts): callbacks
 * validated and stored with their job, and the jobs of one call put in an order where each
 * parent comes before its dependents, with a cycle refused before anything is written.
 */
import { ENQUEUE_KEYS, JobValidationError, describe, type CallbackKey, type CallbackOption, type NewJobRow } from './model.ts';
import { FLOW, type StoredCallback, type StoredCallbacks } from './driver/portable/flow.ts';

/** A row of one call, with the other items of the call it depends on (by index). */
export interface PlannedRow {
  row: NewJobRow;
  sameCall: readonly number[];
}

/** Builds a validated row for a callback (the facade's own row(): definition defaults, encoding). */
export type RowBuilder = (name: string, payload: unknown, opts: Record<string, unknown>) => NewJobRow;

const IN_ITS_TRANSACTION = 'a callback runs when the job finishes, in its transaction';
/** Enqueue options a callback cannot take, and why. */
const NOT_IN_CALLBACK = new Map<string, string>([
  ...['tx', 'dependsOn', 'runAt', 'debounce', 'unique', 'reserve', 'serial'].map((k): [string, string] => [k, IN_ITS_TRANSACTION]),
  // It was dropped (stored as null): kept, a live job holding the same refId would fail the finishing transaction.
  ['refId', 'a callback is enqueued by the transaction that finishes its job, which a live job holding the same refId would fail'],
]);
const CALLBACK_KEYS = [...ENQUEUE_KEYS].filter((k) => k !== 'name' && k !== 'payload' && !NOT_IN_CALLBACK.has(k));

/** A callback option as stored with its job: validated now, so a bad one is refused at enqueue, never when the job finishes. */
export function storedCallback(job: string, field: string, spec: CallbackOption, build: RowBuilder): StoredCallback {
  const isSpec = spec !== null && typeof spec === 'object' && !Array.isArray(spec);
  if (typeof spec !== 'string' && !isSpec) {
    throw new JobValidationError(`job "${job}": ${field} must be a job name or { name, payload?, ...enqueue options }; got ${describe(spec)}`, field, job);
  }
  const { name, payload, ...options } = typeof spec === 'string' ? { name: spec, payload: undefined } : (spec as { name: string; payload?: unknown });
  if (typeof name !== 'string') throw new JobValidationError(`job "${job}": ${field}.name must be a job name; got ${describe(name)}`, `${field}.name`, job);
  for (const key of Object.keys(options)) {
    const why = NOT_IN_CALLBACK.get(key);
    if (why) throw new JobValidationError(`job "${job}": ${field}.${key} is not allowed (${why})`, `${field}.${key}`, job);
    if (!ENQUEUE_KEYS.has(key)) throw new JobValidationError(`job "${job}": ${field}.${key} is not a callback option; allowed: ${CALLBACK_KEYS.join(', ')}`, `${field}.${key}`, job);
  }
  const row = build(name, payload, options);
  if (row.payloadBin) throw new JobValidationError(`job "${job}": ${field}.payload must be JSON (a Buffer payload is not stored with a callback)`, `${field}.payload`, job);
  const { id: _id, bytes: _bytes, payloadBin: _bin, dependsOn: _deps, ...stored } = row;
  return stored;
}

/** The callbacks given in `opts` under `keys`, as stored (JSON), or null. */

export function callbacksJson(job: string, opts: Partial<Record<CallbackKey, CallbackOption>>, keys: CallbackKey[], build: RowBuilder): StoredCallbacks | null {
  const out: StoredCallbacks = {};
  for (const key of keys) if (opts[key] !== undefined) out[key] = storedCallback(job, key, opts[key]!, build);
  return Object.keys(out).length ? out : null;
}

/**
 * The rows of one call, each same-call parent resolved to its id and marked as having
 * dependents, in an order where parents come first. A cycle is refused, naming its items.
 */
export function orderCall(planned: PlannedRow[], what: string): NewJobRow[] {
  for (const [i, p] of planned.entries()) {
    for (const j of p.sameCall) {
      if (j === i) throw new JobValidationError(`${what}: items[${i}] (${p.row.name}) depends on itself`, 'dependsOn', p.row.name);
      p.row.dependsOn.push(planned[j].row.id);
      planned[j].row.flow |= FLOW.children;
    }
  }
  const order: NewJobRow[] = [];
  const state = new Array<'new' | 'visiting' | 'done'>(planned.length).fill('new');
  const path: number[] = [];
  const visit = (i: number): void => {
    if (state[i] === 'done') return;
    if (state[i] === 'visiting') {
      const cycle = [...path.slice(path.indexOf(i)), i].map((k) => `items[${k}] (${planned[k].row.name})`);
      throw new JobValidationError(`${what}: dependsOn forms a cycle: ${cycle.join(' → ')}`, 'dependsOn', planned[i].row.name);
    }
    state[i] = 'visiting';
    path.push(i);
    for (const j of planned[i].sameCall) visit(j);
    path.pop();
    state[i] = 'done';
    order.push(planned[i].row);
  };
  for (let i = 0; i < planned.length; i++) visit(i);
  return order;
}

/** Rows written earlier in the same unit of work that later rows depend on: marked as having dependents. */
export function markParentsWithin(rows: NewJobRow[]): void {
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const r of rows) for (const p of r.dependsOn) { const parent = byId.get(p); if (parent) parent.flow |= FLOW.children; }
}

/** Whether writing these rows takes the workflow path (./driver/portable/flow.ts insertWithFlow). */
export function needsFlow(rows: NewJobRow[]): boolean {
  return rows.some((r) => r.flow !== 0 || r.dedupe !== null || r.serialKey !== null || r.reserveMs !== null || r.groupKey !== null);
}
