/**
 * `jobs.locks`: the app's own cross-process mutual exclusion, on every database, as leases in the
 * jobs database: a named lock held for a time-to-live (database clock) that its holder renews,
 * with a fencing token that grows whenever ownership changes. A holder that stops renewing (a
 * crash, a long pause) loses the lock when the lease expires; its token then no longer matches, so
 * its renewals and release are refused.
 */
import os from 'node:os';
import { describe } from './model.ts';
import type { LeaseStore } from './driver/store.ts';
import { uuidv7 } from './uuid.ts';

export interface LockOptions {
  /** How long the lock is held without renewal, ms (database clock). Default 30000. */
  ttl?: number;
}

export interface HeldLock {
  readonly name: string;
  /** Fencing token: greater for every new holder. Pass it along with writes the lock protects. */
  readonly token: number;
  /** Extend the lease by its ttl. False when the lock was lost (expired and taken, or released). */
  renew(): Promise<boolean>;
  /** Give the lock up. False when it was no longer held. */
  release(): Promise<boolean>;
}

/** Thrown by withLock when another holder has the lock. */
export class LockBusyError extends Error {
  constructor(readonly lockName: string) {
    super(`lock "${lockName}" is held by another owner`);
    this.name = 'LockBusyError';
  }
}

const NAME_RE = /^[\w.:\-/]{1,200}$/;

export class Locks {
  /** This instance's identity; each acquisition owns its lease as `${owner}#n`, so locks are not re-entrant. */
  readonly owner = `${os.hostname()}:${process.pid}:${uuidv7()}`;
  private readonly held = new Map<string, HeldLock>();
  /** Each acquisition owns its lease on its own: two callers in this process exclude each other too. */
  private acquisitions = 0;

  constructor(
    private readonly store: LeaseStore,
    private readonly ready: () => Promise<void>,
  ) {}

  /** Take the lock if it is free (or expired); null when it is held, elsewhere or by another caller in this process. */
  async tryAcquire(name: string, opts: LockOptions = {}): Promise<HeldLock | null> {
    const ttl = checkLock(name, opts);
    await this.ready();
    const owner = `${this.owner}#${++this.acquisitions}`;
    const token = await this.store.leaseAcquire({ name, owner, ttlMs: ttl });
    if (token === null) return null;
    const lock: HeldLock = {
      name,
      token,
      renew: () => this.store.leaseRenew({ name, owner, token, ttlMs: ttl }),
      release: async () => {
        if (this.held.get(name) === lock) this.held.delete(name);
        return this.store.leaseRelease({ name, owner, token });
      },
    };
    this.held.set(name, lock);
    return lock;
  }

  /** Release a lock this instance holds. False when it did not hold it (any more). */
  async release(name: string): Promise<boolean> {
    const lock = this.held.get(name);
    return lock ? lock.release() : false;
  }

  /**
   * Run fn while holding the lock, renewing it every ttl/3. fn's signal fires if the lock is
   * lost meanwhile (a renewal refused or failing past the ttl). Throws LockBusyError when the lock
   * is held elsewhere. The lock is released when fn settles.
   */
  async withLock<T>(name: string, fn: (ctx: { signal: AbortSignal; token: number }) => Promise<T> | T, opts: LockOptions = {}): Promise<T> {
    const ttl = checkLock(name, opts);
    const lock = await this.tryAcquire(name, { ttl });
    if (!lock) throw new LockBusyError(name);
    const lost = new AbortController();
    let lastRenewed = Date.now();
    const timer = setInterval(() => {
      lock.renew().then(
        (ok) => {
          if (ok) lastRenewed = Date.now();
          else lost.abort(new Error(`lock "${name}" was lost: its lease expired and another owner may hold it`));
        },
        (err) => {
          if (Date.now() - lastRenewed >= ttl) lost.abort(err);
        },
      );
    }, Math.floor(ttl / 3));
    try {
      return await fn({ signal: lost.signal, token: lock.token });
    } finally {
      clearInterval(timer);
      await lock.release().catch(() => false);
    }
  }
}

function checkLock(name: unknown, opts: LockOptions): number {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new TypeError(`lock name must be 1-200 characters of letters, digits, _ . : - /; got ${describe(name)}`);
  }
  if (opts === null || typeof opts !== 'object') throw new TypeError(`lock options must be an object; got ${describe(opts)}`);
  for (const key of Object.keys(opts)) if (key !== 'ttl') throw new TypeError(`unknown lock option "${key}"; allowed: ttl (ms)`);
  const ttl = opts.ttl ?? 30_000;
  // From 100 ms: withLock renews every ttl/3, and a lease shorter than a few round trips ran out
  // between renewals (at 10 ms, every withLock lost its lock about 16 ms in).
  if (!Number.isInteger(ttl) || ttl < 100 || ttl > 86_400_000) throw new TypeError(`lock ttl must be an integer number of ms from 100 to 86400000; got ${describe(opts.ttl)}`);
  return ttl;
}
