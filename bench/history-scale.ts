/**
 * History at scale on PostgreSQL (issue 15): two installations side by side in one database, the
 * current schema (history partitioned by UTC month, migration 014, and its logs and attempts by
 * their job's month, 015) and an unpartitioned one (every migration but those two applied, so each
 * is the one plain table it was before), each given the same
 * `--rows` finished jobs spread over the 12 past months and the current one. Per installation:
 * completions per second with the full history and, in a twin installation of the same schema kept
 * empty, with an empty one (the four take turns run by run, so a machine shared with others drifts
 * alike for all), every admin page and JSON call over HTTP (median and max), and retention of the
 * oldest month the way the leader runs it.
 *
 *   node --import tsx bench/history-scale.ts [--rows 10000000] [--jobs 20000] [--concurrency 10]
 *     [--runs 5] [--requests 7] [--keep] [--reuse <partitioned prefix>,<unpartitioned prefix>]
 *   npm run bench:history -- --rows 1000000
 *
 * --keep leaves both installations in place (their prefixes are printed); --reuse measures them
 * again instead of generating (same --rows), first refilling the oldest month retention removed.
 *
 * The unpartitioned installation records 014 and 015 as applied without running them: the code is
 * today's, the tables are the pre-014 ones (history's primary key id, the same nine secondary
 * indexes). Its partition upkeep at start fails (there is no history_default to look in): counted
 * and printed.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { createJobs, type Jobs } from '../lib/index.ts';
import type { Store } from '../lib/driver/store.ts';
import { loadMigrations, splitStatements } from '../lib/driver/migrations.ts';
import { historyTable, monthCreate, monthIn, partitionsLock, trailTables } from '../lib/driver/postgres/partitions.ts';
import { tables } from '../lib/driver/portable/statement.ts';
import { DIALECTS } from '../lib/driver/portable/dialect.ts';
import { throughputRead } from '../lib/driver/portable/throughput.ts';
import { utcMonth } from '../lib/driver/month.ts';
import { NAME_PREFIX, newRunId } from './lib/config.ts';
import { describePg, dropByPrefix, newPool } from './lib/pg.ts';
import { fmt, median, sleep } from './lib/stats.ts';
import { timeRequests, type Timing } from './lib/timing.ts';
import { serveAdmin } from './lib/admin-pages.ts';
import { SEED_COLS, pgSeedId } from './lib/seed-columns.ts';
import { holdPgClient, withHeld } from '../lib/driver/held.ts';
import { jobsComplete } from '../lib/driver/postgres/complete.ts';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '10000000' },
    jobs: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '10' },
    runs: { type: 'string', default: '5' },
    requests: { type: 'string', default: '7' },
    keep: { type: 'boolean', default: false },
    reuse: { type: 'string' },
    phases: { type: 'string', default: 'completions,cost,admin,retention' },
  },
});
const ROWS = Number(args.rows);
const JOBS = Number(args.jobs);
const CONCURRENCY = Number(args.concurrency);
const RUNS = Number(args.runs);
const REQUESTS = Number(args.requests);
/** Past months holding history, besides the current one. */
const PAST_MONTHS = 12;
/** Rows generated per statement (one statement writes their history, logs and attempts). */
const CHUNK = 500_000;
/** The migrations that partition history (014) and its trail, logs and attempts (015): left out of the unpartitioned installation. */
const PARTITIONING_MIGRATIONS = new Set([14, 15]);
/** As lib/maintenance/service.ts: rows per prune round, rounds until one prunes fewer. */
const PRUNE_BATCH = 1000;
const ADMIN_TARGET_MS = 200;
/** As lib/maintenance/service.ts: how long the leader keeps the throughput counters. */
const THROUGHPUT_KEEP_MS = 31 * 86_400_000;
/** Jobs per measured completion statement, and statements measured per installation. */
const COST_BATCH = 100;
const COST_ROUNDS = 15;
const PHASES = new Set(args.phases!.split(','));
/**
 * Not the harness's bx_: its sweep of leftovers (bench/run.ts, which others run on the same server)
 * drops every bx_ table, and did, mid-generation of a 10,000,000-row installation.
 */
const FAMILY = 'bh_';
const newPrefix = () => `${FAMILY}${newRunId().slice(NAME_PREFIX.length)}_`;
const drop = (prefix: string) => dropByPrefix(prefix, [], FAMILY);

type Kind = 'partitioned' | 'unpartitioned';

interface Install {
  kind: Kind;
  prefix: string;
  /** The same schema, its history kept empty: completions with an empty history. */
  emptyPrefix: string;
  /** Error events of the library on this installation (the unpartitioned one's failed upkeep). */
  errors: string[];
}

interface Figures {
  /** Seconds to generate the rows (or, reused, to refill the oldest month). */
  generateS: number;
  emptyRate: number[];
  fullRate: number[];
  pages: Timing[];
  /** The completion statement itself (EXPLAIN ANALYZE of COST_BATCH jobs): medians, empty and full history. */
  cost: { empty: StatementCost[]; full: StatementCost[] };
  retention: { ms: number; rounds: number; rows: number; left: number };
}

const log = (s: string) => console.log(s);
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const pool = newPool(10);

async function inTransaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return withHeld(await holdPgClient(pool), (c) => c.query('ROLLBACK'), async (c) => {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  });
}


/** Today's schema, the empty legacy partitions of history, logs and attempts replaced by one partition per month (12 past, current, next). */
async function setupPartitioned(prefix: string, now: Date): Promise<void> {
  const jobs = createJobs({ db: pool, tablePrefix: prefix, worker: false, logger: false });
  await jobs.migrate();
  await jobs.close();
  for (const table of monthlyTables(prefix)) {
    await pool.query(`ALTER TABLE ${table.name} DETACH PARTITION ${table.name}_legacy`);
    await pool.query(`DROP TABLE ${table.name}_legacy`);
  }
  await makeMonths(prefix, now);
}

const monthlyTables = (prefix: string) => [historyTable(tables(prefix)), ...trailTables(tables(prefix))];

/**
 * A partition per month, 12 past to next, of history (by finish time) and of logs and attempts (by
 * their job's id, made when the job was), as the leader makes them (partitions.ts), where none is yet:
 * retention dropped the oldest ones of a reused installation.
 */
async function makeMonths(prefix: string, now: Date): Promise<void> {
  for (const table of monthlyTables(prefix)) {
    for (let k = -PAST_MONTHS; k <= 1; k++) {
      const month = monthIn(table, now, k);
      if ((await pool.query('SELECT to_regclass($1) AS r', [month.name])).rows[0].r !== null) continue;
      await inTransaction(async (c) => {
        for (const s of [partitionsLock(prefix), ...monthCreate(table, month)]) await c.query(s.text, s.values);
      });
    }
  }
}

/** Every migration but 014 and 015, applied as the library applies them; those two recorded, so the library runs neither. */
async function setupUnpartitioned(prefix: string): Promise<void> {
  const t = tables(prefix);
  await inTransaction(async (c) => {
    await c.query(`CREATE TABLE ${t.migrations} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    for (const m of loadMigrations('postgres', prefix)) {
      if (!PARTITIONING_MIGRATIONS.has(m.version)) for (const s of splitStatements(m.sql)) await c.query(s);
      await c.query(`INSERT INTO ${t.migrations} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
    }
  });
}

/** What history, logs and attempts are in the catalog: plain tables, or partitioned ones and their partitions. */
async function layout(prefix: string): Promise<string> {
  const described: string[] = [];
  for (const table of monthlyTables(prefix)) {
    const { rows } = await pool.query(
      `SELECT c.relkind, array(SELECT p.relname::text FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = c.oid ORDER BY 1) AS parts
       FROM pg_class c WHERE c.oid = to_regclass($1)`, [table.name]);
    const parts = (rows[0].parts as string[]).map((p) => p.slice(table.name.length + 1));
    described.push(rows[0].relkind === 'r' ? `${table.name} plain` : `${table.name} partitioned, ${parts.length} partitions: ${parts.join(' ')}`);
  }
  return described.join('; ');
}

// ---------------------------------------------------------------- the history rows

/**
 * Row `i` of `ROWS`, finished at `ts` (epoch ms), spread evenly from the start of the month 12
 * months back to a minute ago; names, queues, tags, batches, refIds and states as ./lib/seed-columns.ts
 * (5 % of the completed jobs after one failed attempt, failed ones after 3 attempts). Payload ~230
 * bytes, result ~120, error ~420 with its stack.
 */
const COLS = {
  ...SEED_COLS,
  id: pgSeedId('8'),
  attempts: `CASE WHEN i % 200 < 180 THEN 1 + (i % 20 = 3)::int WHEN i % 200 < 196 THEN 3 WHEN i % 200 < 199 THEN 1 ELSE 0 END`,
  /** Attempt records: one per failed attempt (a completion writes none). */
  failedAttempts: `CASE WHEN i % 200 < 180 THEN (i % 20 = 3)::int WHEN i % 200 < 196 THEN 3 ELSE 0 END`,
  payload: `('{"orderId":' || i || ',"customer":"cust-' || (i % 50000) || '","lines":[{"sku":"SKU-' || (i % 997) || '","qty":' || (i % 7 + 1) || '},{"sku":"SKU-' || (i % 991) || '","qty":1}],"currency":"EUR","note":"' || repeat('n', 100) || '"}')::json`,
  result: `('{"ok":true,"invoice":"INV-' || i || '","total":' || (i % 100000) || ',"mailed":true,"summary":"' || repeat('r', 60) || '"}')::json`,
  error: `'{"name":"Error","message":"upstream 503 from billing","stack":"Error: upstream 503 from billing\\n    at charge (/app/billing.js:42:11)\\n    at process (/app/jobs/invoice.js:17:5)\\n    at run (/app/node_modules/sqljobs/dist/lib/worker/run.js:88:20)\\n    at async Promise.all (index 0)\\n    at async tick (/app/node_modules/sqljobs/dist/lib/worker/worker.js:140:7)"}'::json`,
};

/** History, logs (10 % of jobs, 2 lines each) and attempt records of rows [lo, hi), in one statement. */
function generateChunk(prefix: string, lo: number, hi: number, startMs: number, spanMs: number, beforeMs = Number.MAX_SAFE_INTEGER): string {
  const c = COLS;
  const at = (e: string) => `to_timestamp((${e}) / 1000.0)`;
  return `WITH src AS (
      SELECT i, ts, ${c.id} AS id, ${c.state} AS state FROM (
        SELECT i, ${startMs}::bigint + (i * ${spanMs}::numeric / ${ROWS})::bigint AS ts FROM generate_series(${lo}::bigint, ${hi - 1}) i) s
      WHERE ts < ${beforeMs}),
    h AS (INSERT INTO ${prefix}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, started_at, finished_at,
        tag, batch_id, ref_id, worker_id, error, result)
      SELECT id, ${c.name}, ${c.queue}, state, ${c.payload}, i % 3, ${c.attempts}, 3, ${at('ts - 5000')}, ${at('ts - 5000')},
        CASE WHEN state <> 'skipped' THEN ${at('ts - 40')} END, ${at('ts')},
        ${c.tag}, ${c.batch}, ${c.ref('ref-')}, 'worker-' || (i % 8),
        CASE WHEN state = 'failed' THEN ${c.error} END, CASE WHEN state = 'completed' THEN ${c.result} END
      FROM src),
    l AS (INSERT INTO ${prefix}logs (job_id, attempt, at, message)
      SELECT id, 1, ${at('ts - 30 + k')}, 'step ' || k || ': fetched ' || (i % 500) || ' rows from the ledger' FROM src, generate_series(1, 2) k WHERE i % 10 = 4),
    a AS (INSERT INTO ${prefix}attempts (job_id, attempt, worker_id, started_at, finished_at, error)
      SELECT id, n, 'worker-' || (i % 8), ${at('ts - 40 - n * 60000')}, ${at('ts - n * 60000')}, ${c.error}
      FROM src, generate_series(1, ${c.failedAttempts}) n)
    SELECT count(*) AS n FROM src`;
}

/**
 * ROWS rows in chunks (or, `refill`, only those of the oldest month: retention removed them), then
 * VACUUM (ANALYZE); answers seconds taken.
 */
async function generate(inst: Install, now: Date, refill = false): Promise<number> {
  const startMs = utcMonth(now, -PAST_MONTHS).from.getTime();
  const spanMs = now.getTime() - 60_000 - startMs;
  const beforeMs = refill ? utcMonth(now, -PAST_MONTHS).to.getTime() : Number.MAX_SAFE_INTEGER;
  const rows = refill ? Math.min(ROWS, Math.ceil((ROWS * (beforeMs - startMs)) / spanMs)) : ROWS;
  const t0 = performance.now();
  for (let lo = 0; lo < rows; lo += CHUNK) {
    await pool.query(generateChunk(inst.prefix, lo, Math.min(rows, lo + CHUNK), startMs, spanMs, beforeMs));
    if (ROWS > CHUNK) log(`    ${inst.kind}: ${Math.min(ROWS, lo + CHUNK).toLocaleString('en-US')} rows, ${fmt((performance.now() - t0) / 1000)} s (load ${load()})`);
  }
  // VACUUM as autovacuum would have over the months these rows took (index-only scans read the visibility map).
  for (const table of ['history', 'logs', 'attempts']) await pool.query(`VACUUM (ANALYZE) ${inst.prefix}${table}`);
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------- completions

/** JOBS no-op jobs enqueued, then run by the library's worker: jobs per second until the hot table is empty. */
async function completionRate(inst: Install, prefix: string): Promise<number> {
  const jobs = createJobs<{ noop: { i: number } }>({ db: pool, tablePrefix: prefix, worker: { concurrency: CONCURRENCY }, logger: false })
    .define('noop', (p) => ({ ok: true, i: p.i }));
  jobs.on('error', (err) => inst.errors.push(String((err as Error).message ?? err)));
  try {
    await jobs.enqueueMany(Array.from({ length: JOBS }, (_, i) => ({ name: 'noop' as const, payload: { i } })));
    const t0 = performance.now();
    await jobs.start();
    while (Number((await pool.query(`SELECT count(*) AS n FROM ${prefix}jobs`)).rows[0].n) > 0) await sleep(5);
    return (JOBS / (performance.now() - t0)) * 1000;
  } finally {
    await jobs.close();
  }
}

/**
 * RUNS runs in each of the four installations (empty and full history, partitioned and not), taking
 * turns run by run: a machine shared with others drifts, and then all four see the drift.
 */
async function completionRates(installs: Install[], figures: Map<Kind, Figures>): Promise<void> {
  for (let r = 0; r < RUNS; r++) {
    const line: string[] = [];
    for (const inst of installs) {
      const f = figures.get(inst.kind)!;
      // An empty history stays empty: the previous run's jobs go.
      await pool.query(`TRUNCATE ${inst.emptyPrefix}history, ${inst.emptyPrefix}logs, ${inst.emptyPrefix}attempts`);
      f.emptyRate.push(await completionRate(inst, inst.emptyPrefix));
      f.fullRate.push(await completionRate(inst, inst.prefix));
      line.push(`${inst.kind} empty ${fmt(f.emptyRate.at(-1))}/s, full ${fmt(f.fullRate.at(-1))}/s`);
    }
    log(`    run ${r + 1}/${RUNS}: ${line.join('; ')} (load ${load()})`);
  }
}

/** One completion statement's server time, shared buffers touched and WAL written, per job. */
interface StatementCost {
  us: number;
  buffers: number;
  walBytes: number;
}

/**
 * The library's completion statement (./lib/driver/postgres/complete.ts) for COST_BATCH claimed
 * jobs, under EXPLAIN (ANALYZE, BUFFERS, WAL): it runs as it does for the worker, and the buffers
 * and WAL it needs do not depend on how busy the machine is, as a rate does.
 */
async function completionCost(prefix: string): Promise<StatementCost> {
  const jobs = createJobs({ db: pool, tablePrefix: prefix, worker: false, logger: false });
  try {
    await jobs.enqueueMany(Array.from({ length: COST_BATCH }, (_, i) => ({ name: 'noop', payload: { i } })));
    const claimed = await (jobs as unknown as { store: Store }).store.jobClaim({ workerId: 'bench', names: ['noop'], limit: COST_BATCH });
    const s = jobsComplete(tables(prefix))(claimed.map((j) => ({ id: j.id, token: j.token, resultJson: '{"ok":true}' })));
    const [plan] = (await pool.query(`EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) ${s.text}`, s.values)).rows[0]['QUERY PLAN'];
    const top = plan.Plan;
    const n = claimed.length;
    return { us: (plan['Execution Time'] * 1000) / n, buffers: (top['Shared Hit Blocks'] + top['Shared Read Blocks']) / n, walBytes: top['WAL Bytes'] / n };
  } finally {
    await jobs.close();
  }
}

async function completionCosts(installs: Install[], figures: Map<Kind, Figures>): Promise<void> {
  // Steady state first: the completion runs left dead rows in jobs and twins' histories without
  // statistics; then one statement each not counted (caches of a connection that never saw the tables).
  for (const prefix of installs.flatMap((i) => [i.emptyPrefix, i.prefix])) {
    for (const table of ['jobs', 'history']) await pool.query(`VACUUM (ANALYZE) ${prefix}${table}`);
    await completionCost(prefix);
  }
  for (let r = 0; r < COST_ROUNDS; r++) {
    for (const inst of installs) {
      const f = figures.get(inst.kind)!;
      f.cost.empty.push(await completionCost(inst.emptyPrefix));
      f.cost.full.push(await completionCost(inst.prefix));
    }
  }
}

// ---------------------------------------------------------------- admin

async function adminTimings(inst: Install): Promise<Timing[]> {
  const jobs = createJobs({ db: pool, tablePrefix: inst.prefix, worker: false, logger: false });
  const { origin, cookie, server } = await serveAdmin(jobs);
  try {
    const get = (p: string) => () => fetch(origin + p, { headers: { cookie } });
    const finished = (await jobs.list({ state: 'completed', limit: 1 })).items[0].id;
    let cursor: string | undefined;
    for (let k = 0; k < 4; k++) cursor = (await jobs.list({ state: 'completed', limit: 500, cursor })).nextCursor ?? undefined;
    const pages: [string, string][] = [
      ['overview (with the throughput chart)', '/'],
      ['overview fragment (live poll)', '/fragments/overview'],
      ['jobs, first page', '/jobs'],
      ['jobs state=completed', '/jobs?state=completed'],
      ['jobs state=failed', '/jobs?state=failed'],
      ['jobs queue=q2', '/jobs?queue=q2'],
      ['jobs name=job-3', '/jobs?name=job-3'],
      ['jobs name=rare-report (0.01 %)', '/jobs?name=rare-report'],
      ['jobs tag=tag-10', '/jobs?tag=tag-10'],
      ['jobs state=completed, page 41 (keyset)', `/jobs?state=completed&cursor=${encodeURIComponent(cursor!)}`],
      ['job page (a finished job)', `/jobs/${finished}`],
      ['queues', '/queues'],
      ['queues fragment', '/fragments/queues'],
      ['API list', '/api/jobs'],
      ['API list state=failed queue=q1', '/api/jobs?state=failed&queue=q1'],
      ['API list tag=tag-10', '/api/jobs?tag=tag-10'],
      ['API job (finished)', `/api/jobs/${finished}`],
      ['API stats (counts, throughput)', '/api/stats'],
      ['API queues', '/api/queues'],
    ];
    for (const p of ['/history', '/api/history']) {
      const res = await fetch(origin + p, { headers: { cookie } });
      await res.arrayBuffer();
      if (res.status === 404) log(`    ${inst.kind}: ${p} is not a route here (${res.status})`);
      else pages.push([`history view ${p}`, p]);
    }
    const store = (jobs as unknown as { store: Store }).store;
    // What the leader (every 10 s) would have done by now: the closed minutes counted, the chart reads them.
    await store.throughputRollup({ keepMs: THROUGHPUT_KEEP_MS });
    const out: Timing[] = [];
    for (const [label, p] of pages) out.push(await timeRequests(label, get(p), REQUESTS));
    out.push(await timeCall('store.historyMonths (History view)', () => store.historyMonths({ cap: 10_000 })));
    const hour = () => throughputRead({ d: DIALECTS.postgres, t: tables(inst.prefix) }, { from: Date.now() - 3_600_000, to: null, bucketMs: 60_000, counted: null });
    out.push(await timeCall('throughput from history alone (before the counters)', () => pool.query(hour().text, hour().values)));
    return out;
  } finally {
    server.close();
    await jobs.close();
  }
}

/** As timeRequests, for a store call the History view will make (whether or not its route exists yet). */
async function timeCall(label: string, call: () => Promise<unknown>): Promise<Timing> {
  return timeRequests(label, async () => {
    await call();
    return new Response('');
  }, REQUESTS);
}

// ---------------------------------------------------------------- retention

/**
 * Retention cutoff at the end of the oldest month, pruned as the leader prunes (historyPrune rounds
 * of PRUNE_BATCH until one prunes fewer): partitioned, the month is dropped whole (its logs and
 * attempts deleted first) and the few seconds past its end pruned by row; unpartitioned, every row.
 */
async function retention(inst: Install, now: Date): Promise<Figures['retention']> {
  const rows = await oldestMonthRows(inst, now);
  const jobs = createJobs({ db: pool, tablePrefix: inst.prefix, worker: false, logger: false });
  const store = (jobs as unknown as { store: Store }).store;
  try {
    const dbNow = (await pool.query('SELECT now() AS now')).rows[0].now as Date;
    const olderThanMs = dbNow.getTime() - utcMonth(now, -PAST_MONTHS).to.getTime();
    let rounds = 0;
    const t0 = performance.now();
    while ((rounds++, await store.historyPrune({ olderThanMs, limit: PRUNE_BATCH })) === PRUNE_BATCH);
    const ms = performance.now() - t0;
    return { ms, rounds, rows, left: await oldestMonthRows(inst, now) };
  } finally {
    await jobs.close();
  }
}

/** History rows finished before the end of the oldest month. */
async function oldestMonthRows(inst: Install, now: Date): Promise<number> {
  const end = utcMonth(now, -PAST_MONTHS).to;
  return Number((await pool.query(`SELECT count(*) AS n FROM ${inst.prefix}history WHERE finished_at < $1`, [end])).rows[0].n);
}

// ---------------------------------------------------------------- report

/** Medians of the completion statement's cost per job, empty and full history, and full / empty. */
function costLines(p: Figures, u: Figures): string[] {
  if (!p.cost.full.length) return [];
  const m = (xs: StatementCost[], k: keyof StatementCost) => median(xs.map((x) => x[k]));
  const what: [keyof StatementCost, string][] = [['us', 'server µs'], ['buffers', 'shared buffers'], ['walBytes', 'WAL bytes']];
  return what.map(([k, label]) => {
    const cell = (f: Figures) => `${fmt(m(f.cost.empty, k))} → ${fmt(m(f.cost.full, k))} (${(m(f.cost.full, k) / m(f.cost.empty, k)).toFixed(2)}×)`;
    return `| completion statement per job, ${label}: empty → full (full / empty), median of ${p.cost.full.length} | ${cell(p)} | ${cell(u)} | ${(m(p.cost.full, k) / m(u.cost.full, k)).toFixed(2)}× |`;
  });
}

function report(installs: Install[], figures: Map<Kind, Figures>): string {
  const [p, u] = [figures.get('partitioned')!, figures.get('unpartitioned')!];
  const rate = (xs: number[]) => `${fmt(median(xs))} (${xs.map((x) => fmt(x)).join(', ')})`;
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '–');
  const lines = [
    `\n## History at ${ROWS.toLocaleString('en-US')} rows, PostgreSQL (load average now ${load()})\n`,
    '| figure | partitioned | unpartitioned | partitioned / unpartitioned |',
    '|---|---:|---:|---:|',
    `| ${args.reuse ? 'refill of the oldest month, reused installations' : 'generation of the rows'} (s) | ${fmt(p.generateS)} | ${fmt(u.generateS)} | ${ratio(p.generateS, u.generateS)} |`,
    `| completions/s, empty history, median (runs) | ${rate(p.emptyRate)} | ${rate(u.emptyRate)} | ${ratio(median(p.emptyRate), median(u.emptyRate))} |`,
    `| completions/s, full history, median (runs) | ${rate(p.fullRate)} | ${rate(u.fullRate)} | ${ratio(median(p.fullRate), median(u.fullRate))} |`,
    `| full / empty (target 0.90–1.10) | ${ratio(median(p.fullRate), median(p.emptyRate))} | ${ratio(median(u.fullRate), median(u.emptyRate))} | |`,
    ...costLines(p, u),
    `| retention of the oldest month (ms) | ${fmt(p.retention.ms)} | ${fmt(u.retention.ms)} | ${ratio(p.retention.ms, u.retention.ms)} |`,
    `| … rows it removed, rounds, rows left before the cutoff | ${fmt(p.retention.rows, 0)}, ${p.retention.rounds}, ${p.retention.left} | ${fmt(u.retention.rows, 0)}, ${u.retention.rounds}, ${u.retention.left} | |`,
    `\nAdmin over HTTP, median (max) of ${REQUESTS} requests after one warm-up, ms (target < ${ADMIN_TARGET_MS} ms)\n`,
    '| page / call | partitioned | unpartitioned | ratio of medians |',
    '|---|---:|---:|---:|',
  ];
  for (const a of p.pages) {
    const b = u.pages.find((x) => x.what === a.what);
    const cell = (t: Timing | undefined) => (t ? `${fmt(t.median)} (${fmt(t.max)})${t.max >= ADMIN_TARGET_MS ? ' **over**' : ''}` : '–');
    lines.push(`| ${a.what} | ${cell(a)} | ${cell(b)} | ${b ? ratio(a.median, b.median) : '–'} |`);
  }
  for (const inst of installs) {
    const distinct = [...new Set(inst.errors)];
    if (distinct.length) lines.push(`\n${inst.kind}: ${inst.errors.length} error event(s): ${distinct.join(' | ')}`);
  }
  return lines.join('\n');
}

const SETUP: Record<Kind, (prefix: string, now: Date) => Promise<void>> = { partitioned: setupPartitioned, unpartitioned: setupUnpartitioned };

async function main(): Promise<void> {
  const now = (await pool.query('SELECT now() AS now')).rows[0].now as Date;
  const reused = args.reuse?.split(',') ?? [];
  if (args.reuse !== undefined && (reused.length !== 2 || !reused.every((p) => new RegExp(`^${FAMILY}[a-z0-9_]+_$`).test(p)))) {
    throw new TypeError(`--reuse must be two kept prefixes, partitioned first: ${FAMILY}…_,${FAMILY}…_; got ${args.reuse}`);
  }
  const installs: Install[] = (['partitioned', 'unpartitioned'] as const).map((kind, k) => ({
    kind, prefix: reused[k] ?? newPrefix(), emptyPrefix: newPrefix(), errors: [],
  }));
  const figures = new Map<Kind, Figures>(installs.map((i) => [i.kind, { generateS: 0, emptyRate: [], fullRate: [], pages: [], cost: { empty: [], full: [] }, retention: { ms: 0, rounds: 0, rows: 0, left: 0 } }]));
  const each = async (what: string, fn: (inst: Install, f: Figures) => Promise<void>) => {
    for (const inst of installs) {
      log(`  ${what}: ${inst.kind} (${inst.prefix}), load ${load()}`);
      await fn(inst, figures.get(inst.kind)!);
    }
  };
  log(`history-scale: ${ROWS.toLocaleString('en-US')} rows, ${JOBS.toLocaleString('en-US')} jobs per completion run, concurrency ${CONCURRENCY}, ${RUNS} runs, ${REQUESTS} requests per page`);
  log(`  ${os.cpus().length} cores, load average ${load()}; ${await describePg(pool)}`);
  try {
    for (const inst of installs) {
      if (!reused.length) await SETUP[inst.kind](inst.prefix, now);
      await SETUP[inst.kind](inst.emptyPrefix, now);
    }
    await each(reused.length ? 'refilling the oldest month' : 'generating history', async (inst, f) => {
      if (reused.length && (await oldestMonthRows(inst, now)) > 0) return;
      if (reused.length && inst.kind === 'partitioned') await makeMonths(inst.prefix, now);
      f.generateS = await generate(inst, now, reused.length > 0);
    });
    for (const inst of installs) log(`  ${inst.kind}: ${await layout(inst.prefix)}`);
    if (PHASES.has('completions')) {
      log(`  completions, empty and full history, load ${load()}`);
      await completionRates(installs, figures);
    }
    if (PHASES.has('cost')) {
      log(`  the completion statement, ${COST_ROUNDS} x ${COST_BATCH} jobs per installation, load ${load()}`);
      await completionCosts(installs, figures);
    }
    if (PHASES.has('admin')) await each('admin', async (inst, f) => void (f.pages = await adminTimings(inst)));
    if (PHASES.has('retention')) await each('retention', async (inst, f) => void (f.retention = await retention(inst, now)));
    log(report(installs, figures));
  } finally {
    for (const inst of installs) await drop(inst.emptyPrefix);
    if (args.keep) log(`kept: --reuse ${installs.map((i) => i.prefix).join(',')} (or drop their tables with DROP TABLE IF EXISTS … CASCADE)`);
    else for (const inst of installs) await drop(inst.prefix);
    await pool.end();
  }
}

await main();
