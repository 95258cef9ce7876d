/**
 * Where a sqljobs processing run spends its database round trips: wraps the store's verbs and
 * counts calls, rows per call and time inside each, while N pre-enqueued no-op jobs are processed.
 *   node --import tsx bench/diagnose.ts --backend sqlite|postgres|mysql --jobs 20000 [--explain] [--analyze]
 */
import { parseArgs } from 'node:util';
import { newRunId } from './lib/config.ts';
import { newClient } from './lib/pg.ts';
import { fmt, sleep } from './lib/stats.ts';
import { SqljobsMysql, SqljobsPg, SqljobsSqlite } from './systems/sqljobs.ts';
import type { Payload } from './systems/types.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'sqlite' },
    jobs: { type: 'string', default: '20000' },
    /** Experiment, not a default: ANALYZE the hot table after the enqueue (PostgreSQL), to show the claim plan's dependence on statistics. */
    analyze: { type: 'boolean', default: false },
    /** Print EXPLAIN ANALYZE of the claim query (PostgreSQL) after the enqueue. */
    explain: { type: 'boolean', default: false },
  },
});
const n = Number(args.jobs);
let handled = 0;
const opts = { runId: newRunId(), concurrency: 10, onJob: () => void handled++ };
const sys = args.backend === 'postgres' ? new SqljobsPg(opts) : args.backend === 'mysql' ? new SqljobsMysql(opts) : new SqljobsSqlite(opts);

interface Stat { calls: number; rows: number; ms: number; sizes: Map<number, number> }
const stats = new Map<string, Stat>();

await sys.setup();
for (let i = 0; i < n; i += 1000) await sys.enqueueBatch(Array.from({ length: Math.min(1000, n - i) }, (_, j): Payload => ({ i: i + j })));
if (sys instanceof SqljobsPg && (args.analyze || args.explain)) {
  const c = await newClient();
  const t = `${opts.runId}_jobs`;
  if (args.analyze) await c.query(`ANALYZE ${t}`);
  if (args.explain) {
    // The claim as lib/driver/postgres/store.ts wrote it when this was written (limit 10); keep the two in step.
    await c.query('BEGIN');
    const plan = await c.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) WITH next AS (
        SELECT id FROM ${t} WHERE state = 'pending' AND run_at <= now() AND name = ANY('{noop}'::text[])
        ORDER BY priority DESC, run_at, id LIMIT 10 FOR UPDATE SKIP LOCKED)
      UPDATE ${t} j SET state = 'running', attempts = j.attempts + 1, started_at = now() FROM next WHERE j.id = next.id RETURNING j.*`);
    await c.query('ROLLBACK');
    console.log(`claim plan${args.analyze ? ' after ANALYZE' : ' (no statistics yet, as after a burst into a fresh or near-empty table)'}:`);
    for (const r of plan.rows) console.log(`  ${r['QUERY PLAN']}`);
  }
  await c.end();
}
const store = (sys as unknown as { jobs: { store: Record<string, unknown> } }).jobs.store;
for (const verb of ['jobClaim', 'jobClaimManaged', 'jobCompleteMany', 'jobFailMany', 'jobReleaseMany', 'workerHeartbeat', 'jobNextDueIn', 'jobStalledList', 'jobCountByState', 'queueSettingsList']) {
  const orig = store[verb] as ((...a: unknown[]) => Promise<unknown>) | undefined;
  if (typeof orig !== 'function') continue;
  store[verb] = async (...a: unknown[]) => {
    const t0 = performance.now();
    const out = await orig.apply(store, a);
    const st = stats.get(verb) ?? { calls: 0, rows: 0, ms: 0, sizes: new Map() };
    const rows = Array.isArray(out) ? out.length : out instanceof Set ? out.size : Array.isArray(a[0]) ? (a[0] as unknown[]).length : 0;
    st.calls++;
    st.rows += rows;
    st.ms += performance.now() - t0;
    st.sizes.set(rows, (st.sizes.get(rows) ?? 0) + 1);
    stats.set(verb, st);
    return out;
  };
}
const t0 = performance.now();
await sys.startWorker();
for (;;) {
  if (handled >= n) {
    const p = await sys.progress();
    if (p.unfinished === 0 && (p.finished ?? 0) >= n) break;
  }
  await sleep(handled >= n ? 1 : 5);
}
const ms = performance.now() - t0;
console.log(`sqljobs ${sys.backend}${args.analyze ? ' (hot table ANALYZEd after the enqueue)' : ''}: ${n} jobs in ${fmt(ms)} ms = ${fmt((n / ms) * 1000)} jobs/s`);
for (const [verb, st] of stats) {
  const common = [...st.sizes.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([size, c]) => `${size} rows ×${c}`).join(', ');
  console.log(`  ${verb.padEnd(10)} ${String(st.calls).padStart(7)} calls, ${fmt(st.rows / st.calls)} rows/call, ${fmt(st.ms / st.calls, 3)} ms/call (wall, incl. waiting), most common: ${common}`);
}
await sys.close();
await sys.cleanup();
