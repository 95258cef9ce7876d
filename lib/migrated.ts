/**
 * The schema is applied lazily, once, before the first database use: the facade reaches the store
 * only through a view whose every promise-answering verb first waits for the migrations, so no
 * verb can forget them. Arguments are still validated before any call reaches the view, so a bad
 * argument throws its own error even when the database is down.
 */
import type { Store } from './driver/store.ts';

/** The store's verbs that answer synchronously; the compiler keeps PASS_THROUGH listing every one of them. */
type SyncVerb = {
  [K in keyof Store]-?: NonNullable<Store[K]> extends (...args: never[]) => infer R ? (R extends Promise<unknown> ? never : K) : never;
}[keyof Store];

/**
 * Verbs called as they are. The synchronous ones cannot wait, and need not: SQLite, the only store
 * with them, migrates in its constructor. close() must not migrate a database it is leaving, and
 * migrate() must not wait for itself.
 */
const PASS_THROUGH: Record<SyncVerb | 'migrate' | 'close', true> = { jobInsertManySync: true, jobInsertFlowSync: true, appInTransaction: true, onJobsDue: true, sever: true, prepareClaims: true, migrate: true, close: true };

export interface MigratedStore {
  /** The store, with each verb that answers a promise run after migrate(). */
  readonly view: Store;
  /** Apply the migrations: one attempt shared by concurrent callers, remembered once it succeeded, made again after a failure. */
  migrate(): Promise<void>;
}

/**
 * What each driver says when asked to use a pool or connection that was ended: after close(),
 * which ends the ones the instance opened (its private pools, SQLite's own connection), these
 * words do not say why. Only they are reworded: any other failure (a caller's transaction that
 * ended, say) keeps its own error.
 */
const ENDED = [
  'Cannot use a pool after calling end on the pool', // pg
  'Pool is closed.', // mysql2
  'The database connection is not open', // better-sqlite3
  'Connection is closed.', // mssql
  'Connection not yet open.', // mssql, a pool closed before it connected
  'Connection is closing', // mssql
];

/** A driver's words for a pool or connection that was ended (after close(), the instance's own). */
export function isEndedConnectionError(err: unknown): boolean {
  const said = err instanceof Error ? err.message : '';
  return ENDED.some((words) => said.startsWith(words));
}

export function afterClose(err: unknown): unknown {
  const said = err instanceof Error ? err.message : '';
  if (!isEndedConnectionError(err)) return err;
  return new Error(`sqljobs: this instance was closed (close()), and the connections it opened with it: create another (createJobs) to read or change jobs (the database driver said: ${said})`, { cause: err });
}

/** `closed`: whether close() was called (a failure from then on is reworded: see afterClose). */
export function migratedStore(store: Store, closed: () => boolean): MigratedStore {
  let ready: Promise<void> | null = null;
  const migrate = (): Promise<void> =>
    (ready ??= store.migrate().catch((err: unknown) => {
      ready = null;
      throw err;
    }));
  const reword = (err: unknown): never => {
    throw closed() ? afterClose(err) : err;
  };
  const view = new Proxy(store, {
    get(target, prop) {
      // Read at each call, not cached: tests replace a store's verb on the store itself.
      const value: unknown = Reflect.get(target, prop);
      if (typeof value !== 'function') return value;
      const verb = value as (...args: unknown[]) => unknown;
      // Called on the store itself, so that a verb's own calls do not wait again.
      if (Object.hasOwn(PASS_THROUGH, prop)) return verb.bind(target);
      return (...args: unknown[]) => migrate().then(() => verb.apply(target, args)).catch(reword);
    },
  });
  return { view, migrate: () => migrate().catch(reword) };
}
