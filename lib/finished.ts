/**
 * Jobs finished by any process (jobs.subscribe): history read along its finish-time index, from
 * the database's now when the first listener subscribed. jobs.on('completed') hears only the jobs
 * this process ran; this hears every process's. Where the store pushes (PostgreSQL: NOTIFY from
 * history's trigger while some process subscribes, see migration 018), a push starts a read at
 * once; the poll every 500 ms stays as the safety net (a NOTIFY missed while the listener
 * reconnected, a transaction that committed late), and a reconnect reads at once to catch up.
 */
import type { FinishedJob, ListenHandle, Store } from './driver/store.ts';
import { Periodic } from './periodic.ts';

export type { FinishedJob };

/** What jobs.subscribe listens for: one terminal state, or `finished` for all of them. */
export type SubscribeEvent = FinishedJob['state'] | 'finished';
export const SUBSCRIBE_EVENTS: readonly SubscribeEvent[] = ['completed', 'failed', 'cancelled', 'skipped', 'finished'];

/** How often the feed reads history while someone listens. */
export const SUBSCRIBE_POLL_MS = 500;
/**
 * How far back each poll looks again: a job's finish time is its statement's clock, and its
 * transaction may commit after a later one's (ids already told are not told again).
 */
const COMMIT_LAG_MS = 5000;
/**
 * How far back a read on a push looks: one pushed per commit, it reads again what finished in the
 * last second, enough for a statement that committed behind another (a later one is still found by
 * the next poll). Shorter than the poll's, so a busy database pushing many times a second is not
 * answered with as many reads of five seconds of history.
 */
const PUSHED_LAG_MS = 1000;
/** Rows per read; a full page reads on at once. */
const PAGE = 1000;
/**
 * How long the feed keeps listening after its last listener left: waitFor subscribes for each wait,
 * and a request handler that waits for one job after another should not LISTEN anew each time.
 */
const LINGER_MS = 10_000;

type Listener = (job: FinishedJob) => void;

export class FinishedFeed {
  /** Poll period (ms); tests lengthen it so that only a push can deliver in time. @internal */
  pollMs = SUBSCRIBE_POLL_MS;
  private readonly listeners = new Map<SubscribeEvent, Set<Listener>>();
  /** The newest finish time told (database clock, ms); null while nobody listens. */
  private cursor: number | null = null;
  /** Ids told within the look-back window, with their finish time. */
  private readonly told = new Map<string, number>();
  private periodic: Periodic | null = null;
  /** The push listener (null until it is up, and where the store cannot push). */
  private push: Promise<ListenHandle | null> | null = null;
  /** The look-back asked for by the reads wanted while one runs (they run as one, after it). */
  private wanted: number | null = null;
  private reading = false;
  private lingering: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: Pick<Store, 'historyFinishedSince' | 'clockNow' | 'listenFinished' | 'capabilities'>,
    private readonly tell: (listener: Listener, job: FinishedJob) => void,
    private readonly report: (err: unknown) => void,
  ) {}

  /** Whether finished jobs are pushed here (a read as soon as they commit) rather than only polled. */
  get pushes(): boolean {
    return this.store.capabilities.notify && typeof this.store.listenFinished === 'function';
  }

  /** Listen; answers the function that stops listening. The first listener starts the reads, the last one gone stops them. */
  subscribe(event: SubscribeEvent, listener: Listener): () => void {
    const set = this.listeners.get(event) ?? new Set();
    this.listeners.set(event, set);
    const wrapped: Listener = (job) => listener(job); // one subscription per call, even of the same function
    set.add(wrapped);
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = null;
    if (!this.periodic) this.start();
    return () => {
      set.delete(wrapped);
      if (this.periodic && !this.lingering && ![...this.listeners.values()].some((s) => s.size)) {
        this.lingering = setTimeout(() => void this.stop().catch(this.report), LINGER_MS);
        this.lingering.unref();
      }
    };
  }

  /** Stop every subscription and the reads; resolves once the push listener is closed. */
  async stop(): Promise<void> {
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = null;
    this.listeners.clear();
    const periodic = this.periodic;
    const push = this.push;
    this.periodic = null;
    this.push = null;
    this.cursor = null;
    this.wanted = null;
    this.told.clear();
    periodic?.clear();
    const handle = await push?.catch(() => null);
    await handle?.close();
  }

  private start(): void {
    const periodic = new Periodic(this.report);
    this.periodic = periodic;
    this.readSoon(COMMIT_LAG_MS);
    periodic.every(this.pollMs, () => this.readSoon(COMMIT_LAG_MS));
    if (this.pushes) this.listenForPushes(periodic);
  }

  /**
   * Listen for pushes, and read once it listens (what finished before the lease was seen is told
   * now, not a poll later). A failure is reported, and polling goes on alone.
   */
  private listenForPushes(periodic: Periodic): void {
    const push = this.store.listenFinished!({
      onFinished: () => this.readSoon(PUSHED_LAG_MS),
      onReconnect: () => this.readSoon(COMMIT_LAG_MS),
      onError: (err) => this.report(err),
    });
    this.push = push;
    push.then(
      async (handle) => {
        if (this.periodic === periodic) this.readSoon(COMMIT_LAG_MS);
        else await handle?.close(); // stopped while it connected
      },
      (err) => {
        if (this.push === push) this.push = null;
        this.report(err);
      },
    );
  }

  /**
   * Read history looking `lagMs` back, now, or right after the read under way (reads never overlap:
   * two at once would tell a job twice). Reads wanted meanwhile run as one, with the longest look-back.
   */
  private readSoon(lagMs: number): void {
    const periodic = this.periodic;
    if (!periodic) return;
    this.wanted = Math.max(this.wanted ?? 0, lagMs);
    if (this.reading) return;
    this.reading = true;
    periodic.once(async () => {
      try {
        while (this.wanted !== null && this.periodic === periodic) {
          const lag = this.wanted;
          this.wanted = null;
          await this.read(periodic, lag);
        }
      } finally {
        this.reading = false;
      }
    });
  }

  /**
   * Read what finished since the cursor (less the look-back), page by page, and tell what was not
   * told yet. The first read only takes the database's now as the cursor (a failure: the next read
   * tries again).
   */
  private async read(periodic: Periodic, lagMs: number): Promise<void> {
    if (this.cursor === null) {
      const now = await this.store.clockNow();
      if (this.periodic === periodic) this.cursor ??= now;
      return;
    }
    for (let since = this.cursor - lagMs, limit = PAGE; this.periodic === periodic; ) {
      const jobs = await this.store.historyFinishedSince({ since, limit });
      if (this.periodic !== periodic) return;
      for (const job of jobs) if (!this.told.has(job.id)) this.announce(job);
      if (jobs.length < limit) break;
      // The next page from the last one's millisecond on (those told already are skipped); a page
      // all within one millisecond (one statement finished that many) is read again, larger.
      const next = jobs[jobs.length - 1].finishedAt.getTime() - 1;
      if (next > since) since = next;
      else limit *= 2;
    }
    // Forget what no read can find again (the longest look-back is the poll's).
    if (this.cursor !== null) for (const [id, at] of this.told) if (at < this.cursor - COMMIT_LAG_MS) this.told.delete(id);
  }

  private announce(job: FinishedJob): void {
    const at = job.finishedAt.getTime();
    this.told.set(job.id, at);
    this.cursor = Math.max(this.cursor ?? at, at);
    for (const event of [job.state, 'finished'] as const) {
      for (const listener of this.listeners.get(event) ?? []) this.tell(listener, job);
    }
  }
}
