/**
 * Completed and failed jobs per time bucket (the admin's throughput chart), read from per-minute
 * counters where they cover the window and from history's finish-time index where they do not.
 *
 * Counting history rows costs as many index entries as jobs finished in the window: 100,000 an hour
 * made the overview slow however small history was otherwise. So the leader keeps `throughput`, a
 * row per minute (zero ones too, so that the rows say which minutes are counted) with how far into
 * its minute it is counted: every few seconds it adds what finished in the current minute since its
 * last round, and once a minute closes it counts that minute whole. A read sums at most a row per
 * minute and counts in history only what finished after the last round (a few seconds' worth), or
 * any minute before the leader's first round.
 *
 * The counters are a cache of history's counts, each minute counted again for a few minutes after
 * it closed (a transaction that set finished_at when it began commits later). A finished job
 * deleted or retried after its minute was last counted stays on the chart: it did finish then.
 */
import type { Sql } from './sql.ts';
import { read, write, type Binder, type Statement } from './statement.ts';

export const MINUTE_MS = 60_000;
/**
 * How long after a minute closed the leader still recounts it: a finish can commit after its time
 * (PostgreSQL's now() is when the transaction began: a `transactional: true` handler's work runs
 * between).
 */
export const RECOUNT_MS = 5 * MINUTE_MS;
/** A first round, or the first after a leader-less hour, counts this long back (the chart's window). */
export const ROLLUP_AFRESH_MS = 60 * MINUTE_MS;
/** A round counts what finished until this long before now (a completion commits just after its finish time). */
export const SETTLE_MS = 2_000;

/** One bucket's figures, its start in epoch ms. */
export interface ThroughputBucket {
  start: number;
  completed: number;
  failed: number;
}

/** A half-open span of epoch ms. */
export interface Span {
  from: number;
  to: number;
}

/**
 * One throughput read: buckets of bucketMs (aligned on the epoch) over finishes in [from, to) (to
 * null: no end), those in `counted` summed from the counters, the others counted in history.
 */
export interface ThroughputRead {
  from: number;
  to: number | null;
  bucketMs: number;
  /** What the counters hold within the window, from the start of a minute (null: none usable, or buckets that split minutes). */
  counted: Span | null;
}

/** One minute's counters: its start, and how far into it they are counted (its end once it closed). */
export interface MinuteCount extends ThroughputBucket {
  countedTo: number;
}

/** Rows of buckets (a read, or several: a SQLite month file each) summed per bucket start. */
export function sumBuckets(rowSets: Record<string, unknown>[][]): Map<number, ThroughputBucket> {
  const out = new Map<number, ThroughputBucket>();
  for (const r of rowSets.flat()) {
    const start = Number(r.start);
    const bucket = out.get(start) ?? { start, completed: 0, failed: 0 };
    bucket.completed += Number(r.completed);
    bucket.failed += Number(r.failed);
    out.set(start, bucket);
  }
  return out;
}

const bucketOf = (sql: Sql, b: Binder, ms: string, bucketMs: number) =>
  `${sql.d.intDiv(ms, b.bigint(bucketMs))} * ${b.bigint(bucketMs)}`;

/**
 * The database's now, and the counted minutes within the last windowMs: the first, the last and how
 * many (they are contiguous when last - first is count - 1 minutes), and how far the last is counted.
 */
export function throughputCoverage({ d, t }: Sql, k: { windowMs: number }): Statement {
  return read(d, (b) =>
    `SELECT ${d.epochMs('MAX(clock.now)')} AS now, MIN(c.start_ms) AS first, MAX(c.start_ms) AS last, COUNT(c.start_ms) AS n,
       MAX(c.counted_to_ms) AS counted_to
     FROM (SELECT ${d.now} AS now) clock LEFT JOIN ${t.throughput} c ON c.start_ms >= ${d.epochMs('clock.now')} - ${b.bigint(k.windowMs)}`);
}

/**
 * History's finishes in [from, to) (to null: no end), completed and failed, each with its bucket:
 * a range of the (finished_at, state) index.
 */
function historyPart(sql: Sql, b: Binder, span: { from: number; to: number | null }, bucketMs: number): string {
  const { d, t } = sql;
  // Bound in the order the text names them (MySQL and SQLite placeholders are positional).
  const start = bucketOf(sql, b, d.epochMs('finished_at'), bucketMs);
  const after = `finished_at >= ${b.time(span.from)}`;
  const before = span.to === null ? '' : ` AND finished_at < ${b.time(span.to)}`;
  return `SELECT ${start} AS start,
         CASE WHEN state = 'completed' THEN 1 ELSE 0 END AS completed, CASE WHEN state = 'failed' THEN 1 ELSE 0 END AS failed
       FROM ${t.history}${d.useIndex(t.historyFinished)}
       WHERE ${after}${before} AND state IN ('completed', 'failed')`;
}

/**
 * Completed and failed per bucket (buckets without either are absent): the counters' minutes within
 * `counted`, history's finishes before and after them. `counters: false` reads history only (a
 * SQLite month file, whose finishes in `counted` the counters of the main file already hold).
 * The sums are taken in a derived table, so GROUP BY names a column (SQL Server groups by no alias).
 */
export function throughputRead(sql: Sql, k: ThroughputRead, opts: { counters?: boolean } = {}): Statement {
  const { d, t } = sql;
  return read(d, (b) => {
    const c = k.counted;
    const parts = c === null
      ? [historyPart(sql, b, { from: k.from, to: k.to }, k.bucketMs)]
      : [
          ...(k.from < c.from ? [historyPart(sql, b, { from: k.from, to: c.from }, k.bucketMs)] : []),
          historyPart(sql, b, { from: c.to, to: k.to }, k.bucketMs),
          ...(opts.counters === false ? [] : [
            `SELECT ${bucketOf(sql, b, 'start_ms', k.bucketMs)} AS start, completed, failed FROM ${t.throughput}
             WHERE start_ms >= ${b.bigint(c.from)} AND start_ms < ${b.bigint(c.to)} AND (completed > 0 OR failed > 0)`,
          ]),
        ];
    return `SELECT f.start, SUM(f.completed) AS completed, SUM(f.failed) AS failed FROM (
       ${parts.join('\n       UNION ALL\n       ')}) f
     GROUP BY f.start ORDER BY f.start`;
  });
}

/** The database's now and the last minute counted (its columns null: none yet). */
export function throughputLast({ d, t }: Sql): Statement {
  return read(d, (b) => {
    const top = b.top(1);
    return `SELECT ${d.epochMs('clock.now')} AS now, c.start_ms, c.completed, c.failed, c.counted_to_ms
     FROM (SELECT ${d.now} AS now) clock LEFT JOIN (
       SELECT ${top}start_ms, completed, failed, counted_to_ms FROM ${t.throughput} ORDER BY start_ms DESC${b.limit(1)}) c ON 1 = 1`;
  });
}

/** The counters of the minutes in `span`. */
export function throughputCounters({ d, t }: Sql, span: Span): Statement {
  return read(d, (b) =>
    `SELECT start_ms, completed, failed, counted_to_ms FROM ${t.throughput} WHERE start_ms >= ${b.bigint(span.from)} AND start_ms < ${b.bigint(span.to)}`);
}

/** A counters row as the statements answer it. */
export function minuteCount(r: Record<string, unknown>): MinuteCount {
  return { start: Number(r.start_ms), completed: Number(r.completed), failed: Number(r.failed), countedTo: Number(r.counted_to_ms) };
}

/** One minute's counts, written over what a round before counted. */
export function throughputSave({ d, t }: Sql, k: MinuteCount): Statement {
  return write(d, (b) =>
    d.upsert(t.throughput, 'start_ms', [
      ['start_ms', b.bigint(k.start)], ['completed', b.bigint(k.completed)], ['failed', b.bigint(k.failed)], ['counted_to_ms', b.bigint(k.countedTo)],
    ], `completed = ${b.bigint(k.completed)}, failed = ${b.bigint(k.failed)}, counted_to_ms = ${b.bigint(k.countedTo)}`));
}

/** The counters of minutes before `before` (all of them: null). */
export function throughputForget({ d, t }: Sql, k: { before: number | null }): Statement {
  return write(d, (b) => `DELETE FROM ${t.throughput}${k.before === null ? '' : ` WHERE start_ms < ${b.bigint(k.before)}`}`);
}
