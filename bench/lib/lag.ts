/**
 * Event-loop lag while a measurement runs: perf_hooks.monitorEventLoopDelay for the p99, plus the
 * longest gap between timer ticks, which also catches a loop starved by microtasks (there the
 * histogram may record no sample at all).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface LagResult {
  /** monitorEventLoopDelay p99, ms (null: no sample recorded). */
  p99: number | null;
  max: number | null;
  samples: number;
  /** Longest time a 5 ms timer waited beyond its due time, ms. */
  maxGap: number;
}

export function startLag(resolutionMs = 5): { stop(): LagResult } {
  const h = monitorEventLoopDelay({ resolution: resolutionMs });
  h.enable();
  let maxGap = 0;
  let due = performance.now() + resolutionMs;
  let timer: NodeJS.Timeout;
  const tick = () => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - due);
    due = now + resolutionMs;
    timer = setTimeout(tick, resolutionMs);
  };
  timer = setTimeout(tick, resolutionMs);
  return {
    stop() {
      clearTimeout(timer);
      h.disable();
      maxGap = Math.max(maxGap, performance.now() - due);
      return { p99: h.count ? h.percentile(99) / 1e6 : null, max: h.count ? h.max / 1e6 : null, samples: h.count, maxGap };
    },
  };
}
