/**
 * The documented minimal interface, for a database layer sqljobs does not know: any
 * { query(text, values), inTransaction() }. Here it wraps a bare driver connection, as an app's
 * own layer would, and runs the same suite as the ORMs.
 */
import type { SqlTransaction } from '../../lib/index.ts';
import { ROLLBACK, type OrmCase, type OrmDialect } from './harness.ts';

export interface BareConnection {
  query(text: string, values: unknown[]): Promise<Record<string, unknown>[]>;
  inTransaction(): Promise<boolean> | boolean;
  begin(): Promise<unknown>;
  commit(): Promise<unknown>;
  rollback(): Promise<unknown>;
  release(): void;
}

export function sqlTransactionCase(o: {
  dialect: OrmDialect;
  db: () => unknown;
  prepare(): Promise<unknown> | void;
  connect(): Promise<BareConnection>;
  insertText: string;
  rowsText: string;
  close(): Promise<unknown>;
}): OrmCase {
  return {
    orm: 'a custom SqlTransaction',
    dialect: o.dialect,
    async open() {
      await o.prepare();
      return {
        db: o.db(),
        async transaction(body, rollback) {
          const c = await o.connect();
          const tx: SqlTransaction = { query: (text, values) => c.query(text, values), inTransaction: () => c.inTransaction() };
          try {
            await c.begin();
            await c.query(o.insertText, [body.rowId]);
            const r = await body.enqueue(tx);
            if (rollback) ROLLBACK();
            await c.commit();
            return r;
          } catch (err) {
            await c.rollback();
            throw err;
          } finally {
            c.release();
          }
        },
        rows: async () => {
          const c = await o.connect();
          try {
            return (await c.query(o.rowsText, [])).map((r) => String(r.id));
          } finally {
            c.release();
          }
        },
        close: async () => void (await o.close()),
      };
    },
  };
}
