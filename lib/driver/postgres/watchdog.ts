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
 * - idle through looks spanning IDLE_LOOKS pauses (30 s), in one idle spell (`state_change`
 *   unchanged), while no byte moved either way on our socket and nothing of ours waited to be
 *   sent: it never read the statement, so the backend is terminated (a COMMIT it reads later must
 *   not land after we gave up) and the connection dropped. Why that long: a backend reading a
 *   statement sent as plain text shows idle until it has the whole of it, and a large one on a
 *   slow link can sit in the kernel's buffers, where our socket's counters do not see it (with
 *   parameters the backend is active once it has read the short Parse). So a backend stopped
 *   while idle is given up after about 40 s (eight looks) instead of never.
 * A look that cannot be made (the server does not answer other connections either) changes
 * nothing: the statement is waited for, and stop() and close() bound that wait (../../jobs.ts).
 * A dropped connection fails its statements as a dropped connection does, so the callers' answers
 * to that apply: an outcome is written again, a claim made again (one whose answer was lost after
 * its COMMIT is reconciled by the worker).
 */
import type { Socket } from 'node:net';
import type { Client } from 'pg';

/** Which backend a connection is: its pid and the instant it started (to the microsecond, as text). */
export interface Backend {
  pid: number;
  started: string;
}

/** Run by each connection of ours once connected: the backend it is, as the server names it. */
export const IDENTIFY = `SELECT pg_backend_pid() AS pid, extract(epoch FROM backend_start)::text AS started
  FROM pg_stat_activity WHERE pid = pg_backend_pid()`;

/**
 * The backend's state and since when; terminated when it is still in the idle spell that began at
 * $3. No row: that backend is gone.
 */
const LOOK = `SELECT state, extract(epoch FROM state_change)::text AS since,
    CASE WHEN $3::text IS NOT NULL AND state LIKE 'idle%' AND extract(epoch FROM state_change)::text = $3
      THEN pg_terminate_backend(pid) END AS ended
  FROM pg_stat_activity WHERE pid = $1 AND extract(epoch FROM backend_start)::text = $2`;

/** The first look, after this long without an answer. */
const CHECK_MS = 5_000;
/** The longest pause between looks at a statement the server runs. */
const MAX_CHECK_MS = 60_000;
/** How many pauses of `checkMs` an idle spell must last, seen quiet at each look, before it is ended. */
const IDLE_LOOKS = 6;

/** Asks the server on a connection of its own; null when it cannot be asked within `timeoutMs`. */
export type Ask = (text: string, values: unknown[], timeoutMs: number) => Promise<LookRow[] | null>;

export interface LookRow {
  state: string | null;
  since: string | null;
  ended: boolean | null;
}

interface Watch {
  backend: Backend;
  /** Statements sent and not answered. */
  pending: number;
  /** Bumped by each answer: a look begun before it has nothing to say. */
  answers: number;
  /** The idle spell (its state_change) seen at the last look while our socket was quiet; null: none. */
  idleSince: string | null;
  /** When that spell was first seen (our clock). */
  idleSeenAt: number;
  /** Our socket's byte counts at the last look. */
  io: string;
  pauseMs: number;
  /** Since when nothing was heard: the statement's sending, the last answer or the last look (our monotonic clock). */
  since: number;
  /** A look under way. */
  looking: boolean;
}

export class StatementWatchdog {
  /** The first look after this many ms without an answer. Tests shorten it. */
  checkMs = CHECK_MS;
  /** Looks made so far (tests show that a wait was looked at). */
  looks = 0;
  private readonly watches = new Map<Client, Watch>();
  /**
   * One timer for every watch, running while some statement waits: a timer per statement cost
   * PostgreSQL's no-op processing ~2 % (8 alternated pairs, bench/measure.ts).
   */
  private sweeping: NodeJS.Timeout | null = null;

  constructor(
    private readonly ask: Ask,
    /** Drop the connection: its statements fail as after a dropped connection. */
    private readonly drop: (client: Client) => void,
  ) {}

  /** A statement sent on `client`; answers the function to call once it answered (or failed). */
  watch(client: Client, backend: Backend): () => void {
    let w = this.watches.get(client);
    if (!w) {
      w = { backend, pending: 0, answers: 0, idleSince: null, idleSeenAt: 0, io: '', pauseMs: this.checkMs, since: 0, looking: false };
      this.watches.set(client, w);
    }
    if (w.pending++ === 0) w.since = performance.now();
    this.sweeping ??= setInterval(() => this.sweep(), Math.min(1_000, this.checkMs / 2)).unref();
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
    w.idleSince = null;
    w.pauseMs = this.checkMs;
    w.since = performance.now();
    if (w.pending === 0 && this.watches.get(client) === w) this.watches.delete(client);
  }

  /** Each statement waiting past its pause is looked at; with none waiting, the timer stops. */
  private sweep(): void {
    if (!this.watches.size && this.sweeping) {
      clearInterval(this.sweeping);
      this.sweeping = null;
      return;
    }
    const now = performance.now();
    for (const [client, w] of this.watches) {
      if (w.pending > 0 && !w.looking && now - w.since >= w.pauseMs) void this.look(client, w);
    }
  }

  private async look(client: Client, w: Watch): Promise<void> {
    const answers = w.answers;
    // Bytes moving either way: whatever the server says, this is not a stall.
    const io = ioOf(client);
    const quiet = io !== null && io === w.io;
    w.io = io ?? '';
    if (!quiet) w.idleSince = null;
    const endSpell = w.idleSince !== null && performance.now() - w.idleSeenAt >= IDLE_LOOKS * this.checkMs ? w.idleSince : null;
    this.looks++;
    w.looking = true;
    const rows = await this.ask(LOOK, [w.backend.pid, w.backend.started, endSpell], this.checkMs).catch(() => null);
    w.looking = false;
    if (w.answers !== answers || this.watches.get(client) !== w) return;
    if (rows !== null && (rows.length === 0 || rows[0].ended !== null)) {
      this.watches.delete(client);
      this.drop(client);
      return;
    }
    if (rows !== null) {
      const since = quiet && isIdle(rows[0].state) ? rows[0].since : null;
      if (since === null || since !== w.idleSince) w.idleSeenAt = performance.now();
      w.idleSince = since;
    }
    // An idle backend is looked at again soon (the next look decides); a busy one less and less often.
    w.pauseMs = w.idleSince !== null || !quiet ? this.checkMs : Math.min(w.pauseMs * 2, MAX_CHECK_MS);
    w.since = performance.now();
  }
}

function isIdle(state: string | null): boolean {
  return state !== null && state.startsWith('idle');
}

/**
 * Our socket's bytes read and bytes handed on for sending (what still waits in our buffer left
 * out: a statement that does not drain towards a stopped backend is no progress); null without a
 * socket (pg-native).
 */
function ioOf(client: Client): string | null {
  const socket = socketOf(client);
  if (!socket) return null;
  return `${socket.bytesRead}/${socket.bytesWritten - socket.writableLength}`;
}

/** A pg client's socket (none for pg-native's). */
export function socketOf(client: Client): Socket | undefined {
  return (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
}
