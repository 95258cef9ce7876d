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
      const chore = Promise.resolve()
        .then(fn)
        .catch((err) => this.onError(err))
        .finally(() => (busy = false));
      this.running.add(chore);
      void chore.finally(() => this.running.delete(chore));
    }, ms);
    if (!keepAlive) timer.unref();
    this.timers.push(timer);
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
