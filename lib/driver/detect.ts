/** Which driver is this object? Decided by shape, never instanceof (the app's copy of a driver may not be ours). */

export type DriverKind = 'better-sqlite3' | 'pg-pool' | 'pg-client' | 'slonik' | 'mysql2' | 'mssql';

const fn = (o: unknown, k: string): boolean => o != null && typeof (o as Record<string, unknown>)[k] === 'function';

export function detectDriver(db: unknown): DriverKind {
  const o = db as Record<string, unknown>;
  if (fn(o, 'prepare') && fn(o, 'transaction') && fn(o, 'pragma') && typeof o?.inTransaction === 'boolean') return 'better-sqlite3';
  if (fn(o, 'oneFirst') && fn(o, 'maybeOne') && fn(o, 'any') && fn(o, 'transaction')) return 'slonik';
  if (fn(o, 'request') && fn(o, 'transaction') && o && 'connected' in o && fn(o, 'connect') && fn(o, 'close')) return 'mssql';
  if (fn(o, 'getConnection') && fn(o, 'execute')) return 'mysql2';
  if (fn(o, 'connect') && fn(o, 'query') && typeof o?.totalCount === 'number') return 'pg-pool';
  if (fn(o, 'query') && o && 'connectionParameters' in o && 'processID' in o) return 'pg-client';
  throw new TypeError(
    `createJobs: db: expected a better-sqlite3 Database, pg Pool, slonik pool, mysql2 pool or mssql ConnectionPool; got ${shape(db)}`,
  );
}

function shape(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v !== 'object' && typeof v !== 'function') return `${typeof v} ${JSON.stringify(v)}`;
  const name = (v as object).constructor?.name ?? 'Object';
  const keys = Object.keys(v as object).slice(0, 6);
  return `${name}${keys.length ? ` with keys ${keys.join(', ')}` : ''}`;
}

/** ORM and query-builder transactions, recognised by shape so that a refusal can name them. */
const ORM_SHAPES: [string, (o: Record<string, unknown>) => boolean][] = [
  ['a Knex transaction', (o) => o.isTransaction === true && fn(o, 'commit') && fn(o, 'raw')],
  ['a Prisma client', (o) => fn(o, '$executeRaw') || fn(o, '$queryRaw')],
  ['a Kysely instance or transaction', (o) => fn(o, 'selectFrom') && fn(o, 'insertInto')],
  ['a Drizzle database or transaction', (o) => fn(o, 'select') && o.session != null && typeof o.session === 'object'],
  ['a TypeORM EntityManager', (o) => fn(o, 'getRepository') && 'queryRunner' in o],
  ['a Sequelize Transaction', (o) => fn(o, 'commit') && fn(o, 'rollback') && o.sequelize != null],
];

/**
 * What the caller gave as opts.tx, in words, for a refusal: an ORM's transaction is named as such
 * (not taken yet: the driver connection it runs on is), anything else by its shape.
 */
export function describeTx(tx: unknown): string {
  if (tx !== null && (typeof tx === 'object' || typeof tx === 'function')) {
    const orm = ORM_SHAPES.find(([, match]) => match(tx as Record<string, unknown>));
    if (orm) return `${orm[0]} (ORM transactions are not taken yet: pass the driver connection it runs on)`;
  }
  return shape(tx);
}

/** A pg client handed as opts.tx: a PoolClient or Client, which must be inside BEGIN. */
export function isPgClient(tx: unknown): boolean {
  const o = tx as Record<string, unknown>;
  return fn(o, 'query') && o != null && 'connectionParameters' in o;
}
