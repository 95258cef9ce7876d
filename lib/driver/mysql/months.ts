/**
 * MySQL/MariaDB history partitioned by month (SQL in ./partitions.ts): the script that partitions
 * it (`sqljobs history-partitions`), the leader's upkeep (next month split off pfuture) and
 * retention by whole months. Nothing here runs on an unpartitioned history except one read of
 * information_schema to find that out.
 *
 * Partition DDL of a prefix takes turns under GET_LOCK; a drop checks its references under LOCK
 * TABLES, which waits for the transactions that read history (an enqueue that locked a finished
 * parent there), so no edge to a dropped row can slip in between the check and the drop.
 */
import type { Tables } from '../portable/statement.ts';
import { deleteTrailInBatches, monthsExpired, planMonths } from '../monthly.ts';
import { withSessionLimits } from './session-limits.ts';
import {
  dropLock, FUTURE, monthDrop, monthIds, monthReferenced, monthsSplit, monthTrailDelete, oldestFinish,
  parseBound, partitionsList, partitionTable, type MysqlPartition,
} from './partitions.ts';

type Row = Record<string, unknown>;
type Query = (text: string, values: unknown[]) => Promise<Row[]>;
type Sql = { text: string; values: unknown[] };

export interface MonthsConnection {
  /** On any connection of the store's. */
  query: Query;
  /** On one connection for `fn` (its session settings are reset after). */
  onConnection<T>(fn: (query: Query) => Promise<T>): Promise<T>;
  /** The database clock, UTC. */
  now(): Promise<Date>;
  /** Take a GET_LOCK of the prefix's on that connection (false: another holds it), and release it. */
  lock(query: Query, name: string): Promise<boolean>;
  unlock(query: Query, name: string): Promise<void>;
}

/** How long the leader's partition DDL may wait for its metadata lock before it gives up until the next round (s). */
const DDL_LOCK_WAIT_S = 2;
/**
 * How long the connection running partition DDL may sit idle before the server closes it, s: it
 * holds LOCK TABLES on history (a drop) or a metadata lock, and a leader stopped in it held every
 * completion, claim and history read for as long (wait_timeout is 8 hours by default).
 */
export const DDL_IDLE_S = { s: 5 };
/** How long the script run by an operator waits for it (s): a waiting ALTER holds up every later statement on history meanwhile. */
const SCRIPT_LOCK_WAIT_S = 30;
/** The server refused a lock wait longer than lock_wait_timeout: nothing was done. */
const ER_LOCK_WAIT_TIMEOUT = 1205;

export class MysqlHistoryMonths {
  constructor(
    private readonly db: MonthsConnection,
    private readonly t: Tables,
  ) {}

  /** History's partitions in bound order; none when it is not partitioned. */
  async list(query: Query = this.db.query): Promise<MysqlPartition[]> {
    return (await run(query, partitionsList(this.t))).map((r) => ({
      name: String(r.name), to: parseBound(String(r.bound)), rows: Number(r.n ?? 0), bytes: Number(r.bytes ?? 0),
    }));
  }

  /**
   * The DDL that partitions history or, once it is, makes the current and next month ahead
   * (nothing when they exist); run too when `apply`, under the partitions lock. Run by an operator:
   * an instance holding the lock, or a metadata lock not granted within SCRIPT_LOCK_WAIT_S, is an
   * error that says so (nothing was changed).
   */
  async script({ apply }: { apply: boolean }): Promise<Sql[]> {
    if (!apply) return this.plan(this.db.query);
    const ran = await this.underLock((q) => this.applyPlan(q), null, SCRIPT_LOCK_WAIT_S);
    if (ran === null) {
      throw new Error(`history-partitions: nothing was changed: another instance is changing ${this.t.history}'s partitions, or a transaction held ${this.t.history} for more than ${SCRIPT_LOCK_WAIT_S} s; run it again`);
    }
    return ran;
  }

  private async applyPlan(q: Query): Promise<Sql[]> {
    const ddl = await this.plan(q);
    for (const s of ddl) await run(q, s);
    return ddl;
  }

  private async plan(query: Query): Promise<Sql[]> {
    const parts = await this.list(query);
    const oldest = parts.length ? null : (await run(query, oldestFinish(this.t)))[0]?.at;
    const plan = planMonths(parts, await this.db.now(), oldest == null ? null : toDate(oldest));
    if (plan === null) return [];
    if ('partition' in plan) return [partitionTable(this.t, plan.partition)];
    // A history partitioned by hand, without the catch-all: left as it is.
    return parts.some((p) => p.name === FUTURE && p.to === null) ? [monthsSplit(this.t, plan.split)] : [];
  }

  /** The leader's round: on a partitioned history, the current and next month split off pfuture. Answers the DDL run. */
  async ensureAhead(): Promise<Sql[]> {
    if (!(await this.list()).length) return [];
    return this.underLock((q) => this.applyPlan(q), [], DDL_LOCK_WAIT_S);
  }

  /**
   * Drop the month partitions every row of which finished before the cutoff (`olderThanMs` before
   * the database's now), oldest first; one a live job still reads stays (tried again next round).
   * Answers the names dropped and the bound of the newest expired partition (dropped or kept): the
   * rows before it are not pruned one by one.
   */
  async dropExpired(olderThanMs: number): Promise<{ dropped: string[]; expiredUntil: Date | null }> {
    const parts = await this.list();
    if (!parts.length) return { dropped: [], expiredUntil: null };
    const expired = monthsExpired(parts, new Date((await this.db.now()).getTime() - olderThanMs));
    const dropped: string[] = [];
    for (const p of expired) if (await this.drop(p.name)) dropped.push(p.name);
    return { dropped, expiredUntil: expired.at(-1)?.to ?? null };
  }

  /** Its jobs' trail first (in batches, no lock held), then check and drop under LOCK TABLES. */
  private async drop(partition: string): Promise<boolean> {
    if (await this.referenced(this.db.query, partition)) return false;
    await deleteTrailInBatches(
      async (after, limit) => (await run(this.db.query, monthIds(this.t, partition, after, limit))).map((r) => String(r.id)),
      async (ids) => {
        for (const s of monthTrailDelete(this.t, ids)) await run(this.db.query, s);
      },
    );
    return this.underLock(async (q) => {
      await run(q, dropLock(this.t));
      try {
        if (await this.referenced(q, partition)) return false;
        await run(q, monthDrop(this.t, partition));
        return true;
      } finally {
        await q('UNLOCK TABLES', []);
      }
    }, false, DDL_LOCK_WAIT_S);
  }

  private async referenced(q: Query, partition: string): Promise<boolean> {
    return Number((await run(q, monthReferenced(this.t, partition)))[0].referenced) === 1;
  }

  /**
   * `fn` on one connection holding the prefix's partitions lock, its DDL waiting at most `waitS`
   * for a metadata lock; `otherwise` when another instance holds the lock, or the wait ran out
   * (nothing was done: the next round tries again).
   */
  private underLock<T, O>(fn: (q: Query) => Promise<T>, otherwise: O, waitS: number): Promise<T | O> {
    const name = 'history_partitions';
    return this.db.onConnection(async (q) => {
      if (!(await this.db.lock(q, name))) return otherwise;
      try {
        return await withSessionLimits((sql) => q(sql, []), { wait_timeout: DDL_IDLE_S.s, lock_wait_timeout: waitS }, () => fn(q));
      } catch (err) {
        if ((err as { errno?: number }).errno === ER_LOCK_WAIT_TIMEOUT) return otherwise;
        throw err;
      } finally {
        await this.db.unlock(q, name);
      }
    });
  }
}

function toDate(v: unknown): Date {
  return v instanceof Date ? v : new Date(`${String(v).replace(' ', 'T')}Z`);
}

function run(q: Query, s: Sql): Promise<Row[]> {
  return q(s.text, s.values);
}
