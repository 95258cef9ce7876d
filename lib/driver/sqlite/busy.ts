/**
 * SQLITE_BUSY, retried. better-sqlite3 is synchronous and its busy handler blocks the event loop,
 * so our handles have a short busy_timeout and a busy statement is retried asynchronously.
 */

export function isBusy(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}

/** Run fn (synchronous: a transaction cannot span an await) until it is not refused as busy; `stop`: give up (closing). */
export async function retryBusy<T>(fn: () => T, stop: () => boolean): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err) || attempt > 2000 || stop()) throw err;
      await busyPause(attempt);
    }
  }
}

/**
 * Start-up only (createJobs is synchronous on SQLite): retry SQLITE_BUSY with short synchronous
 * waits, for up to 30 s, while other processes open or migrate the same file.
 */
export function retryBusySync<T>(fn: () => T): T {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err) || attempt > 3000) throw err;
      Atomics.wait(pause, 0, 0, 5 + Math.random() * 10);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Wait before retrying SQLITE_BUSY. Short and flat at first so that processes sharing a file
 * take turns fairly (a growing backoff lets the process that holds the lock keep winning it);
 * longer only when the lock stays busy for a long time.
 */
function busyPause(attempt: number): Promise<void> {
  return sleep(attempt < 200 ? 1 + Math.random() * 4 : 20 + Math.random() * 30);
}
