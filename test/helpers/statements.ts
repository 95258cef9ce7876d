/**
 * Counting what the library sends to the database at the driver, below the Store: a wrapped
 * store method would still count one call that the store turned into a thousand statements.
 *
 * - pg (and slonik, whose worker side runs on plain pg pools): every `Client.query`, one round trip.
 * - mysql2: every `query`/`execute` of a connection, one round trip (which may carry several
 *   statements joined by `;`).
 * - SQL Server (mssql): every `Request.query`/`batch`, one round trip.
 * - better-sqlite3 has no round trips: a statement runs in-process, and what costs is the write
 *   transaction (its commit). A matching statement (prepared, or `exec`) is counted once per
 *   transaction it runs in (a BEGIN statement or a `db.transaction()` function), once each when it
 *   runs outside one; or once per statement with `{ perStatement: true }`.
 *
 * The wrappers are installed once and stay; they only look at the text (the statements still run).
 */
import Database from 'better-sqlite3';
import mssql from 'mssql';
import mysql from 'mysql2';
import pg from 'pg';
import type { TestDb } from './dialects.ts';

export interface StatementCount {
  /** Matching statements (SQLite: transactions that ran one) since the counter started. */
  readonly count: number;
  /** Their texts, in order. */
  readonly texts: string[];
  stop(): void;
}

interface Counter {
  match: RegExp;
  perStatement: boolean;
  texts: string[];
  /** SQLite: the transaction of each handle that was counted last. */
  lastTx: WeakMap<object, number>;
}

const counters = new Set<Counter>();

function textOf(arg: unknown): string {
  if (typeof arg === 'string') return arg;
  const o = arg as { text?: unknown; sql?: unknown } | null;
  return typeof o?.text === 'string' ? o.text : typeof o?.sql === 'string' ? o.sql : '';
}

function seen(text: string, sqlite?: { db: object; tx: number | null }): void {
  for (const c of counters) {
    if (!c.match.test(text)) continue;
    if (sqlite && sqlite.tx !== null && !c.perStatement) {
      if (c.lastTx.get(sqlite.db) === sqlite.tx) continue;
      c.lastTx.set(sqlite.db, sqlite.tx);
    }
    c.texts.push(text);
  }
}

/** Wrap `methods` of `proto` so that each call reports the text of its first argument. */
function wrap(proto: Record<string, unknown>, methods: string[]): void {
  for (const m of methods) {
    const orig = proto[m] as (...a: unknown[]) => unknown;
    proto[m] = function (this: unknown, ...args: unknown[]) {
      if (counters.size) seen(textOf(args[0]));
      return orig.apply(this, args);
    };
  }
}

/** The prototype in `start`'s chain that defines `method` itself. */
function owner(start: object, method: string): Record<string, unknown> {
  for (let p: object | null = start; p; p = Object.getPrototypeOf(p)) if (Object.hasOwn(p, method)) return p as Record<string, unknown>;
  throw new Error(`no prototype defines ${method}`);
}

let installed = false;
function install(): void {
  if (installed) return;
  installed = true;
  wrap(owner(pg.Client.prototype, 'query'), ['query']);
  wrap(owner(mysql.Connection.prototype, 'query'), ['query']);
  wrap(owner(mysql.Connection.prototype, 'execute'), ['execute']);
  wrap(owner(mssql.Request.prototype, 'query'), ['query']);
  wrap(owner(mssql.Request.prototype, 'batch'), ['batch']);
  installSqlite();
}

/** better-sqlite3: statements and exec, grouped by the transaction of their handle. */
function installSqlite(): void {
  const probe = new Database(':memory:');
  const stmtProto = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, unknown>;
  probe.close();
  // Per handle: how many transactions it has begun, and how deep in db.transaction() functions it is.
  const txs = new WeakMap<object, number>();
  const depth = new WeakMap<object, number>();
  const begin = (db: object) => txs.set(db, (txs.get(db) ?? 0) + 1);
  const run = (db: Database.Database, text: string) => {
    if (!counters.size) return;
    if (/^\s*BEGIN\b/i.test(text)) begin(db);
    else seen(text, { db, tx: db.inTransaction ? (txs.get(db) ?? 0) : null });
  };
  for (const m of ['run', 'get', 'all', 'iterate']) {
    const orig = stmtProto[m] as (...a: unknown[]) => unknown;
    stmtProto[m] = function (this: { source: string; database: Database.Database }, ...args: unknown[]) {
      run(this.database, this.source);
      return orig.apply(this, args);
    };
  }
  const dbProto = Database.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const exec = dbProto.exec;
  dbProto.exec = function (this: Database.Database, ...args: unknown[]) {
    run(this, textOf(args[0]));
    return exec.apply(this, args);
  };
  const transaction = dbProto.transaction;
  dbProto.transaction = function (this: Database.Database, fn: unknown) {
    const db = this;
    return transaction.call(this, function (this: unknown, ...a: unknown[]) {
      const d = depth.get(db) ?? 0;
      if (d === 0) begin(db);
      depth.set(db, d + 1);
      try {
        return (fn as (...x: unknown[]) => unknown).apply(this, a);
      } finally {
        depth.set(db, d);
      }
    });
  };
}

/** Count the statements whose text matches `match` (include the test's table prefix in it) until stop(). */
export function countStatements(match: RegExp, opts: { perStatement?: boolean } = {}): StatementCount {
  install();
  const c: Counter = { match, perStatement: opts.perStatement ?? false, texts: [], lastTx: new WeakMap() };
  counters.add(c);
  return {
    get count() {
      return c.texts.length;
    },
    texts: c.texts,
    stop: () => void counters.delete(c),
  };
}

// Also loaded by the worker fixture, outside mocha.
if (typeof afterEach === 'function') afterEach(() => counters.clear());

/** The statement that claims jobs (MySQL: its first round trip, the locking read; the UPDATE follows only when it found rows). */
export function claimStatement(t: TestDb): RegExp {
  return t.dialect === 'mysql'
    ? new RegExp(`FORCE INDEX \\(${t.prefix}jobs_claim\\)`)
    : new RegExp(`${t.prefix}jobs\\b[\\s\\S]*SET state = 'running', token =`);
}

/** The statement that writes log lines. */
export function logInsert(t: TestDb): RegExp {
  return new RegExp(`INSERT INTO ${t.prefix}logs\\b`);
}
