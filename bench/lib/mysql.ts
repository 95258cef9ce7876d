/** MySQL/MariaDB helpers: pools, durability read-out, dropping what a run created. */
import mysql from 'mysql2/promise';
import { MYSQL_URL, NAME_PREFIX } from './config.ts';

export function newMysqlPool(max = 10): mysql.Pool {
  return mysql.createPool({ uri: MYSQL_URL, connectionLimit: max, timezone: 'Z' });
}

export async function describeMysql(q: Pick<mysql.Pool, 'query'>): Promise<string> {
  const [rows] = await q.query(
    'SELECT VERSION() AS v, @@innodb_flush_log_at_trx_commit AS flush, @@sync_binlog AS sync_binlog, @@log_bin AS log_bin, @@innodb_doublewrite AS dw',
  );
  const r = (rows as Record<string, unknown>[])[0];
  return `${r.v}: innodb_flush_log_at_trx_commit=${r.flush}, sync_binlog=${r.sync_binlog}, log_bin=${r.log_bin}, innodb_doublewrite=${r.dw}`;
}

async function tablesLike(c: Pick<mysql.Pool, 'query'>, prefix: string): Promise<string[]> {
  const [rows] = await c.query(
    'SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND LEFT(table_name, CHAR_LENGTH(?)) = ?',
    [prefix, prefix],
  );
  return (rows as { t: string }[]).map((r) => r.t);
}

/** Drop every table whose name starts with `prefix` (a bx_* run id). */
export async function dropMysqlByPrefix(prefix: string): Promise<number> {
  if (!prefix.startsWith(NAME_PREFIX)) throw new Error(`refusing to drop objects outside ${NAME_PREFIX}*: ${prefix}`);
  const c = await mysql.createConnection({ uri: MYSQL_URL });
  try {
    const tables = await tablesLike(c, prefix);
    for (const t of tables) await c.query(`DROP TABLE IF EXISTS \`${t}\``);
    return tables.length;
  } finally {
    await c.end();
  }
}

/** Leftovers of interrupted runs; 0 when no MariaDB is reachable (the MariaDB systems then fail on their own). */
export async function sweepMysqlLeftovers(): Promise<number> {
  return dropMysqlByPrefix(NAME_PREFIX).catch(() => 0);
}
