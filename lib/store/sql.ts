/** Small helpers for building parameterised SQL text. Values never enter the text. */
import { TERMINAL_STATES, type JobState, type ListFilter } from '../model.ts';

export class Params {
  readonly values: unknown[] = [];
  constructor(private readonly style: 'qmark' | 'dollar') {}
  /** Add a value and return its placeholder. */
  add(v: unknown): string {
    this.values.push(v);
    return this.style === 'qmark' ? '?' : `$${this.values.length}`;
  }
}

export const LIST_MAX = 500;
export const LIST_DEFAULT = 50;

export function listLimit(filter: ListFilter): number {
  const limit = filter.limit ?? LIST_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX) {
    throw new TypeError(`limit must be an integer from 1 to ${LIST_MAX}; got ${limit}`);
  }
  return limit;
}

/** Which tables a state filter touches: live states are in the hot table, the rest in history. */
export function statesByTable(filter: ListFilter): { live: JobState[] | null; history: JobState[] | null } {
  const states = filter.states ?? (filter.state ? [filter.state] : null);
  if (!states) return { live: ['pending', 'running'], history: [...TERMINAL_STATES] };
  const live = states.filter((s) => s === 'pending' || s === 'running');
  const history = states.filter((s) => TERMINAL_STATES.includes(s));
  return { live: live.length ? live : null, history: history.length ? history : null };
}

/**
 * The WHERE clause of one table's half of list(). `date` converts a Date to the dialect's time
 * value. Every filter is a bound parameter.
 */
export function listWhere(
  filter: ListFilter,
  states: JobState[],
  allStates: number,
  p: Params,
  date: (d: Date) => unknown,
): string {
  const where: string[] = [];
  if (states.length < allStates) where.push(`state IN (${states.map((s) => p.add(s)).join(', ')})`);
  if (filter.queue !== undefined) where.push(`queue = ${p.add(filter.queue)}`);
  if (filter.name !== undefined) where.push(`name = ${p.add(filter.name)}`);
  if (filter.tag !== undefined) where.push(`tag = ${p.add(filter.tag)}`);
  if (filter.batchId !== undefined) where.push(`batch_id = ${p.add(filter.batchId)}`);
  if (filter.refId !== undefined) where.push(`ref_id = ${p.add(filter.refId)}`);
  if (filter.createdBy !== undefined) where.push(`created_by = ${p.add(filter.createdBy)}`);
  if (filter.createdAfter !== undefined) where.push(`created_at >= ${p.add(date(filter.createdAfter))}`);
  if (filter.createdBefore !== undefined) where.push(`created_at < ${p.add(date(filter.createdBefore))}`);
  if (filter.cursor !== undefined) where.push(`id < ${p.add(filter.cursor)}`);
  return where.length ? `WHERE ${where.join(' AND ')}` : '';
}

/** Split rows into chunks whose estimated size stays under maxBytes and count under maxRows. */
export function chunkBy<T>(rows: T[], size: (r: T) => number, maxBytes: number, maxRows: number): T[][] {
  const chunks: T[][] = [];
  let cur: T[] = [];
  let bytes = 0;
  for (const r of rows) {
    const s = size(r);
    if (cur.length && (bytes + s > maxBytes || cur.length >= maxRows)) {
      chunks.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += s;
  }
  if (cur.length) chunks.push(cur);
  return chunks;
}
