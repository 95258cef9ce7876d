/**
 * Statements checked without a database server: PostgreSQL's by PostgreSQL's own parser
 * (libpg-query), SQLite's by running them on an in-memory database holding the real schema,
 * inside a transaction rolled back.
 */
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { parse } from 'libpg-query';
import { loadMigrations } from '../../lib/driver/migrations.ts';

type Named = [name: string, s: { text: string; values: unknown[] }][];

export async function expectPostgresParses(statements: Named): Promise<void> {
  for (const [name, s] of statements) {
    const tree = await parse(s.text).catch((err: Error) => expect.fail(`${name}: ${err.message}`));
    expect(tree.stmts?.length, name).to.equal(1);
  }
}

export function expectSqliteRuns(statements: Named, prefix = 'app_'): void {
  const db = new Database(':memory:');
  for (const m of loadMigrations('sqlite', prefix)) db.exec(m.sql);
  db.exec('BEGIN');
  try {
    for (const [name, s] of statements) {
      try {
        const st = db.prepare(s.text);
        if (st.reader) st.all(...s.values);
        else st.run(...s.values);
      } catch (err) {
        expect.fail(`${name}: ${(err as Error).message}`);
      }
    }
  } finally {
    db.exec('ROLLBACK');
    db.close();
  }
}
