/**
 * A connection checked out of a pool and held across awaits, safely.
 *
 * pg-pool takes its own 'error' listener off a client while it is checked out (pg-pool
 * `_acquireClient`), and pg emits 'error' on a client whose backend the server ends even when no
 * query is running (idle_in_transaction_session_timeout, pg_terminate_backend): with nobody
 * listening, that is an uncaught exception and the host process dies. A mysql2 pool connection
 * listens only once. So every connection the library holds gets a listener of its own for as long
 * as it holds it; the listener remembers that the connection broke, and giving it back then
 * destroys it instead of returning it to the pool.
 */
import type { Pool, PoolClient } from 'pg';
import type { Pool as PromisePool, PoolConnection } from 'mysql2/promise';
import type { OpenTransaction } from './store.ts';
import { TransactionAbortedError } from './transaction-aborted.ts';

interface Emitter {
  on(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
}

export class HeldConnection<C extends Emitter> {
  private failure: Error | null = null;
  private released = false;
  private readonly onError = (err: Error) => {
    this.failure ??= err;
  };

  constructor(
    readonly conn: C,
    /** Back to the pool when sound; `broken` set: destroyed, never handed out again. */
    private readonly giveBack: (conn: C, broken: Error | null) => void,
    /** Lent by an ORM's pool, which listens to it too and outlives our hold: our listener always comes off. */
    private readonly opts: { lent?: boolean } = {},
  ) {
    conn.on('error', this.onError);
  }

  /** Whether the connection reported an error or was marked broken. */
  get broken(): boolean {
    return this.failure !== null;
  }

  /** A statement that must succeed on a sound connection failed (e.g. ROLLBACK): do not reuse it. */
  markBroken(err: unknown): void {
    this.failure ??= err instanceof Error ? err : new Error(String(err));
  }

  /** Give the connection back once; destroyed when broken (or when `err` says it is). */
  release(err?: unknown): void {
    if (this.released) return;
    this.released = true;
    if (err !== undefined) this.markBroken(err);
    // A broken connection keeps our listener (it may still report its end while it is destroyed),
    // unless it is lent: the ORM that owns it listens too.
    if (!this.failure || this.opts.lent) this.conn.removeListener('error', this.onError);
    this.giveBack(this.conn, this.failure);
  }
}

/** A pg client from `pool`, held; pg-pool's `release(err)` ends a client instead of keeping it. */
export function holdPgClient(pool: Pool): Promise<HeldConnection<PoolClient>> {
  // The callback form: pg-pool calls it as it hands the client over, so our listener is on before
  // pg parses the rest of the read that made the client ready. The promise form resumes us a
  // microtask later, and a server ending the backend at once (its error in that same read) made
  // an 'error' nobody heard: 36-38 crashes of the process in a run killing connections (issue 17).
  return new Promise((resolve, reject) => {
    pool.connect((err, client) => {
      if (err || !client) return reject(err ?? new Error('pg-pool handed over no client'));
      resolve(new HeldConnection(client, (c, broken) => c.release(broken ?? undefined)));
    });
  });
}

/** A mysql2 connection from `pool`, held; a broken one is destroyed (which also drops it from the pool). */
export async function holdMysqlConnection(pool: PromisePool): Promise<HeldConnection<PoolConnection>> {
  const conn = await pool.getConnection();
  return new HeldConnection(conn, (c, broken) => (broken ? c.destroy() : c.release()));
}

/** For withHeld around a single autocommit statement: nothing to roll back. */
export const nothingToUndo = async (): Promise<void> => undefined;

/**
 * `fn` on a held connection, which is given back on every path. When `fn` throws, `rollback`
 * runs first (unless the connection already broke), and a connection that cannot even roll back
 * is destroyed.
 */
export async function withHeld<C extends Emitter, T>(held: HeldConnection<C>, rollback: (conn: C) => Promise<unknown>, fn: (conn: C) => Promise<T>): Promise<T> {
  try {
    return await fn(held.conn);
  } catch (err) {
    if (!held.broken) await rollback(held.conn).catch((e: unknown) => held.markBroken(e));
    throw err;
  } finally {
    held.release();
  }
}

/**
 * A request's transaction on a held connection: `begin` now, then COMMIT or ROLLBACK once, after
 * which the connection is given back (destroyed if it broke meanwhile or the statement failed).
 * `committed` reads COMMIT's answer: PostgreSQL answers a COMMIT of a transaction a failed
 * statement aborted with ROLLBACK, and no error.
 */
export async function openTransaction<C extends Emitter>(
  held: HeldConnection<C>,
  run: (conn: C, sql: string) => Promise<unknown>,
  begin: string,
  committed: (answer: unknown) => boolean = () => true,
  /** Asked before COMMIT: whether the transaction is still open (MariaDB rolls one back whole at a deadlock). */
  stillOpen: (conn: C) => Promise<boolean> = async () => true,
): Promise<OpenTransaction> {
  try {
    await run(held.conn, begin);
  } catch (err) {
    held.release(err);
    throw err;
  }
  let finished = false;
  const finish = async (sql: 'COMMIT' | 'ROLLBACK') => {
    if (finished) return;
    finished = true;
    let answer: unknown;
    let open = true;
    try {
      if (sql === 'COMMIT') open = await stillOpen(held.conn);
      answer = await run(held.conn, sql);
      held.release();
    } catch (err) {
      held.release(err);
      throw err;
    }
    if (sql === 'COMMIT' && (!open || !committed(answer))) throw new TransactionAbortedError();
  };
  return { native: held.conn, commit: () => finish('COMMIT'), rollback: () => finish('ROLLBACK') };
}

/** What pg answers a COMMIT with: `ROLLBACK` when the transaction had been aborted. */
export const pgCommitted = (answer: unknown): boolean => (answer as { command?: unknown } | null)?.command !== 'ROLLBACK';
