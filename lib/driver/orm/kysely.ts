/** Kysely keeps its driver connection private: statements run through the transaction's executeQuery. */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';

interface KyselyTransactionLike {
  isTransaction: boolean;
  isCommitted?: boolean;
  isRolledBack?: boolean;
  executeQuery(q: unknown): Promise<{ rows: Record<string, unknown>[] }>;
}

/** Kysely's CompiledQuery.raw, without importing Kysely: a raw node carrying our text and values. */
function compiledRaw(sql: string, parameters: unknown[]): object {
  return { sql, parameters, query: { kind: 'RawNode', sqlFragments: [sql], parameters: [] }, queryId: { queryId: crypto.randomUUID() } };
}

export const isKysely = (o: Record<string, unknown>): boolean => fn(o, 'selectFrom') && fn(o, 'insertInto') && fn(o, 'executeQuery');

export const kyselyTransaction: OrmTransactionAdapter = {
  name: 'a Kysely transaction',
  matches: (o) => isKysely(o) && o.isTransaction === true,
  async open(o) {
    const t = o as unknown as KyselyTransactionLike;
    return {
      name: 'the Kysely transaction',
      runner: {
        query: async (text, values) => (await t.executeQuery(compiledRaw(text, values))).rows,
        inTransaction: () => t.isTransaction && !t.isCommitted && !t.isRolledBack,
      },
    };
  },
};
