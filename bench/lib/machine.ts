/** How busy the machine is (all processes), so a measurement can wait for a quiet machine. */
import fs from 'node:fs';
import { sleep } from './stats.ts';

function cpuTimes(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]; // "cpu  user nice system idle iowait irq softirq steal ..."
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Busy cores (0..cores) averaged over `ms`. */
export async function busyCores(ms = 1000, cores = 1): Promise<number> {
  const a = cpuTimes();
  await sleep(ms);
  const b = cpuTimes();
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * cores;
}

/**
 * Wait until the machine is quiet (under `threshold` busy cores over one second), at most
 * `maxWaitMs`. Returns the last reading, so a run started on a busy machine can be flagged.
 */
export async function waitQuiet(cores: number, threshold: number, maxWaitMs: number, log: (s: string) => void): Promise<number> {
  const start = Date.now();
  let busy = await busyCores(1000, cores);
  let told = false;
  while (busy > threshold && Date.now() - start < maxWaitMs) {
    if (!told) log(`  machine busy (${busy.toFixed(2)} cores in use by other processes); waiting up to ${Math.round(maxWaitMs / 1000)} s`);
    told = true;
    await sleep(2000);
    busy = await busyCores(1000, cores);
  }
  return busy;
}
