/** What every portable statement is built over: the dialect's fragments and the prefixed table names. */
import type { SqlDialect } from './dialect.ts';
import type { Tables } from './statement.ts';

export interface Sql {
  readonly d: SqlDialect;
  readonly t: Tables;
}
