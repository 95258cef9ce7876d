/**
 * Migration parity: every dialect has the same migration files, creating the same tables with the
 * same column names (the stores and the row decoding share those names). Reads the files only.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMigrations, splitStatements } from '../../lib/store/migrations.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');
const dialects = readdirSync(root).filter((d) => !d.startsWith('.')).sort();

/** table -> column names, from the CREATE TABLE statements of one dialect's files. */
function schema(dialect: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  for (const file of readdirSync(path.join(root, dialect)).filter((f) => f.endsWith('.sql')).sort()) {
    for (const stmt of splitStatements(readFileSync(path.join(root, dialect, file), 'utf8'))) {
      const m = /^CREATE TABLE (?:IF NOT EXISTS )?\{\{prefix\}\}(\w+)\s*\(([\s\S]*)\)[^)]*$/i.exec(stmt);
      if (!m) continue;
      const cols = m[2]
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith(')') && !/^(PRIMARY KEY|CONSTRAINT|UNIQUE|CHECK|FOREIGN KEY|INDEX)\b|^KEY\s*\(/i.test(l))
        .map((l) => /^[`"[]?(\w+)[`"\]]?/.exec(l)![1].toLowerCase());
      tables.set(m[1], cols);
    }
  }
  return tables;
}

describe('migrations across dialects', () => {
  it('lists sqlite, postgres and mssql (and any other dialect present)', () => {
    expect(dialects).to.include.members(['mssql', 'postgres', 'sqlite']);
  });

  it('has the same migration files in every dialect', () => {
    const files = (d: string) => readdirSync(path.join(root, d)).filter((f) => f.endsWith('.sql')).sort();
    for (const d of dialects) expect(files(d), d).to.deep.equal(files('postgres'));
    for (const d of dialects) expect(loadMigrations(d as 'postgres', 'x_').map((m) => m.version), d).to.deep.equal([1, 2, 3]);
  });

  it('creates the same tables with the same column names in every dialect', () => {
    const reference = schema('postgres');
    expect([...reference.keys()].sort()).to.deep.equal(['attempts', 'history', 'jobs', 'leases', 'logs', 'schedule_ticks', 'schedules', 'workers']);
    expect(reference.get('schedules')![0]).to.equal('key');
    expect(reference.get('jobs')).to.include.members(['id', 'token', 'payload_bin', 'run_at', 'ref_id']);
    for (const d of dialects) {
      const s = schema(d);
      expect([...s.keys()].sort(), `${d} tables`).to.deep.equal([...reference.keys()].sort());
      for (const [table, cols] of reference) expect(s.get(table), `${d}.${table}`).to.deep.equal(cols);
    }
  });

  it('writes every table and index name with the prefix placeholder (mssql)', () => {
    for (const m of loadMigrations('mssql', 'p_')) {
      for (const stmt of splitStatements(m.sql)) {
        const name = /^CREATE (?:UNIQUE )?(?:TABLE|INDEX) (\S+)/i.exec(stmt)?.[1];
        expect(name, stmt.slice(0, 60)).to.match(/^p_\w+$/);
      }
    }
  });
});
