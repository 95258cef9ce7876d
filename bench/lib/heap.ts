/**
 * How much the old generation grew while a measurement ran, and how many scavenges and full
 * GCs it took. Short-lived objects die in the young generation; what grows the old one between
 * full GCs is what outlived two scavenges (or was kept reachable that long), so the growth per job
 * is what a worker makes the process keep until the next full GC (issue 17: the worker's Map and
 * Set of attempts kept ~1 KB per job there).
 */
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import v8 from 'node:v8';

export interface HeapResult {
  /** Highest old-space use seen minus the use at the start, MB (lowered by any full GC between). */
  oldGrowthMB: number;
  scavenges: number;
  fullGcs: number;
  /** Time spent in GC pauses, ms. */
  gcPauseMs: number;
  /**
   * The young generation's largest size, MB. V8 grows it (up to 2 × 16 MB) as objects keep
   * surviving scavenges; that growth is much of a fast worker's RSS above a slow one's.
   */
  newSpaceMaxMB: number;
}

const spaceStat = (name: string, key: 'space_used_size' | 'space_size') => v8.getHeapSpaceStatistics().find((s) => s.space_name === name)?.[key] ?? 0;
const oldSpaceUsed = () => spaceStat('old_space', 'space_used_size');

export function startHeapWatch(everyMs = 5): { stop(): HeapResult } {
  const start = oldSpaceUsed();
  let peak = start;
  let scavenges = 0;
  let fullGcs = 0;
  let gcPauseMs = 0;
  const count = (entries: PerformanceEntry[]) => {
    for (const e of entries) {
      const kind = (e as { detail?: { kind?: number } | null }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) fullGcs++;
      gcPauseMs += e.duration;
    }
  };
  const observer = new PerformanceObserver((list) => count(list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  let newSpaceMax = spaceStat('new_space', 'space_size');
  const timer = setInterval(() => {
    peak = Math.max(peak, oldSpaceUsed());
    newSpaceMax = Math.max(newSpaceMax, spaceStat('new_space', 'space_size'));
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, oldSpaceUsed());
      count(observer.takeRecords()); // entries not delivered yet
      observer.disconnect();
      return { oldGrowthMB: (peak - start) / 1048576, scavenges, fullGcs, gcPauseMs, newSpaceMaxMB: newSpaceMax / 1048576 };
    },
  };
}
