/**
 * The admin's History view on a history partitioned by month out of band (MySQL/MariaDB,
 * SQL Server): the months counted along the finish-time index (./portable/engine.ts
 * historyMonths) told where they are kept, from the catalog, and until when (retention drops the
 * partition once its end is past it; the open-ended last one is never dropped). A partition that
 * holds exactly one month gives its size on disk (data and indexes) and, where the count was
 * capped, the engine's row estimate in its place.
 */
import type { HistoryMonth } from './store.ts';
import { utcMonth } from './month.ts';

/** A partition as the catalog tells it, in bound order. */
export interface CatalogPartition {
  name: string;
  /** Its upper bound (exclusive); null: open-ended. */
  to: Date | null;
  /** The engine's estimate. */
  rows: number;
  /** Data and indexes. */
  bytes: number;
}

export function historyMonthsOfPartitions(months: HistoryMonth[], parts: CatalogPartition[]): HistoryMonth[] {
  const holder = (m: HistoryMonth) => parts.findIndex((p) => p.to === null || p.to.getTime() > utcMonth(new Date(`${m.month}-01T00:00:00Z`)).from.getTime());
  const holders = months.map(holder);
  return months.map((m, i) => {
    const at = holders[i];
    if (at < 0) return m;
    const part = parts[at];
    const placed = { ...m, storedIn: part.name, storedUntil: part.to };
    if (!holdsOnly(m, at, parts, holders)) return placed;
    return { ...placed, bytes: part.bytes, counts: m.estimated ? scaled(m.counts, part.rows) : m.counts };
  });
}

/**
 * Whether partition `at` holds month `m` alone: it ends with the month and starts with it, or, the
 * first partition (from the beginning of time: the script starts it at the oldest finish's month),
 * no other month with rows falls in it.
 */
function holdsOnly(m: HistoryMonth, at: number, parts: CatalogPartition[], holders: number[]): boolean {
  const month = utcMonth(new Date(`${m.month}-01T00:00:00Z`));
  if (parts[at].to?.getTime() !== month.to.getTime()) return false;
  if (at > 0) return parts[at - 1].to?.getTime() === month.from.getTime();
  return holders.filter((h) => h === 0).length === 1;
}

/** Counts cut at a cap scaled to the engine's estimate of the month's rows, keeping the states' proportions (never below what was counted). */
function scaled(counts: HistoryMonth['counts'], estimate: number): HistoryMonth['counts'] {
  const counted = Object.values(counts).reduce((sum, n) => sum + (n ?? 0), 0);
  if (counted === 0 || estimate <= counted) return counts;
  return Object.fromEntries(Object.entries(counts).map(([state, n]) => [state, Math.round(((n ?? 0) * estimate) / counted)]));
}
