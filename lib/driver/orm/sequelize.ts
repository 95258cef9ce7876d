/** Sequelize: a Transaction holds the driver connection it runs on (pg Client, mysql2 connection). */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';

export const sequelizeTransaction: OrmTransactionAdapter = {
  name: 'a Sequelize Transaction',
  // The Sequelize instance is matched too, to be refused by name (else a generic "got Sequelize with keys ...").
  matches: (o) => (fn(o, 'commit') && fn(o, 'rollback') && fn(o, 'afterCommit') && o.sequelize != null) || isSequelize(o),
  async open(o) {
    if (isSequelize(o)) throw new TypeError('opts.tx: the Sequelize instance is not a transaction (use the t of sequelize.transaction(async (t) => ...))');
    const t = o as { finished?: string; connection?: unknown };
    if (t.finished) throw new TypeError(`opts.tx: the Sequelize Transaction has already finished (${t.finished}), so the job would not be part of it`);
    if (t.connection == null) throw new TypeError('opts.tx: the Sequelize Transaction has no connection yet (use the transaction sequelize.transaction() gives you)');
    return { native: t.connection };
  },
};

export interface SequelizeLike {
  connectionManager: { getConnection(opts?: object): Promise<unknown>; releaseConnection(conn: unknown): Promise<unknown>; lib: unknown };
  config: Record<string, unknown>;
  options: { dialect?: string; dialectOptions?: Record<string, unknown> };
}

export function isSequelize(o: unknown): o is SequelizeLike {
  const s = o as Record<string, unknown> | null;
  return s != null && fn(s, 'authenticate') && fn(s, 'define') && s.connectionManager != null && fn(s.connectionManager, 'getConnection');
}
