/** Timing of HTTP calls: one warm-up request, then `runs` timed ones (body read in full). */

export interface Timing {
  what: string;
  median: number;
  max: number;
}

export async function timeRequests(label: string, send: () => Promise<Response>, runs: number): Promise<Timing> {
  const res = await send(); // warm-up (statement caches, plans)
  if (res.status >= 400) throw new Error(`${label}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  await res.arrayBuffer();
  const ms: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const out = await send();
    await out.arrayBuffer();
    ms.push(performance.now() - t0);
    if (out.status >= 400) throw new Error(`${label}: HTTP ${out.status}`);
  }
  ms.sort((a, b) => a - b);
  return { what: label, median: ms[Math.floor(ms.length / 2)], max: ms[ms.length - 1] };
}
