/**
 * SQL Server failure: each owned running attempt retried later or archived as failed for good,
 * and its attempt recorded, in one atomic batch.
 */
import type { FailItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { COMMON, ID, NOW, addMs, atomic, type Stmt } from './tsql.ts';

/** Failed attempts, by @x (id, token, attempt, err, delay_ms): retry later (delay) or fail for good (NULL delay). */
const FAIL_X = `DECLARE @x TABLE (id ${ID} PRIMARY KEY, token ${ID}, attempt INT, err NVARCHAR(MAX), delay_ms BIGINT)`;


/** The fenced fail of the rows in @x, in the batch's transaction; answers the ids it applied to. */
function failBody(t: Tables): string {
  const jobs = t.jobs;
  const cols = COMMON.map((c) => (c === 'error' ? 'h.err' : `j.${c}`)).join(', ');
  return `DECLARE @hit TABLE (id ${ID} PRIMARY KEY, worker_id NVARCHAR(300), started_at DATETIME2(3), attempt INT, err NVARCHAR(MAX), delay_ms BIGINT);
INSERT INTO @hit SELECT j.id, j.worker_id, j.started_at, x.attempt, x.err, x.delay_ms
FROM ${jobs} j WITH (UPDLOCK, ROWLOCK) JOIN @x x ON j.id = x.id AND j.token = x.token
WHERE j.state = 'running' AND (x.delay_ms IS NOT NULL OR j.flow = 0);
UPDATE j SET state = 'pending', run_at = ${addMs(NOW, 'h.delay_ms')}, error = h.err, token = NULL
FROM ${jobs} j JOIN @hit h ON j.id = h.id WHERE h.delay_ms IS NOT NULL;
INSERT INTO ${t.history} (${COMMON.join(', ')}, state, finished_at, result)
SELECT ${cols}, 'failed', ${NOW}, NULL FROM ${jobs} j JOIN @hit h ON j.id = h.id WHERE h.delay_ms IS NULL;
DELETE j FROM ${jobs} j JOIN @hit h ON j.id = h.id WHERE h.delay_ms IS NULL;
MERGE ${t.attempts} WITH (HOLDLOCK) AS a
USING (SELECT id, attempt, worker_id, started_at, err FROM @hit) AS h ON a.job_id = h.id AND a.attempt = h.attempt
WHEN MATCHED THEN UPDATE SET error = h.err, finished_at = ${NOW}
WHEN NOT MATCHED THEN INSERT (job_id, attempt, worker_id, started_at, finished_at, error) VALUES (h.id, h.attempt, h.worker_id, h.started_at, ${NOW}, h.err);`;
}

export function jobsFail(t: Tables, items: FailItem[]): Stmt {
  return {
    text: `${FAIL_X};
INSERT INTO @x SELECT * FROM OPENJSON(@items) WITH (id CHAR(36) '$.id', token CHAR(36) '$.token', attempt INT '$.attempt', err NVARCHAR(MAX) '$.err', delay_ms BIGINT '$.delay_ms');
${atomic(failBody(t))}
SELECT id FROM @hit;`,
    params: [
      {
        name: 'items',
        type: 'nvarchar(max)',
        value: JSON.stringify(items.map((i) => ({ id: i.id, token: i.token, attempt: i.attempt, err: JSON.stringify(i.error), delay_ms: i.retryDelayMs }))),
      },
    ],
  };
}
