/**
 * Timing of HTTP calls: one warm-up request, then `runs` timed ones (body read in full); a call
 * whose warm-up took over SLOW_MS is timed twice only (its figure is the point, not its spread).
 */

const SLOW_MS = 2000;

export interface Timing {
  what: string;
  median: number;
  max: number;
}

export async function timeRequests(label: string, send: () => Promise<Response>, runs: number): Promise<Timing> {
  const warmStart = performance.now();
  const res = await send(); // warm-up (statement caches, plans)
  if (res.status >= 400) throw new Error(`${label}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  await res.arrayBuffer();
  const timed = performance.now() - warmStart > SLOW_MS ? Math.min(runs, 2) : runs;
  const ms: number[] = [];
  for (let r = 0; r < timed; r++) {
    const t0 = performance.now();
    const out = await send();
    await out.arrayBuffer();
    ms.push(performance.now() - t0);
    if (out.status >= 400) throw new Error(`${label}: HTTP ${out.status}`);
  }
  ms.sort((a, b) => a - b);
  return { what: label, median: ms[Math.floor(ms.length / 2)], max: ms[ms.length - 1] };
}
