/**
 * What history's NOTIFY trigger (migration 016) costs completions on PostgreSQL, in four variants,
 * each on fresh tables, alternating round by round:
 *   none        the trigger dropped (completions as before migration 016)
 *   idle        the trigger as shipped, nobody subscribes (it looks at the subscribers table, sends nothing)
 *   always      the trigger sending its NOTIFY unconditionally (no subscriber check), nobody listening
 *   subscribed  the trigger as shipped, one subscriber's lease and a LISTEN on the channel
 * Two measures (MEASURE=drain|statements|both, default both):
 *   drain       N no-op jobs drained by one in-process worker (createJobs({ db }) plus concurrency C):
 *               completions/s, from start until history holds all N
 *   statements  the trigger alone: one-row INSERTs into history in autocommit, M per connection,
 *               on 1 and on 4 connections at once: µs per statement (wall time / statements)
 * Prints each run beside each variant's median. On a shared machine the spread is wide: compare medians.
 *   N=10000 C=10 M=3000 ROUNDS=5 node --import tsx bench/finished-notify.ts
 */
import pg from 'pg';
import { createJobs, type Jobs } from '../lib/index.ts';
import { median } from './lib/stats.ts';
import { PG_URL } from './lib/config.ts';

type Variant = 'none' | 'idle' | 'always' | 'subscribed';
const VARIANTS: Variant[] = ['none', 'idle', 'always', 'subscribed'];
const N = Number(process.env.N ?? 10_000);
const C = Number(process.env.C ?? 10);
const M = Number(process.env.M ?? 3000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const MEASURE = process.env.MEASURE ?? 'both';

interface Setup {
  db: pg.Pool;
  prefix: string;
  jobs: Jobs;
  done(): Promise<void>;
}

/** Fresh tables with the variant's trigger (and, for `subscribed`, a lease and a LISTEN). */
async function setUp(variant: Variant, concurrency = C): Promise<Setup> {
  const db = new pg.Pool({ connectionString: PG_URL, max: 8 });
  // Not the harness's bx_ prefix: its sweep of leftovers (bench/run.ts, run by others on this server) would drop these tables mid-run.
  const prefix = `bfn${Math.floor(Math.random() * 1e6)}_`;
  const jobs = createJobs({ db, tablePrefix: prefix, logger: false, leader: false, worker: { concurrency } });
  await jobs.migrate();
  const listener = new pg.Client({ connectionString: PG_URL });
  if (variant === 'none') await db.query(`DROP TRIGGER ${prefix}history_finished_notify ON ${prefix}history`);
  if (variant === 'always') {
    await db.query(`CREATE OR REPLACE FUNCTION ${prefix}finished_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify('${prefix}finished', ''); RETURN NULL; END $$`);
  }
  if (variant === 'subscribed') {
    await listener.connect();
    await listener.query(`LISTEN "${prefix}finished"`);
    await db.query(`INSERT INTO ${prefix}subscribers (id, owner, expires_at) VALUES (gen_random_uuid(), 'bench', now() + interval '1 hour')`);
  }
  const done = async () => {
    await jobs.close();
    if (variant === 'subscribed') await listener.end();
    for (const t of (await db.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix}%`])).rows) await db.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
    await db.query(`DROP FUNCTION IF EXISTS ${prefix}finished_notify()`);
    await db.end();
  };
  return { db, prefix, jobs, done };
}

/** Completions/s draining N no-op jobs. */
async function drain(variant: Variant): Promise<number> {
  const { db, prefix, jobs, done } = await setUp(variant);
  jobs.define('noop', async () => undefined);
  for (let i = 0; i < N; i += 1000) await jobs.enqueueMany(Array.from({ length: Math.min(1000, N - i) }, () => ({ name: 'noop', payload: {} })));
  const t0 = performance.now();
  await jobs.start();
  while (Number((await db.query(`SELECT count(*) AS n FROM ${prefix}history`)).rows[0].n) < N) await new Promise((r) => setTimeout(r, 10));
  const ms = performance.now() - t0;
  await done();
  return (N / ms) * 1000;
}

/** µs per one-row INSERT into history, M per connection on `connections` connections at once. */
async function statements(variant: Variant, connections: number): Promise<number> {
  const { db, prefix, done } = await setUp(variant);
  const insert = `INSERT INTO ${prefix}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at)
    VALUES (gen_random_uuid(), 'noop', 'default', 'completed', '{}', 0, 1, 25, now(), now(), now())`;
  const clients = await Promise.all(Array.from({ length: connections }, () => db.connect()));
  for (const c of clients) for (let i = 0; i < 100; i++) await c.query(insert); // warm the plan and the trigger's
  const t0 = performance.now();
  await Promise.all(clients.map(async (c) => {
    for (let i = 0; i < M; i++) await c.query(insert);
  }));
  const us = ((performance.now() - t0) * 1000) / (M * connections);
  for (const c of clients) c.release();
  await done();
  return us;
}

const measures: [string, (v: Variant) => Promise<number>, string][] = [];
if (MEASURE !== 'statements') measures.push([`drain N=${N}, concurrency ${C}`, drain, 'completions/s']);
if (MEASURE !== 'drain') {
  measures.push([`one-row INSERT into history, 1 connection × ${M}`, (v) => statements(v, 1), 'µs/statement']);
  measures.push([`one-row INSERT into history, 4 connections × ${M}`, (v) => statements(v, 4), 'µs/statement']);
}
console.log(`PostgreSQL ${PG_URL.replace(/\/\/.*@/, '//')}, ${ROUNDS} rounds, variants alternating`);
for (const [label, measure, unit] of measures) {
  const out = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
  await measure('idle'); // warm-up: the first run on a cold server is slower
  for (let r = 0; r < ROUNDS; r++) {
    // Rotated each round, so that no variant always runs first (or after the same one).
    for (const v of [...VARIANTS.slice(r % VARIANTS.length), ...VARIANTS.slice(0, r % VARIANTS.length)]) out.get(v)!.push(await measure(v));
  }
  console.log(`${label} (${unit}):`);
  const digits = unit === 'completions/s' ? 0 : 1;
  for (const [v, xs] of out) console.log(`  ${v.padEnd(10)} median ${median(xs).toFixed(digits).padStart(7)}  (runs: ${xs.map((x) => x.toFixed(digits)).join(', ')})`);
}
