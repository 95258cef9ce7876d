import type BetterSqlite3 from 'better-sqlite3';

type Stmt = BetterSqlite3.Statement;

/** `sql` prepared on `db` once, kept in `cache`. */
export function prepared(cache: Map<string, Stmt>, db: BetterSqlite3.Database, sql: string): Stmt {
  let s = cache.get(sql);
  if (!s) {
    s = db.prepare(sql);
    cache.set(sql, s);
  }
  return s;
}
