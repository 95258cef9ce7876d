/**
 * One measurement of one system, in its own process (so RSS and warm-up are isolated):
 *   node --import tsx bench/measure.ts --system sqljobs-sqlite --measure process --jobs 20000
 * Prints one line `BENCH_RESULT {json}` on stdout. Measures:
 *   enqueue-single  N jobs enqueued one by one, awaited in turn (jobs/s)
 *   enqueue-bulk    N jobs in batches of 1000 (jobs/s)
 *   process         N jobs pre-enqueued; jobs / wall time from worker start until the database
 *                   holds no unfinished job (and the finished record holds every job, where kept);
 *                   also the old generation's growth, scavenges, full GCs and GC pauses meanwhile
 *   latency         L jobs enqueued one at a time 20 ms apart to an idle worker in this process:
 *                   enqueue call to handler start, p50/p95/p99
 *   memory          N jobs processed: RSS after the first 10,000 vs at the end
 */
import { parseArgs } from 'node:util';
import { newRunId } from './lib/config.ts';
import { startHeapWatch } from './lib/heap.ts';
import { startLag } from './lib/lag.ts';
import { percentile, sleep } from './lib/stats.ts';
import { systemByName } from './systems/index.ts';
import type { BenchSystem, Payload } from './systems/types.ts';

const { values: args } = parseArgs({
  options: {
    system: { type: 'string' },
    measure: { type: 'string' },
    jobs: { type: 'string', default: '20000' },
    'latency-jobs': { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '10' },
    'memory-mark': { type: 'string', default: '10000' },
  },
});

const BATCH = 1000;
const jobs = Number(args.jobs);
const concurrency = Number(args.concurrency);
const info = systemByName(args.system ?? '');
const measure = args.measure ?? '';

let onJob: (p: Payload) => void = () => undefined;
const runId = newRunId();
const rssAtImport = process.memoryUsage().rss / 1048576;
const sys: BenchSystem = await info.create({ runId, concurrency, onJob: (p) => onJob(p) });
const rssLoaded = process.memoryUsage().rss / 1048576;

/** Monotonic µs, the clock V8's CPU profiles use (so a profile can be cut to the measured window). */
const hrUs = () => Number(process.hrtime.bigint() / 1000n);
const rssMB = () => process.memoryUsage().rss / 1048576;
const gc = (globalThis as { gc?: () => void }).gc;

async function enqueueAll(n: number): Promise<void> {
  for (let i = 0; i < n; i += BATCH) {
    const batch: Payload[] = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push({ i: j });
    await sys.enqueueBatch(batch);
  }
}

async function expectUnfinished(n: number): Promise<void> {
  const p = await sys.progress();
  if (p.unfinished !== n) throw new Error(`${info.name}: expected ${n} unfinished jobs after enqueue, found ${p.unfinished}`);
}

/** Poll until every job ran and the database holds no unfinished job; returns ms since t0. */
async function waitDone(n: number, handled: () => number, t0: number, timeoutMs = 600_000): Promise<{ doneMs: number; handlersMs: number }> {
  let handlersMs = NaN;
  for (;;) {
    const now = performance.now();
    if (now - t0 > timeoutMs) throw new Error(`${info.name}: timed out with ${handled()} of ${n} handled`);
    if (handled() >= n) {
      if (Number.isNaN(handlersMs)) handlersMs = now - t0;
      const p = await sys.progress();
      if (p.unfinished === 0 && (p.finished === null || p.finished >= n)) return { doneMs: performance.now() - t0, handlersMs };
      await sleep(1);
    } else {
      await sleep(5);
    }
  }
}

async function run(): Promise<Record<string, unknown>> {
  await sys.setup();
  const durability = await sys.durability();
  switch (measure) {
    case 'enqueue-single': {
      const window0 = hrUs();
      const t0 = performance.now();
      for (let i = 0; i < jobs; i++) await sys.enqueueOne({ i });
      const ms = performance.now() - t0;
      const windowUs = [window0, hrUs()];
      await expectUnfinished(jobs);
      return { rate: (jobs / ms) * 1000, ms, windowUs, durability };
    }
    case 'enqueue-bulk': {
      const window0 = hrUs();
      const t0 = performance.now();
      await enqueueAll(jobs);
      const ms = performance.now() - t0;
      const windowUs = [window0, hrUs()];
      await expectUnfinished(jobs);
      return { rate: (jobs / ms) * 1000, ms, windowUs, durability };
    }
    case 'process': {
      await enqueueAll(jobs);
      await expectUnfinished(jobs);
      // The peak RSS may be reached before any job runs: where the worker's own share begins.
      const rssEnqueuedMB = process.resourceUsage().maxRSS / 1024;
      let handled = 0;
      onJob = () => {
        handled++;
      };
      const cpu0 = process.cpuUsage();
      const lag = startLag();
      const heap = startHeapWatch();
      const window0 = hrUs();
      const t0 = performance.now();
      await sys.startWorker();
      const { doneMs, handlersMs } = await waitDone(jobs, () => handled, t0);
      const windowUs = [window0, hrUs()];
      const eld = lag.stop();
      const gcs = heap.stop();
      const cpu = process.cpuUsage(cpu0);
      return {
        rate: (jobs / doneMs) * 1000,
        ms: doneMs,
        handlersMs,
        cpuMs: (cpu.user + cpu.system) / 1000,
        eldP99: eld.p99,
        eldMax: eld.max,
        eldSamples: eld.samples,
        maxTimerGap: eld.maxGap,
        ...gcs,
        rssEnqueuedMB,
        windowUs,
        handled,
        durability,
      };
    }
    case 'latency': {
      const n = Number(args['latency-jobs']);
      const sent = new Array<number>(n).fill(NaN);
      const started = new Array<number>(n).fill(NaN);
      let count = 0;
      onJob = (p) => {
        if (Number.isNaN(started[p.i])) {
          started[p.i] = performance.now();
          count++;
        }
      };
      await sys.startWorker();
      await sleep(500); // idle worker
      const window0 = hrUs();
      for (let i = 0; i < n; i++) {
        sent[i] = performance.now();
        await sys.enqueueOne({ i });
        await sleep(20);
      }
      const deadline = performance.now() + 15_000;
      while (count < n && performance.now() < deadline) await sleep(10);
      if (count < n) throw new Error(`${info.name}: only ${count} of ${n} latency jobs started within 15 s`);
      const windowUs = [window0, hrUs()];
      const lat = started.map((s, i) => s - sent[i]);
      return { windowUs, p50: percentile(lat, 50), p95: percentile(lat, 95), p99: percentile(lat, 99), max: Math.max(...lat), durability };
    }
    case 'memory': {
      const mark = Number(args['memory-mark']);
      await enqueueAll(jobs);
      await expectUnfinished(jobs);
      let handled = 0;
      let atMark: { rss: number; heap: number; ms: number } | null = null;
      let t0 = 0;
      onJob = () => {
        if (++handled === mark) {
          setImmediate(() => {
            gc?.();
            atMark = { rss: rssMB(), heap: process.memoryUsage().heapUsed / 1048576, ms: performance.now() - t0 };
          });
        }
      };
      gc?.();
      const rssBefore = rssMB();
      t0 = performance.now();
      await sys.startWorker();
      const { doneMs } = await waitDone(jobs, () => handled, t0, 1_800_000);
      gc?.();
      const end = { rss: rssMB(), heap: process.memoryUsage().heapUsed / 1048576 };
      const m = atMark as { rss: number; heap: number; ms: number } | null;
      if (!m) throw new Error('memory: the mark was never reached');
      return {
        rssBefore,
        rssAtMark: m.rss,
        heapAtMark: m.heap,
        rssEnd: end.rss,
        heapEnd: end.heap,
        growth: end.rss / m.rss - 1,
        rateFirst: (mark / m.ms) * 1000,
        rate: (jobs / doneMs) * 1000,
        ms: doneMs,
        gcExposed: !!gc,
        durability,
      };
    }
    default:
      throw new Error(`unknown measure "${measure}"`);
  }
}

let out: Record<string, unknown>;
let failed = false;
try {
  out = { ok: true, ...(await run()) };
} catch (err) {
  failed = true;
  out = { ok: false, error: err instanceof Error ? `${err.message}\n${err.stack}` : String(err) };
} finally {
  try {
    await sys.close();
  } catch (err) {
    console.error(`${info.name}: close failed:`, err);
  }
  try {
    await sys.cleanup();
  } catch (err) {
    console.error(`${info.name}: cleanup failed:`, err);
  }
}
const peakRssMB = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`BENCH_RESULT ${JSON.stringify({ system: info.name, measure, jobs, ...out!, peakRssMB, rssAtImport, rssLoaded })}\n`);
process.exit(failed ? 1 : 0);
