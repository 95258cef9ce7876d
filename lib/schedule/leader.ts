/**
 * Leader election: at most one instance per table prefix holds leadership and runs the singleton
 * duties (the stalled-job sweeper and history retention; recurring schedules will join them).
 *
 * Through the database's session advisory lock on a dedicated connection where it has one
 * (PostgreSQL), and through a lease row with a fencing token elsewhere (SQLite). The leader
 * checks every leaseMs/3 that it still holds the lock (or renews its lease) and steps down at
 * once when it does not, or when its lock connection drops. Those duties stay correct without
 * any leader (fenced writes, SKIP LOCKED): leadership only avoids duplicate work.
 */
import type { SessionLock, Store } from '../store/store.ts';

export interface LeaderOptions {
  /** Lock name (one leader per name and table prefix). Default 'leader'. */
  name: string;
  /** How long a lost leader may go unnoticed, ms; also the lease length. Default 15000. */
  leaseMs: number;
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
    private readonly store: Store,
    private readonly owner: string,
    private readonly opts: LeaderOptions,
    private readonly onChange: (leader: boolean) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

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
    if (this.store.trySessionLock) {
      const lock = await this.store.trySessionLock(this.opts.name);
      if (!lock) return;
      if (!this.running) return lock.release();
      this.lock = lock;
      lock.onLost(() => {
        if (this.lock === lock) this.stepDown();
      });
      return this.become(true);
    }
    const token = await this.store.acquireLease(this.opts.name, this.owner, this.opts.leaseMs);
    if (token === null) return;
    this.leaseToken = token;
    this.become(true);
  }

  private async confirm(): Promise<void> {
    const held = this.lock
      ? await this.lock.stillHeld()
      : await this.store.renewLease(this.opts.name, this.owner, this.leaseToken!, this.opts.leaseMs);
    if (!held) this.stepDown();
    else this.confirmedAt = performance.now();
  }

  private stepDown(): void {
    const lock = this.lock;
    this.lock = null;
    this.leaseToken = null;
    void lock?.release();
    this.become(false);
  }

  private become(leader: boolean): void {
    if (leader) this.confirmedAt = performance.now();
    if (this.leading === leader) return;
    this.leading = leader;
    this.onChange(leader);
  }

  /** Stop campaigning and give leadership up (another instance takes over at its next round). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    await this.ticking?.catch(() => undefined);
    const lock = this.lock;
    const token = this.leaseToken;
    this.lock = null;
    this.leaseToken = null;
    if (lock) await lock.release();
    if (token !== null) await this.store.releaseLease(this.opts.name, this.owner, token).catch(() => false);
    this.become(false);
  }
}
