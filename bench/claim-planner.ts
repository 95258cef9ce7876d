/**
 * The cost of planning claims per transaction (SET LOCAL, behind a transaction pooler) against once per
 * session: the same jobs drained on a direct connection with `pooler` forced each way, 3 runs alternating.
 * URL, N, C (concurrency), PREFETCH from env: `C=10 PREFETCH=0 N=5000 node --import tsx bench/claim-planner.ts`.
 */
import pg from 'pg';
import { createJobs } from '../lib/index.ts';
const URL_ = process.env.URL ?? 'postgres://postgres@127.0.0.1:5432/test';
async function run(pooler: 'session' | 'transaction', n: number): Promise<number> {
  const db = new pg.Pool({ connectionString: URL_, max: 4 });
  const prefix = `bsl${Math.floor(Math.random() * 1e6)}_`;
  const jobs = createJobs({ db, tablePrefix: prefix, pooler, logger: false, worker: { concurrency: Number(process.env.C ?? 50), prefetch: Number(process.env.PREFETCH ?? 500) } });
  let done = 0;
  jobs.define('noop', async () => void done++);
  await jobs.migrate();
  for (let i = 0; i < n; i += 1000) await jobs.enqueueMany(Array.from({ length: 1000 }, () => ({ name: 'noop', payload: {} })));
  const t0 = performance.now();
  await jobs.start();
  while (Number((await db.query(`SELECT count(*) AS n FROM ${prefix}history`)).rows[0].n) < n) await new Promise((r) => setTimeout(r, 20));
  const ms = performance.now() - t0;
  await jobs.stop(); await jobs.close();
  for (const t of (await db.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix}%`])).rows) await db.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
  await db.end();
  return (n / ms) * 1000;
}
const n = Number(process.env.N ?? 10000);
const out: Record<string, number[]> = { session: [], transaction: [] };
for (let i = 0; i < 3; i++) for (const m of ['session', 'transaction'] as const) out[m].push(Math.round(await run(m, n)));
const med = (a: number[]) => [...a].sort((x, y) => x - y)[1];
console.log(`C=${process.env.C ?? 50} prefetch=${process.env.PREFETCH ?? 500} ${URL_.replace(/\/\/.*@/, '//')} N=${n}: session SET once ${out.session.join(', ')} jobs/s (median ${med(out.session)}); SET LOCAL per claim ${out.transaction.join(', ')} jobs/s (median ${med(out.transaction)})`);
