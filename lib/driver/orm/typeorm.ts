/** TypeORM: an EntityManager in a transaction has a QueryRunner, whose databaseConnection is the driver connection. */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';

interface QueryRunnerLike {
  isTransactionActive: boolean;
  isReleased: boolean;
  databaseConnection: unknown;
  connect(): Promise<unknown>;
}

const isQueryRunner = (o: unknown): boolean => fn(o, 'startTransaction') && fn(o, 'commitTransaction') && o != null && 'isTransactionActive' in (o as object);

export const typeormTransaction: OrmTransactionAdapter = {
  name: 'a TypeORM EntityManager or QueryRunner',
  matches: (o) => isQueryRunner(o) || (fn(o, 'getRepository') && fn(o, 'transaction') && 'queryRunner' in o),
  native: (o) => ((isQueryRunner(o) ? o : o.queryRunner) as QueryRunnerLike | undefined)?.databaseConnection,
  async open(o) {
    const runner = (isQueryRunner(o) ? o : o.queryRunner) as QueryRunnerLike | undefined;
    if (!runner || !runner.isTransactionActive || runner.isReleased) {
      throw new TypeError('opts.tx: the TypeORM EntityManager is not inside a transaction (use the manager dataSource.transaction(async (manager) => ...) gives you, or a QueryRunner after startTransaction())');
    }
    if (runner.databaseConnection == null) await runner.connect();
    return { native: runner.databaseConnection };
  },
};

/** An initialised TypeORM DataSource: its driver holds the pool (pg, mysql2) or Database (better-sqlite3). */
export function typeormClient(o: unknown): unknown {
  const ds = o as Record<string, unknown> | null;
  if (!ds || !fn(ds, 'createQueryRunner') || !fn(ds, 'getRepository') || !('driver' in ds) || !('isInitialized' in ds)) return undefined;
  if (ds.isInitialized !== true) throw new TypeError('createJobs: db: the TypeORM DataSource is not initialised; await dataSource.initialize() first');
  const driver = ds.driver as { master?: unknown; pool?: unknown; databaseConnection?: unknown };
  return driver.master ?? driver.pool ?? driver.databaseConnection;
}
