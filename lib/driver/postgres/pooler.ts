/**
 * What sits between our connections and PostgreSQL. A transaction pooler (PgBouncer
 * `pool_mode = transaction`, Supavisor or Neon on their transaction ports, RDS Proxy
 * multiplexing) hands each transaction whichever server connection is free, so nothing
 * session-scoped (LISTEN, a session advisory lock, a SET) stays with the connection that made it.
 */
import type { Client, PoolConfig } from 'pg';

/** `createJobs({ pooler })`: 'auto' asks the server once; the others say what is there. */
export type { PoolerMode } from '../handles.ts';
import type { PoolerMode } from '../handles.ts';

type ClientCtor = new (cfg: PoolConfig) => Client;

/** Rounds of the probe: one is enough behind a stock PgBouncer; more cover other pick orders. */
const ROUNDS = 3;

/**
 * Whether a connection made with `config` keeps one server session across transactions.
 *
 * Client A runs a statement; then client B opens a transaction and holds it while A runs another.
 * With a session of its own, A sees the same backend pid twice and B a different one. Behind a
 * transaction pooler, B's transaction takes a free server connection, most often the one A just
 * gave back (PgBouncer reuses the last one released): then B sees A's first pid, or A, finding it
 * busy, is given another. Comparing one client's pid across plain statements alone would not do:
 * an idle transaction pooler gives a lone client the same server connection every time.
 *
 * Costs two short-lived connections and 15 round trips, once per store, when the worker starts.
 */
export async function keepsSession(Ctor: ClientCtor, config: PoolConfig): Promise<boolean> {
  const [a, b] = [new Ctor(config), new Ctor(config)];
  // A failure surfaces on the statement that follows; the listener only keeps it off the process.
  for (const c of [a, b]) c.on('error', () => undefined);
  try {
    await Promise.all([a.connect(), b.connect()]);
    for (let round = 0; round < ROUNDS; round++) {
      const first = await backendPid(a);
      await b.query('BEGIN');
      const other = await backendPid(b);
      const again = await backendPid(a);
      await b.query('ROLLBACK');
      if (first !== again || other === first) return false;
    }
    return true;
  } finally {
    // Not awaited: the answer is known, and a polite end waits for the server's side to close (2–4 ms).
    for (const c of [a, b]) void c.end().catch(() => undefined);
  }
}

async function backendPid(c: Client): Promise<number> {
  return Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
}

/** Logged once when detection finds a transaction pooler (not when the app said so). */
export const TRANSACTION_POOLER_WARNING =
  'PostgreSQL: the connections go through a transaction pooler (the server session changed between transactions), ' +
  'so LISTEN and session locks are off: workers poll for jobs from other processes, leadership is lease-only, ' +
  "and claims set their planner settings per transaction. Set directUrl to a direct connection string to keep them, or pooler: 'transaction' to say so and silence this warning";
