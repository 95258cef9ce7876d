/** The History view's figures (jobs.historyMonths): months of history and what retention drops next. */
import type { HistoryMonth } from './driver/store.ts';

export type { HistoryMonth };

export interface HistoryOverview {
  /** Newest first. */
  months: HistoryMonth[];
  /** This instance's retentionDays (null: it keeps history). */
  retentionDays: number | null;
  /**
   * The oldest partition or file retention will drop whole, and when (its end plus the
   * retention; the leader drops it within the minute after). Null without retention, or where
   * history is one table whose rows go one by one.
   */
  nextDrop: { storedIn: string; at: Date } | null;
}

/** The partition or file whose end comes first, dated by the retention. */
export function nextDrop(months: HistoryMonth[], retentionMs: number | null): HistoryOverview['nextDrop'] {
  if (retentionMs === null) return null;
  let first: HistoryMonth | null = null;
  for (const m of months) {
    if (m.storedIn !== null && m.storedUntil !== null && (!first || m.storedUntil < first.storedUntil!)) first = m;
  }
  return first ? { storedIn: first.storedIn!, at: new Date(first.storedUntil!.getTime() + retentionMs) } : null;
}
