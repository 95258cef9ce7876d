/**
 * The app's side of a PostgreSQL store: where enqueue and a request's transaction run (the app's
 * own pool, through its own driver or ORM), and how the worker's private connections are made.
 * pg, slonik and the ORMs that own their pool (Knex, MikroORM, Sequelize) differ only here;
 * everything the worker does runs on plain pg pools of its own.
 */
import type { Client, Pool, PoolClient, PoolConfig } from 'pg';
import { describeCallerTx, describeTx, isPgClient } from '../detect.ts';
import { HeldConnection, holdPgClient, nothingToUndo, openTransaction, pgCommitted, withHeld } from '../held.ts';
import { ACCEPTED_TX, openCallerTx, runnerQuery } from '../orm/caller.ts';
import type { OpenTransaction } from '../store.ts';

export type PoolCtor = new (cfg: PoolConfig) => Pool;
export type ClientCtor = new (cfg: PoolConfig) => Client;

export interface PgAppSide {
  /** Settings and classes for the worker's private pools and dedicated clients (LISTEN, session locks). */
  readonly config: PoolConfig;
  readonly Pool: PoolCtor;
  readonly Client: ClientCtor;
  /** Run one statement (`$n` placeholders) on the app's pool; rows use single-word, text-only columns. */
  query(text: string, values: unknown[]): Promise<Record<string, unknown>[]>;
  /** Run one statement on a handle the caller gave as opts.tx, after checking it is one. */
  queryOn(tx: unknown, text: string, values: unknown[]): Promise<Record<string, unknown>[]>;
  /** Open a transaction on the app's pool for a request's unit of work. */
  begin(): Promise<OpenTransaction>;
}

/** The pg Pool as the app side: pg-pool keeps its Client class and options, so pg need not be imported. */
export function pgAppSide(pool: Pool): PgAppSide {
  return {
    config: (pool as unknown as { options: PoolConfig }).options,
    Pool: pool.constructor as PoolCtor,
    Client: (pool as unknown as { Client: ClientCtor }).Client,
    query: async (text, values) => (await pool.query(text, values)).rows,
    queryOn: queryOnCaller,
    begin: async () => openTransaction(await holdPgClient(pool), (c, sql) => c.query(sql), 'BEGIN', pgCommitted),
  };
}

/** A pool the app's ORM owns, lent one pg connection at a time. */
export interface LendingPool {
  /** The connection settings, for the worker's private pools. */
  config: PoolConfig;
  /** The pg module the ORM loaded. */
  driver: { Pool: PoolCtor; Client: ClientCtor };
  acquire(): Promise<Client>;
  /** Back to the ORM's pool; the ORM validates (and drops) a connection that broke. */
  release(conn: Client): unknown;
}

/** An ORM's own pool as the app side: no second pool for the app's side of sqljobs. */
export function lentPgAppSide(pool: LendingPool): PgAppSide {
  // A broken connection is ended before it goes back, so that the ORM's pool drops it (Knex and
  // Sequelize check _ending); ours is not the only listener on it, so ours comes off either way.
  const hold = async () =>
    new HeldConnection(await pool.acquire(), (c, broken) => {
      if (broken) void c.end().catch(() => undefined);
      void pool.release(c);
    }, { lent: true });
  return {
    config: pool.config,
    Pool: pool.driver.Pool,
    Client: pool.driver.Client,
    query: async (text, values) => withHeld(await hold(), nothingToUndo, async (c) => (await c.query(text, values)).rows),
    queryOn: queryOnCaller,
    begin: async () => openTransaction(await hold(), (c, sql) => c.query(sql), 'BEGIN', pgCommitted),
  };
}

/** One statement on the caller's opts.tx: a pg client inside BEGIN, an ORM's transaction, or a SqlTransaction. */
export async function queryOnCaller(tx: unknown, text: string, values: unknown[]): Promise<Record<string, unknown>[]> {
  const caller = await openCallerTx(tx);
  if ('runner' in caller) return runnerQuery(caller, text, values);
  const client = caller.native;
  if (!isPgClient(client)) throw new TypeError(`opts.tx on PostgreSQL must be a pg client (from pool.connect()) inside BEGIN, ${ACCEPTED_TX}; got ${describeCallerTx(tx, client)}`);
  const status = (client as { getTransactionStatus?: () => string }).getTransactionStatus?.();
  if (status === 'I') throw new TypeError(`opts.tx: ${client === tx ? 'the pg client' : describeTx(tx)} is not inside a transaction (BEGIN was not run on it, or it has ended), so the job would not be part of it`);
  return (await (client as PoolClient).query(text, values)).rows;
}
