/** The Drizzle case of the ORM suite on the server databases: only the pool and reading rows back differ. */
import { sql as dsql } from 'drizzle-orm';
import { ROLLBACK, type OrmCase, type OrmDialect } from './harness.ts';

/** What both drizzle() flavours (node-postgres, mysql2) offer the case. */
interface DrizzleDb {
  transaction<T>(fn: (tx: DrizzleDb) => Promise<T>): Promise<T>;
  execute(q: ReturnType<typeof dsql>): Promise<unknown>;
}

export function drizzleCase(o: {
  dialect: OrmDialect;
  table: string;
  /** Creates the table, opens the driver's pool (max 2) and the Drizzle db on it. */
  open(): Promise<{ db: unknown; end(): Promise<unknown> }>;
  /** The rows of a SELECT as this driver's Drizzle answers them. */
  rowsOf(result: unknown): { id: string }[];
  connections(): Promise<number>;
}): OrmCase {
  return {
    orm: 'Drizzle',
    dialect: o.dialect,
    connections: o.connections,
    async open() {
      const { db: given, end } = await o.open();
      const db = given as DrizzleDb;
      return {
        db,
        poolMax: 2,
        transaction: (body, rollback) =>
          db.transaction(async (tx) => {
            await tx.execute(dsql`INSERT INTO ${dsql.raw(o.table)} (id) VALUES (${body.rowId})`);
            const r = await body.enqueue(tx);
            return rollback ? ROLLBACK() : r;
          }),
        rows: async () => o.rowsOf(await db.execute(dsql`SELECT id FROM ${dsql.raw(o.table)}`)).map((r) => r.id),
        close: async () => void (await end()),
      };
    },
  };
}
