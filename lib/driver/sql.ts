/** Small helpers for building parameterised SQL text. Values never enter the text. */
import { TERMINAL_STATES, type EnqueueResult, type JobState, type ListFilter, type NewJobRow } from '../model.ts';

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
  // A reserved job is live and pending: history holds none.
  if (filter.reserved) return { live: !states || states.includes('pending') ? ['pending'] : null, history: null };
  // A finish time filters history only: no live job has finished.
  const finished = filter.finishedAfter !== undefined || filter.finishedBefore !== undefined;
  if (!states) return { live: finished ? null : ['pending', 'running'], history: [...TERMINAL_STATES] };
  const live = finished ? [] : states.filter((s) => s === 'pending' || s === 'running');
  const history = states.filter((s) => TERMINAL_STATES.includes(s));
  return { live: live.length ? live : null, history: history.length ? history : null };
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

/**
 * Enqueue in chunks until every row is settled: inserted (answered with ref null), or matched to
 * the live job holding its refId (answered with that refId). A refId whose live job finished
 * while we ran is neither, and is tried again; `insert` answers null to retry its whole chunk.
 */
export async function settleEnqueue(
  rows: NewJobRow[],
  maxBytes: number,
  maxRows: number,
  insert: (chunk: NewJobRow[]) => Promise<{ id: string; ref: string | null }[] | null>,
): Promise<EnqueueResult[]> {
  const results = new Map<string, EnqueueResult>();
  let todo = rows;
  for (let round = 0; todo.length && round < 5; round++) {
    for (const chunk of chunkBy(todo, (r) => r.bytes, maxBytes, maxRows)) {
      const found = await insert(chunk);
      if (!found) continue;
      const byRef = new Map<string, string>();
      const inserted = new Set<string>();
      for (const r of found) {
        if (r.ref === null) inserted.add(r.id);
        else byRef.set(r.ref, r.id);
      }
      for (const row of chunk) {
        if (inserted.has(row.id)) results.set(row.id, { id: row.id, existed: false });
        else if (row.refId && byRef.has(row.refId)) results.set(row.id, { id: byRef.get(row.refId)!, existed: true });
      }
    }
    todo = todo.filter((r) => !results.has(r.id));
  }
  if (todo.length) throw new Error(`enqueue: could not settle refId "${todo[0].refId}" after 5 tries (a live job with it kept appearing and finishing)`);
  return rows.map((r) => results.get(r.id)!);
}
