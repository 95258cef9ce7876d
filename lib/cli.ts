#!/usr/bin/env node
/**
 * sqljobs command line: run a worker process, apply the schema, or show the status, for the Jobs
 * instance an app's module exports (as `jobs` or as its default export).
 *
 *   sqljobs worker  <module>   run this module's jobs until SIGINT/SIGTERM (graceful stop)
 *   sqljobs migrate <module>   apply the schema and exit
 *   sqljobs status  <module>   live and finished counts, workers, leader  [--json]
 *   sqljobs history <module>   finished jobs per month, where each is kept, retention  [--json]
 *   sqljobs history-partitions <module> [--apply]
 *                              MySQL/MariaDB, SQL Server: print (and with --apply run) the DDL that partitions
 *                              history by month, or adds the coming months to a partitioned one
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { Jobs } from './jobs.ts';
import { stopOnSignals } from './worker/shutdown.ts';

const USAGE = `usage: sqljobs <worker|migrate|status|history|history-partitions> <module> [--json] [--apply]
  <module> exports a Jobs instance (createJobs(...)) as \`jobs\` or as its default export`;

/** The flags each command takes (anything else is a mistake, said rather than ignored). */
const FLAGS: Record<string, string[]> = { worker: [], migrate: [], status: ['--json'], history: ['--json'], 'history-partitions': ['--apply'] };

/** A usage mistake: said on stderr with the usage, exit code 2. */
class UsageError extends Error {}

async function load(file: string | undefined, command: string): Promise<Jobs> {
  if (!file || file.startsWith('-')) throw new UsageError(`sqljobs ${command}: which module? (a file that exports a Jobs instance)`);
  let mod: { jobs?: unknown; default?: unknown };
  try {
    mod = (await import(pathToFileURL(path.resolve(file)).href)) as typeof mod;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.[cm]?tsx?$/.test(file)) {
      throw new Error(`${file} is TypeScript, which node loads with a loader: NODE_OPTIONS="--import tsx" npx sqljobs ${command} ${file}`, { cause: err });
    }
    throw err;
  }
  const jobs = mod.jobs ?? mod.default;
  if (!(jobs instanceof Jobs) && !(jobs && typeof (jobs as Jobs).start === 'function' && typeof (jobs as Jobs).enqueue === 'function')) {
    throw new Error(`${file} must export a Jobs instance (createJobs(...)) as \`jobs\` or as its default export`);
  }
  return jobs as Jobs;
}

async function worker(jobs: Jobs, file: string): Promise<void> {
  if (jobs.mode === 'producer') {
    // It would start, claim nothing and say it runs the jobs it defines (one module for both tiers).
    throw new Error(`${file}: its instance was created with mode: 'producer' (or worker: false), which runs no jobs; ` +
      "the worker process needs one made with mode 'both' or 'consumer' (say, mode: process.env.ROLE === 'web' ? 'producer' : 'both')");
  }
  let done = 0;
  let failed = 0;
  jobs.on('completed', () => done++);
  jobs.on('failed', (e) => {
    failed++;
    console.error(`[sqljobs] ${e.name} ${e.id} failed for good: ${e.error.message}`);
  });
  jobs.on('error', (err) => console.error('[sqljobs] error:', (err as Error).message ?? err));
  jobs.on('leader', (e) => console.log(`[sqljobs] ${e.leader ? 'now leading' : 'no longer leading'}`));
  stopOnSignals(jobs, (line) => console.log(`[sqljobs] ${line}`));
  process.on('exit', () => console.log(`[sqljobs] stopped: ${done} completed, ${failed} failed`));
  await jobs.start();
  console.log(`[sqljobs] worker ${jobs.workerId} running ${jobs.names.join(', ') || '(no jobs defined)'}`);
  const summary = setInterval(() => console.log(`[sqljobs] ${done} completed, ${failed} failed`), 60_000);
  summary.unref();
}

async function status(jobs: Jobs, json: boolean): Promise<void> {
  const s = await jobs.status();
  if (json) {
    console.log(JSON.stringify(s, null, 2));
    return;
  }
  console.log('live jobs (state, queue, count):');
  for (const r of s.live) console.log(`  ${r.state.padEnd(8)} ${r.queue.padEnd(24)} ${r.count}`);
  if (!s.live.length) console.log('  none');
  console.log('finished jobs:');
  for (const r of s.finished) console.log(`  ${r.state.padEnd(10)} ${r.capped ? '≥ ' : ''}${r.count}`);
  if (!s.finished.length) console.log('  none');
  console.log('workers:');
  const now = Date.now();
  for (const w of s.workers) {
    console.log(`  ${w.id}  pid ${w.pid} on ${w.host}, concurrency ${w.concurrency}, heartbeat ${Math.round((now - w.heartbeatAt.getTime()) / 1000)} s ago`);
  }
  if (!s.workers.length) console.log('  none');
  console.log(`leader: ${s.leader ?? 'none'}`);
}

/** Per month of the finish time (UTC), newest first: counts per state, where it is kept, its size; the retention and the next drop. */
async function history(jobs: Jobs, json: boolean): Promise<void> {
  const h = await jobs.historyMonths();
  if (json) {
    console.log(JSON.stringify(h, null, 2));
    return;
  }
  console.log('finished jobs per month (UTC):');
  for (const m of h.months) {
    const counts = Object.entries(m.counts).map(([state, n]) => `${state} ${m.estimated ? '≈' : ''}${n}`).join(', ') || 'none';
    const kept = m.storedIn === null ? '' : `  in ${m.storedIn}${m.bytes === null ? '' : ` (${m.bytes} bytes)`}`;
    console.log(`  ${m.month}  ${counts}${kept}`);
  }
  if (!h.months.length) console.log('  none');
  console.log(`retention: ${h.retentionDays === null ? 'none set (history is kept)' : `${h.retentionDays} days`}`);
  if (h.nextDrop) console.log(`next drop: ${h.nextDrop.storedIn} after ${h.nextDrop.at.toISOString()}`);
}

/** Print the partition DDL, and run it with --apply (the first run copies history: see the README). */
async function historyPartitions(jobs: Jobs, apply: boolean): Promise<void> {
  const ddl = await jobs.historyPartitions({ apply });
  if (!ddl.length) {
    console.log('-- history is partitioned, with the current and next month: nothing to do');
    return;
  }
  for (const s of ddl) console.log(`${s};`);
  console.log(apply ? '-- applied' : '-- not applied: run again with --apply to run it');
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  // The module is the first argument that is not a flag; flags may come before or after it.
  const file = args.find((a) => !a.startsWith('-'));
  const rest = args.filter((a) => a !== file);
  if (command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    console.log(version());
    return;
  }
  if (!command) throw new UsageError('sqljobs: which command?');
  if (!Object.hasOwn(FLAGS, command)) throw new UsageError(`sqljobs: unknown command "${command}"`);
  const unknown = rest.filter((arg) => !FLAGS[command].includes(arg));
  if (unknown.length) {
    const takes = FLAGS[command].length ? `it takes ${FLAGS[command].join(', ')}` : 'it takes none';
    throw new UsageError(`sqljobs ${command}: unknown argument${unknown.length > 1 ? 's' : ''} ${unknown.map((a) => `"${a}"`).join(', ')} (${takes})`);
  }
  const jobs = await load(file, command);
  if (command === 'worker') return worker(jobs, file!);
  if (command === 'migrate') {
    await jobs.migrate();
    console.log('[sqljobs] schema is up to date');
  } else if (command === 'history') {
    await history(jobs, rest.includes('--json'));
  } else if (command === 'history-partitions') {
    await jobs.migrate();
    await historyPartitions(jobs, rest.includes('--apply'));
  } else {
    await status(jobs, rest.includes('--json'));
  }
  await jobs.close();
  process.exit(0); // the app's own pool, opened by its module, would keep the process alive
}

/** This package's version, from its package.json (two folders up from lib/ or dist/lib/). */
function version(): string {
  const require = createRequire(import.meta.url);
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = require(up) as { name?: string; version?: string };
      if (pkg.name === 'sqljobs') return pkg.version ?? 'unknown';
    } catch {
      // the other layout
    }
  }
  return 'unknown';
}

main(process.argv.slice(2)).catch((err: Error) => {
  console.error(err.message);
  if (err instanceof UsageError) console.error(USAGE);
  process.exit(2);
});
