/** Knex: a transaction runs on one driver connection, which its client hands out again for as long as it is open. */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';

export interface KnexLike {
  client: { acquireConnection(): Promise<unknown>; releaseConnection(conn: unknown): Promise<unknown>; driver: unknown; connectionSettings: unknown; config: { client?: unknown } };
}

export const isKnexTransaction = (o: Record<string, unknown>): boolean => o.isTransaction === true && fn(o, 'commit') && fn(o, 'raw') && o.client != null;

export const knexTransaction: OrmTransactionAdapter = {
  name: 'a Knex transaction',
  matches: isKnexTransaction,
  async open(trx) {
    if (fn(trx, 'isCompleted') && (trx.isCompleted as () => boolean)()) {
      throw new TypeError('opts.tx: the Knex transaction has already committed or rolled back, so the job would not be part of it');
    }
    return { native: await (trx as unknown as KnexLike).client.acquireConnection() };
  },
};

/** A knex instance (not a transaction): its client acquires and releases pooled driver connections. */
export function isKnexInstance(o: unknown): o is KnexLike {
  const k = o as Record<string, unknown>;
  return typeof o === 'function' && fn(k, 'raw') && fn(k, 'transaction') && k.client != null && k.isTransaction !== true
    && fn(k.client, 'acquireConnection') && fn(k.client, 'releaseConnection');
}
