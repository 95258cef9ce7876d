/** PostgreSQL only: migrations never run on a caller's transaction. */
import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import type pg from 'pg';
import { DIALECTS, PG_URL, requireDatabase } from '../helpers/dialects.ts';

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
        const known = readdirSync('migrations/postgres').filter((f) => f.endsWith('.sql')).map((f) => Number(f.slice(0, 3))).sort((a, b) => a - b);
        expect(versions.map((v) => Number(v.version))).to.deep.equal(known);
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

  it('an app role that may read and write the tables but not create any enqueues on a schema its owner migrated', async () => {
    const t = await factory.create();
    const role = `${t.prefix}app`;
    const pgm = (await import('pg')).default;
    let pool: pg.Pool | null = null;
    try {
      await t.jobs({ worker: false }).migrate();
      await t.query(`CREATE ROLE ${role} LOGIN`);
      // PostgreSQL 15: only the database owner creates in public (a role of its own has no CREATE there).
      // On this test's tables and sequences only: other tests' tables come and go meanwhile.
      const own = await t.query<{ name: string; kind: string }>(
        `SELECT relname AS name, relkind AS kind FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'S') AND starts_with(relname, $1)`, [t.prefix]);
      const tables = own.filter((o) => o.kind !== 'S').map((o) => o.name);
      const sequences = own.filter((o) => o.kind === 'S').map((o) => o.name);
      await t.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${tables.join(', ')} TO ${role}`);
      if (sequences.length) await t.query(`GRANT USAGE, SELECT ON SEQUENCE ${sequences.join(', ')} TO ${role}`);
      const url = new URL(PG_URL);
      url.username = role;
      pool = new pgm.Pool({ connectionString: url.toString(), max: 2 });
      const jobs = t.jobs({ worker: false, db: pool } as never);
      const { id } = await jobs.enqueue('x', { n: 1 });
      expect((await jobs.get(id))?.state).to.equal('pending');
      await jobs.close();
    } finally {
      await pool?.end();
      await t.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await t.query(`DROP ROLE IF EXISTS ${role}`);
      await t.cleanup();
    }
  });
});
