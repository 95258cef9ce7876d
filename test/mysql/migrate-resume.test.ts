/**
 * MySQL/MariaDB only: DDL commits on its own there, so a migration cut half way (the process
 * killed, its connection lost) cannot roll back. Run again, it must take up where it stopped and
 * end with the schema and rows a migration never cut leaves (lib/driver/mysql/migrate.ts).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type mysql from 'mysql2/promise';
import { MYSQL_URL, mysqlDialect as factory, requireDatabase, sleep, uniquePrefix, type TestDb } from '../helpers/dialects.ts';
import { loadMigrations } from '../../lib/driver/migrations.ts';
import { applyMigrations, type MigrationConnection } from '../../lib/driver/mysql/migrate.ts';
import { tables } from '../../lib/driver/portable/statement.ts';

/** Every table's columns and indexes under a prefix, named without it, and the versions recorded. */
async function schemaOf(t: TestDb, prefix: string): Promise<string[]> {
  const like = `${prefix.replaceAll('_', '\\_')}%`;
  const columns = await t.query<Record<string, unknown>>(
    `SELECT table_name AS t, column_name AS c, column_type AS type, is_nullable AS n, column_default AS d FROM information_schema.columns
     WHERE table_schema = DATABASE() AND table_name LIKE ? ORDER BY table_name, ordinal_position`, [like]);
  const indexes = await t.query<Record<string, unknown>>(
    `SELECT table_name AS t, index_name AS i, seq_in_index AS s, column_name AS c, non_unique AS u, collation AS o FROM information_schema.statistics
     WHERE table_schema = DATABASE() AND table_name LIKE ? ORDER BY table_name, index_name, seq_in_index`, [like]);
  const versions = await t.query<{ version: number }>(`SELECT version FROM ${prefix}migrations ORDER BY version`);
  const unprefixed = (row: Record<string, unknown>) => JSON.stringify(row).replaceAll(prefix, '<prefix>');
  return [...columns.map(unprefixed), ...indexes.map(unprefixed), `versions ${versions.map((v) => v.version).join(',')}`];
}

async function dropPrefix(t: TestDb, prefix: string): Promise<void> {
  const rows = await t.query<{ t: string }>(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?`, [`${prefix.replaceAll('_', '\\_')}%`]);
  for (const r of rows) await t.query(`DROP TABLE IF EXISTS \`${r.t}\``);
}

/** A connection that dies after its `cutAt`-th statement ran on the server: the answer never arrives. */
function cutAfter(c: mysql.PoolConnection, cutAt: number): MigrationConnection & { calls: number; cut: boolean } {
  const wrapper = {
    calls: 0,
    cut: false,
    async query(text: string, values?: unknown[]): Promise<[unknown, unknown]> {
      if (wrapper.cut) throw new Error('connection lost');
      const answer = (await c.query(text, values)) as [unknown, unknown];
      if (++wrapper.calls === cutAt) {
        wrapper.cut = true;
        c.destroy(); // the server rolls back what the connection left open, as after a crash
        throw new Error('connection lost');
      }
      return answer;
    },
  };
  return wrapper;
}

const FIXTURE = fileURLToPath(new URL('../fixtures/migrate-process.ts', import.meta.url));

/** A process that migrates `prefix`, killed `delay` ms after it starts to. */
async function killWhileMigrating(prefix: string, delay: number): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], { env: { ...process.env, LOCATION: MYSQL_URL, PREFIX: prefix }, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('migrating')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`the migrating process exited (${code}) before it started`)));
  });
  await new Promise((r) => setTimeout(r, delay));
  child.kill('SIGKILL');
  await exited;
}

describe('a migration cut half way is taken up where it stopped; close() waits for one applying [mysql]', function () {
  this.timeout(180_000);
  before(requireDatabase(factory));
  let t: TestDb;
  let reference: string[];
  before(async () => {
    t = await factory.create();
    await t.jobs({ worker: false }).migrate();
    reference = await schemaOf(t, t.prefix);
  });
  after(async () => t?.cleanup());

  const pool = () => t.db as mysql.Pool;

  it('cut after each statement of migration 013 (tables, indexes, rows copied, indexes dropped): run again, it ends as an uncut run, every row copied once', async () => {
    const version = 13;
    let cuts = 0;
    for (let cutAt = 1; ; cutAt++) {
      const prefix = uniquePrefix();
      const known = loadMigrations('mysql', prefix);
      const before = known.filter((m) => m.version < version);
      const c = await pool().getConnection();
      await c.query(`CREATE TABLE ${prefix}migrations (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at DATETIME(3) NOT NULL) ENGINE = InnoDB`);
      await applyMigrations(c, tables(prefix), before);
      // Jobs with a unique key and a reservation, whose rows 013 copies into its side tables.
      await c.query(
        `INSERT INTO ${prefix}jobs (id, name, queue, state, max_attempts, run_at, created_at, unique_key, reserved_until) VALUES
         ('00000000-0000-7000-8000-000000000001', 'x', 'default', 'pending', 3, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'k1', NULL),
         ('00000000-0000-7000-8000-000000000002', 'x', 'default', 'pending', 3, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), NULL, UTC_TIMESTAMP(3)),
         ('00000000-0000-7000-8000-000000000003', 'x', 'default', 'pending', 3, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'k3', UTC_TIMESTAMP(3))`);
      const dying = cutAfter(c, cutAt);
      const first = await applyMigrations(dying, tables(prefix), known.filter((m) => m.version === version)).then(() => null, (err: Error) => err);
      if (!dying.cut) {
        // The run's calls all answered: every cut point was tried.
        expect(first).to.equal(null);
        c.release();
        await dropPrefix(t, prefix);
        break;
      }
      cuts++;
      expect(first?.message, `cut after call ${cutAt}`).to.equal('connection lost');
      const again = await pool().getConnection();
      try {
        const applied = (await t.query<{ version: number }>(`SELECT version FROM ${prefix}migrations`)).map((r) => Number(r.version));
        await applyMigrations(again, tables(prefix), known.filter((m) => !applied.includes(m.version)));
      } catch (err) {
        throw new Error(`run again after a cut after call ${cutAt}: ${(err as Error).message}`);
      } finally {
        again.release();
      }
      expect(await schemaOf(t, prefix), `schema after a cut after call ${cutAt}`).to.deep.equal(reference);
      const uniques = await t.query<{ k: string }>(`SELECT unique_key AS k FROM ${prefix}unique_jobs ORDER BY unique_key`);
      const reservations = await t.query<{ id: string }>(`SELECT job_id AS id FROM ${prefix}reservations ORDER BY job_id`);
      expect(uniques.map((r) => r.k), `unique keys copied, cut after call ${cutAt}`).to.deep.equal(['k1', 'k3']);
      expect(reservations.map((r) => r.id.slice(-1)), `reservations copied, cut after call ${cutAt}`).to.deep.equal(['2', '3']);
      expect(await t.query(`SELECT * FROM ${prefix}migration_steps`), 'no progress left once applied').to.deep.equal([]);
      await dropPrefix(t, prefix);
    }
    expect(cuts, 'cut points tried').to.be.greaterThan(30);
  });

  it('a migration cut under a different text of its file is refused with what to do, not taken up at the wrong statement', async () => {
    const prefix = uniquePrefix();
    const known = loadMigrations('mysql', prefix);
    const c = await pool().getConnection();
    try {
      await c.query(`CREATE TABLE ${prefix}migrations (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at DATETIME(3) NOT NULL) ENGINE = InnoDB`);
      await applyMigrations(c, tables(prefix), known.filter((m) => m.version < 13));
      const dying = cutAfter(c, 10);
      await applyMigrations(dying, tables(prefix), known.filter((m) => m.version === 13)).catch(() => undefined);
      expect(dying.cut).to.equal(true);
    } finally {
      c.release();
    }
    const edited = known.filter((m) => m.version >= 13).map((m) => (m.version === 13 ? { ...m, sql: `-- edited\n${m.sql}` } : m));
    const again = await pool().getConnection();
    try {
      const failure = await applyMigrations(again, tables(prefix), edited).then(() => null, (err: Error) => err.message);
      expect(failure).to.match(/^sqljobs: migration 13 \(side_indexes\) was cut after \d+ statements of a different text of its file; finish it by hand/);
    } finally {
      again.release();
    }
    await dropPrefix(t, prefix);
  });

  /** A schema at version 18, and another session reading `logs` in an open transaction: migration 019's ALTER of it waits for that session's metadata lock. */
  async function migrationHeldAt019(): Promise<{ prefix: string; release(): Promise<void> }> {
    const prefix = uniquePrefix();
    const c = await pool().getConnection();
    await c.query(`CREATE TABLE ${prefix}migrations (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at DATETIME(3) NOT NULL) ENGINE = InnoDB`);
    await applyMigrations(c, tables(prefix), loadMigrations('mysql', prefix).filter((m) => m.version < 19));
    await c.query('START TRANSACTION');
    await c.query(`SELECT * FROM ${prefix}logs LIMIT 1`);
    return {
      prefix,
      release: async () => {
        await c.query('COMMIT');
        c.release();
      },
    };
  }

  it('close() while migrate() applies a statement: waits for it (up to 4 s), and the migration completes', async () => {
    const held = await migrationHeldAt019();
    const jobs = t.jobs({ worker: false, tablePrefix: held.prefix });
    const migrating = jobs.migrate().then(() => 'migrated', (err: Error) => err.message);
    await sleep(300);
    setTimeout(() => void held.release(), 1_000);
    const t0 = Date.now();
    await jobs.close();
    expect(Date.now() - t0, 'close() ms').to.be.within(700, 3_900);
    expect(await migrating).to.equal('migrated');
    expect(await schemaOf(t, held.prefix)).to.deep.equal(reference);
    await dropPrefix(t, held.prefix);
  });

  it('close() while migrate() applies a statement that outlasts the wait: returns, and the next migrate() completes the migration', async () => {
    const held = await migrationHeldAt019();
    const jobs = t.jobs({ worker: false, tablePrefix: held.prefix });
    const migrating = jobs.migrate().then(() => 'migrated', (err: Error) => err.message);
    await sleep(300);
    const t0 = Date.now();
    await jobs.close();
    expect(Date.now() - t0, 'close() ms').to.be.within(3_900, 5_500);
    expect(await migrating).to.not.equal('migrated');
    await held.release();
    const again = t.jobs({ worker: false, tablePrefix: held.prefix });
    await again.migrate();
    await again.close();
    expect(await schemaOf(t, held.prefix)).to.deep.equal(reference);
    await dropPrefix(t, held.prefix);
  });

  it('a process killed (SIGKILL) while it migrates, at points spread over the migration: the next migrate() ends as an uncut run', async () => {
    const cutShort: number[] = [];
    for (const delay of [10, 60, 120, 200, 300, 400, 500]) {
      const prefix = uniquePrefix();
      await killWhileMigrating(prefix, delay);
      const [{ n }] = await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`, [`${prefix}migrations`]);
      const versions = Number(n) ? await t.query<{ version: number }>(`SELECT version FROM ${prefix}migrations`) : [];
      if (versions.length < loadMigrations('mysql', prefix).length) cutShort.push(delay);
      const jobs = t.jobs({ worker: false, tablePrefix: prefix });
      try {
        await jobs.migrate();
      } catch (err) {
        throw new Error(`migrate() after a kill ${delay} ms in (${versions.length} migrations applied): ${(err as Error).message}`);
      }
      expect(await schemaOf(t, prefix), `schema after a kill ${delay} ms in`).to.deep.equal(reference);
      await jobs.close();
      await dropPrefix(t, prefix);
    }
    // The kills must have landed inside the migration for the test to say anything.
    expect(cutShort.length, `kills that cut the migration short (delays ${cutShort.join(', ')} ms)`).to.be.at.least(4);
  });
});

