/**
 * SQL Server completion: owned running rows deleted and archived to history as completed in one
 * statement (DELETE … OUTPUT … INTO history).
 */
import type { CompleteItem } from '../store.ts';
import type { Tables } from '../portable/statement.ts';
import { COMMON, NOW, type Stmt } from './tsql.ts';


/** Move completed attempts to history in one statement; answers the ids still owned. */
export function jobsComplete(t: Tables, items: CompleteItem[]): Stmt {
  const cols = COMMON.map((c) => (c === 'error' ? 'NULL' : `deleted.${c}`)).join(', ');
  return {
    text: `DELETE j
OUTPUT ${cols}, 'completed', ${NOW}, x.result INTO ${t.history} (${COMMON.join(', ')}, state, finished_at, result)
OUTPUT deleted.id
FROM ${t.jobs} j JOIN OPENJSON(@items) WITH (id CHAR(36) '$.id', token CHAR(36) '$.token', result NVARCHAR(MAX) '$.result') x
ON j.id = x.id AND j.token = x.token
WHERE j.state = 'running' AND j.flow = 0;`,
    params: [{ name: 'items', type: 'nvarchar(max)', value: JSON.stringify(items.map((i) => ({ id: i.id, token: i.token, result: i.resultJson }))) }],
  };
}
