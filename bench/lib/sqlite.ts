/** SQLite helpers: files per measurement, the app's pragmas, durability read-out. */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SQLITE_DIR } from './config.ts';

const SYNC_NAMES = ['OFF', 'NORMAL', 'FULL', 'EXTRA'];

export function sqliteFile(runId: string): string {
  fs.mkdirSync(SQLITE_DIR, { recursive: true });
  return path.join(SQLITE_DIR, `${runId}.db`);
}

export function removeSqliteFile(file: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) fs.rmSync(file + suffix, { force: true });
}

/**
 * The app's own handle, opened the way the benchmark's app opens it for every SQLite system:
 * WAL with synchronous = NORMAL (plainjob sets the same on its connection; the floor too).
 * BENCH_APP_SYNC=FULL measures the better-sqlite3 default instead.
 */
export function openAppDb(file: string): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${process.env.BENCH_APP_SYNC ?? 'NORMAL'}`);
  return db;
}

/** journal_mode and synchronous of one connection. */
export function describeSqlite(db: Database.Database): string {
  const journal = String(db.pragma('journal_mode', { simple: true }));
  const sync = Number(db.pragma('synchronous', { simple: true }));
  return `journal_mode=${journal}, synchronous=${SYNC_NAMES[sync] ?? sync}`;
}

/** A read-only handle for progress checks. */
export function openChecker(file: string): Database.Database {
  return new Database(file, { readonly: true, fileMustExist: true });
}
