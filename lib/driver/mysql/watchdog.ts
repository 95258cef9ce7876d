/**
 * A query of several statements on one of our connections, watched until it answers.
 *
 * MariaDB can leave such a query unanswered for good when `KILL QUERY` (sent by an operator, or by
 * pt-kill) lands between its statements: the server thread shows "Killed", its transaction stays
 * open with its row locks, and mysql2 waits forever (reproduced with MariaDB 10.11 and mysql2
 * 3.24: about one hang in 1,000–8,000 killed multi-statement transactions; never with the same
 * statements sent one by one). The worker's writer then waits forever too, and stop() with it.
 *
 * Every few seconds without an answer the watchdog asks the server what the connection's thread
 * does. Still running a statement (waiting for a lock, say), it waits on; doing nothing, killed or
 * gone, nothing will come, so it ends the connection: the query fails as a dropped connection does
 * and the caller's write is retried. Past the server's lock wait timeout plus a margin it ends it
 * whatever the thread says.
 */
import type { Pool as PromisePool, PoolConnection } from 'mysql2/promise';

/** How often a query that has not answered is looked at. */
const CHECK_MS = 5_000;
/** What a statement may take beyond the server's lock wait timeout before it is ended regardless. */
const MARGIN_MS = 30_000;

export class UnansweredQueryError extends Error {
  /** Classified like a dropped connection (../errors.ts): the write is retried. */
  readonly code = 'PROTOCOL_SEQUENCE_TIMEOUT';
  readonly fatal = true;
  constructor(
    waitedMs: number,
    /** The server's id of the connection ended (KILL CONNECTION). */
    readonly threadId: number,
    why: string,
  ) {
    super(`sqljobs: MySQL/MariaDB gave no answer to a statement of ours in ${(waitedMs / 1000).toFixed(1)} s (${why}); its connection (id ${threadId}) was ended, which rolls its transaction back`);
    this.name = 'UnansweredQueryError';
  }
}

export class QueryWatchdog {
  private serverLimit: Promise<number> | null = null;
  /** Ended regardless after this many ms; null: the server's innodb_lock_wait_timeout + 30 s (read once). Tests set it. */
  limitMs: number | null = null;
  /** Looked at after this many ms without an answer, and as often again. Tests set it. */
  checkMs = CHECK_MS;

  constructor(
    /** Connections other than the watched one, to ask the server and to KILL with. */
    private readonly pool: PromisePool,
  ) {}

  /** `c.query(text, values)`'s results, or UnansweredQueryError once nothing will answer. */
  async query(c: PoolConnection, text: string, values: unknown[]): Promise<unknown> {
    const limit = await this.limit();
    const started = Date.now();
    const answer = c.query(text, values);
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const arm = (ms: number) => (timer = setTimeout(() => void look().catch(reject), ms));
      const look = async () => {
        const waited = Date.now() - started;
        const doing = waited < limit ? await this.threadCommand(c.threadId) : 'past the server\'s lock wait timeout';
        if (settled) return;
        if (doing === 'Query' || doing === 'Execute') return void arm(this.checkMs);
        settled = true;
        this.end(c);
        reject(new UnansweredQueryError(waited, c.threadId, doing === null ? 'its thread is gone' : `its thread: ${doing}`));
      };
      arm(Math.min(this.checkMs, limit));
      answer.then(
        ([results]) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(results);
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /** The server's PROCESSLIST command of this thread (null: no such thread); 'Query' when the server cannot be asked in time. */
  private async threadCommand(thread: number): Promise<string | null> {
    const asked = this.pool.query('SELECT COMMAND AS c FROM information_schema.PROCESSLIST WHERE ID = ?', [thread]).then(
      ([rows]) => ((rows as { c: string }[])[0]?.c ?? null),
      () => 'Query',
    );
    return Promise.race([asked, new Promise<string>((r) => setTimeout(() => r('Query'), this.checkMs).unref())]);
  }

  /**
   * Drop the connection, then kill its server thread (ends its transaction and any lock wait).
   * Dropped first: a statement queued behind the unanswered one (the caller's ROLLBACK) then fails
   * at once instead of waiting behind it. Should the KILL fail (the server away), the server still
   * rolls the transaction back once it finds the connection closed.
   */
  private end(c: PoolConnection): void {
    const thread = Number(c.threadId);
    c.destroy();
    this.pool.query(`KILL CONNECTION ${thread}`).catch(() => undefined);
  }

  private limit(): Promise<number> {
    if (this.limitMs !== null) return Promise.resolve(this.limitMs);
    this.serverLimit ??= this.pool.query('SELECT @@innodb_lock_wait_timeout AS s').then(
      ([rows]) => Number((rows as { s: unknown }[])[0].s) * 1000 + MARGIN_MS,
      () => ((this.serverLimit = null), 50_000 + MARGIN_MS),
    );
    return this.serverLimit;
  }
}
