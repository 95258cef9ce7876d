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
