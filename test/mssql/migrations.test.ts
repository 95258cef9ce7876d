/**
 * Migration parity: every dialect has the same migration files, creating the same tables with the
 * same column names (the stores and the row decoding share those names). Reads the files only.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMigrations, splitStatements } from '../../lib/driver/migrations.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');
const dialects = readdirSync(root).filter((d) => !d.startsWith('.')).sort();

/** table -> column names, from the CREATE TABLE and ALTER TABLE ... ADD statements of one dialect's files, in order. */
function schema(dialect: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  for (const file of readdirSync(path.join(root, dialect)).filter((f) => f.endsWith('.sql')).sort()) {
    for (const stmt of splitStatements(readFileSync(path.join(root, dialect, file), 'utf8'))) {
      // PostgreSQL and SQLite write ADD COLUMN; T-SQL has no COLUMN keyword there.
      const added = /^ALTER TABLE \{\{prefix\}\}(\w+) ADD (?:COLUMN )?(?!CONSTRAINT\b|PRIMARY\b)[`"[]?(\w+)/i.exec(stmt);
      if (added) {
        expect(tables.has(added[1]), `${dialect}/${file}: ${added[1]} exists before it is altered`).to.equal(true);
        tables.get(added[1])!.push(added[2].toLowerCase());
        continue;
      }
      const m = /^CREATE TABLE (?:IF NOT EXISTS )?\{\{prefix\}\}(\w+)\s*\(([\s\S]*)\)[^)]*$/i.exec(stmt);
      // (LIKE t …): PostgreSQL's partitioned history (014) takes the columns of the table it replaces, kept as they were.
      if (!m || /^\s*LIKE\b/i.test(m[2])) continue;
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

/**
 * Tables a dialect has beside the shared ones: MySQL's side indexes for keys only some jobs have;
 * PostgreSQL's subscribers (018: the processes that finished jobs are pushed to by NOTIFY).
 */
const SIDE_TABLES: Record<string, string[]> = { mysql: ['unique_jobs', 'reservations'], postgres: ['subscribers'] };

describe('migrations across dialects', () => {
  it('lists sqlite, postgres and mssql (and any other dialect present)', () => {
    expect(dialects).to.include.members(['mssql', 'postgres', 'sqlite']);
  });

  it('has the same migration files in every dialect', () => {
    const files = (d: string) => readdirSync(path.join(root, d)).filter((f) => f.endsWith('.sql')).sort();
    for (const d of dialects) expect(files(d), d).to.deep.equal(files('postgres'));
    const versions = loadMigrations('postgres', 'x_').map((m) => m.version);
    expect(versions, 'numbered 1..n without gaps').to.deep.equal(versions.map((_, i) => i + 1));
    expect(versions.length).to.be.at.least(5); // 004_admin and 005_schedule_edits included
    for (const d of dialects) expect(loadMigrations(d as 'postgres', 'x_').map((m) => m.version), d).to.deep.equal(versions);
  });

  it('creates the same tables with the same column names in every dialect', () => {
    const reference = schema('postgres');
    for (const side of SIDE_TABLES.postgres) reference.delete(side);
    expect([...reference.keys()].sort()).to.deep.equal(['attempts', 'batches', 'deps', 'history', 'jobs', 'keys', 'leases', 'logs', 'paused_queues', 'queue_groups', 'queues', 'schedule_ticks', 'schedules', 'starts', 'throughput', 'workers']);
    expect(reference.get('schedules')![0]).to.equal('key');
    expect(reference.get('schedules')!.at(-1)).to.equal('code_hash');
    expect(reference.get('paused_queues')).to.deep.equal(['queue', 'paused_at']);
    expect(reference.get('jobs')).to.include.members(['id', 'token', 'payload_bin', 'run_at', 'ref_id']);
    for (const d of dialects) {
      const s = schema(d);
      for (const side of SIDE_TABLES[d] ?? []) s.delete(side);
      expect([...s.keys()].sort(), `${d} tables`).to.deep.equal([...reference.keys()].sort());
      for (const [table, cols] of reference) expect(s.get(table), `${d}.${table}`).to.deep.equal(cols);
    }
  });

  it('writes every table and index name with the prefix placeholder (mssql)', () => {
    for (const m of loadMigrations('mssql', 'p_')) {
      for (const stmt of splitStatements(m.sql)) {
        const names = /^(?:CREATE (?:UNIQUE )?(?:TABLE|INDEX)|ALTER TABLE|DROP INDEX) (\S+)(?: ON (\S+))?/i.exec(stmt);
        expect(names, stmt.slice(0, 60)).to.not.equal(null);
        for (const name of names!.slice(1).filter(Boolean)) expect(name, stmt.slice(0, 60)).to.match(/^p_\w+$/);
      }
    }
  });

  it('has the same index names in every dialect, dropped and recreated alike', () => {
    /** Index names a dialect's files leave in place (created, minus dropped), in order of creation. */
    const indexes = (dialect: string) => {
      const live: string[] = [];
      for (const m of loadMigrations(dialect as 'postgres', 'p_')) {
        for (const stmt of splitStatements(m.sql)) {
          const created = /^CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?(\w+)/i.exec(stmt)?.[1];
          const dropped = /^DROP INDEX (?:IF EXISTS )?(\w+)/i.exec(stmt)?.[1];
          const renamed = /^ALTER INDEX (\w+) RENAME TO (\w+)/i.exec(stmt);
          if (renamed) live.splice(live.indexOf(renamed[1]), 1, renamed[2]);
          if (created) live.push(created);
          if (dropped) {
            expect(live, `${dialect}/${m.name} drops an index it created`).to.include(dropped);
            live.splice(live.indexOf(dropped), 1);
          }
        }
      }
      // PostgreSQL's legacy partitions (014, 015) keep the indexes their tables had: a partition's, not the schema's.
      return live.filter((i) => !/^p_(history|logs)_legacy_/.test(i)).sort();
    };
    // PostgreSQL's partitioned logs (015) are keyed (job_id, seq), which serves what logs_job does elsewhere.
    expect(indexes('postgres')).not.to.include('p_logs_job');
    const postgres = [...indexes('postgres'), 'p_logs_job'].sort();
    expect(indexes('postgres')).to.include.members(['p_jobs_queue', 'p_history_finished', 'p_history_name', 'p_history_queue']);
    // Indexes that exist only as partial indexes: without those (MySQL) every job would pay for
    // them; it has none, or indexes those keys in its side tables (lib/driver/portable/side-index.ts).
    const partialOnly: Record<string, string[]> = { mysql: ['p_jobs_aged', 'p_jobs_unique', 'p_history_unique', 'p_jobs_reserved'] };
    const sideOnly: Record<string, string[]> = { mysql: ['p_unique_jobs_job', 'p_reservations_until'] };
    // Where jobs_queue keeps running jobs too (migration 020 changes nothing there), they are found
    // by worker in jobs_worker; PostgreSQL indexes them by queue in jobs_running.
    const runningApart: Record<string, boolean> = { postgres: true };
    for (const d of dialects) {
      if (d === 'postgres') continue;
      const expected = [...postgres.filter((i) => !partialOnly[d]?.includes(i)), ...(sideOnly[d] ?? [])].map((i) => (i === 'p_jobs_running' && !runningApart[d] ? 'p_jobs_worker' : i));
      expect(indexes(d), d).to.deep.equal(expected.sort());
    }
  });
});
