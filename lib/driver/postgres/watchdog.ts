/**
 * A statement of ours that PostgreSQL will never answer, ended (what ../mysql/watchdog.ts does on
 * MariaDB). pg has no deadline of its own: a backend stopped (SIGSTOP) before it read the
 * statement, or a connection left half-open by a failover or a partition, and the call waits for
 * ever. On the claim connection that stopped the worker for good, silently (reproduced: the claim
 * connection's backend stopped while idle, and no job ran again).
 *
 * After `checkMs` without an answer, a connection of its own asks pg_stat_activity what the
 * statement's backend does (it is named by pid and start instant, as it said when it connected):
 * - `active` (running the statement, or waiting for a lock): waited for, and asked again later
 *   (the pause doubling up to a minute);
 * - gone (no such backend: the server restarted, or a failover left this socket half-open):
 *   nothing will answer, and the connection is dropped;
 * - idle at two looks in a row (it never read the statement): the backend is terminated, so that a
 *   COMMIT it reads later cannot land after we gave up, and the connection is dropped.
 * A look that cannot be made (the server does not answer other connections either) changes
 * nothing: the statement is waited for, and stop() and close() bound that wait (../../jobs.ts).
 * A dropped connection fails its statements as a dropped connection does, so the callers' answers
 * to that apply: an outcome is written again, a claim made again (one whose answer was lost after
 * its COMMIT is reconciled by the worker).
 */
import type { Client } from 'pg';

/** Which backend a connection is: its pid and the instant it started (to the microsecond, as text). */
export interface Backend {
  pid: number;
  started: string;
}

/** Run by each connection of ours once connected: the backend it is, as the server names it. */
export const IDENTIFY = `SELECT pg_backend_pid() AS pid, extract(epoch FROM backend_start)::text AS started
  FROM pg_stat_activity WHERE pid = pg_backend_pid()`;

/** The backend's state; with $3, terminated when idle. No row: that backend is gone. */
const LOOK = `SELECT state, CASE WHEN $3::boolean AND state LIKE 'idle%' THEN pg_terminate_backend(pid) END AS ended
  FROM pg_stat_activity WHERE pid = $1 AND extract(epoch FROM backend_start)::text = $2`;

/** The first look, after this long without an answer. */
const CHECK_MS = 5_000;
/** The longest pause between looks at a statement the server runs. */
const MAX_CHECK_MS = 60_000;

/** Asks the server on a connection of its own; null when it cannot be asked within `timeoutMs`. */
export type Ask = (text: string, values: unknown[], timeoutMs: number) => Promise<{ state: string | null }[] | null>;

interface Watch {
  backend: Backend;
  /** Statements sent and not answered. */
  pending: number;
  /** Bumped by each answer: a look begun before it has nothing to say. */
  answers: number;
  idleLooks: number;
  pauseMs: number;
  timer: NodeJS.Timeout | null;
  /** A look under way: it schedules the next one itself. */
  looking: boolean;
}

export class StatementWatchdog {
  /** The first look after this many ms without an answer. Tests shorten it. */
  checkMs = CHECK_MS;
  private readonly watches = new Map<Client, Watch>();

  constructor(
    private readonly ask: Ask,
    /** Drop the connection: its statements fail as after a dropped connection. */
    private readonly drop: (client: Client) => void,
  ) {}

  /** A statement sent on `client`; answers the function to call once it answered (or failed). */
  watch(client: Client, backend: Backend): () => void {
    let w = this.watches.get(client);
    if (!w) {
      w = { backend, pending: 0, answers: 0, idleLooks: 0, pauseMs: this.checkMs, timer: null, looking: false };
      this.watches.set(client, w);
    }
    w.pending++;
    if (!w.timer && !w.looking) this.lookLater(client, w);
    let answered = false;
    return () => {
      if (answered) return;
      answered = true;
      this.answered(client, w);
    };
  }

  /** The connection answers: what is still pending there is looked at afresh. */
  private answered(client: Client, w: Watch): void {
    w.pending--;
    w.answers++;
    w.idleLooks = 0;
    w.pauseMs = this.checkMs;
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    if (w.pending > 0) this.lookLater(client, w);
    else if (this.watches.get(client) === w) this.watches.delete(client);
  }

  private lookLater(client: Client, w: Watch): void {
    w.timer = setTimeout(() => void this.look(client, w), w.pauseMs);
    w.timer.unref();
  }

  private async look(client: Client, w: Watch): Promise<void> {
    w.timer = null;
    const answers = w.answers;
    const terminate = w.idleLooks >= 1;
    w.looking = true;
    const rows = await this.ask(LOOK, [w.backend.pid, w.backend.started, terminate], this.checkMs).catch(() => null);
    w.looking = false;
    if (w.answers !== answers || this.watches.get(client) !== w) return;
    if (rows !== null && (rows.length === 0 || (terminate && isIdle(rows[0].state)))) {
      this.watches.delete(client);
      this.drop(client);
      return;
    }
    if (rows !== null) w.idleLooks = isIdle(rows[0].state) ? w.idleLooks + 1 : 0;
    // An idle backend is looked at again soon (the second look decides); a busy one less and less often.
    w.pauseMs = w.idleLooks ? this.checkMs : Math.min(w.pauseMs * 2, MAX_CHECK_MS);
    this.lookLater(client, w);
  }
}

function isIdle(state: string | null): boolean {
  return state !== null && state.startsWith('idle');
}
