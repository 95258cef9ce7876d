/**
 * The README's by-hand, non-blocking applications of PostgreSQL migrations 004 (for a busy history
 * table) and 020 (for a large backlog) give the schema the migration gives, and the app then
 * applies only what follows.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { createJobs } from '../../lib/index.ts';
import { loadMigrations, splitStatements } from '../../lib/driver/migrations.ts';
import { DIALECTS, requireDatabase, type TestDb } from '../helpers/dialects.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

/** The ```sql block of the README that records `version` by hand. */
function readmeBlock(version: number, name: string): string {
  const readme = fs.readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
  const block = [...readme.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes(`VALUES (${version}, '${name}')`));
  if (!block) throw new Error(`README: no \`\`\`sql block applying migration ${version} by hand`);
  return block;
}

/** Every index and column of a prefix's tables, with the prefix taken out. */
async function schema(t: TestDb): Promise<string[]> {
  const indexes = await t.query<{ d: string }>(`SELECT replace(indexdef, $1, 'P_') AS d FROM pg_indexes WHERE schemaname = current_schema() AND tablename LIKE $2`, [t.prefix, `${t.prefix}%`]);
  const columns = await t.query<{ d: string }>(
    `SELECT replace(table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, ''), $1, 'P_') AS d
       FROM information_schema.columns WHERE table_schema = current_schema() AND table_name LIKE $2`,
    [t.prefix, `${t.prefix}%`],
  );
  return [...indexes, ...columns].map((r) => r.d).sort();
}

describe('README: migrations applied by hand on PostgreSQL', function () {
  const opened: TestDb[] = [];
  before(requireDatabase(postgres));
  after(async () => {
    for (const t of opened) await t.cleanup();
  });

  for (const [version, name] of [[4, 'admin'], [20, 'claim_indexes']] as const) {
    it(`${String(version).padStart(3, '0')}: gives the schema of the migration; the app then applies what follows only`, async () => {
      const [byHand, migrated] = [await postgres.create(), await postgres.create()];
      opened.push(byHand, migrated);
      const reference = createJobs({ db: migrated.db as never, tablePrefix: migrated.prefix, worker: false });
      await reference.migrate();
      await reference.close();

      // A database at the version before, as an app of then left it.
      await byHand.query(`CREATE TABLE ${byHand.prefix}migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const m of loadMigrations('postgres', byHand.prefix).filter((x) => x.version < version)) {
        for (const stmt of splitStatements(m.sql)) await byHand.query(stmt);
        await byHand.query(`INSERT INTO ${byHand.prefix}migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      }
      for (const stmt of splitStatements(readmeBlock(version, name).replaceAll('sqljobs_', byHand.prefix))) await byHand.query(stmt);
      const jobs = createJobs({ db: byHand.db as never, tablePrefix: byHand.prefix, worker: false });
      await jobs.migrate();
      await jobs.close();

      expect(await schema(byHand)).to.deep.equal(await schema(migrated));
      const versions = await byHand.query<{ version: number; name: string }>(`SELECT version, name FROM ${byHand.prefix}migrations ORDER BY version`);
      expect(versions).to.deep.equal(loadMigrations('postgres', byHand.prefix).map((m) => ({ version: m.version, name: m.name })));
      const invalid = await byHand.query(`SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE $1 AND NOT i.indisvalid`, [`${byHand.prefix}%`]);
      expect(invalid).to.deep.equal([]);
    });
  }
});
