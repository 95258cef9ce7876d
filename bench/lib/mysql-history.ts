/**
 * A large MySQL/MariaDB history and the plans of the reads on it (bench/mysql-history-plans.ts and
 * test/mysql/history-plans.test.ts): rows seeded set-based from MariaDB's sequence engine, and each
 * read run under ANALYZE, which reports the rows each table access really read (r_rows), not only
 * the planner's estimate.
 */
import type { Pool } from 'mysql2/promise';
import type { Statement } from '../../lib/driver/portable/statement.ts';
import type { Sql } from '../../lib/driver/portable/sql.ts';
import { historyMonthCounts, historyNewestBefore, jobGet, jobsFinishedCounts, jobsList } from '../../lib/driver/portable/reads.ts';
import { throughputRead } from '../../lib/driver/portable/throughput.ts';
import { batchCounts, jobDependents, jobParents } from '../../lib/driver/portable/flow.ts';
import { historyPrunePick } from '../../lib/driver/portable/admin.ts';
import { utcMonth } from '../../lib/driver/month.ts';

const DAY = 86_400_000;
/** Seeded finishes spread over this many days back from now: five UTC months or so. */
export const SPREAD_DAYS = 140;

/**
 * `rows` finished jobs spread evenly over the last SPREAD_DAYS (ids UUIDv7-shaped, in time
 * order): 20 names and a rare one, 5 queues, 10% tagged (1,000 tags), 5% in batches (5,000), 10%
 * with a refId; 90% completed, 8% failed. Then ANALYZE TABLE, as a server's statistics would be.
 */
export async function seedHistory(pool: Pool, prefix: string, rows: number): Promise<void> {
  const step = Math.floor((SPREAD_DAYS * DAY) / rows);
  const hex = (e: string, n: number) => `LPAD(LOWER(HEX(${e})), ${n}, '0')`;
  const id = `CONCAT(SUBSTR(${hex('ts', 12)}, 1, 8), '-', SUBSTR(${hex('ts', 12)}, 9, 4), '-7', ${hex('i % 4096', 3)}, '-8', ${hex('(i DIV 4096) % 4096', 3)}, '-', ${hex('i', 12)})`;
  const state = `CASE WHEN i % 200 < 180 THEN 'completed' WHEN i % 200 < 196 THEN 'failed' WHEN i % 200 < 199 THEN 'cancelled' ELSE 'skipped' END`;
  // UTC from epoch milliseconds, whatever the session's time zone.
  const at = (e: string) => `(TIMESTAMP'1970-01-01 00:00:00' + INTERVAL (${e}) * 1000 MICROSECOND)`;
  await pool.query(`INSERT INTO ${prefix}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, started_at, finished_at, tag, batch_id, ref_id, created_by, error, result)
    SELECT ${id}, CASE WHEN i % 10000 = 7 THEN 'rare-report' ELSE CONCAT('job-', i % 20) END, CONCAT('q', i % 5), ${state}, CONCAT('{"n":', i, '}'), 0, 1, 25,
      ${at('ts')}, ${at('ts')}, ${at('ts')}, ${at('ts + 40')},
      CASE WHEN i % 10 = 0 THEN CONCAT('tag-', i % 1000) END, CASE WHEN i % 20 = 1 THEN CONCAT('batch-', i % 5000) END,
      CASE WHEN i % 10 = 2 THEN CONCAT('ref-', i) END, CASE WHEN i % 1000 = 3 THEN 'admin' END,
      CASE WHEN ${state} = 'failed' THEN '{"message":"boom"}' END, CASE WHEN ${state} = 'completed' THEN '{"ok":true}' END
    FROM (SELECT seq AS i, c.now_ms - (${rows} - seq) * ${step} AS ts FROM seq_0_to_${rows - 1}
          CROSS JOIN (SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(3)) DIV 1000 AS now_ms) c) s`);
  await pool.query(`ANALYZE TABLE ${prefix}history`);
}

/** The list filters with no index on history, documented as such (README: replyTo and args; createdBy and the created window are API-only). */
export const UNINDEXED = /createdBy|replyTo|args|created in a window/;

export interface PlanCheck {
  what: string;
  statement: Statement;
  /**
   * Bounded by a time range: must read it from the finish-time index (however much of history that
   * range holds), or, partitioned, from the partitions of that range only.
   */
  byTime?: true;
}

/**
 * Every history read of the admin and the API, as the store builds it, with values from the seed:
 * list pages with each filter (and a deep keyset page), counts, throughput, get, the History view's
 * month walk, a job's parents and dependents, a batch's counts, and retention's pick.
 */
export function historyPlanChecks(sql: Sql, sampleId: string, historyInMonthPartitions = false, now = Date.now()): PlanCheck[] {
  const month = utcMonth(new Date(now), -1);
  const old = utcMonth(new Date(now), -3);
  const deepCursor = '00000000-0000-7000-8000-000000000000';
  const list = (what: string, filter: Parameters<typeof jobsList>[1]): PlanCheck => ({ what: `list ${what}`, statement: jobsList(sql, { limit: 50, ...filter }, { historyInMonthPartitions }) });
  const byTime = (check: PlanCheck): PlanCheck => ({ ...check, byTime: true });
  return [
    { what: 'get (finished job)', statement: jobGet(sql, { id: sampleId }) },
    list('newest (all states)', {}),
    list('state completed', { states: ['completed'] }),
    list('state failed', { states: ['failed'] }),
    list('state skipped (rare)', { states: ['skipped'] }),
    list('queue', { queue: 'q3', states: ['completed'] }),
    list('name (rare)', { name: 'rare-report' }),
    list('tag', { tag: 'tag-10' }),
    list('batchId', { batchId: 'batch-21' }),
    list('refId', { refId: 'ref-12' }),
    list('createdBy (API only, no index)', { createdBy: 'admin' }),
    list('replyTo (no index, documented)', { replyTo: 'nobody' }),
    list('args (no index, documented)', { args: { format: 'csv' } }),
    list('userId', { userId: 'nobody' }),
    list('keyset page (cursor mid-history)', { cursor: sampleId }),
    byTime(list('finished in a month (History view link)', { finishedAfter: month.from, finishedBefore: month.to })),
    byTime(list('finished in an old month', { finishedAfter: old.from, finishedBefore: old.to })),
    list('finished in an old month, tag', { tag: 'tag-10', finishedAfter: old.from, finishedBefore: old.to }),
    byTime(list('finished in an old month, failed', { states: ['failed'], finishedAfter: old.from, finishedBefore: old.to })),
    byTime(list('finished in an old month, name', { name: 'job-3', finishedAfter: old.from, finishedBefore: old.to })),
    byTime(list('finished in a month, deep page', { finishedAfter: month.from, finishedBefore: month.to, cursor: sampleId })),
    list('created in a window (API only, no index)', { createdAfter: new Date(now - 3 * DAY), createdBefore: new Date(now - 2 * DAY) }),
    { what: 'finished counts (cap 10000)', statement: jobsFinishedCounts(sql, { cap: 10_000 }) },
    // History's part of the throughput read (without the leader's counters, the whole window).
    { what: 'throughput (1 h, 1 min buckets)', statement: throughputRead(sql, { from: now - 3_600_000, to: null, bucketMs: 60_000, counted: null }), byTime: true },
    { what: 'throughput (24 h, 15 min buckets)', statement: throughputRead(sql, { from: now - DAY, to: null, bucketMs: 900_000, counted: null }), byTime: true },
    { what: 'historyMonths: newest finish', statement: historyNewestBefore(sql, { before: null }) },
    { what: 'historyMonths: newest before a month', statement: historyNewestBefore(sql, { before: month.from.getTime() }) },
    { what: 'historyMonths: month counts (cap 10000)', statement: historyMonthCounts(sql, { from: month.from.getTime(), to: month.to.getTime(), cap: 10_000 }), byTime: true },
    { what: 'job parents', statement: jobParents(sql, sampleId) },
    { what: 'job dependents', statement: jobDependents(sql, sampleId) },
    { what: 'batch counts', statement: batchCounts(sql, 'batch-21') },
    { what: 'retention pick (30 days, 5000)', statement: historyPrunePick(sql, { olderThanMs: 30 * DAY, limit: 5000 }), byTime: true },
  ];
}

export interface Plan {
  what: string;
  /** Per access of history: alias, access type, index, rows read. */
  plan: string;
  /**
   * An access of history of type ALL; for a read bounded by time, one not on the finish-time
   * index; for any other, one that read more than a tenth of history.
   */
  fullScan: boolean;
}

/**
 * ANALYZE FORMAT=JSON each statement (MariaDB runs it and reports, per table access, the rows it
 * really read: r_rows per loop times r_loops). Accesses of history are those of `historyTable` or
 * of the alias `h` the workflow reads give it.
 */
export async function explainAll(pool: Pool, checks: PlanCheck[], historyTable: string, historyRows: number): Promise<Plan[]> {
  const out: Plan[] = [];
  for (const c of checks) {
    const [rows] = await pool.query(`ANALYZE FORMAT=JSON ${c.statement.text}`, c.statement.values);
    const plan = parsePlan(String(Object.values((rows as Record<string, unknown>[])[0])[0]));
    const history = tableAccesses(plan).filter((a) => a.table_name === historyTable || a.table_name === 'h');
    const read = (a: Access) => Math.round(Number(a.r_rows ?? 0) * Number(a.r_loops ?? 1));
    const pruned = (a: Access) => Array.isArray(a.partitions) && a.partitions.length <= 2;
    const fullScan = history.some((a) => a.access_type === 'ALL' || (c.byTime ? !(String(a.key).endsWith('history_finished') || pruned(a)) : read(a) > historyRows / 10));
    const shown = history.map((a) => `${a.table_name}: ${a.access_type} ${a.key ?? '-'} est=${a.rows} read=${read(a)}`).join('; ');
    out.push({ what: c.what, plan: shown, fullScan });
  }
  return out;
}

/**
 * MariaDB's JSON plan, with the text of conditions blanked: it writes a condition's quotes
 * unescaped (a JSON path in args' filter), which would not parse.
 */
function parsePlan(text: string): unknown {
  return JSON.parse(text.replace(/^(\s*"\w*(?:condition|expression)\w*": )".*"(,?)$/gm, '$1""$2'));
}

interface Access {
  table_name: string;
  access_type: string;
  key?: string;
  rows?: number;
  r_rows?: number | null;
  r_loops?: number;
  /** The partitions it reads (absent: the table is not partitioned). */
  partitions?: string[];
}

/** Every table access in a plan, at any depth (nested loops, derived tables, subqueries, unions). */
function tableAccesses(node: unknown): Access[] {
  if (Array.isArray(node)) return node.flatMap(tableAccesses);
  if (node === null || typeof node !== 'object') return [];
  const o = node as Record<string, unknown>;
  const own = typeof o.table_name === 'string' && typeof o.access_type === 'string' ? [o as unknown as Access] : [];
  return [...own, ...Object.values(o).flatMap(tableAccesses)];
}
