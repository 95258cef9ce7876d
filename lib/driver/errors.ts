/**
 * What a database error says about a write:
 * - transient: nothing about the statement (the connection dropped, the server is restarting, a
 *   lock or a deadlock got in the way): the same write can succeed later;
 * - refused: the database refused this data (text it cannot store, a value out of range, a
 *   packet too large, a constraint or a trigger): retrying it would fail forever and block every
 *   write queued behind it, while the other rows of a batch would go through;
 * - systemic: anything else (a table missing, a permission, a bug in a statement): every write
 *   fails alike, so it is retried like a transient one and reported.
 */
export type ErrorClass = 'transient' | 'refused' | 'systemic';

/** SQLSTATE classes of refused data on PostgreSQL: 22 data exception, 23 integrity constraint, 54 program limit (too large), P0 raised by a trigger. */
const REFUSED_SQLSTATE = /^(22|23|54|P0)/;
/** MySQL/MariaDB: bad value or text, out of range, too long, invalid JSON, packet too large, constraint, CHECK, a trigger's SIGNAL. */
const REFUSED_MYSQL_ERRNOS = new Set([1048, 1062, 1153, 1264, 1292, 1301, 1366, 1367, 1406, 1451, 1452, 1644, 3140, 3819, 4025, 4038]);
/** SQL Server: truncation, conversion and range, constraints, duplicate keys, RAISERROR/THROW from a trigger. */
const REFUSED_MSSQL_NUMBERS = new Set([242, 515, 547, 2601, 2627, 2628, 8114, 8115, 8152, 9420, 13609]);

export function classifyError(err: unknown): ErrorClass {
  if (isRefusal(err)) return 'refused';
  return isTransientError(err) ? 'transient' : 'systemic';
}

/**
 * PostgreSQL: a row routed to a `…_default` partition while the leader made its month's partition
 * (the write waited for the default's lock, and the month's range left it): the same write
 * succeeds now, routed to the new partition (lib/driver/postgres/partitions.ts monthCreate).
 */
function isRoutedToStaleDefault(e: { code?: unknown; table?: unknown }): boolean {
  return e.code === '23514' && typeof e.table === 'string' && e.table.endsWith('_default');
}

function isRefusal(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 5) return false;
  const e = err as { code?: unknown; errno?: unknown; number?: unknown; cause?: unknown; originalError?: unknown; table?: unknown };
  if (isRoutedToStaleDefault(e)) return false;
  if (typeof e.code === 'string') {
    if (REFUSED_FOR_SIZE.has(e.code) || e.code.startsWith('SQLITE_CONSTRAINT') || e.code === 'SQLITE_MISMATCH') return true;
    if (/^[0-9A-Z]{5}$/.test(e.code) && REFUSED_SQLSTATE.test(e.code)) return true;
  }
  if (typeof e.errno === 'number' && REFUSED_MYSQL_ERRNOS.has(e.errno)) return true;
  if (typeof e.number === 'number' && (REFUSED_MSSQL_NUMBERS.has(e.number) || e.number >= 50000)) return true;
  return isRefusal(e.cause, depth + 1) || isRefusal(e.originalError, depth + 1);
}

/** Socket and pool errors of Node and of every driver (pg, mysql2, mssql/tedious). */
const TRANSIENT_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN',
  // mysql2
  'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR', 'PROTOCOL_ENQUEUE_AFTER_QUIT',
  'ER_CON_COUNT_ERROR', 'ER_TOO_MANY_USER_CONNECTIONS', 'ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'ER_SERVER_SHUTDOWN',
  'ER_QUERY_INTERRUPTED', 'ER_CONNECTION_KILLED', 'ER_NORMAL_SHUTDOWN', 'ER_SERVER_GONE_ERROR', 'ER_CLIENT_INTERACTION_TIMEOUT',
  // mssql / tedious
  'ECONNCLOSED', 'ESOCKET', 'ETIMEOUT', 'ENOTOPEN', 'ENOCONN', 'EINSTLOOKUP',
  // better-sqlite3: another connection holds the write lock, or the disk is busy or full
  'SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_TIMEOUT', 'SQLITE_LOCKED', 'SQLITE_LOCKED_SHAREDCACHE',
  'SQLITE_PROTOCOL', 'SQLITE_FULL',
  // ours: a statement that never answered, its connection ended (./mysql/watchdog.ts)
  'SQLJOBS_UNANSWERED',
]);

/** MySQL/MariaDB error numbers: server gone or shutting down, connection killed, lock wait, deadlock, too many connections. */
const TRANSIENT_MYSQL_ERRNOS = new Set([1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 4031]);

/** SQL Server error numbers: deadlock victim, lock timeout, Azure SQL's throttling and failover. */
const TRANSIENT_MSSQL_NUMBERS = new Set([1205, 1222, 233, 4060, 10053, 10054, 10060, 10928, 10929, 40143, 40197, 40501, 40613, 49918, 49919, 49920]);

/**
 * PostgreSQL SQLSTATE classes and codes: 08 connection exception, 53 insufficient resources,
 * 57P01-57P03 shutdown and cannot-connect-now, 40001/40P01 serialization failure and deadlock,
 * 55P03 lock not available, 58 system error (I/O).
 */
function transientSqlState(code: string): boolean {
  return /^(08|53|58)/.test(code) || ['57P01', '57P02', '57P03', '57014', '40001', '40P01', '55P03'].includes(code);
}

/** Messages of errors the drivers raise without a code. */
const TRANSIENT_MESSAGES = /connection terminated|terminating connection|not queryable|timeout exceeded when trying to connect|connection (is )?(closed|lost|ended)|closed state|database connection is not open|socket hang up|server has gone away|lost connection/i;

/** The server refused the statement for its size (it may drop the connection too): never transient. */
const REFUSED_FOR_SIZE = new Set(['ER_NET_PACKET_TOO_LARGE', 'SQLITE_TOOBIG', '54000']);

export function isTransientError(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 5) return false;
  const e = err as { code?: unknown; errno?: unknown; number?: unknown; message?: unknown; fatal?: unknown; cause?: unknown; originalError?: unknown; table?: unknown };
  if ((typeof e.code === 'string' && REFUSED_FOR_SIZE.has(e.code)) || e.errno === 1153) return false;
  if (isRoutedToStaleDefault(e)) return true;
  if (typeof e.code === 'string' && (TRANSIENT_CODES.has(e.code) || e.code.startsWith('SQLITE_IOERR') || (/^[0-9A-Z]{5}$/.test(e.code) && transientSqlState(e.code)))) return true;
  // mysql2 marks an error after which the connection is unusable as fatal.
  if (e.fatal === true) return true;
  if (typeof e.errno === 'number' && TRANSIENT_MYSQL_ERRNOS.has(e.errno)) return true;
  if (typeof e.number === 'number' && TRANSIENT_MSSQL_NUMBERS.has(e.number)) return true;
  if (typeof e.message === 'string' && TRANSIENT_MESSAGES.test(e.message)) return true;
  // Wrapped errors (slonik, mssql) keep the driver's error as their cause.
  return isTransientError(e.cause, depth + 1) || isTransientError(e.originalError, depth + 1);
}

/**
 * Contention: a lock wait, a deadlock, a serialization failure or a statement timeout. The
 * statement was sound and the connection is fine; only other work got in the way.
 */
export function isContention(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 5) return false;
  const e = err as { code?: unknown; errno?: unknown; number?: unknown; cause?: unknown; originalError?: unknown };
  if (typeof e.code === 'string' && (CONTENTION_CODES.has(e.code) || e.code.startsWith('SQLITE_BUSY') || e.code.startsWith('SQLITE_LOCKED'))) return true;
  if (typeof e.errno === 'number' && (e.errno === 1205 || e.errno === 1213)) return true;
  if (typeof e.number === 'number' && (e.number === 1205 || e.number === 1222)) return true;
  return isContention(e.cause, depth + 1) || isContention(e.originalError, depth + 1);
}

const CONTENTION_CODES = new Set(['40001', '40P01', '55P03', '57014', 'ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'ETIMEOUT']);

/** Whether `err`, or an error it wraps, has this code. */
function hasCode(err: unknown, code: string, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 5) return false;
  const e = err as { code?: unknown; cause?: unknown; originalError?: unknown };
  return e.code === code || hasCode(e.cause, code, depth + 1) || hasCode(e.originalError, code, depth + 1);
}

/**
 * Contention the server reported, so it rolled the statement or its transaction back: writing it
 * again cannot apply it twice. Not the driver's own timeout (mssql's ETIMEOUT), after which the
 * server may have committed.
 */
export function isRolledBackContention(err: unknown): boolean {
  return isContention(err) && !hasCode(err, 'ETIMEOUT');
}

/** Our own statement that never answered, ended by us (./mysql/watchdog.ts): transient, but no sign of a refusal. */
export const UNANSWERED_CODE = 'SQLJOBS_UNANSWERED';

export function isUnanswered(err: unknown): boolean {
  return hasCode(err, UNANSWERED_CODE);
}

/**
 * A connection of ours dropped on our side because the database does not answer (Store.sever):
 * its socket destroyed with an error, which the drivers pass to every statement waiting on it (a
 * socket destroyed without one leaves mysql2's waiting for good).
 */
export function severSocket(socket: { destroy(err?: Error): unknown } | undefined): void {
  socket?.destroy(severedError());
}

/** What a statement on a connection we dropped fails with (transient: no sign of a refusal). */
export function severedError(): Error {
  return Object.assign(new Error('sqljobs dropped this connection: the database did not answer'), { code: UNANSWERED_CODE });
}

/** A unique key refused the row: PostgreSQL 23505, MySQL 1062, SQL Server 2601/2627, SQLite's UNIQUE or PRIMARY KEY constraint. */
export function isDuplicateKey(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 5) return false;
  const e = err as { code?: unknown; errno?: unknown; number?: unknown; cause?: unknown; originalError?: unknown };
  if (e.code === '23505' || e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return true;
  if (e.errno === 1062 || e.number === 2601 || e.number === 2627) return true;
  return isDuplicateKey(e.cause, depth + 1) || isDuplicateKey(e.originalError, depth + 1);
}
