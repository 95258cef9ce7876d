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
 * does. Running a statement (waiting for a lock, say), it waits on. Found idle or killed at two
 * looks in a row, nothing will come: it kills the thread (which ends its transaction) and drops
 * the connection, and the query fails as a dropped connection does. It asks only where it can be
 * sure of the thread: the connection's id as the server gave it, asked on the same server (not
 * through a proxy that renames connections, nor another node of a cluster). Past the server's lock
 * wait timeout plus a margin it drops the connection whatever the thread does.
 */
import type { Connection as CbConnection } from 'mysql2';
import type { Pool as PromisePool, PoolConnection } from 'mysql2/promise';
import { UNANSWERED_CODE } from '../errors.ts';
import { within } from '../../wait.ts';

/** How often a query that has not answered is looked at. */
const CHECK_MS = 5_000;
/** What a statement may take beyond the server's lock wait timeout before it is ended regardless. */
const MARGIN_MS = 30_000;
/** The server's default lock wait, when it cannot be asked. */
const DEFAULT_LOCK_WAIT_MS = 50_000;

export class UnansweredQueryError extends Error {
  /** Transient (../errors.ts): an outcome is retried; a log or progress batch is dropped, as after a dropped connection. */
  readonly code = UNANSWERED_CODE;
  constructor(
    waitedMs: number,
    /** The server's id of the connection ended. */
    readonly threadId: number,
    why: string,
  ) {
    super(`sqljobs: MySQL/MariaDB gave no answer to a statement of ours in ${(waitedMs / 1000).toFixed(1)} s (${why}); its connection (id ${threadId}) was ended, which rolls its transaction back`);
    this.name = 'UnansweredQueryError';
  }
}

/** Each connection of ours as the server knows it: its id there and which server (host:port). */
const identities = new WeakMap<object, { id: number; server: string }>();

/** Run on each new connection of ours, before any statement: ask the server who it is. */
export function recordIdentity(conn: CbConnection): void {
  conn.query('SELECT CONNECTION_ID() AS id, CONCAT(@@hostname, \':\', @@port) AS server', (err: unknown, rows: unknown) => {
    const row = (rows as { id: unknown; server: unknown }[] | undefined)?.[0];
    if (!err && row) identities.set(conn, { id: Number(row.id), server: String(row.server) });
  });
}

/** Not running a statement: nothing it does will answer us. */
function isIdle(command: string | null): command is string {
  return command !== null && command !== 'Query' && command !== 'Execute';
}

export class QueryWatchdog {
  private lockWaitMs: Promise<number> | null = null;
  /** Ended regardless after this many ms; null: the server's innodb_lock_wait_timeout + 30 s. Tests set it. */
  limitMs: number | null = null;
  /** Looked at after this many ms without an answer, and as often again. Tests set it. */
  checkMs = CHECK_MS;

  constructor(
    /** Connections other than the watched one, to ask the server and to kill with. */
    private readonly pool: PromisePool,
  ) {}

  /** `c.query(text, values)`'s results, or UnansweredQueryError once nothing will answer. */
  query(c: PoolConnection, text: string, values: unknown[]): Promise<unknown> {
    const started = Date.now();
    const answer = c.query(text, values);
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let idleLooks = 0;
      let gaveUp = false;
      /** From here the query is given up: the connection error the kill causes is not its answer. */
      const giveUp = () => !settled && (settled = gaveUp = true);
      const end = (why: string) => {
        c.destroy(); // a statement queued behind this one (the caller's ROLLBACK) then fails at once
        reject(new UnansweredQueryError(Date.now() - started, c.threadId, why));
      };
      const look = async () => {
        if (settled) return;
        if (Date.now() - started >= (await this.limit())) {
          if (!giveUp()) return;
          await this.ask(c, () => true); // killed even while it runs: a COMMIT it still holds must not land after we gave up
          return end("past the server's lock wait timeout");
        }
        const command = await this.ask(c, (cmd) => idleLooks >= 1 && isIdle(cmd) && giveUp());
        if (gaveUp) return end(`its thread: ${command}`);
        if (settled) return;
        idleLooks = isIdle(command) ? idleLooks + 1 : 0;
        timer = setTimeout(() => void look().catch(reject), this.checkMs);
      };
      timer = setTimeout(() => void look().catch(reject), this.checkMs);
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

  /**
   * The thread's PROCESSLIST command, killed there when `kill(command)` says so; null when the
   * server cannot be asked in time about this very thread (the connection has another id there,
   * behind a proxy, or the question reached another server of a cluster) or has no such thread.
   */
  private async ask(c: PoolConnection, kill: (command: string) => boolean): Promise<string | null> {
    const watched = identities.get(c.connection);
    if (!watched || watched.id !== c.threadId) return null;
    let asker: PoolConnection | null = null;
    const asked = (async () => {
      asker = await this.pool.getConnection();
      const [rows] = await asker.query('SELECT CONCAT(@@hostname, \':\', @@port) AS server, (SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = ?) AS c', [watched.id]);
      const { server, c: command } = (rows as { server: string; c: string | null }[])[0];
      if (server !== watched.server || command === null) return null;
      if (kill(command)) await asker.query(`KILL CONNECTION ${watched.id}`);
      return command;
    })();
    try {
      return await within(asked.catch(() => null), this.checkMs, null);
    } finally {
      void asked.finally(() => (asker as PoolConnection | null)?.release()).catch(() => undefined);
    }
  }

  private limit(): Promise<number> {
    if (this.limitMs !== null) return Promise.resolve(this.limitMs);
    this.lockWaitMs ??= this.pool.query('SELECT @@innodb_lock_wait_timeout AS s').then(
      ([rows]) => Number((rows as { s: unknown }[])[0].s) * 1000,
      () => DEFAULT_LOCK_WAIT_MS,
    );
    return this.lockWaitMs.then((ms) => ms + MARGIN_MS);
  }
}
