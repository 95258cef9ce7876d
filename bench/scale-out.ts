/**
 * Scale-out on one PostgreSQL: P worker processes drain one installation.
 *   node --import tsx bench/scale-out.ts [--jobs 40000] [--procs 1,2,4] [--rounds 3] [--concurrency 10] [--handler-ms 0]
 *
 * Each round and each P (the order of P alternates between rounds): a fresh tablePrefix, N jobs
 * enqueued in batches of 1000, then P child processes each running createJobs({ db, tablePrefix,
 * worker: { concurrency } }) with its defaults. The children connect and migrate first; the clock
 * starts when all are told to start and stops when the hot table is empty and history holds every
 * job (read from a connection of this process, as bench/measure.ts does).
 *
 * CPU for the run, from the start signal to the moment the drain is seen:
 *   Node  process.cpuUsage() of each child
 *   PG    on-CPU time of the children's backends (/proc/<pid>/schedstat, ns; the backends are found
 *         by application_name in pg_stat_activity, read before the children stop), plus the
 *         server's own processes (walwriter, checkpointer, background writer, ...) as "aux"
 * The backends' figure includes their connection start-up (a few ms each), since the children's
 * pools connect on first use. It needs this process to read the server's /proc (same machine).
 *
 * --handler-ms W: each job waits W ms (a timer, as a job waiting on I/O does) instead of returning
 * at once. A process then runs at most concurrency / W jobs per second whatever the cores, so the
 * processes add up until the database (or the machine's CPU) is the bound: the scale-out a
 * deployment of jobs that wait sees, where no-op jobs on 2 cores show only the CPU bound.
 *
 * Prints the table and a projection for 8 and 16 cores: rate <= cores / (CPU per job).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { NAME_PREFIX, PG_URL, REPO_DIR, SQLJOBS_ENTRY, newRunId } from './lib/config.ts';
import { dropByPrefix, newClient } from './lib/pg.ts';
import { fmt, median, sleep } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '40000' },
    procs: { type: 'string', default: '1,2,4' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '10' },
    'handler-ms': { type: 'string', default: '0' },
    child: { type: 'boolean', default: false },
    prefix: { type: 'string' },
  },
});

const { createJobs } = (await import(pathToFileURL(SQLJOBS_ENTRY).href)) as typeof import('../lib/index.ts');
type Noop = { noop: { i: number } };

// ------------------------------------------------------------------ child: one worker process

/**
 * A worker process: connect and migrate, say READY; on GO start the worker; on STOP report its CPU
 * since GO and how many jobs it ran, then stop and exit. Lines on stdin/stdout.
 */
async function child(prefix: string, concurrency: number, handlerMs: number): Promise<void> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 10, application_name: appName(prefix) });
  pool.on('error', () => undefined);
  let handled = 0;
  const jobs = createJobs<Noop>({ db: pool, tablePrefix: prefix, worker: { concurrency } }).define('noop', async () => {
    if (handlerMs > 0) await sleep(handlerMs);
    handled++;
  });
  jobs.on('error', (err) => console.error('sqljobs error:', err));
  const calls = countCalls(jobs.store as unknown as Record<string, unknown>, ['jobClaim', 'jobCompleteMany']);
  await jobs.migrate();
  let cpu0 = process.cpuUsage();
  process.stdout.write('READY\n');
  let buf = '';
  process.stdin.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line === 'GO') {
        cpu0 = process.cpuUsage();
        void jobs.start();
      } else if (line === 'STOP') {
        const cpu = process.cpuUsage(cpu0);
        process.stdout.write(`RESULT ${JSON.stringify({ cpuUs: cpu.user + cpu.system, handled, claims: calls.jobClaim, completions: calls.jobCompleteMany })}\n`);
        void jobs.close().then(() => pool.end()).then(() => process.exit(0));
      }
    }
  });
}

/** Count calls of the store's verbs (the claim and completion round trips). */
function countCalls(store: Record<string, unknown>, verbs: string[]): Record<string, number> {
  const calls: Record<string, number> = {};
  for (const verb of verbs) {
    const orig = store[verb] as (...a: unknown[]) => Promise<unknown>;
    calls[verb] = 0;
    store[verb] = (...a: unknown[]) => {
      calls[verb]++;
      return orig.apply(store, a);
    };
  }
  return calls;
}

/** The children's connections carry this application_name, so their backends can be found. */
function appName(prefix: string): string {
  return `scaleout_${prefix}`;
}

// ------------------------------------------------------------------ parent

interface Worker {
  proc: ChildProcess;
  lines: string[];
  waiters: (() => void)[];
}

function spawnWorker(prefix: string, concurrency: number, handlerMs: number): Worker {
  const argv = ['--import', 'tsx', 'bench/scale-out.ts', '--child', '--prefix', prefix, '--concurrency', String(concurrency), '--handler-ms', String(handlerMs)];
  const proc = spawn(process.execPath, argv, {
    cwd: REPO_DIR,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const w: Worker = { proc, lines: [], waiters: [] };
  let buf = '';
  proc.stdout!.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      w.lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      for (const wake of w.waiters.splice(0)) wake();
    }
  });
  proc.on('exit', () => {
    for (const wake of w.waiters.splice(0)) wake();
  });
  return w;
}

async function waitLine(w: Worker, starts: string, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = w.lines.find((l) => l.startsWith(starts));
    if (line) return line;
    if (w.proc.exitCode !== null || Date.now() > deadline) throw new Error(`worker process: no ${starts} line (exit ${w.proc.exitCode})`);
    await new Promise<void>((r) => {
      w.waiters.push(r);
      setTimeout(r, 1000).unref();
    });
  }
}

/** On-CPU ns of a process (schedstat's first field), 0 when it is gone. */
function cpuNs(pid: number): number {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

/** The server's own processes (children of the postmaster that are not client backends), by pid. */
async function serverAux(c: pg.Client): Promise<number[]> {
  const { rows } = await c.query(`SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'`);
  return rows.map((r) => Number(r.pid));
}

async function backendsOf(c: pg.Client, prefix: string): Promise<number[]> {
  const { rows } = await c.query(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`, [appName(prefix)]);
  return rows.map((r) => Number(r.pid));
}

const sumNs = (pids: number[]) => pids.reduce((s, p) => s + cpuNs(p), 0);

/** Busy ns of the whole machine (all cores) from /proc/stat. */
function machineBusyNs(): number {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] ?? 0);
  return ((v.reduce((a, b) => a + b, 0) - idle) * 1e9) / 100; // USER_HZ = 100 on Linux
}

interface RunResult {
  procs: number;
  ms: number;
  rate: number;
  nodeUsPerJob: number;
  pgUsPerJob: number;
  auxUsPerJob: number;
  busyCores: number;
  handled: number[];
  /** Jobs per claim and per completion statement, over all processes. */
  perClaim: number;
  perCompletion: number;
}

async function enqueue(prefix: string, n: number): Promise<void> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  pool.on('error', () => undefined);
  const jobs = createJobs<Noop>({ db: pool, tablePrefix: prefix, worker: false });
  await jobs.migrate();
  for (let i = 0; i < n; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) batch.push({ name: 'noop' as const, payload: { i: j } });
    await jobs.enqueueMany(batch);
  }
  await jobs.close();
  await pool.end();
}

async function runOnce(procs: number, n: number, concurrency: number, handlerMs: number): Promise<RunResult> {
  const prefix = `${newRunId()}_`;
  const checker = await newClient();
  const workers: Worker[] = [];
  try {
    await enqueue(prefix, n);
    for (let i = 0; i < procs; i++) workers.push(spawnWorker(prefix, concurrency, handlerMs));
    for (const w of workers) await waitLine(w, 'READY');
    const aux = await serverAux(checker);
    const before = new Map((await backendsOf(checker, prefix)).map((p) => [p, cpuNs(p)]));
    const aux0 = sumNs(aux);
    const busy0 = machineBusyNs();
    const t0 = performance.now();
    for (const w of workers) w.proc.stdin!.write('GO\n');
    for (;;) {
      const { rows } = await checker.query(
        `SELECT (SELECT count(*) FROM ${prefix}jobs)::int AS hot, (SELECT count(*) FROM ${prefix}history)::int AS hist`,
      );
      if (rows[0].hot === 0 && rows[0].hist >= n) break;
      if (performance.now() - t0 > 600_000) throw new Error(`timed out: ${rows[0].hot} jobs left`);
      await sleep(5);
    }
    const ms = performance.now() - t0;
    const busyNs = machineBusyNs() - busy0;
    const backends = await backendsOf(checker, prefix);
    const pgNs = backends.reduce((s, p) => s + cpuNs(p) - (before.get(p) ?? 0), 0);
    const auxNs = sumNs(aux) - aux0;
    for (const w of workers) w.proc.stdin!.write('STOP\n');
    const reports = [];
    for (const w of workers) reports.push(JSON.parse((await waitLine(w, 'RESULT ')).slice(7)) as { cpuUs: number; handled: number; claims: number; completions: number });
    await Promise.all(workers.map((w) => new Promise((r) => (w.proc.exitCode !== null ? r(null) : w.proc.on('exit', r)))));
    const nodeUs = reports.reduce((s, r) => s + r.cpuUs, 0);
    if (process.env.SCALEOUT_STATS) await printStats(checker, prefix, procs, n);
    return {
      procs,
      ms,
      rate: (n / ms) * 1000,
      nodeUsPerJob: nodeUs / n,
      pgUsPerJob: pgNs / 1000 / n,
      auxUsPerJob: auxNs / 1000 / n,
      busyCores: busyNs / 1e6 / ms,
      handled: reports.map((r) => r.handled),
      perClaim: n / reports.reduce((s, r) => s + r.claims, 0),
      perCompletion: n / reports.reduce((s, r) => s + r.completions, 0),
    };
  } finally {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await checker.end();
    await dropByPrefix(prefix, [], NAME_PREFIX);
  }
}

/**
 * SCALEOUT_STATS=1: what the claims and batch writes read per job, from PostgreSQL's counters (read after the
 * children exit, when their backends have reported): index entries and heap rows read through each
 * index of the hot table, updates that were HOT, and the buffers touched.
 */
async function printStats(c: pg.Client, prefix: string, procs: number, n: number): Promise<void> {
  await sleep(1200);
  const idx = await c.query(
    `SELECT indexrelname AS index, idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes WHERE relname = $1 ORDER BY indexrelname`, [`${prefix}jobs`]);
  const tab = await c.query(`SELECT n_tup_upd, n_tup_hot_upd, n_tup_del, n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = $1`, [`${prefix}jobs`]);
  const io = await c.query(`SELECT heap_blks_read + heap_blks_hit AS heap, idx_blks_read + idx_blks_hit AS idx FROM pg_statio_user_tables WHERE relname = $1`, [`${prefix}jobs`]);
  console.log(`  P=${procs} hot table: ${JSON.stringify(tab.rows[0])}; buffers per job: heap ${fmt(io.rows[0].heap / n, 1)}, index ${fmt(io.rows[0].idx / n, 1)}`);
  for (const r of idx.rows) console.log(`    ${r.index.replace(prefix, '')}: scans ${r.idx_scan}, entries read per job ${fmt(r.idx_tup_read / n, 2)}, rows fetched per job ${fmt(r.idx_tup_fetch / n, 2)}`);
}

async function main(): Promise<void> {
  const n = Number(args.jobs);
  const concurrency = Number(args.concurrency);
  const procList = args.procs!.split(',').map(Number);
  const rounds = Number(args.rounds);
  const handlerMs = Number(args['handler-ms']);
  const work = handlerMs > 0 ? `jobs that wait ${handlerMs} ms` : 'no-op jobs';
  console.log(`scale-out: ${n} ${work}, concurrency ${concurrency} per process, P = ${procList.join(', ')}, ${rounds} rounds; ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const results = new Map<number, RunResult[]>(procList.map((p) => [p, []]));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...procList].reverse() : procList;
    for (const p of order) {
      const res = await runOnce(p, n, concurrency, handlerMs);
      results.get(p)!.push(res);
      console.log(
        `  round ${r + 1} P=${p}: ${fmt(res.rate)} jobs/s (${fmt(res.ms)} ms), Node ${fmt(res.nodeUsPerJob)} µs/job, PG backends ${fmt(res.pgUsPerJob)} + aux ${fmt(res.auxUsPerJob)} µs/job, jobs per claim ${fmt(res.perClaim)}, per completion ${fmt(res.perCompletion)}, machine ${res.busyCores.toFixed(2)} cores busy, per process ${res.handled.join('/')}, load ${os.loadavg()[0].toFixed(2)}`,
      );
      await sleep(2000);
    }
  }
  report(procList, results);
}

function report(procList: number[], results: Map<number, RunResult[]>): void {
  const med = (p: number, k: keyof Omit<RunResult, 'handled' | 'procs'>) => median(results.get(p)!.map((r) => r[k]));
  const base = med(procList[0], 'rate');
  console.log('\n| P | jobs/s (median) | min–max | × P=1 | Node CPU µs/job | PG backends µs/job | PG aux µs/job | jobs per claim | jobs per completion | machine busy cores |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const p of procList) {
    const rates = results.get(p)!.map((r) => r.rate);
    console.log(
      `| ${p} | ${fmt(med(p, 'rate'))} | ${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))} | ${(med(p, 'rate') / base).toFixed(2)} | ${fmt(med(p, 'nodeUsPerJob'))} | ${fmt(med(p, 'pgUsPerJob'))} | ${fmt(med(p, 'auxUsPerJob'))} | ${fmt(med(p, 'perClaim'))} | ${fmt(med(p, 'perCompletion'))} | ${med(p, 'busyCores').toFixed(2)} |`,
    );
  }
  // P=1 has the least contention per job; the largest P shows what more processes add per job.
  for (const p of [...new Set([procList[0], procList[procList.length - 1]])]) {
    const node = med(p, 'nodeUsPerJob');
    const db = med(p, 'pgUsPerJob') + med(p, 'auxUsPerJob');
    console.log(`\nProjection from P=${p}'s CPU per job (Node ${fmt(node)} µs, PostgreSQL ${fmt(db)} µs incl. aux), CPU alone, no lock or fsync limits:`);
    for (const cores of [2, 8, 16]) {
      console.log(
        `  ${cores} cores: shared by Node and PG ≤ ${fmt((cores * 1e6) / (node + db))} jobs/s; PG on its own ${cores} cores ≤ ${fmt((cores * 1e6) / db)} jobs/s; Node on ${cores} cores ≤ ${fmt((cores * 1e6) / node)} jobs/s`,
      );
    }
  }
}

// Last: the module's consts above must be initialised before either runs.
if (args.child) await child(args.prefix!, Number(args.concurrency), Number(args['handler-ms']));
else await main();
