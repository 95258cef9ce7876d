/**
 * SQL Server fenced writes of running attempts, many in one statement: release, progress, log
 * lines. Each answers the ids it applied to.
 */
import type { LogItem, ProgressItem, ReleaseItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { NOW, addMs, fromEpoch, type Stmt } from './tsql.ts';


export function jobsRelease(t: Tables, items: ReleaseItem[]): Stmt {
  return {
    text: `UPDATE j SET state = 'pending', run_at = ${addMs(NOW, 'x.delay_ms')}, attempts = j.attempts - x.refund, token = NULL
OUTPUT inserted.id
FROM ${t.jobs} j JOIN OPENJSON(@items) WITH (id CHAR(36) '$.id', token CHAR(36) '$.token', delay_ms BIGINT '$.delay_ms', refund INT '$.refund') x
ON j.id = x.id AND j.token = x.token
WHERE j.state = 'running';`,
    params: [
      { name: 'items', type: 'nvarchar(max)', value: JSON.stringify(items.map((i) => ({ id: i.id, token: i.token, delay_ms: i.delayMs, refund: i.refund ? 1 : 0 }))) },
    ],
  };
}

export function jobsSaveProgress(t: Tables, items: ProgressItem[]): Stmt {
  return {
    text: `UPDATE j SET progress = x.progress, progress_message = x.message
OUTPUT inserted.id
FROM ${t.jobs} j JOIN OPENJSON(@items) WITH (id CHAR(36) '$.id', token CHAR(36) '$.token', progress REAL '$.progress', message NVARCHAR(MAX) '$.message') x
ON j.id = x.id AND j.token = x.token
WHERE j.state = 'running';`,
    params: [{ name: 'items', type: 'nvarchar(max)', value: JSON.stringify(items.map((i) => ({ id: i.id, token: i.token, progress: i.progress, message: i.message }))) }],
  };
}

/** Lines of attempts still owned, in order (INSERT ... SELECT ... ORDER BY assigns identities in that order). */
export function logsAppend(t: Tables, items: LogItem[]): Stmt {
  const lines = items.flatMap((it) => it.lines.map((l) => ({ id: it.id, token: it.token, attempt: it.attempt, at: Math.round(l.at), message: l.message })));
  return {
    text: `INSERT INTO ${t.logs} (job_id, attempt, at, message)
OUTPUT inserted.job_id AS id
SELECT x.id, x.attempt, ${fromEpoch('x.at')}, x.message
FROM OPENJSON(@lines) WITH (n INT '$.n', id CHAR(36) '$.id', token CHAR(36) '$.token', attempt INT '$.attempt', at BIGINT '$.at', message NVARCHAR(MAX) '$.message') x
WHERE EXISTS (SELECT 1 FROM ${t.jobs} j WHERE j.id = x.id AND j.token = x.token AND j.state = 'running')
ORDER BY x.n;`,
    params: [{ name: 'lines', type: 'nvarchar(max)', value: JSON.stringify(lines.map((l, n) => ({ n, ...l }))) }],
  };
}
