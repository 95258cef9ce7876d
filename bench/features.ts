/**
 * What each flow-control and workflow feature costs on the hot path (issue 14): N no-op jobs
 * enqueued (enqueueMany, 500 a call) and processed (one worker, concurrency 10) with one feature
 * each, beside plain jobs, in one run. Every figure is its own process; the variants are
 * interleaved round by round and the median of the rounds is printed, with its ratio to plain.
 * A limit is set wide enough never to bind: what is measured is the cost of the bookkeeping.
 *   node --import tsx bench/features.ts [--backend sqlite|postgres|mysql] [--jobs 10000] [--rounds 3] [--only plain,serial]
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createJobs, type EnqueueOptions, type JobsOptions } from '../lib/index.ts';
import { newRunId, REPO_DIR } from './lib/config.ts';
import { dropByPrefix, newPool } from './lib/pg.ts';
import { dropMysqlByPrefix, newMysqlPool } from './lib/mysql.ts';
import { openAppDb, removeSqliteFile, sqliteFile } from './lib/sqlite.ts';
import { fmt, median } from './lib/stats.ts';

interface Variant {
  /** Options of the i-th job. */
  item?: (i: number) => Omit<EnqueueOptions, 'onSuccess' | 'onFailure'>;
  /** createJobs options. */
  setup?: Partial<JobsOptions>;
  /** Reserved jobs are committed after they are all enqueued (counted in the enqueue time). */
  commit?: boolean;
  what: string;
}

const VARIANTS: Record<string, Variant> = {
  plain: { what: 'no option' },
  serial: { item: (i) => ({ serial: `k${i % 100}` }), what: 'serial: 100 keys' },
  group: { item: (i) => ({ queue: 'fair', group: `g${i % 100}` }), what: 'group: 100 groups (a managed queue, no limit)' },
  concurrency: { item: () => ({ queue: 'limited' }), setup: { queues: { limited: { concurrency: 1000 } } }, what: 'queue concurrency 1000 (never binds)' },
  rateLimit: { item: () => ({ queue: 'metered' }), setup: { queues: { metered: { rateLimit: { limit: 1_000_000, intervalMs: 1000 } } } }, what: 'rateLimit 1,000,000/s (never binds)' },
  unique: { item: (i) => ({ unique: { key: `u${i}` } }), what: 'unique: a key per job' },
  reserve: { item: () => ({ reserve: true }), commit: true, what: 'reserve, then commitReserved' },
  deadLetter: { item: () => ({ deadLetter: 'dead' }), what: 'deadLetter set (never used)' },
  aging: { setup: { priorityAging: { everyMs: 1000 } }, what: 'priorityAging every 1 s' },
  tracingOff: { setup: { tracing: false }, what: 'tracing: false (plain: tracing on, no provider registered)' },
};

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'sqlite' },
    jobs: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
    child: { type: 'string' },
  },
});
const N = Number(args.jobs);

interface Figures {
  enqueue: number;
  process: number;
}

/** One variant in this process: enqueue N jobs, then process them; jobs per second of each. */
async function measureOne(backend: string, name: string): Promise<Figures> {
  const v = VARIANTS[name];
  const prefix = `${newRunId()}_`;
  let db: unknown;
  let cleanup: () => Promise<void>;
  if (backend === 'postgres') {
    const pool = newPool(12);
    db = pool;
    cleanup = async () => {
      await pool.end();
      await dropByPrefix(prefix);
    };
  } else if (backend === 'mysql') {
    const pool = newMysqlPool(12);
    db = pool;
    cleanup = async () => {
      await pool.end();
      await dropMysqlByPrefix(prefix);
    };
  } else {
    const file = sqliteFile(prefix);
    const sqlite = openAppDb(file);
    db = sqlite;
    cleanup = async () => {
      sqlite.close();
      removeSqliteFile(file);
    };
  }
  let done = 0;
  let allDone: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (allDone = resolve));
  const jobs = createJobs({ db: db as JobsOptions['db'], tablePrefix: prefix, logger: false, worker: { concurrency: 10, pollInterval: 50 }, ...v.setup })
    .define('noop', async () => {
      if (++done === N) allDone();
    });
  await jobs.migrate();
  const items = Array.from({ length: N }, (_, i) => ({ name: 'noop' as const, payload: { i }, ...v.item?.(i) }));
  const t0 = performance.now();
  const ids: string[] = [];
  for (let i = 0; i < N; i += 500) ids.push(...(await jobs.enqueueMany(items.slice(i, i + 500))).map((r) => r.id));
  if (v.commit) for (let i = 0; i < N; i += 500) await jobs.commitReserved(ids.slice(i, i + 500));
  const enqueueMs = performance.now() - t0;
  const t1 = performance.now();
  await jobs.start();
  await finished;
  const processMs = performance.now() - t1;
  await jobs.close();
  await cleanup();
  return { enqueue: (N / enqueueMs) * 1000, process: (N / processMs) * 1000 };
}

function runChild(backend: string, name: string): Promise<Figures | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--backend', backend, '--jobs', String(N), '--child', name], {
      cwd: REPO_DIR,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', () => {
      const line = out.split('\n').find((l) => l.startsWith('FEATURE_RESULT '));
      resolve(line ? (JSON.parse(line.slice('FEATURE_RESULT '.length)) as Figures) : null);
    });
  });
}

async function main(): Promise<void> {
  if (args.child) {
    console.log(`FEATURE_RESULT ${JSON.stringify(await measureOne(args.backend, args.child))}`);
    return;
  }
  const names = args.only ? args.only.split(',') : Object.keys(VARIANTS);
  for (const n of names) if (!VARIANTS[n]) throw new Error(`--only: unknown variant ${n}; known: ${Object.keys(VARIANTS).join(', ')}`);
  const got = new Map<string, Figures[]>(names.map((n) => [n, []]));
  for (let r = 0; r < Number(args.rounds); r++) {
    for (const n of names) {
      const f = await runChild(args.backend, n);
      if (f) got.get(n)!.push(f);
      else console.error(`  ${n}: round ${r + 1} failed`);
    }
  }
  const med = (n: string, k: keyof Figures) => median(got.get(n)!.map((f) => f[k]));
  const base = { enqueue: med('plain', 'enqueue'), process: med('plain', 'process') };
  console.log(`${args.backend}: ${N.toLocaleString('en')} jobs per figure, medians of ${args.rounds} rounds (jobs/s, and ratio to plain)`);
  console.log(`${'variant'.padEnd(12)} ${'enqueue'.padStart(9)} ${'ratio'.padStart(6)} ${'process'.padStart(9)} ${'ratio'.padStart(6)}  what`);
  for (const n of names) {
    if (!got.get(n)!.length) continue;
    const e = med(n, 'enqueue');
    const p = med(n, 'process');
    console.log(`${n.padEnd(12)} ${fmt(e).padStart(9)} ${(e / base.enqueue).toFixed(2).padStart(6)} ${fmt(p).padStart(9)} ${(p / base.process).toFixed(2).padStart(6)}  ${VARIANTS[n].what}`);
  }
}

await main();
