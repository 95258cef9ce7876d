/**
 * Migration 020: jobs_queue holds pending rows only, so a claim (which turns a row running, a new
 * row version in every index whose predicate it meets) writes no entry there; running rows are
 * found by queue in jobs_running. The reads over a queue's live jobs then read each state from its
 * own index: checked on the plans, with a rare queue beside a large backlog, where a walk of the
 * whole table (or of the primary key) would read every pending job of the other queue.
 */
import { expect } from 'chai';
import pg from 'pg';
import { createJobs } from '../../lib/index.ts';
import type { Store } from '../../lib/driver/store.ts';
import { postgres as dialect } from '../../lib/driver/portable/dialect.ts';
import { tables, type Statement } from '../../lib/driver/portable/statement.ts';
import { jobsList, jobsLiveCounts, queueGroupCounts } from '../../lib/driver/portable/reads.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix } from '../helpers/dialects.ts';
import { scansOf } from '../helpers/pg-plans.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

describe('PostgreSQL: pending and running jobs indexed apart (migration 020)', function () {
  this.timeout(60_000);
  before(requireDatabase(postgres));
  const prefix = uniquePrefix();
  const sql = { d: dialect, t: tables(prefix) };
  let app: pg.Pool;
  let store: Store;
  let close: () => Promise<void>;

  before(async () => {
    app = new pg.Pool({ connectionString: PG_URL, max: 3 });
    const jobs = createJobs<{ work: { n: number }; rare: { n: number } }>({ db: app, tablePrefix: prefix, worker: false, logger: false });
    await jobs.migrate();
    close = () => jobs.close();
    store = (jobs as unknown as { store: Store }).store;
    for (let n = 0; n < 20_000; n += 5000) await jobs.enqueueMany(Array.from({ length: 5000 }, (_, i) => ({ name: 'work' as const, payload: { n: n + i } })));
    await jobs.enqueueMany(Array.from({ length: 40 }, (_, i) => ({ name: 'rare' as const, payload: { n: i }, queue: 'rare' })));
    await store.jobClaim({ workerId: 'w', names: ['rare'], limit: 10 });
    await app.query(`ANALYZE ${prefix}jobs`);
  });

  after(async () => {
    await close?.();
    const left = await app.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`]);
    for (const r of left.rows) await app.query(`DROP TABLE IF EXISTS "${r.tablename}" CASCADE`);
    await app.end();
  });

  const size = async (index: string) => Number((await app.query(`SELECT pg_relation_size($1) AS n`, [`${prefix}${index}`])).rows[0].n);

  it('a claim writes no jobs_queue entry: the index does not grow while 5,000 jobs are claimed, jobs_running does', async () => {
    const [queueBefore, runningBefore] = [await size('jobs_queue'), await size('jobs_running')];
    for (let n = 0; n < 5000; n += 250) expect(await store.jobClaim({ workerId: 'w', names: ['work'], limit: 250 })).to.have.length(250);
    expect(await size('jobs_queue'), 'jobs_queue').to.equal(queueBefore);
    expect(await size('jobs_running'), 'jobs_running').to.be.above(runningBefore);
  });

  const plan = async (s: Statement) => {
    const rows = (await app.query(`EXPLAIN (FORMAT JSON) ${s.text}`, s.values)).rows;
    return scansOf((rows[0]['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0].Plan, `${prefix}jobs`);
  };

  it("a queue's live jobs are read from the two indexes, not by walking the table: its group counts, its list, the running jobs", async () => {
    const indexes = (scans: string[]) => scans.map((s) => s.replace(/^.* using /, '')).sort();
    const both = [`${prefix}jobs_queue`, `${prefix}jobs_running`];
    const counts = await plan(queueGroupCounts(sql, { queue: 'rare', windowMs: null, limit: 100 }));
    expect(indexes(counts), counts.join(', ')).to.deep.equal(both);
    const list = await plan(jobsList(sql, { queue: 'rare', limit: 50 }));
    expect(indexes(list), list.join(', ')).to.deep.equal(both);
    // The running jobs of every queue (the admin's workers page): read from their index, not by
    // walking the ids of 15,000 pending jobs.
    const running = await plan(jobsList(sql, { state: 'running', limit: 500 }));
    expect(indexes(running), running.join(', ')).to.deep.equal([`${prefix}jobs_running`]);
  });

  it('the live counts per state and queue answer what the jobs are (30 pending and 10 running in rare; 15,000 pending and 5,000 running in default)', async () => {
    const rows = (await app.query(jobsLiveCounts(sql).text)).rows.map((r) => `${r.queue}:${r.state}:${Number(r.count)}`);
    expect(rows).to.deep.equal(['default:pending:15000', 'default:running:5000', 'rare:pending:30', 'rare:running:10']);
  });
});
