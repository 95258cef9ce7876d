/**
 * Applying migrations on MySQL/MariaDB, where DDL commits on its own: a migration cut half way
 * (the process killed, its connection ended) cannot roll back, and run again from its first
 * statement it would fail ("Table … already exists") and keep every later start failing. So each
 * file's progress is written as it goes, and a migration cut half way is taken up where it stopped:
 *
 * - a data statement (INSERT, UPDATE, DELETE) commits together with its progress: exactly once;
 * - a schema statement is marked as started before it runs and done after; one cut between the
 *   two (committed by the server, not yet marked done) is run again, and the error saying it is
 *   already there is taken as done. Only that statement is forgiven such an error.
 *
 * The caller holds the migration lock on `c` (GET_LOCK): one migrator at a time.
 */
import { createHash } from 'node:crypto';
import { splitStatements, type Migration } from '../migrations.ts';
import type { Tables } from '../portable/statement.ts';
import { mysql as mysqlDialect } from '../portable/dialect.ts';

/** The part of a mysql2 promise connection a migration uses. */
export interface MigrationConnection {
  query(text: string, values?: unknown[]): Promise<[unknown, unknown]>;
}

/** Statements that change rows: run in a transaction with their progress. */
const CHANGES_ROWS = /^(INSERT|UPDATE|DELETE|REPLACE)\b/i;

/**
 * What a schema statement answers when it already ran: the table, column, index or foreign key
 * is there, or the one it drops is gone.
 */
const ALREADY_DONE = new Set([
  1050, // ER_TABLE_EXISTS_ERROR
  1051, // ER_BAD_TABLE_ERROR (DROP TABLE of a table dropped)
  1060, // ER_DUP_FIELDNAME
  1061, // ER_DUP_KEYNAME
  1091, // ER_CANT_DROP_FIELD_OR_KEY
  1826, // ER_FK_DUP_NAME
]);

/** Apply the migrations not yet recorded in `t.migrations`, each taken up where an earlier run stopped. */
export async function applyMigrations(c: MigrationConnection, t: Tables, pending: Migration[]): Promise<void> {
  if (!pending.length) return;
  await c.query(
    `CREATE TABLE IF NOT EXISTS ${t.migrationSteps} (version INT NOT NULL PRIMARY KEY, done INT NOT NULL, started TINYINT NOT NULL, file_sha1 CHAR(40) NOT NULL) ENGINE = InnoDB`,
  );
  for (const m of pending) await applyMigration(c, t, m);
}

async function applyMigration(c: MigrationConnection, t: Tables, m: Migration): Promise<void> {
  const statements = splitStatements(m.sql);
  const sha1 = createHash('sha1').update(m.sql).digest('hex');
  const resume = await progress(c, t, m, sha1);
  const mark = (done: number, started: boolean): [string, unknown[]] => [
    `REPLACE INTO ${t.migrationSteps} (version, done, started, file_sha1) VALUES (?, ?, ?, ?)`,
    [m.version, done, started ? 1 : 0, sha1],
  ];
  for (let i = resume.done; i < statements.length; i++) {
    const stmt = statements[i];
    if (CHANGES_ROWS.test(stmt)) {
      await inTransaction(c, [[stmt, []], mark(i + 1, false)]);
      continue;
    }
    await c.query(...mark(i, true));
    await runSchemaStatement(c, stmt, i === resume.done && resume.started);
    await c.query(...mark(i + 1, false));
  }
  await inTransaction(c, [
    [`INSERT INTO ${t.migrations} (version, name, applied_at) VALUES (?, ?, ${mysqlDialect.now})`, [m.version, m.name]],
    [`DELETE FROM ${t.migrationSteps} WHERE version = ?`, [m.version]],
  ]);
}

/**
 * How far an earlier run of this migration got: statements done, and whether the next one was
 * started. Counted in the file's statements as that run read them: a file that reads otherwise now
 * (edited since, by hand or by another version of sqljobs) cannot be taken up.
 */
async function progress(c: MigrationConnection, t: Tables, m: Migration, sha1: string): Promise<{ done: number; started: boolean }> {
  const [rows] = await c.query(`SELECT done, started, file_sha1 FROM ${t.migrationSteps} WHERE version = ?`, [m.version]);
  const row = (rows as { done: number | string; started: number | string; file_sha1: string }[])[0];
  if (!row) return { done: 0, started: false };
  if (row.file_sha1 !== sha1) {
    throw new Error(
      `sqljobs: migration ${m.version} (${m.name}) was cut after ${row.done} statements of a different text of its file; finish it by hand (migrations/mysql/), record it in ${t.migrations} and delete its row from ${t.migrationSteps}`,
    );
  }
  return { done: Number(row.done), started: Number(row.started) === 1 };
}

/** A schema statement; one an earlier run may have committed (`mayHaveRun`) is done if it says it already is. */
async function runSchemaStatement(c: MigrationConnection, stmt: string, mayHaveRun: boolean): Promise<void> {
  try {
    await c.query(stmt);
  } catch (err) {
    if (mayHaveRun && ALREADY_DONE.has((err as { errno?: number }).errno ?? 0)) return;
    throw err;
  }
}

async function inTransaction(c: MigrationConnection, statements: [string, unknown[]][]): Promise<void> {
  await c.query('START TRANSACTION');
  try {
    for (const [text, values] of statements) await c.query(text, values);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined); // the connection may be gone: the server rolls back then
    throw err;
  }
}
