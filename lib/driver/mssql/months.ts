/**
 * SQL Server history partitioned by month (T-SQL in ./partitions.ts): the script, the leader's
 * upkeep (the coming months split off the last partition) and retention by TRUNCATE … WITH
 * (PARTITIONS (n)), decided as on MySQL/MariaDB (../monthly.ts). Not exercised against a live
 * server here (see ./partitions.ts).
 */
import type { Tables } from '../portable/statement.ts';
import { deleteTrailInBatches, monthsExpired, planMonths } from '../monthly.ts';
import type { Stmt } from './tsql.ts';
import {
  monthDrop, monthIds, monthReferenced, monthsSplit, monthTrailDelete, oldestFinish, parseBound, partitionsList, partitionsLock, partitionTable,
  type MssqlPartition,
} from './partitions.ts';

type Row = Record<string, unknown>;
type Query = (s: Stmt) => Promise<Row[]>;

export interface MssqlMonthsConnection {
  query: Query;
  /** `fn` in a transaction on one connection (rolled back when it throws). */
  transaction<T>(fn: (q: Query) => Promise<T>): Promise<T>;
  /** The database clock, UTC. */
  now(): Promise<Date>;
}

/** The table lock was held elsewhere (NOWAIT): nothing was done. */
const LOCK_TIMEOUT = 1222;
/** Tries at the drop's table lock per round, apart by DROP_RETRY_MS (each try waits for nothing: completions never queue behind it). */
const DROP_TRIES = 5;
const DROP_RETRY_MS = 100;

export class MssqlHistoryMonths {
  constructor(
    private readonly db: MssqlMonthsConnection,
    private readonly t: Tables,
    private readonly prefix: string,
  ) {}

  async list(q: Query = this.db.query): Promise<MssqlPartition[]> {
    const rows = await q(partitionsList(this.t));
    // One row, partition 1 with no bounds: a table that is not partitioned.
    if (rows.length <= 1) return [];
    return rows.map((r) => ({
      name: `partition ${r.n}`, number: Number(r.n), from: parseBound(r.from_at), to: parseBound(r.to_at), rows: Number(r.rows), bytes: Number(r.bytes ?? 0),
    }));
  }

  /** The DDL that partitions history, or makes the coming months of a partitioned one; run too when `apply` (in one transaction, under the partitions lock). */
  async script({ apply }: { apply: boolean }): Promise<Stmt[]> {
    if (!apply) return this.plan(this.db.query);
    return this.db.transaction(async (q) => {
      if (Number((await q(partitionsLock(this.prefix)))[0].got) < 0) return [];
      const ddl = await this.plan(q);
      for (const s of ddl) await q(s);
      return ddl;
    });
  }

  private async plan(q: Query): Promise<Stmt[]> {
    const parts = await this.list(q);
    const oldest = parts.length ? null : (await q(oldestFinish(this.t)))[0]?.at;
    const plan = planMonths(parts, await this.db.now(), oldest instanceof Date ? oldest : null);
    if (plan === null) return [];
    return 'partition' in plan ? partitionTable(this.t, this.prefix, plan.partition) : monthsSplit(this.prefix, plan.split);
  }

  async ensureAhead(): Promise<Stmt[]> {
    if (!(await this.list()).length) return [];
    return this.script({ apply: true });
  }

  /**
   * Empty the months past the cutoff, oldest first, unless a live job reads them; each emptied
   * month's boundary is merged away, so the partitions are listed again before the next.
   */
  async dropExpired(olderThanMs: number): Promise<{ dropped: Date[]; expiredUntil: Date | null }> {
    const cutoff = new Date((await this.db.now()).getTime() - olderThanMs);
    const expired = monthsExpired(await this.list(), cutoff).filter((p) => p.from !== null);
    const dropped: Date[] = [];
    for (const { to } of expired) {
      const p = (await this.list()).find((x) => x.from !== null && x.to?.getTime() === to!.getTime());
      if (p && (await this.drop(p))) dropped.push(to!);
    }
    return { dropped, expiredUntil: expired.at(-1)?.to ?? null };
  }

  private async drop(p: MssqlPartition): Promise<boolean> {
    if (Number((await this.db.query(monthReferenced(this.t, p)))[0].referenced) === 1) return false;
    await deleteTrailInBatches(
      async (after, limit) => (await this.db.query(monthIds(this.t, p, after, limit))).map((r) => String(r.id)),
      async (ids) => void (await this.db.query(monthTrailDelete(this.t, ids))),
    );
    for (let attempt = 1; ; attempt++) {
      try {
        return Number((await this.db.query(monthDrop(this.t, this.prefix, p)))[0]?.dropped) === 1;
      } catch (err) {
        if ((err as { number?: number }).number !== LOCK_TIMEOUT) throw err;
        if (attempt === DROP_TRIES) return false; // next round
        await new Promise((r) => setTimeout(r, DROP_RETRY_MS));
      }
    }
  }
}
