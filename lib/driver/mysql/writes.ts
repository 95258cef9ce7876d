/**
 * MySQL/MariaDB fenced writes of one running attempt (there is no UPDATE … FROM a list of
 * values to batch them): release, progress, and its log lines. A batch of them is sent as one
 * transaction in one round trip (the store's eachFenced), so a refused item leaves the others
 * unwritten and no lock waits on this process between two statements.
 */
import type { LogItem, ProgressItem, ReleaseItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { mysql, utc } from '../portable/dialect.ts';

export function jobRelease(t: Tables, i: ReleaseItem): { text: string; values: unknown[] } {
  return {
    text: `UPDATE ${t.jobs} SET state = 'pending', run_at = ${mysql.now} + INTERVAL ? MICROSECOND, attempts = attempts - ?, token = NULL
     WHERE id = ? AND token = ? AND state = 'running'`,
    values: [i.delayMs * 1000, i.refund ? 1 : 0, i.id, i.token],
  };
}

export function jobSaveProgress(t: Tables, i: ProgressItem): { text: string; values: unknown[] } {
  return {
    text: `UPDATE ${t.jobs} SET progress = ?, progress_message = ? WHERE id = ? AND token = ? AND state = 'running'`,
    values: [i.progress, i.message, i.id, i.token],
  };
}

/**
 * One attempt's log lines, in order, inserted only if the attempt still owns its job: the rows
 * inserted are the lines, or none when the claim was lost. The job is read as it was committed
 * when the statement began (INSERT … SELECT reads without locking at READ COMMITTED): a rescue
 * committed after that comes after these lines, which are the old attempt's (its number) anyway.
 */
export function logsAppendOwned(t: Tables, i: LogItem): { text: string; values: unknown[] } {
  const values: unknown[] = [i.attempt];
  const lines = i.lines.map((line, n) => {
    values.push(n, utc(line.at), line.message);
    return n === 0 ? 'SELECT ? AS n, ? AS at, ? AS message' : 'SELECT ?, ?, ?';
  });
  values.push(i.id, i.token);
  return {
    text: `INSERT INTO ${t.logs} (job_id, attempt, at, message)
     SELECT j.id, ?, x.at, x.message FROM ${t.jobs} j JOIN (${lines.join(' UNION ALL ')}) x
     WHERE j.id = ? AND j.token = ? AND j.state = 'running' ORDER BY x.n`,
    values,
  };
}
