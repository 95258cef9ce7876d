/**
 * CPU of PostgreSQL's claim and completion statements alone, no worker: N pre-enqueued jobs are
 * claimed B at a time and completed in batches of B through the store, one after the other, and
 * the Node process's CPU (process.cpuUsage) and the backends' (/proc/<pid>/schedstat, found by
 * application_name; needs the server on this machine) are divided by N. Two batch sizes separate
 * the cost of a statement from the cost of a row: per job = row + statement pair / B.
 *   node --import tsx bench/pg-statement-cost.ts [--jobs 20000] [--batches 10,200,50]
 */
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PG_URL, SQLJOBS_ENTRY, newRunId } from './lib/config.ts';
import { dropByPrefix } from './lib/pg.ts';
import { fmt } from './lib/stats.ts';
import type { ClaimedJob, Store } from '../lib/driver/store.ts';

const { values: args } = parseArgs({ options: { jobs: { type: 'string', default: '20000' }, batches: { type: 'string', default: '10,200,50' } } });
const { createJobs } = (await import(pathToFileURL(SQLJOBS_ENTRY).href)) as typeof import('../lib/index.ts');
const n = Number(args.jobs);

async function once(batch: number): Promise<void> {
  const prefix = `${newRunId()}_`;
  const app = `stmtcost_${prefix}`;
  const pool = new pg.Pool({ connectionString: PG_URL, max: 3, application_name: app });
  pool.on('error', () => undefined);
  const jobs = createJobs<{ noop: { i: number } }>({ db: pool, tablePrefix: prefix, worker: false });
  try {
    await jobs.migrate();
    for (let i = 0; i < n; i += 1000) {
      await jobs.enqueueMany(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'noop' as const, payload: { i: i + j } })));
    }
    const store = jobs.store as unknown as Store;
    await store.jobClaim({ names: ['none'], limit: 1, workerId: 'w' }); // the claim connection, made and planned
    const backendNs = async () => {
      const { rows } = await pool.query(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, [app]);
      return rows.reduce((s: number, r: { pid: number }) => {
        try {
          return s + Number(fs.readFileSync(`/proc/${r.pid}/schedstat`, 'utf8').split(' ')[0]);
        } catch {
          return s;
        }
      }, 0);
    };
    const pg0 = await backendNs();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let done = 0;
    for (;;) {
      const got: ClaimedJob[] = await store.jobClaim({ names: ['noop'], limit: batch, workerId: 'w' });
      if (!got.length) break;
      done += (await store.jobCompleteMany(got.map((j) => ({ id: j.id, token: j.token, resultJson: null, flow: j.flow })))).size;
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const pgUs = ((await backendNs()) - pg0) / 1000;
    console.log(`B=${batch}: ${done} jobs in ${fmt(ms)} ms; per job Node ${fmt((cpu.user + cpu.system) / done)} µs, PG backends ${fmt(pgUs / done)} µs; load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
  } finally {
    await jobs.close();
    await pool.end();
    await dropByPrefix(prefix);
  }
}

for (const b of args.batches!.split(',').map(Number)) await once(b);
