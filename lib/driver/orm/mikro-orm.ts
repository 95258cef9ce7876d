/** MikroORM (SQL drivers, v6): an EntityManager in a transaction carries the Knex transaction it runs on. */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';
import { isKnexTransaction, knexTransaction, type KnexLike } from './knex.ts';

interface EntityManagerLike {
  getTransactionContext(): unknown;
  getConnection(): { getKnex?(): unknown };
}

const isEntityManager = (o: Record<string, unknown>): boolean => fn(o, 'getTransactionContext') && fn(o, 'persist') && fn(o, 'flush');

const isMikroOrm = (o: Record<string, unknown>): boolean =>
  o.em != null && typeof o.em === 'object' && fn(o, 'close') && isEntityManager(o.em as Record<string, unknown>);

export const mikroOrmTransaction: OrmTransactionAdapter = {
  name: 'a MikroORM EntityManager',
  // The MikroORM instance is matched too, to be refused by name (else a generic "got MikroORM with keys ...").
  matches: (o) => isEntityManager(o) || isMikroOrm(o),
  async open(o) {
    if (isMikroOrm(o)) throw new TypeError('opts.tx: the MikroORM instance is not a transaction (use the em orm.em.transactional(async (em) => ...) gives you)');
    const ctx = (o as unknown as EntityManagerLike).getTransactionContext() as Record<string, unknown> | undefined;
    if (!ctx || !isKnexTransaction(ctx)) {
      throw new TypeError('opts.tx: the MikroORM EntityManager is not inside a transaction (use the one em.transactional(async (em) => ...) gives you)');
    }
    // Said here, not by the Knex adapter: a MikroORM user never saw a Knex transaction.
    if (fn(ctx, 'isCompleted') && (ctx.isCompleted as () => boolean)()) {
      throw new TypeError('opts.tx: the MikroORM EntityManager\'s transaction has already committed or rolled back, so the job would not be part of it');
    }
    return knexTransaction.open(ctx);
  },
};

/** A MikroORM instance or EntityManager on a SQL driver: the Knex instance it runs on. */
export function mikroOrmKnex(o: unknown): KnexLike | undefined {
  const m = o as Record<string, unknown> | null;
  if (!m) return undefined;
  const em = (isMikroOrm(m) ? m.em : m) as Record<string, unknown>;
  if (!isEntityManager(em) || !fn(em, 'getConnection')) return undefined;
  const conn = (em as unknown as EntityManagerLike).getConnection();
  return typeof conn.getKnex === 'function' ? (conn.getKnex() as KnexLike) : undefined;
}
