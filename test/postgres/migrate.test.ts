/** PostgreSQL only: migrations never run on a caller's transaction. */
import { expect } from 'chai';
import type pg from 'pg';
import { DIALECTS, requireDatabase } from '../helpers/dialects.ts';
import { loadMigrations } from '../../lib/store/migrations.ts';

describe('migrations and the caller\'s transaction [postgres]', function () {
  const factory = DIALECTS.find((d) => d.name === 'postgres')!;
  before(requireDatabase(factory));

  it('enqueue({ tx }) on an unmigrated database migrates on its own connection, not the caller\'s transaction', async () => {
    const t = await factory.create();
    try {
      const jobs = t.jobs({ worker: false });
      const c = await (t.db as pg.Pool).connect();
      try {
        await c.query('BEGIN');
        const { id } = await jobs.enqueue('x', {}, { tx: c });
        // The schema was created and committed elsewhere: another connection sees it already.
        const tables = await t.query(`SELECT tablename FROM pg_tables WHERE tablename = $1`, [`${t.prefix}jobs`]);
        expect(tables).to.have.length(1);
        await c.query('ROLLBACK');
        expect(await jobs.get(id)).to.equal(null);
        const versions = await t.query<{ version: number }>(`SELECT version FROM ${t.prefix}migrations ORDER BY version`);
        expect(versions.map((v) => Number(v.version))).to.deep.equal(loadMigrations('postgres', t.prefix).map((m) => m.version)); // every file, applied once
      } finally {
        c.release();
      }
      // A schema newer than the code is refused.
      await t.query(`INSERT INTO ${t.prefix}migrations (version, name) VALUES (999, 'from_the_future')`);
      const newer = t.jobs({ worker: false });
      const err = await newer.migrate().catch((e: Error) => e);
      expect((err as Error).message).to.match(/schema is at version 999, newer than this code knows/);
    } finally {
      await t.cleanup();
    }
  });
});
