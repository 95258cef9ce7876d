/**
 * A session lock (PostgreSQL advisory lock, MySQL GET_LOCK, SQL Server app lock) lives and dies
 * with one dedicated connection. What every database shares is written here once: listen for the
 * connection's loss before taking the lock, give the connection up when the lock is refused or
 * the attempt fails, report the loss once, and make release idempotent. Each dialect says only
 * how to take, check and free its lock and how to close its connection.
 */
import type { SessionLock } from './store.ts';

export interface LockSession {
  /** Listen for the connection's loss (error or end); called before take(). */
  onDrop(cb: () => void): void;
  /** Connect if needed and try the lock without waiting: true when granted. */
  take(): Promise<boolean>;
  /** Ask the database whether this session still holds the lock. */
  check(): Promise<boolean>;
  /** Free the lock (the connection is closed right after). */
  unlock(): Promise<void>;
  /** Give the connection up. */
  close(): Promise<void>;
  /**
   * Whether to close the connection as soon as it is lost. MySQL's is left alone: a statement
   * sent before the loss must still be answered (mysql2 fails it as the socket closes), and the
   * pool already forgets a connection that ended or failed.
   */
  readonly closeOnLoss: boolean;
  /** The server's id for the session (tests end it), known once take() granted the lock. */
  pid(): number | null;
}

export async function takeSessionLock(session: LockSession): Promise<SessionLock | null> {
  let lostCb: (() => void) | null = null;
  let gone = false;
  const close = () => session.close().catch(() => undefined);
  session.onDrop(() => {
    if (gone) return;
    gone = true;
    if (session.closeOnLoss) void close();
    lostCb?.();
  });
  try {
    if (!(await session.take())) {
      gone = true;
      await close();
      return null;
    }
  } catch (err) {
    gone = true;
    await close();
    throw err;
  }
  return {
    pid: session.pid(),
    stillHeld: async () => !gone && (await session.check()),
    onLost: (cb) => {
      lostCb = cb;
      if (gone) cb();
    },
    release: async () => {
      if (gone) return;
      gone = true;
      await session.unlock().catch(() => undefined);
      await close();
    },
  };
}
