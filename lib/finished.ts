/**
 * Jobs finished by any process (jobs.subscribe): history read along its finish-time index, from
 * the database's now when the first listener subscribed. jobs.on('completed') hears only the jobs
 * this process ran; this hears every process's, a poll interval later.
 */
import type { FinishedJob, Store } from './driver/store.ts';
import { Periodic } from './periodic.ts';

export type { FinishedJob };

/** What jobs.subscribe listens for: one terminal state, or `finished` for all of them. */
export type SubscribeEvent = FinishedJob['state'] | 'finished';
export const SUBSCRIBE_EVENTS: readonly SubscribeEvent[] = ['completed', 'failed', 'cancelled', 'skipped', 'finished'];

/** How often the feed reads history while someone listens. */
export const SUBSCRIBE_POLL_MS = 500;
/**
 * How far back each read looks again: a job's finish time is its statement's clock, and its
 * transaction may commit after a later one's (ids already told are not told again).
 */
const COMMIT_LAG_MS = 5000;
/** Rows per read; a full page reads on at once. */
const PAGE = 1000;

type Listener = (job: FinishedJob) => void;

export class FinishedFeed {
  private readonly listeners = new Map<SubscribeEvent, Set<Listener>>();
  /** The newest finish time told (database clock, ms); null while nobody listens. */
  private cursor: number | null = null;
  /** Ids told within the look-back window, with their finish time. */
  private readonly told = new Map<string, number>();
  private periodic: Periodic | null = null;

  constructor(
    private readonly store: Pick<Store, 'historyFinishedSince' | 'clockNow'>,
    private readonly tell: (listener: Listener, job: FinishedJob) => void,
    private readonly report: (err: unknown) => void,
  ) {}

  /** Listen; answers the function that stops listening. The first listener starts the reads, the last one gone stops them. */
  subscribe(event: SubscribeEvent, listener: Listener): () => void {
    const set = this.listeners.get(event) ?? new Set();
    this.listeners.set(event, set);
    const wrapped: Listener = (job) => listener(job); // one subscription per call, even of the same function
    set.add(wrapped);
    if (!this.periodic) this.start();
    return () => {
      set.delete(wrapped);
      if (![...this.listeners.values()].some((s) => s.size)) this.stop();
    };
  }

  stop(): void {
    this.periodic?.clear();
    this.periodic = null;
    this.cursor = null;
    this.told.clear();
  }

  private start(): void {
    const periodic = new Periodic(this.report);
    this.periodic = periodic;
    periodic.once(async () => {
      this.cursor = await this.store.clockNow();
      // Stopped (or restarted) meanwhile: this start's reads never begin.
      if (this.periodic === periodic) periodic.every(SUBSCRIBE_POLL_MS, () => this.read(periodic));
    });
  }

  /** Read what finished since the cursor (less the look-back), page by page, and tell what was not told yet. */
  private async read(periodic: Periodic): Promise<void> {
    for (let since = this.cursor! - COMMIT_LAG_MS; this.periodic === periodic; ) {
      const jobs = await this.store.historyFinishedSince({ since, limit: PAGE });
      for (const job of jobs) if (!this.told.has(job.id)) this.announce(job);
      if (jobs.length < PAGE) break;
      // The next page from the last one's millisecond on (those told already are skipped).
      const next = jobs[jobs.length - 1].finishedAt.getTime() - 1;
      if (next <= since) break;
      since = next;
    }
    for (const [id, at] of this.told) if (at < this.cursor! - COMMIT_LAG_MS) this.told.delete(id);
  }

  private announce(job: FinishedJob): void {
    const at = job.finishedAt.getTime();
    this.told.set(job.id, at);
    this.cursor = Math.max(this.cursor!, at);
    for (const event of [job.state, 'finished'] as const) {
      for (const listener of this.listeners.get(event) ?? []) this.tell(listener, job);
    }
  }
}
