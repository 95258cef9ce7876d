/** The Knex case of the ORM suite, the same on every database: only the connection and the db given to createJobs differ. */
import knexLib, { type Knex } from 'knex';
import { ROLLBACK, type OrmCase, type OrmDialect } from './harness.ts';

export interface KnexCaseOptions {
  dialect: OrmDialect;
  /** Called after prepare(). */
  config(): Knex.Config;
  table: string;
  /** Creates the table (and whatever the config needs). */
  prepare(): Promise<unknown> | void;
  /** What createJobs gets (default: the knex instance); with `close` for anything it opened. */
  db?(): { db: unknown; close(): void };
  poolMax?: number;
  connections?: () => Promise<number>;
}

export function knexCase(o: KnexCaseOptions): OrmCase {
  return {
    orm: 'Knex',
    dialect: o.dialect,
    connections: o.connections,
    async open() {
      await o.prepare();
      const knex = knexLib(o.config());
      const given = o.db?.() ?? { db: knex, close: () => undefined };
      return {
        db: given.db,
        poolMax: o.poolMax,
        transaction: (body, rollback) =>
          knex.transaction(async (trx) => {
            await trx(o.table).insert({ id: body.rowId });
            const r = await body.enqueue(trx);
            return rollback ? ROLLBACK() : r;
          }),
        rows: async () => (await knex(o.table).select('id')).map((r: { id: string }) => r.id),
        close: async () => {
          await knex.destroy();
          given.close();
        },
      };
    },
  };
}
