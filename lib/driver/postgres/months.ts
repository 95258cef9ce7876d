/**
 * The leader's upkeep of PostgreSQL's monthly history partitions (SQL in ./partitions.ts): the
 * current and next month made ahead, and retention by whole months. Both are safe without a leader
 * (partition DDL of a prefix takes turns under an advisory lock; a drop checks its references in
 * the transaction that drops); leadership only avoids doing them twice.
 */
import type { QueryResultRow } from 'pg';
import type { Tables } from '../portable/statement.ts';
import {
  defaultMonths, lockTimeout, monthCovered, monthCreate, monthDetach, monthDrop, monthOf, monthReferenced, monthTrailDelete,
  partitionsList, partitionsLock, partitionsStats, type HistoryPartition,
} from './partitions.ts';
import type { HistoryMonth } from '../store.ts';
import { utcMonth } from '../month.ts';

type Query = (text: string, values: unknown[]) => Promise<{ rows: QueryResultRow[] }>;

export interface MonthsRunner {
  query: Query;
  /** Run `fn` in a transaction on one connection (rolled back when it throws). */
  transaction<T>(fn: (query: Query) => Promise<T>): Promise<T>;
}

/** How long partition DDL may wait for its lock before it gives up until the next round. */
const DDL_LOCK_TIMEOUT_MS = 2000;
/** Jobs whose trail is deleted per statement before their month is dropped. */
const TRAIL_BATCH = 5000;

/** Thrown inside a drop's transaction to roll it back: a live job still reads the month. */
class StillReferenced extends Error {}

export class HistoryMonths {
  constructor(
    private readonly db: MonthsRunner,
    private readonly t: Tables,
    private readonly prefix: string,
  ) {}

  private get defaultName(): string {
    return `${this.prefix}history_default`;
  }

  /** On `q`: inside a transaction, on its own connection (the private pool may have only that one). */
  async list(q: Query = this.db.query): Promise<HistoryPartition[]> {
    const rows = (await run(q, partitionsList(this.t))).rows;
    return rows.map((r) => ({ name: String(r.name), isDefault: r.is_default === true, from: (r.from_at as Date | null) ?? null, to: (r.to_at as Date | null) ?? null }));
  }

  /**
   * Make the current and next UTC month (database clock) where no partition holds them yet, and the
   * months whose rows the default partition took meanwhile (those rows move there). Answers the
   * names made.
   */
  async ensureAhead(): Promise<string[]> {
    const now = (await this.db.query('SELECT now() AS now', [])).rows[0].now as Date;
    const stray = (await run(this.db.query, defaultMonths(this.defaultName))).rows.map((r) => monthOf(this.prefix, r.month as Date));
    // Listed once for the three months (create() checks again under the lock before it makes one).
    const existing = await this.list();
    const made: string[] = [];
    for (const month of [...stray, monthOf(this.prefix, now, 0), monthOf(this.prefix, now, 1)]) {
      if (!monthCovered(month, existing) && (await this.create(month))) made.push(month.name);
    }
    return made;
  }

  /** One month, unless a partition (a month, or legacy) already holds it; false when there was nothing to do. */
  async create(month: ReturnType<typeof monthOf>): Promise<boolean> {
    if (monthCovered(month, await this.list())) return false;
    return gaveUpOnLock(this.db.transaction(async (q) => {
      await run(q, partitionsLock(this.prefix));
      // Another instance may have made it while this one waited for the lock.
      if (monthCovered(month, await this.list(q))) return false;
      await run(q, lockTimeout(DDL_LOCK_TIMEOUT_MS));
      for (const s of monthCreate(this.t, this.defaultName, month)) await run(q, s);
      return true;
    }));
  }

  /**
   * Drop the partitions every row of which finished before the cutoff (`olderThanMs` before the
   * database's now), oldest first; one a live job still reads stays (tried again next round).
   * Answers the names dropped, and the end of the newest expired partition (dropped or kept).
   */
  async dropExpired(olderThanMs: number): Promise<{ dropped: string[]; expiredUntil: Date | null }> {
    const cutoff = (await this.db.query(`SELECT now() - $1 * interval '1 millisecond' AS cutoff`, [olderThanMs])).rows[0].cutoff as Date;
    const expired = (await this.list())
      .filter((p) => !p.isDefault && p.to !== null && p.to.getTime() <= cutoff.getTime())
      .sort((a, b) => a.to!.getTime() - b.to!.getTime());
    const dropped: string[] = [];
    for (const p of expired) if (await this.drop(p)) dropped.push(p.name);
    return { dropped, expiredUntil: expired.at(-1)?.to ?? null };
  }

  /** Its jobs' trail first (in batches, outside the drop's lock), then detach, check and drop in one transaction. */
  private async drop(p: HistoryPartition): Promise<boolean> {
    if (await this.referenced(this.db.query, p.name)) return false;
    for (let after: string | null = null; ;) {
      const page: QueryResultRow = (await run(this.db.query, monthTrailDelete(this.t, p.name, after, TRAIL_BATCH))).rows[0];
      if (Number(page.n) < TRAIL_BATCH) break;
      after = String(page.last);
    }
    try {
      return await gaveUpOnLock(this.db.transaction(async (q) => {
        await run(q, partitionsLock(this.prefix));
        await run(q, lockTimeout(DDL_LOCK_TIMEOUT_MS));
        // Detached first: its ACCESS EXCLUSIVE lock waits for an enqueue that locked a parent row
        // here (dependsOn a finished job), so the check below sees that enqueue's edge.
        await run(q, monthDetach(this.t, p.name));
        if (await this.referenced(q, p.name)) throw new StillReferenced();
        await run(q, monthDrop(p.name));
        return true;
      }));
    } catch (err) {
      if (err instanceof StillReferenced) return false;
      throw err;
    }
  }

  /**
   * The months walked along the finish-time index (`walked`, counted up to a cap) placed in their
   * partitions: each month's partition name and size, months made ahead with no row yet, and, for a
   * month whose count reached the cap, the estimate ANALYZE keeps (rows × each state's share).
   */
  async describe(walked: HistoryMonth[]): Promise<HistoryMonth[]> {
    const [parts, stats] = await Promise.all([this.list(), run(this.db.query, partitionsStats(this.t))]);
    const statsOf = new Map(stats.rows.map((r) => [String(r.name), r]));
    const byMonth = new Map(walked.map((m) => [m.month, m]));
    for (const p of parts) {
      if (p.isDefault || p.from === null) continue;
      const key = utcMonth(p.from).key;
      if (!byMonth.has(key)) byMonth.set(key, { month: key, storedIn: null, counts: {}, estimated: false, bytes: null, storedUntil: null });
    }
    return [...byMonth.values()].sort((a, b) => (a.month < b.month ? 1 : -1)).map((m) => {
      const part = partitionOf(m.month, parts);
      if (!part) return m;
      const own = part.from !== null && utcMonth(part.from).key === m.month; // legacy and default hold several months
      const stat = statsOf.get(part.name);
      const placed = { ...m, storedIn: part.name, bytes: own && stat ? Number(stat.bytes) : null, storedUntil: part.to };
      return own && m.estimated && stat ? { ...placed, counts: estimatedCounts(stat) ?? m.counts } : placed;
    });
  }

  private async referenced(q: Query, partition: string): Promise<boolean> {
    return (await run(q, monthReferenced(this.t, partition))).rows[0].referenced === true;
  }
}

/** The partition a month's rows are in: its own, the legacy one below its bound, else the default. */
function partitionOf(month: string, parts: HistoryPartition[]): HistoryPartition | undefined {
  const from = new Date(`${month}-01T00:00:00Z`).getTime();
  const holds = (p: HistoryPartition) => !p.isDefault && (p.from === null || p.from.getTime() <= from) && p.to !== null && from < p.to.getTime();
  return parts.find(holds) ?? parts.find((p) => p.isDefault);
}

/** Rows per state from ANALYZE's estimate of a partition (null when it was never analyzed). */
function estimatedCounts(stat: QueryResultRow): HistoryMonth['counts'] | null {
  const rows = Number(stat.rows);
  if (!(rows > 0) || !Array.isArray(stat.states) || !Array.isArray(stat.shares)) return null;
  return Object.fromEntries((stat.states as string[]).map((state, i) => [state, Math.round(rows * Number((stat.shares as number[])[i]))]));
}

/** DDL that waited longer than its lock_timeout (55P03) did nothing: false, to try again next round. */
async function gaveUpOnLock(done: Promise<boolean>): Promise<boolean> {
  try {
    return await done;
  } catch (err) {
    if ((err as { code?: string }).code === '55P03') return false;
    throw err;
  }
}

function run(q: Query, s: { text: string; values: unknown[] }) {
  return q(s.text, s.values);
}
