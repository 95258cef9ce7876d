/**
 * The benchmark: sqljobs beside its peers and raw-SQL floors, on SQLite and PostgreSQL, on this
 * machine in one run. Every measurement runs in its own child process (bench/measure.ts).
 *
 *   npm run bench                                   3 rounds, 20,000 jobs
 *   npm run bench -- --rounds 1 --jobs 5000         quick run
 *   flags: --latency-jobs 200 --memory-jobs 200000 --warmup-jobs 2000 --systems a,b --no-memory
 *          --no-profile (skip CPU profiles of missed targets) --profile-all (profile every sqljobs measurement)
 *          --quiet-wait 90 (seconds to wait for other processes to go quiet before each measurement)
 *
 * Writes bench/results/latest.md (and latest.json, profiles/); prints the same Markdown.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { MYSQL_URL, PG_URL, REPO_DIR, RESULTS_DIR, SQLITE_DIR } from './lib/config.ts';
import { runChild, runScript, type ChildResult } from './lib/child.ts';
import { waitQuiet } from './lib/machine.ts';
import { newClient, sweepLeftovers } from './lib/pg.ts';
import { describeMysql, newMysqlPool, sweepMysqlLeftovers } from './lib/mysql.ts';
import { profileMarkdown, summarizeProfile } from './lib/profile.ts';
import {
  MEASURES, Results, computeTargets, markdownTable, mediansTable, passes, perRunTable, targetsTable, type Measure, type RunResult,
} from './lib/report.ts';
import { fmt } from './lib/stats.ts';
import { SYSTEMS, systemByName } from './systems/index.ts';

const { values: flags } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    jobs: { type: 'string', default: '20000' },
    'latency-jobs': { type: 'string', default: '200' },
    'memory-jobs': { type: 'string', default: '200000' },
    'warmup-jobs': { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '10' },
    systems: { type: 'string' },
    'no-memory': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'profile-all': { type: 'boolean', default: false },
    /** Before each measurement, wait up to this many seconds for other processes to go quiet. */
    'quiet-wait': { type: 'string', default: '90' },
  },
});

const rounds = Number(flags.rounds);
const jobs = Number(flags.jobs);
const systems = flags.systems ? flags.systems.split(',').map((s) => systemByName(s.trim()).name) : SYSTEMS.map((s) => s.name);
const childArgs = (system: string, measure: string, n: number) => [
  '--system', system, '--measure', measure, '--jobs', String(n), '--latency-jobs', flags['latency-jobs']!, '--concurrency', flags.concurrency!,
];
const log = (s: string) => process.stderr.write(`${s}\n`);

/** Flush dirty pages before each PostgreSQL measurement, so one system does not pay for another's writes. */
async function checkpoint(): Promise<void> {
  const c = await newClient();
  try {
    await c.query('CHECKPOINT');
  } finally {
    await c.end();
  }
}

/** Other processes' CPU use (in cores) seen just before a measurement above which the run is flagged. */
const BUSY_THRESHOLD = 0.25;

async function measure(system: string, m: string, n: number, nodeFlags: string[] = []): Promise<ChildResult & { busyBefore: number }> {
  if (systemByName(system).backend === 'postgres') await checkpoint();
  const busyBefore = await waitQuiet(os.cpus().length, BUSY_THRESHOLD, Number(flags['quiet-wait']) * 1000, log);
  return { ...(await runChild(childArgs(system, m, n), nodeFlags)), busyBefore };
}

function describe(r: ChildResult): string {
  if (!r.ok) return `FAILED: ${r.error?.split('\n').slice(0, 6).join(' | ')}`;
  const rss = `peak RSS ${fmt(r.peakRssMB, 0)} MB`;
  if (r.measure === 'latency') return `p50 ${fmt(r.p50)} / p95 ${fmt(r.p95)} / p99 ${fmt(r.p99)} ms, ${rss}`;
  if (r.measure === 'process') return `${fmt(r.rate)} jobs/s, loop lag p99 ${fmt(r.eldP99 ?? NaN)} ms, ${rss}`;
  return `${fmt(r.rate)} jobs/s, ${rss}`;
}

function pkgVersion(name: string): string {
  const req = createRequire(path.join(REPO_DIR, 'package.json'));
  try {
    return (JSON.parse(fs.readFileSync(req.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    // Packages whose exports hide package.json: walk up from the resolved entry.
    let dir = path.dirname(req.resolve(name));
    while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
    return (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  }
}

/**
 * Copy lib/ and migrations/ aside and point the children at the copy: lib/ may be edited while the
 * benchmark runs, and one run must measure one version of the code. Returns a description.
 */
function snapshotLib(): { dir: string; describe: string } {
  // Inside the repo so the copy resolves node_modules; in .tmp/ so git and tsc (which checks bench/) ignore it.
  const dir = path.join(REPO_DIR, '.tmp', 'bench-sqljobs-snapshot');
  fs.rmSync(dir, { recursive: true, force: true });
  const hash = createHash('sha256');
  for (const sub of ['lib', 'migrations']) {
    fs.cpSync(path.join(REPO_DIR, sub), path.join(dir, sub), { recursive: true });
    const files = (fs.readdirSync(path.join(dir, sub), { recursive: true }) as string[]).sort();
    for (const f of files) {
      const full = path.join(dir, sub, f);
      if (fs.statSync(full).isFile()) hash.update(`${sub}/${f}\0`).update(fs.readFileSync(full));
    }
  }
  process.env.BENCH_SQLJOBS_LIB = path.join(dir, 'lib', 'index.ts');
  const git = (...a: string[]) => {
    try {
      return execFileSync('git', a, { cwd: REPO_DIR, encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  const dirty = git('status', '--porcelain', '--', 'lib', 'migrations');
  return {
    dir,
    describe: `sqljobs code: git ${git('rev-parse', '--short', 'HEAD')}${dirty ? ` + uncommitted changes in ${dirty.split('\n').length} file(s) of lib/ or migrations/` : ''}; snapshot sha256 ${hash.digest('hex').slice(0, 12)} (lib/ and migrations/ copied when the run started)`,
  };
}

async function environment(codeLine: string): Promise<string> {
  const c = await newClient();
  const pgVersion = (await c.query('SHOW server_version')).rows[0].server_version as string;
  const settings = await c.query(`SELECT name, setting FROM pg_settings WHERE name IN
    ('synchronous_commit', 'fsync', 'full_page_writes', 'wal_level', 'shared_buffers', 'max_wal_size', 'checkpoint_timeout') ORDER BY name`);
  await c.end();
  const mem = new Database(':memory:');
  const sqliteVersion = (mem.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
  mem.close();
  const own = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as { version: string };
  const mysqlPool = newMysqlPool(1);
  const mariadb = await describeMysql(mysqlPool).catch((e: Error) => `not reachable (${e.message})`);
  await mysqlPool.end();
  return [
    `- date: ${new Date().toISOString()}; machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `- ${codeLine}`,
    `- Node ${process.version}; sqljobs ${own.version} (this tree); better-sqlite3 ${pkgVersion('better-sqlite3')} (SQLite ${sqliteVersion}); pg ${pkgVersion('pg')}`,
    `- peers: graphile-worker ${pkgVersion('graphile-worker')}, pg-boss ${pkgVersion('pg-boss')}, plainjob ${pkgVersion('plainjob')}`,
    `- PostgreSQL ${pgVersion} at ${PG_URL.replace(/\/\/[^@]*@/, '//')} (TCP), sharing the cores with Node; server settings: ${settings.rows.map((r) => `${r.name}=${r.setting}`).join(', ')}`,
    `- MariaDB/MySQL at ${MYSQL_URL.replace(/\/\/[^@]*@/, '//')} (TCP), mysql2 ${pkgVersion('mysql2')}: ${mariadb}`,
    `- SQLite files in ${SQLITE_DIR}; every SQLite app handle is opened WAL + synchronous=${process.env.BENCH_APP_SYNC ?? 'NORMAL'} (plainjob sets the same on its own connection)`,
    `- ${rounds} round(s) round-robin, ${jobs.toLocaleString('en-US')} no-op jobs per throughput measurement, ${flags['latency-jobs']} latency jobs 20 ms apart, concurrency ${flags.concurrency}; each measurement in its own process; medians (min–max)`,
  ].join('\n');
}

async function main(): Promise<void> {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const swept = (await sweepLeftovers()) + (await sweepMysqlLeftovers());
  if (swept) log(`dropped ${swept} leftover bx_* tables/schemas from an interrupted run`);
  const snapshot = snapshotLib();
  const env = await environment(snapshot.describe);
  log(env);

  // Warm-up: PostgreSQL's first run on a cold server is much slower; the numbers are thrown away.
  const warm = Math.min(Number(flags['warmup-jobs']), jobs);
  for (const s of systems) {
    const r = await measure(s, 'process', warm);
    log(`warm-up ${s}: ${describe(r)}`);
  }

  const runs: RunResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const m of MEASURES) {
      // Rotate the order each round so no system always runs right after the same neighbour.
      const order = systems.map((_, i) => systems[(i + round - 1) % systems.length]);
      for (const s of order) {
        const r = await measure(s, m, jobs);
        runs.push({ ...r, round });
        log(`round ${round}/${rounds} ${m.padEnd(14)} ${s.padEnd(20)} ${describe(r)}`);
      }
    }
  }
  const res = new Results(runs);

  let memory: ChildResult | null = null;
  if (!flags['no-memory'] && systems.includes('sqljobs-sqlite')) {
    log(`memory test: sqljobs SQLite worker, ${Number(flags['memory-jobs']).toLocaleString('en-US')} jobs`);
    memory = await runChild(['--system', 'sqljobs-sqlite', '--measure', 'memory', '--jobs', flags['memory-jobs']!], ['--expose-gc'], 60 * 60_000);
    log(memory.ok ? `memory: RSS ${fmt(memory.rssAtMark as number)} MB after 10,000 → ${fmt(memory.rssEnd as number)} MB at the end` : `memory FAILED: ${memory.error}`);
  }

  const versions: Record<string, string> = {};
  for (const s of SYSTEMS) if (s.pkg) versions[s.name] = pkgVersion(s.pkg);
  const { targets, info } = computeTargets(res, memory?.ok ? (memory.growth as number) : null);

  const md: string[] = ['# sqljobs benchmark', '', env, '', '## Medians', '', mediansTable(res, systems, versions), ''];
  md.push('Options per system:', '');
  for (const s of systems) md.push(`- ${systemByName(s).label} (${systemByName(s).backend}): ${systemByName(s).notes}`);
  md.push('', 'Throughput = jobs / wall time from worker start until the database holds no unfinished job (sqljobs: `<prefix>jobs` empty and `<prefix>history` holding every job). Latency = enqueue call to handler start. Event-loop lag: perf_hooks.monitorEventLoopDelay p99 (resolution 5 ms) while processing, and the longest delay of a 5 ms timer (catches a loop starved by microtasks, where the histogram records nothing).', '');
  md.push('## Durability settings', '');
  for (const s of systems) {
    const d = runs.find((r) => r.system === s && r.ok && r.durability)?.durability;
    if (d) md.push(`- ${systemByName(s).label} (${systemByName(s).backend}): ${Object.entries(d).map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  }
  md.push('', '## Targets', '', targetsTable(targets), '', 'Other ratios (medians):', '', ...info.map((l) => `- ${l}`), '');
  if (memory) {
    md.push('## Memory: sqljobs SQLite worker over a long run', '');
    md.push(memory.ok
      ? markdownTable(['jobs', 'RSS before start', 'RSS after 10,000 (after GC)', 'RSS at the end (after GC)', 'growth', 'heap after 10,000 → end', 'jobs/s first 10,000 / whole run', 'peak RSS'], [[
        Number(memory.jobs).toLocaleString('en-US'), `${fmt(memory.rssBefore as number)} MB`, `${fmt(memory.rssAtMark as number)} MB`, `${fmt(memory.rssEnd as number)} MB`,
        `${fmt((memory.growth as number) * 100, 1)} %`, `${fmt(memory.heapAtMark as number)} → ${fmt(memory.heapEnd as number)} MB`,
        `${fmt(memory.rateFirst as number)} / ${fmt(memory.rate as number)}`, `${fmt(memory.peakRssMB, 0)} MB`,
      ]])
      : `failed: ${memory.error}`, '');
  }
  md.push('## Per-run figures', '', perRunTable(res, systems, rounds), '');
  const noisy = runs.filter((r) => (r.busyBefore as number) > BUSY_THRESHOLD);
  if (noisy.length) {
    md.push(`## Runs started while other processes kept the machine busy (> ${BUSY_THRESHOLD} cores)`, '');
    for (const r of noisy) md.push(`- round ${r.round} ${r.system} ${r.measure}: ${fmt(r.busyBefore as number)} cores busy just before`);
    md.push('');
  }
  const failures = runs.filter((r) => !r.ok);
  if (failures.length) {
    md.push('## Failed measurements', '');
    for (const f of failures) md.push(`- round ${f.round} ${f.system} ${f.measure}: ${f.error?.split('\n').slice(0, 3).join(' ')}`);
    md.push('');
  }

  // CPU profiles (node --cpu-prof) of the sqljobs measurements behind every missed target, cut to the measured window.
  const toProfile = new Map<string, { system: string; measure: Measure }>();
  if (flags['profile-all']) {
    for (const s of ['sqljobs-sqlite', 'sqljobs-pg']) for (const m of MEASURES) toProfile.set(`${s}:${m}`, { system: s, measure: m });
  } else if (!flags['no-profile']) {
    for (const t of targets) if (!passes(t) && t.profile) toProfile.set(`${t.profile.system}:${t.profile.measure}`, t.profile);
  }
  if (toProfile.size) md.push('## CPU profiles of sqljobs (missed targets)', '');
  for (const { system, measure: m } of toProfile.values()) {
    if (!systems.includes(system)) continue;
    const dir = path.join(RESULTS_DIR, 'profiles', `${system}-${m}`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    log(`profiling ${system} ${m}`);
    const r = await measure(system, m, jobs, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
    const file = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f))[0];
    if (!r.ok || !file) {
      md.push(`- ${system} ${m}: profiling run failed: ${r.error ?? 'no profile written'}`, '');
      continue;
    }
    const summary = summarizeProfile(file, r.windowUs);
    md.push(profileMarkdown(`${system} ${m} (profiled run: ${describe(r)}; ${path.relative(REPO_DIR, file)})`, summary));
  }

  // Round trips behind a missed processing target: store calls, rows per call, time per call.
  const diagnose = new Set<string>();
  for (const t of targets) if (!passes(t) && t.profile?.measure === 'process') diagnose.add(t.profile.system === 'sqljobs-pg' ? 'postgres' : 'sqlite');
  if (diagnose.size && !flags['no-profile']) {
    md.push('## sqljobs database round trips while processing (bench/diagnose.ts)', '');
    for (const backend of diagnose) {
      log(`diagnosing sqljobs ${backend} round trips`);
      const extra = backend === 'postgres' ? [['--explain'], ['--analyze', '--explain']] : [[]];
      for (const e of extra) {
        await waitQuiet(os.cpus().length, BUSY_THRESHOLD, Number(flags['quiet-wait']) * 1000, log);
        md.push('```', await runScript('bench/diagnose.ts', ['--backend', backend, '--jobs', String(jobs), ...e]), '```', '');
      }
    }
  }

  const text = md.join('\n');
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.md'), text);
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), JSON.stringify({ flags, runs, memory }, null, 1));
  process.stdout.write(`${text}\n`);
  log(`written ${path.relative(REPO_DIR, path.join(RESULTS_DIR, 'latest.md'))}`);
  const swept2 = (await sweepLeftovers()) + (await sweepMysqlLeftovers());
  if (swept2) log(`dropped ${swept2} bx_* tables/schemas left behind by failed measurements`);
  fs.rmSync(SQLITE_DIR, { recursive: true, force: true });
  fs.rmSync(snapshot.dir, { recursive: true, force: true });
}

await main();
