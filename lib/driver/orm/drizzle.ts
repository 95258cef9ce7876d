/** Drizzle: a transaction's session holds the driver connection it runs on (node-postgres, mysql2, better-sqlite3). */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';

interface DrizzleTxLike {
  session: { client?: unknown };
}

export const drizzleTransaction: OrmTransactionAdapter = {
  name: 'a Drizzle transaction',
  // A Drizzle database has $client and no rollback(); its transactions have rollback().
  matches: (o) => fn(o, 'select') && fn(o, 'rollback') && o.session != null && typeof o.session === 'object' && 'dialect' in o,
  native: (o) => (o as unknown as DrizzleTxLike).session.client,
  async open(o) {
    const client = (o as unknown as DrizzleTxLike).session.client;
    if (client == null) throw new TypeError('opts.tx: this Drizzle transaction exposes no driver connection (supported: node-postgres, mysql2, better-sqlite3)');
    return { native: client };
  },
};

/** A Drizzle database: `$client` is the pool or Database it was built on. */
export function drizzleClient(o: unknown): unknown {
  const d = o as Record<string, unknown> | null;
  if (d && fn(d, 'select') && fn(d, 'transaction') && !fn(d, 'rollback') && '$client' in d && 'dialect' in d) return d.$client;
  return undefined;
}
