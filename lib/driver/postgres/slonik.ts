/**
 * slonik (47 on Node 20; the shapes used here are the same in 49): the PostgreSQL store with an
 * app side that runs through the app's slonik pool or transaction connection.
 *
 * Only enqueue and a request's transaction run through slonik, with slonik's own `sql.unsafe`
 * tag and bound values. Their rows carry text columns with single-word names, so the app's type
 * parsers (slonik turns timestamps into numbers and int8 into bigint) and row interceptors (e.g.
 * camelCase) cannot change what we read. Everything the worker does runs on plain pg pools built
 * from the pool's connection URI, where pg's default parsers apply, as for a pg Pool.
 */
import { createRequire } from 'node:module';
import type { Client, Pool, PoolConfig } from 'pg';
import type { OpenTransaction } from '../store.ts';
import { PostgresStore, type PostgresStoreOptions } from './store.ts';
import { queryOnCaller, type PgAppSide } from './app.ts';
import { TransactionAbortedError } from '../transaction-aborted.ts';
import type { SlonikConnectionLike, SlonikPoolLike } from '../handles.ts';

type Row = Record<string, unknown>;
type QueryToken = unknown;
export type { SlonikConnectionLike, SlonikPoolLike } from '../handles.ts';

type UnsafeTag = (parts: TemplateStringsArray, ...values: unknown[]) => QueryToken;

export function isSlonikPool(o: unknown): o is SlonikPoolLike {
  const p = o as Record<string, unknown> | null;
  return isSlonikConnection(o) && typeof p!.connect === 'function' && typeof p!.end === 'function' && typeof (p!.configuration as { connectionUri?: unknown })?.connectionUri === 'string';
}

/** A slonik connection (a transaction connection in 47 has the same shape as a pool connection). */
export function isSlonikConnection(o: unknown): o is SlonikConnectionLike {
  const c = o as Record<string, unknown> | null;
  return c != null && ['query', 'oneFirst', 'maybeOne', 'any', 'transaction'].every((k) => typeof c[k] === 'function');
}

export function createSlonikStore(pool: SlonikPoolLike, opts: PostgresStoreOptions): PostgresStore {
  return new PostgresStore(slonikAppSide(pool), opts);
}

export function slonikAppSide(pool: SlonikPoolLike): PgAppSide {
  const pg = loadPg();
  const unsafe = loadUnsafeTag();
  const run = async (conn: SlonikConnectionLike, text: string, values: unknown[]) => [...(await conn.query(token(unsafe, text, values))).rows];
  return {
    config: { connectionString: pool.configuration.connectionUri },
    Pool: pg.Pool,
    Client: pg.Client,
    query: (text, values) => run(pool, text, values),
    queryOn: (tx, text, values) => {
      if (isSlonikPool(tx)) {
        throw new TypeError('opts.tx on slonik must be the connection a transaction handler receives (pool.transaction(async (t) => ...)); got the pool');
      }
      // A slonik transaction connection, else whatever PostgreSQL takes (a pg client, an ORM's transaction).
      return isSlonikConnection(tx) ? run(tx, text, values) : queryOnCaller(tx, text, values);
    },
    begin: () => beginOnSlonik(pool, (t) => run(t, 'SELECT 1', [])),
  };
}

/**
 * Our statement text with `$n` placeholders as a slonik query token: split at the placeholders
 * and handed to slonik's own `sql.unsafe` as a template, so slonik binds every value (there is no
 * way to pass a string of SQL to slonik otherwise). A template's `raw` must be a frozen array.
 * A `$n` inside a string literal is text, not a placeholder: an enqueue on the caller's
 * transaction carries its values as literals (./enqueue.ts), and a payload may well say "$10".
 */
export function token(unsafe: UnsafeTag, text: string, values: unknown[]): QueryToken {
  const parts: string[] = [];
  const bound: unknown[] = [];
  let last = 0;
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = literalEnd(text, i);
    } else if (c === DOLLAR && isDigit(text.charCodeAt(i + 1))) {
      let end = i + 1;
      while (isDigit(text.charCodeAt(end))) end++;
      const n = Number(text.slice(i + 1, end));
      if (n < 1 || n > values.length) throw new RangeError(`statement refers to $${n} but ${values.length} values were given`);
      parts.push(text.slice(last, i));
      bound.push(slonikValue(values[n - 1]));
      last = i = end;
    } else {
      i++;
    }
  }
  parts.push(text.slice(last));
  const strings = Object.assign([...parts], { raw: Object.freeze([...parts]) }) as unknown as TemplateStringsArray;
  return unsafe(strings, ...bound);
}

const QUOTE = 39;
const DOLLAR = 36;
const BACKSLASH = 92;
const isDigit = (c: number) => c >= 48 && c <= 57;

/**
 * Where the string literal opening at `open` ends: after its closing quote, a doubled quote being
 * part of it, and in an E'…' string a backslash escaping the next character. A scan, not a
 * regular expression: a payload's literal may run to megabytes, past what a regex's backtracking
 * stack holds.
 */
function literalEnd(text: string, open: number): number {
  const escapes = open > 0 && (text[open - 1] === 'E' || text[open - 1] === 'e') && !/[\w$]/.test(text[open - 2] ?? '');
  for (let i = open + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (escapes && c === BACKSLASH) i++;
    else if (c === QUOTE) {
      if (text.charCodeAt(i + 1) !== QUOTE) return i + 1;
      i++;
    }
  }
  return text.length;
}

/**
 * A value as slonik's template binds it: slonik refuses arrays, Buffers and Dates as plain values,
 * so they go as PostgreSQL's text forms (an array literal, bytea hex, ISO time), which the
 * statement casts (`$1::uuid[]`) or the column's type reads.
 */
function slonikValue(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return `\\x${v.toString('hex')}`;
  if (v instanceof Date) return v.toISOString();
  if (!Array.isArray(v)) return v;
  const quoted = v.map((e) => (e === null || e === undefined ? 'NULL' : `"${String(e).replace(/[\\"]/g, (c) => `\\${c}`)}"`));
  return `{${quoted.join(',')}}`;
}

const ROLLBACK = Symbol('rollback');

/**
 * slonik opens transactions only around a handler. A request's transaction must stay open across
 * the request, so the handler hands its connection out and waits for the decision. Retries are
 * off: slonik would re-run the handler on a serialization failure at COMMIT, after the app's
 * writes were already lost, and report success.
 */
function beginOnSlonik(pool: SlonikPoolLike, probe: (t: SlonikConnectionLike) => Promise<unknown>): Promise<OpenTransaction> {
  let decide!: (d: 'commit' | typeof ROLLBACK) => void;
  const decision = new Promise<'commit' | typeof ROLLBACK>((r) => (decide = r));
  return new Promise((resolve, reject) => {
    let opened = false;
    const done = pool.transaction(async (t) => {
      opened = true;
      resolve({
        native: t,
        commit: async () => {
          decide('commit');
          await done;
        },
        rollback: async () => {
          decide(ROLLBACK);
          await done.catch((err) => {
            if (err !== ROLLBACK) throw err;
          });
        },
      });
      if ((await decision) === ROLLBACK) throw ROLLBACK;
      // slonik's COMMIT does not read PostgreSQL's answer, which is ROLLBACK for a transaction a
      // failed statement aborted: a statement first tells (refused with 25P02 in such a one).
      await probe(t).catch((err: unknown) => {
        throw isAborted(err) ? new TransactionAbortedError(err) : err;
      });
    }, 0);
    done.catch((err) => {
      if (!opened) reject(err);
    });
  });
}

/** PostgreSQL's in_failed_sql_transaction, as pg gives it or slonik wraps it. */
function isAborted(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | null, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (e.code === '25P02') return true;
  }
  return false;
}

const requireHere = createRequire(import.meta.url);

/** pg for the worker's own connections: the app has it (slonik's driver depends on it). */
function loadPg(): { Pool: new (cfg: PoolConfig) => Pool; Client: new (cfg: PoolConfig) => Client } {
  for (const from of [requireHere, fromPackage('@slonik/pg-driver'), fromPackage('slonik')]) {
    try {
      const pg = from?.('pg') as { Pool: new (cfg: PoolConfig) => Pool; Client: new (cfg: PoolConfig) => Client; default?: unknown } | undefined;
      if (pg?.Pool) return pg;
    } catch {
      // try the next place
    }
  }
  throw new Error('slonik: sqljobs needs the pg package beside slonik for its own worker connections (npm i pg)');
}

function loadUnsafeTag(): UnsafeTag {
  const slonik = requireHere('slonik') as { sql?: { unsafe?: UnsafeTag } };
  const unsafe = slonik.sql?.unsafe;
  if (typeof unsafe !== 'function') throw new Error('slonik: this slonik has no sql.unsafe tag (sqljobs supports slonik 46 and later)');
  return unsafe.bind(slonik.sql);
}

function fromPackage(name: string): NodeRequire | null {
  try {
    return createRequire(requireHere.resolve(name));
  } catch {
    return null;
  }
}
