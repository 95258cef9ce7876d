/**
 * The leader's upkeep of PostgreSQL's monthly partitions (SQL in ./partitions.ts): history and its
 * trail (logs, attempts) get the current and next month made ahead, and retention drops whole
 * months. Both are safe without a leader (partition DDL of a prefix takes turns under an advisory
 * lock; a drop checks that nothing reads the month in the transaction that drops it); leadership
 * only avoids doing them twice.
 */
import type { QueryResultRow } from 'pg';
import type { Tables } from '../portable/statement.ts';
import {
  boundsReadable, defaultMonths, historyTable, holds, idleLimit, lockTimeout, monthCovered, monthCreate, monthDetach, monthDrop, monthEdgesDelete, monthIn, monthReferenced,
  partitionsList, partitionsLock, partitionsStats, trailMonthInUse, trailTables, uuidTime, type HistoryPartition, type Month, type MonthlyTable,
} from './partitions.ts';
import type { HistoryMonth } from '../store.ts';
import { utcMonth } from '../month.ts';
import { nativeCodec } from '../rows.ts';

/** A timestamp read on the app's pool: a Date, or text where the app's type parsers keep it so (an ORM's: MikroORM's). */
const timeOf = (v: unknown): Date => nativeCodec.date(v)!;

type Query = (text: string, values: unknown[]) => Promise<{ rows: QueryResultRow[] }>;

export interface MonthsRunner {
  query: Query;
  /** Run `fn` in a transaction on one connection (rolled back when it throws). */
  transaction<T>(fn: (query: Query) => Promise<T>): Promise<T>;
}

/** History's partitions and ANALYZE's figures of each (by partition name). */
export interface PartitionsLayout {
  parts: HistoryPartition[];
  statsOf: Map<string, QueryResultRow>;
}

/** How long partition DDL may wait for its lock before it gives up until the next round. */
const DDL_LOCK_TIMEOUT_MS = 2000;
/** How long partition DDL's transaction may sit idle before the server ends it (see idleLimit). */
export const DDL_IDLE_MS = { ms: 5000 };
/** Dependency edges deleted per statement before their month is dropped. */
const EDGES_BATCH = 5000;

/** Thrown inside a drop's transaction to roll it back: something still reads the month. */
class StillRead extends Error {}

/** One partitioned table: its partitions listed, a month made, a partition dropped. */
class MonthlyPartitions {
  constructor(
    private readonly db: MonthsRunner,
    readonly table: MonthlyTable,
    private readonly prefix: string,
  ) {}

  /**
   * On `q`: inside a transaction, on its own connection (the private pool may have only that one);
   * else in one of its own. Bounds are read as the catalog prints them, which depends on the
   * session's DateStyle and TimeZone: both are set for the transaction first.
   */
  async list(q?: Query): Promise<HistoryPartition[]> {
    const read = async (on: Query) => {
      await run(on, boundsReadable());
      return (await run(on, partitionsList(this.table))).rows;
    };
    const rows = q ? await read(q) : await this.db.transaction(read);
    const at = (v: unknown): Date | null => (v == null ? null : v instanceof Date ? v : uuidTime(String(v)));
    return rows.map((r) => ({ name: String(r.name), isDefault: r.is_default === true, from: at(r.from_at), to: at(r.to_at) }));
  }

  /** The current and next month of `now`, and the months whose rows the default partition took meanwhile (they move there). */
  async ensureAhead(now: Date): Promise<string[]> {
    const stray = (await run(this.db.query, defaultMonths(this.table))).rows.map((r) => monthIn(this.table, timeOf(r.month)));
    // Listed once for the months (create() checks again under the lock before it makes one).
    const existing = await this.list();
    const made: string[] = [];
    for (const month of [...stray, monthIn(this.table, now, 0), monthIn(this.table, now, 1)]) {
      if (!monthCovered(month, existing) && (await this.create(month))) made.push(month.name);
    }
    return made;
  }

  /** One month, unless a partition (a month, or legacy) already holds it; false when there was nothing to do. */
  async create(month: Month): Promise<boolean> {
    if (monthCovered(month, await this.list())) return false;
    return gaveUpOnLock(this.db.transaction(async (q) => {
      await run(q, idleLimit(DDL_IDLE_MS.ms));
      await run(q, partitionsLock(this.prefix));
      // Another instance may have made it while this one waited for the lock.
      if (monthCovered(month, await this.list(q))) return false;
      await run(q, lockTimeout(DDL_LOCK_TIMEOUT_MS));
      for (const s of monthCreate(this.table, month)) await run(q, s);
      return true;
    }));
  }

  /** The partitions every row of which is before `cutoff` (not the default), oldest first. */
  async expired(cutoff: Date): Promise<HistoryPartition[]> {
    return (await this.list())
      .filter((p) => !p.isDefault && p.to !== null && p.to.getTime() <= cutoff.getTime())
      .sort((a, b) => a.to!.getTime() - b.to!.getTime());
  }

  /**
   * Detach, check and drop in one transaction; false when `stillRead` says a reader remains (checked
   * after the detach: its ACCESS EXCLUSIVE lock waits for a writer that locked a row of it first).
   */
  async drop(p: HistoryPartition, stillRead: (q: Query) => Promise<boolean>): Promise<boolean> {
    try {
      return await gaveUpOnLock(this.db.transaction(async (q) => {
        await run(q, idleLimit(DDL_IDLE_MS.ms));
        await run(q, partitionsLock(this.prefix));
        // Another instance may have dropped it while this one waited for the lock.
        if (!(await this.list(q)).some((part) => part.name === p.name)) return false;
        await run(q, lockTimeout(DDL_LOCK_TIMEOUT_MS));
        await run(q, monthDetach(this.table, p.name));
        if (await stillRead(q)) throw new StillRead();
        await run(q, monthDrop(p.name));
        return true;
      }));
    } catch (err) {
      if (err instanceof StillRead) return false;
      throw err;
    }
  }
}

export class HistoryMonths {
  private readonly history: MonthlyPartitions;
  private readonly trails: MonthlyPartitions[];

  constructor(
    private readonly db: MonthsRunner,
    private readonly t: Tables,
    prefix: string,
  ) {
    this.history = new MonthlyPartitions(db, historyTable(t), prefix);
    this.trails = trailTables(t).map((table) => new MonthlyPartitions(db, table, prefix));
  }

  /** History's partitions. */
  list(q?: Query): Promise<HistoryPartition[]> {
    return this.history.list(q);
  }

  /** One month of history. */
  create(month: Month): Promise<boolean> {
    return this.history.create(month);
  }

  /**
   * Make the current and next UTC month (database clock) of history, logs and attempts where no
   * partition holds them yet, and the months whose rows a default partition took meanwhile.
   * Answers the names made.
   */
  async ensureAhead(): Promise<string[]> {
    const now = timeOf((await this.db.query('SELECT now() AS now', [])).rows[0].now);
    const made: string[] = [];
    for (const table of [this.history, ...this.trails]) made.push(...(await table.ensureAhead(now)));
    return made;
  }

  /**
   * Drop the history partitions every row of which finished before the cutoff (`olderThanMs`
   * before the database's now), oldest first, unless a live job still reads one (tried again next
   * round); then the logs and attempts of the months whose jobs are all gone. Answers the history
   * partitions dropped, and the end of the newest expired one (dropped or kept).
   */
  async dropExpired(olderThanMs: number): Promise<{ dropped: string[]; expiredUntil: Date | null }> {
    const cutoff = timeOf((await this.db.query(`SELECT now() - $1 * interval '1 millisecond' AS cutoff`, [olderThanMs])).rows[0].cutoff);
    const expired = await this.history.expired(cutoff);
    const dropped: string[] = [];
    for (const p of expired) if (await this.dropHistory(p)) dropped.push(p.name);
    for (const trail of this.trails) {
      for (const p of await trail.expired(cutoff)) {
        // Checked first on the pool: a month a job still holds is left without taking the table's lock.
        await goneMeanwhile(async () => !(await this.trailInUse(this.db.query, p)) && trail.drop(p, (q) => this.trailInUse(q, p)));
      }
    }
    return { dropped, expiredUntil: expired.at(-1)?.to ?? null };
  }

  /** Its jobs' dependency edges first (in batches, found from the edges, outside the drop's lock), then detach, check and drop. */
  private async dropHistory(p: HistoryPartition): Promise<boolean> {
    return goneMeanwhile(async () => {
      if (await this.referenced(this.db.query, p.name)) return false;
      while (Number((await run(this.db.query, monthEdgesDelete(this.t, p.name, EDGES_BATCH))).rows[0].n) === EDGES_BATCH);
      return this.history.drop(p, (q) => this.referenced(q, p.name));
    });
  }

  /** History's partitions, and ANALYZE's figures of each by name: where describe() places the months. */
  async layout(): Promise<PartitionsLayout> {
    const [parts, stats] = await Promise.all([this.list(), run(this.db.query, partitionsStats(this.t))]);
    return { parts, statsOf: new Map(stats.rows.map((r) => [String(r.name), r])) };
  }

  /**
   * The months in a partition of their own that ANALYZE puts at `rows` or more, with each state's
   * share: counted, they would reach a cap of half that (ANALYZE lags a month's deletes by a tenth
   * or so of its rows), and describe() shows the estimate in place of a capped count.
   */
  estimatedMonths({ parts, statsOf }: PartitionsLayout, rows: number): Set<string> {
    const out = new Set<string>();
    for (const p of parts) {
      const stat = statsOf.get(p.name);
      if (p.isDefault || p.from === null || !stat || Number(stat.rows) < rows || !estimatedCounts(stat)) continue;
      out.add(utcMonth(p.from).key);
    }
    return out;
  }

  /**
   * The months walked along the finish-time index (`walked`, counted up to a cap, or not counted and
   * flagged estimated) placed in their partitions: each month's partition name and size, months made
   * ahead with no row yet, and, for a month whose count reached the cap, the estimate ANALYZE keeps
   * (rows × each state's share).
   */
  describe(walked: HistoryMonth[], { parts, statsOf }: PartitionsLayout): HistoryMonth[] {
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

  private async trailInUse(q: Query, p: HistoryPartition): Promise<boolean> {
    return (await run(q, trailMonthInUse(this.t, p.from, p.to!))).rows[0].in_use === true;
  }
}

/** The partition a month's rows are in: its own, the legacy one below its bound, else the default. */
function partitionOf(month: string, parts: HistoryPartition[]): HistoryPartition | undefined {
  const from = new Date(`${month}-01T00:00:00Z`).getTime();
  return parts.find((p) => holds(p, from)) ?? parts.find((p) => p.isDefault);
}

/** Rows per state from ANALYZE's estimate of a partition (null when it was never analyzed). */
function estimatedCounts(stat: QueryResultRow): HistoryMonth['counts'] | null {
  const rows = Number(stat.rows);
  if (!(rows > 0) || !Array.isArray(stat.states) || !Array.isArray(stat.shares)) return null;
  return Object.fromEntries((stat.states as string[]).map((state, i) => [state, Math.round(rows * Number((stat.shares as number[])[i]))]));
}

/** A partition another instance dropped while this one looked at it (42P01 undefined_table): nothing left to drop. */
async function goneMeanwhile(drop: () => Promise<boolean>): Promise<boolean> {
  try {
    return await drop();
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return false;
    throw err;
  }
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
