/** TypeORM: an EntityManager in a transaction has a QueryRunner, whose databaseConnection is the driver connection. */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';

interface QueryRunnerLike {
  isTransactionActive: boolean;
  isReleased: boolean;
  databaseConnection: unknown;
  connect(): Promise<unknown>;
}

const isEntityManager = (o: Record<string, unknown>): boolean =>
  fn(o, 'getRepository') && fn(o, 'transaction') && ('queryRunner' in o || (o.dataSource != null && typeof o.dataSource === 'object'));
const isDataSource = (o: Record<string, unknown>): boolean => fn(o, 'createQueryRunner') && fn(o, 'getRepository') && 'driver' in o && 'isInitialized' in o;

const isQueryRunner = (o: unknown): boolean => fn(o, 'startTransaction') && fn(o, 'commitTransaction') && o != null && 'isTransactionActive' in (o as object);

export const typeormTransaction: OrmTransactionAdapter = {
  name: 'a TypeORM EntityManager or QueryRunner',
  // The DataSource and the root EntityManager are matched too, to be refused by name: TypeORM leaves
  // queryRunner off a manager outside a transaction (no such key at all), and a DataSource is no transaction.
  matches: (o) => isQueryRunner(o) || isEntityManager(o) || isDataSource(o),
  native: (o) => (isDataSource(o) ? undefined : ((isQueryRunner(o) ? o : o.queryRunner) as QueryRunnerLike | undefined)?.databaseConnection),
  async open(o) {
    const use = 'use the manager dataSource.transaction(async (manager) => ...) gives you, or a QueryRunner after startTransaction()';
    if (isDataSource(o)) throw new TypeError(`opts.tx: a TypeORM DataSource is not a transaction (${use})`);
    const runner = (isQueryRunner(o) ? o : o.queryRunner) as QueryRunnerLike | undefined;
    if (!runner || !runner.isTransactionActive || runner.isReleased) {
      throw new TypeError(`opts.tx: the TypeORM ${isQueryRunner(o) ? 'QueryRunner' : 'EntityManager'} is not inside a transaction (${use})`);
    }
    if (runner.databaseConnection == null) await runner.connect();
    return { native: runner.databaseConnection };
  },
};

/** An initialised TypeORM DataSource: its driver holds the pool (pg, mysql2) or Database (better-sqlite3). */
export function typeormClient(o: unknown): unknown {
  const ds = o as Record<string, unknown> | null;
  if (!ds || !isDataSource(ds)) return undefined;
  if (ds.isInitialized !== true) throw new TypeError('createJobs: db: the TypeORM DataSource is not initialised; await dataSource.initialize() first');
  const driver = ds.driver as { master?: unknown; pool?: unknown; databaseConnection?: unknown };
  return driver.master ?? driver.pool ?? driver.databaseConnection;
}
