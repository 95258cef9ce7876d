/**
 * The verbs whose statement is the same on every database, written once over the dialect's
 * fragments (./dialect.ts) and run by the dialect's runner. A dialect's store extends this class
 * and writes only what its database does differently (Oban's engines: override what differs).
 */
import type { SqlDialect } from './dialect.ts';
import type { Sql } from './sql.ts';
import { tables, type SqlRunner, type Tables } from './statement.ts';
import { leaseRelease, leaseRenew } from './leases.ts';

export abstract class PortableStore implements Sql {
  readonly t: Tables;
  /** Runs statements on the store's own connections; set by the dialect's constructor. */
  protected abstract readonly runner: SqlRunner;

  constructor(readonly d: SqlDialect, prefix: string) {
    this.t = tables(prefix);
  }

  // ---------------------------------------------------------------- leases

  async renewLease(name: string, owner: string, token: number, ttlMs: number): Promise<boolean> {
    return (await this.runner.run(leaseRenew(this, { name, owner, token, ttlMs }))).changes === 1;
  }

  async releaseLease(name: string, owner: string, token: number): Promise<boolean> {
    return (await this.runner.run(leaseRelease(this, { name, owner, token }))).changes === 1;
  }
}
