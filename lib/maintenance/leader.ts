/**
 * Leader election: at most one instance per table prefix holds leadership and runs the singleton
 * duties (recurring schedules, the stalled-job sweeper and history retention).
 *
 * Leadership is a lease row with a fencing token on every database, renewed every leaseMs/3.
 * Where the database has session locks (PostgreSQL, MySQL/MariaDB, SQL Server), the leader also holds one on a
 * dedicated connection, so that losing that connection (or having it killed) makes it step down
 * at once. A session lock alone cannot fail over from a leader that is paused or hung with its
 * connection open, so the lease decides: a contender that finds the lease expired takes it and
 * ends the stale holder's session. A leader that cannot confirm within its lease stops trusting
 * itself (isLeader), so a resumed leader never acts beside its successor. The duties stay
 * correct without any leader (fenced writes, SKIP LOCKED, tick keys): leadership avoids
 * duplicate work. Behind a transaction pooler (PostgreSQL) there is no session lock: the lease
 * alone decides, and no session is ever ended.
 */
import type { LeaseStore, SessionLock } from '../driver/store.ts';

export interface LeaderOptions {
  /** Lock name (one leader per name and table prefix). Default 'leader'. */
  name: string;
  /** How long a lost leader may go unnoticed, ms; also the lease length. Default 15000. */
  leaseMs: number;
}

/**
 * The lease and session-lock name of a leadership. '#' is not allowed in an app's lock names, so
 * `jobs.locks` (same leases table) can never take or block it.
 */
export function leadershipKey(name: string): string {
  return `#leader:${name}`;
}

export class LeaderElector {
  private leading = false;
  /** When leadership was last confirmed (monotonic clock): a leader that was paused longer than its lease is not trusted until it confirms again. */
  private confirmedAt = 0;
  private lock: SessionLock | null = null;
  private leaseToken: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private ticking: Promise<void> | null = null;

  constructor(
    private readonly store: LeaseStore,
    private readonly owner: string,
    private readonly opts: LeaderOptions,
    private readonly onChange: (leader: boolean) => void,
    private readonly onError: (err: unknown) => void,
  ) {
    this.key = leadershipKey(opts.name);
  }

  private readonly key: string;

  get isLeader(): boolean {
    return this.leading && performance.now() - this.confirmedAt < this.opts.leaseMs;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.tick();
    this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    this.timer.unref();
  }

  /** One round: a leader confirms it still leads, a follower tries to take over. */
  private tick(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.ticking ??= (this.leading ? this.confirm() : this.campaign())
      .catch((err) => {
        this.onError(err);
        if (this.leading) this.stepDown();
      })
      .finally(() => (this.ticking = null));
    return this.ticking;
  }

  private async campaign(): Promise<void> {
    if ((await this.sessionLocks()) && !(await this.takeSessionLock())) return;
    if (!this.running) return this.releaseAll();
    // Fencing: while a predecessor's lease is live it may still act, so wait for it to expire.
    const sent = performance.now();
    this.leaseToken = await this.store.leaseAcquire({ name: this.key, owner: this.owner, ttlMs: this.opts.leaseMs });
    if (this.leaseToken !== null && this.running) this.become(true, sent);
  }

  /**
   * Whether leadership also holds a session lock. Not behind a transaction pooler: the lock would
   * land on a server connection other clients share; the lease alone then decides (as on SQLite).
   */
  private async sessionLocks(): Promise<boolean> {
    if (!this.store.sessionLockTry) return false;
    return this.store.sessionLocksUsable ? this.store.sessionLocksUsable() : true;
  }

  /** Hold the session lock; if another session holds it but let the lease lapse, end that session first. */
  private async takeSessionLock(): Promise<boolean> {
    if (this.lock) return true;
    let lock = await this.store.sessionLockTry!(this.key);
    if (!lock && this.store.sessionLockEvict) {
      const token = await this.store.leaseAcquire({ name: this.key, owner: this.owner, ttlMs: this.opts.leaseMs });
      if (token === null) return false; // the holder renews its lease: it is alive
      try {
        if ((await this.store.sessionLockEvict(this.key)) > 0) this.onError(new Error(`leader "${this.opts.name}": ended the session of a leader that stopped renewing its lease`));
        // The ended session's lock is released when its backend exits: try again for a moment.
        for (let i = 0; !lock && i < 20 && this.running; i++) {
          if (i) await new Promise((r) => setTimeout(r, 50));
          lock = await this.store.sessionLockTry!(this.key);
        }
      } finally {
        // Without the lock, holding the lease would only keep its holder (maybe a healthy
        // instance we may not evict) from ever leading: give it back.
        if (lock) this.leaseToken = token;
        else await this.store.leaseRelease({ name: this.key, owner: this.owner, token }).catch(() => false);
      }
    }
    if (!lock) return false;
    this.lock = lock;
    lock.onLost(() => {
      if (this.lock === lock) this.stepDown();
    });
    return true;
  }

  private async confirm(): Promise<void> {
    // Trust runs from when the renewal was sent, not when its answer arrived (a pause in between).
    const sent = performance.now();
    const held =
      (!this.lock || (await this.lock.stillHeld())) &&
      (await this.store.leaseRenew({ name: this.key, owner: this.owner, token: this.leaseToken!, ttlMs: this.opts.leaseMs }));
    if (!held) this.stepDown();
    else this.confirmedAt = sent;
  }

  private stepDown(): void {
    void this.releaseAll();
    this.become(false);
  }

  /** Give up the session lock and expire our lease, so that a successor need not wait for it. */
  private async releaseAll(): Promise<void> {
    const lock = this.lock;
    const token = this.leaseToken;
    this.lock = null;
    this.leaseToken = null;
    await lock?.release();
    if (token !== null) await this.store.leaseRelease({ name: this.key, owner: this.owner, token }).catch(() => false);
  }

  private become(leader: boolean, confirmedAt = performance.now()): void {
    if (leader) this.confirmedAt = confirmedAt;
    if (this.leading === leader) return;
    this.leading = leader;
    this.onChange(leader);
  }

  /** Stop campaigning and give leadership up (another instance takes over at its next round). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    await this.ticking?.catch(() => undefined);
    await this.releaseAll();
    this.become(false);
  }
}
