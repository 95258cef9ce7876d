/**
 * Claims at 1,000,000 pending jobs (issue 14): priority aging must keep claims index-driven, and a
 * managed queue (fair groups, limits) must claim as fast at that size. Fills the hot table with raw
 * SQL (half in a plain queue with priorities 0-10, half in a grouped queue over 1,000 groups with
 * groupConcurrency 5), ages every due job twice, then times claims of 10 on each path.
 *   node --import tsx bench/at-scale.ts --backend sqlite|postgres|mysql [--jobs 1000000] [--claims 50]
 * (MySQL: the fill reads MariaDB's sequence engine, seq_1_to_N.)
 */
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { createJobs, type Jobs } from '../lib/index.ts';
import type { Store } from '../lib/driver/store.ts';
import { newRunId } from './lib/config.ts';
import { dropByPrefix, newPool } from './lib/pg.ts';
import { dropMysqlByPrefix, newMysqlPool } from './lib/mysql.ts';
import { fmt } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: { backend: { type: 'string', default: 'sqlite' }, jobs: { type: 'string', default: '1000000' }, claims: { type: 'string', default: '50' } },
});
const n = Number(args.jobs);
const prefix = `${newRunId()}_`;

/** Every pending row due an hour ago and spread over the next 1,000 s, priorities 0-10; odd rows in the grouped queue. */
function fillSql(backend: string): string {
  if (backend === 'postgres') {
    return `INSERT INTO ${prefix}jobs (id, name, queue, state, payload, priority, max_attempts, run_at, created_at, group_key, fair_rank)
      SELECT gen_random_uuid(), 'noop', CASE WHEN g % 2 = 0 THEN 'plain' ELSE 'fair' END, 'pending', '{}', g % 11, 25,
        now() - interval '1 hour' + g * interval '1 ms', now(), CASE WHEN g % 2 = 1 THEN 'g' || (g % 1000) END, CASE WHEN g % 2 = 1 THEN g / 2000 ELSE 0 END
      FROM generate_series(1, ${n}) g`;
  }
  if (backend === 'mysql') {
    return `INSERT INTO ${prefix}jobs (id, name, queue, state, payload, priority, max_attempts, run_at, created_at, group_key, fair_rank)
      SELECT UUID(), 'noop', CASE WHEN seq % 2 = 0 THEN 'plain' ELSE 'fair' END, 'pending', '{}', seq % 11, 25,
        UTC_TIMESTAMP(3) - INTERVAL 1 HOUR + INTERVAL seq * 1000 MICROSECOND, UTC_TIMESTAMP(3),
        CASE WHEN seq % 2 = 1 THEN CONCAT('g', seq % 1000) END, CASE WHEN seq % 2 = 1 THEN seq DIV 2000 ELSE 0 END
      FROM seq_1_to_${n}`;
  }
  const now = Date.now();
  return `WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < ${n})
    INSERT INTO ${prefix}jobs (id, name, queue, state, payload, priority, max_attempts, run_at, created_at, group_key, fair_rank)
    SELECT lower(hex(randomblob(16))), 'noop', CASE WHEN g % 2 = 0 THEN 'plain' ELSE 'fair' END, 'pending', '{}', g % 11, 25,
      ${now - 3_600_000} + g, ${now}, CASE WHEN g % 2 = 1 THEN 'g' || (g % 1000) END, CASE WHEN g % 2 = 1 THEN g / 2000 ELSE 0 END FROM seq`;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  let jobs: Jobs;
  let fill: () => Promise<void>;
  let cleanup: () => Promise<void>;
  if (args.backend === 'postgres') {
    const pool = newPool(4);
    jobs = createJobs({ db: pool, tablePrefix: prefix, worker: false, logger: false });
    fill = async () => void (await pool.query(fillSql('postgres')));
    cleanup = async () => {
      await jobs.close();
      await pool.end();
      await dropByPrefix(prefix);
    };
  } else if (args.backend === 'mysql') {
    const pool = newMysqlPool(4);
    jobs = createJobs({ db: pool, tablePrefix: prefix, worker: false, logger: false });
    fill = async () => void (await pool.query(fillSql('mysql')));
    cleanup = async () => {
      await jobs.close();
      await pool.end();
      await dropMysqlByPrefix(prefix);
    };
  } else {
    const path = `/tmp/${prefix}.db`;
    const db = new Database(path);
    jobs = createJobs({ db, tablePrefix: prefix, worker: false, logger: false });
    fill = async () => void db.exec(fillSql('sqlite'));
    cleanup = async () => {
      await jobs.close();
      db.close();
    };
  }
  const store = (jobs as unknown as { store: Store }).store;
  await jobs.migrate();
  console.log(`${args.backend}: filling ${n.toLocaleString('en')} pending jobs…`);
  console.log(`  fill: ${fmt(await timed(fill))} ms`);
  await store.queueSettingsSave({ queue: 'fair', settings: { concurrency: null, groupConcurrency: 5, rateLimit: null }, codeHash: null });
  const rounds: number[] = [];
  let raised = 0;
  for (let i = 0; i < 2; i++) rounds.push(await timed(async () => (raised += await store.jobsAgePriority({ everyMs: 100, limit: 1000 }))));
  console.log(`  aging round (limit 1,000): ${rounds.map((ms) => fmt(ms)).join(', ')} ms; raised ${raised}`);
  const claims = Number(args.claims);
  const plain: number[] = [];
  const managed: number[] = [];
  for (let i = 0; i < claims; i++) {
    plain.push(await timed(() => store.jobClaim({ workerId: 'bench', names: ['noop'], limit: 10 })));
    managed.push(await timed(() => store.jobClaimManaged({ workerId: 'bench', names: ['noop'], queue: 'fair', limit: 10 })));
  }
  console.log(`  claim of 10, plain queue: median ${fmt(median(plain))} ms (min ${fmt(Math.min(...plain))}, max ${fmt(Math.max(...plain))})`);
  console.log(`  claim of 10, managed queue (1,000 groups, groupConcurrency 5): median ${fmt(median(managed))} ms (min ${fmt(Math.min(...managed))}, max ${fmt(Math.max(...managed))})`);
  await cleanup();
}

await main();
