/**
 * Periodic chores (poll, heartbeat, rescue, retention): each runs on its own interval, never
 * overlaps itself (heartbeats piling up behind a slow database would take every pooled
 * connection), reports its errors, and can be stopped and awaited, so that nothing writes after
 * its owner has stopped.
 */
export class Periodic {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly onError: (err: unknown) => void) {}

  /** Run `fn` every `ms`. A keep-alive timer holds the process open (a worker process on SQLite has no socket that would). */
  every(ms: number, fn: () => Promise<void> | void, keepAlive = false): void {
    let busy = false;
    const timer = setInterval(() => {
      if (this.stopped || busy) return;
      busy = true;
      void this.track(fn).finally(() => (busy = false));
    }, ms);
    if (!keepAlive) timer.unref();
    this.timers.push(timer);
  }

  /** Run `fn` once now (a chore due at start), reported and awaited by stop() like the periodic ones. */
  once(fn: () => Promise<void> | void): void {
    if (!this.stopped) void this.track(fn);
  }

  private track(fn: () => Promise<void> | void): Promise<void> {
    const chore = Promise.resolve()
      .then(fn)
      .catch((err) => this.onError(err));
    this.running.add(chore);
    void chore.finally(() => this.running.delete(chore));
    return chore;
  }

  /** No new run starts from now on. */
  clear(): void {
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
  }

  /** Stop, and wait for the runs under way. */
  async stop(): Promise<void> {
    this.clear();
    await Promise.all(this.running);
  }
}
