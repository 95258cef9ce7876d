import type BetterSqlite3 from 'better-sqlite3';

type Stmt = BetterSqlite3.Statement;

/** `sql` prepared on `db` once, kept in `cache` (a cache of raw-mode statements when `raw`: rows as arrays). */
export function prepared(cache: Map<string, Stmt>, db: BetterSqlite3.Database, sql: string, raw = false): Stmt {
  let s = cache.get(sql);
  if (!s) {
    s = raw ? db.prepare(sql).raw(true) : db.prepare(sql);
    cache.set(sql, s);
  }
  return s;
}

/**
 * Many wide rows, read as arrays and made into records here: better-sqlite3 builds a row object
 * through one V8 API call per column, which cost a claim of 20 columns about 1.5 µs a row more
 * than the arrays and a plain loop (measured for issue 17). `stmt` is in raw mode.
 */
export function allAsRecords(stmt: Stmt, values: unknown[]): Record<string, unknown>[] {
  let names = columnNames.get(stmt);
  if (!names) columnNames.set(stmt, (names = stmt.columns().map((c) => c.name)));
  const rows = stmt.all(...values) as unknown[][];
  const out = new Array<Record<string, unknown>>(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const record: Record<string, unknown> = {};
    const row = rows[r];
    for (let i = 0; i < names.length; i++) record[names[i]] = row[i];
    out[r] = record;
  }
  return out;
}

const columnNames = new WeakMap<Stmt, string[]>();
