/**
 * MySQL/MariaDB: the running rows of these attempts locked (the ids whose token matches are
 * still owned), and owned jobs moved to history (completed or failed for good).
 */
import type { Fenced } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { SHARED_COLUMNS, sharedColumns } from '../columns.ts';
import { mysql } from '../portable/dialect.ts';

/**
 * Lock the running rows of these attempts (with `extra` columns); the caller keeps those whose token
 * matches. By the primary key (see mysql.byKey): planned as a scan, the lock would also wait for rows
 * it does not want, such as the pending rows a frozen process's claim holds locked.
 */
export function jobsLockRunning(t: Tables, ids: string[], extra = ''): { text: string; values: unknown[] } {
  return { text: `SELECT id, token, flow${extra} FROM ${t.jobs}${mysql.byKey} WHERE id IN (?) AND state = 'running' FOR UPDATE`, values: [ids] };
}

/**
 * Two statements that copy running jobs of these attempts (fenced by id and token) to history
 * as `state`, each with its own value for `column`, then delete them. The DELETE removes only
 * rows history now holds, so nothing in between can lose a job. It finds them by the primary key:
 * a DELETE that joins reads its rows locking, each row a scan reads too (see jobsLockRunning).
 * STRAIGHT_JOIN keeps that order: the planner, seeing a history whose statistics are stale (a young
 * one grows faster than they are refreshed), would start from history and scan its whole index,
 * waiting on every row another completion inserted and has not committed yet (deadlocks between
 * two processes' completions) and reading more the longer history grows.
 */
export function jobsMoveToHistory(
  t: Tables,
  state: 'completed' | 'failed',
  column: 'result' | 'error',
  items: (Fenced & { value: string | null })[],
): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const input = items.map((it, i) => {
    values.push(it.id, it.token, it.value);
    return i === 0 ? 'SELECT ? AS id, ? AS token, ? AS v' : 'SELECT ?, ?, ?';
  });
  const select = SHARED_COLUMNS.map((col) => (col === 'error' ? (column === 'error' ? 'x.v' : 'NULL') : `j.${col}`)).join(', ');
  values.push(items.map((i) => i.id));
  return {
    text: `INSERT INTO ${t.history} (${sharedColumns()}, state, finished_at, result)
     SELECT ${select}, '${state}', ${mysql.now}, ${column === 'result' ? 'x.v' : 'NULL'}
     FROM ${t.jobs} j JOIN (${input.join(' UNION ALL ')}) x ON x.id = j.id AND x.token = j.token WHERE j.state = 'running' AND j.flow = 0;
     DELETE j FROM ${t.jobs} j${mysql.byKey} STRAIGHT_JOIN ${t.history} h ON h.id = j.id WHERE j.id IN (?)`,
    values,
  };
}
