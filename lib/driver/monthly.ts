/**
 * History partitioned by UTC month where a script partitions it out of band (MySQL/MariaDB's
 * ./mysql/months.ts, SQL Server's ./mssql/months.ts): what to make and what may go, decided the
 * same way on both; each dialect writes its own DDL.
 */
import { utcMonth } from './month.ts';

/** A month's partition: its name and bounds (the first instants of the month and of the next). */
export interface MonthPartition {
  name: string;
  from: Date;
  to: Date;
}

/** A partition as the catalog describes it (`to` null: the catch-all behind the months). */
export interface PartitionBounds {
  name: string;
  to: Date | null;
}

export function monthPartition(at: Date, plus = 0): MonthPartition {
  const m = utcMonth(at, plus);
  return { name: `p${m.key.replace('-', '_')}`, from: m.from, to: m.to };
}

/** What the script does: partition the table (one partition a month), split months off the catch-all, or nothing. */
export type MonthsPlan = { partition: MonthPartition[] } | { split: MonthPartition[] } | null;

/**
 * `parts` empty (not partitioned): a partition per month from `oldest`'s (null: none, now's) to next
 * month. Partitioned: the months up to next month past the last month's bound, split off the
 * catch-all (also those in between, when upkeep fell behind); null when there are none.
 */
export function planMonths(parts: PartitionBounds[], now: Date, oldest: Date | null): MonthsPlan {
  const next = monthPartition(now, 1);
  if (!parts.length) return { partition: monthsBetween(oldest ?? now, next) };
  const last = parts.filter((p) => p.to !== null).at(-1)?.to ?? null;
  if (last !== null && last.getTime() >= next.to.getTime()) return null;
  return { split: monthsBetween(last ?? now, next).filter((m) => last === null || m.to.getTime() > last.getTime()) };
}

/** The month partitions every row of which finished before `cutoff`, oldest first (never the last partition). */
export function monthsExpired<P extends PartitionBounds>(parts: P[], cutoff: Date): P[] {
  return parts.slice(0, -1).filter((p) => p.to !== null && p.to.getTime() <= cutoff.getTime());
}

/** The months from the one holding `from` to `until`, inclusive. */
function monthsBetween(from: Date, until: MonthPartition): MonthPartition[] {
  const out: MonthPartition[] = [];
  for (let m = monthPartition(from); m.from.getTime() <= until.from.getTime(); m = monthPartition(m.to)) out.push(m);
  return out;
}

/** Jobs whose trail is deleted per statement before their month is dropped. */
export const TRAIL_BATCH = 5000;

/**
 * Delete the trail of a partition's jobs in batches of `batch` ids (no lock held: a job still in
 * the partition is neither live nor finished elsewhere, so its trail is its own to lose).
 */
export async function deleteTrailInBatches(page: (afterId: string | null, limit: number) => Promise<string[]>, remove: (ids: string[]) => Promise<void>, batch = TRAIL_BATCH): Promise<void> {
  for (let after: string | null = null; ;) {
    const ids = await page(after, batch);
    if (ids.length) await remove(ids);
    if (ids.length < batch) return;
    after = ids.at(-1)!;
  }
}
