/**
 * Leases with fencing tokens (jobs.locks, leadership): renew and release are one statement on
 * every database. Taking a lease is an upsert, spelled per dialect (lib/driver/<dialect>/).
 */
import { write, type Statement } from './statement.ts';
import type { Sql } from './sql.ts';

export interface LeaseKey {
  name: string;
  owner: string;
  token: number;
}

/** Extend a lease this owner still holds under this token. Changes one row when it applied. */
export function leaseRenew({ d, t }: Sql, k: LeaseKey & { ttlMs: number }): Statement {
  return write(d, (b) =>
    `UPDATE ${t.leases} SET expires_at = ${d.plusMs(d.now, b.bigint(k.ttlMs))}${d.output('inserted', ['name'])}
     WHERE name = ${b.text(k.name)} AND owner = ${b.text(k.owner)} AND token = ${b.bigint(k.token)} AND expires_at > ${d.now}${d.returning(['name'])}`, true);
}

/** Expire rather than delete: the row keeps its token, so the next owner's is greater. */
export function leaseRelease({ d, t }: Sql, k: LeaseKey): Statement {
  return write(d, (b) =>
    `UPDATE ${t.leases} SET expires_at = ${d.plusMs(d.now, '-1')}${d.output('inserted', ['name'])}
     WHERE name = ${b.text(k.name)} AND owner = ${b.text(k.owner)} AND token = ${b.bigint(k.token)} AND expires_at > ${d.now}${d.returning(['name'])}`, true);
}
