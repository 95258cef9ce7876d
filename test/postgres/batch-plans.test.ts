/**
 * PostgreSQL's batch writes find each owned row by its primary key, whatever the statistics say.
 * Joined as `j.id = x.id AND j.state = 'running'`, the planner read every entry of the partial
 * index on running rows instead, and that index keeps the entries of finished jobs until a vacuum:
 * each completion cost as much as all the jobs finished before it (issue 17: with 4 worker
 * processes, 99 µs of PostgreSQL CPU per job instead of 36).
 *
 * The table is set up as a busy run leaves it: thousands of jobs finished since the last vacuum,
 * a batch running, statistics from before (none here). Each write's plan must touch the jobs
 * table only through its primary key or by ctid.
 */
import { expect } from 'chai';
import pg from 'pg';
import { createJobs } from '../../lib/index.ts';
import type { ClaimedJob, Store } from '../../lib/driver/store.ts';
import type { Tables } from '../../lib/driver/portable/statement.ts';
import { jobsComplete } from '../../lib/driver/postgres/complete.ts';
import { jobsFail } from '../../lib/driver/postgres/fail.ts';
import { jobsRelease } from '../../lib/driver/postgres/release.ts';
import { jobsSaveProgress } from '../../lib/driver/postgres/progress.ts';
import { logsAppend } from '../../lib/driver/postgres/logs.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix } from '../helpers/dialects.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

/** Every scan of `table` in a JSON plan: its node type and index, if any. */
function scansOf(plan: Record<string, unknown>, table: string, out: string[] = []): string[] {
  if (plan['Relation Name'] === table && String(plan['Node Type']).endsWith('Scan')) out.push(`${plan['Node Type']}${plan['Index Name'] ? ` using ${plan['Index Name']}` : ''}`);
  if (plan['Node Type'] === 'Bitmap Index Scan' && String(plan['Index Name']).startsWith(table)) out.push(`Bitmap Index Scan using ${plan['Index Name']}`);
  for (const child of (plan.Plans as Record<string, unknown>[] | undefined) ?? []) scansOf(child, table, out);
  return out;
}

describe('PostgreSQL: batch writes find owned rows by primary key', function () {
  this.timeout(60_000);
  before(requireDatabase(postgres));
  const prefix = uniquePrefix();
  let app: pg.Pool;
  let store: Store;
  let t: Tables;
  let running: ClaimedJob[];

  before(async () => {
    app = new pg.Pool({ connectionString: PG_URL, max: 3 });
    const jobs = createJobs<{ work: { n: number } }>({ db: app, tablePrefix: prefix, worker: false, logger: false });
    await jobs.migrate();
    await jobs.enqueueMany(Array.from({ length: 3000 }, (_, n) => ({ name: 'work' as const, payload: { n } })));
    store = (jobs as unknown as { store: Store }).store;
    t = (store as unknown as { t: Tables }).t;
    // 2,750 finished since the last vacuum (their entries stay in the running-rows index), 250 running.
    for (let done = 0; done < 2750; done += 250) {
      const batch = await store.jobClaim({ workerId: 'w', names: ['work'], limit: 250 });
      await store.jobCompleteMany(batch.map((j) => ({ id: j.id, token: j.token, resultJson: null })));
    }
    running = await store.jobClaim({ workerId: 'w', names: ['work'], limit: 250 });
    expect(running).to.have.length(250);
  });
  after(async () => {
    const r = await app.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`]);
    for (const row of r.rows) await app.query(`DROP TABLE IF EXISTS "${row.tablename}" CASCADE`);
    await app.end();
  });

  async function scans(s: { text: string; values: unknown[] }): Promise<string[]> {
    const c = await app.connect();
    try {
      await c.query('BEGIN');
      const r = await c.query(`EXPLAIN (FORMAT JSON) ${s.text}`, s.values);
      await c.query('ROLLBACK');
      return scansOf((r.rows[0]['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0].Plan, `${prefix}jobs`);
    } finally {
      c.release();
    }
  }

  const fenced = () => running.map((j) => ({ id: j.id, token: j.token }));
  const statements: [string, () => { text: string; values: unknown[] }][] = [
    ['completion', () => jobsComplete(t)(fenced().map((f) => ({ ...f, resultJson: null })))],
    ['failure, retried', () => jobsFail(t)(fenced().map((f) => ({ ...f, attempt: 1, startedAt: null, error: { message: 'x' }, retryDelayMs: 1000 })), 'ch')],
    ['failure, for good', () => jobsFail(t)(fenced().map((f) => ({ ...f, attempt: 1, startedAt: null, error: { message: 'x' }, retryDelayMs: null })), 'ch')],
    ['release', () => jobsRelease(t)(fenced().map((f) => ({ ...f, delayMs: 0, refund: true })), 'ch')],
    ['progress', () => jobsSaveProgress(t)(fenced().map((f) => ({ ...f, progress: 50, message: null })))],
    ['logs', () => logsAppend(t)(fenced().map((f) => ({ ...f, attempt: 1, lines: [{ at: 1, message: 'a' }, { at: 2, message: 'b' }] })))],
  ];
  for (const [name, build] of statements) {
    it(`${name}: the jobs table only through its primary key or by ctid`, async () => {
      const found = await scans(build());
      expect(found, name).to.not.be.empty;
      for (const scan of found) expect(scan, name).to.match(new RegExp(`^(Index Scan using ${prefix}jobs_pkey|Tid Scan)$`));
    });
  }

  it('the completion moves exactly the batch it owns, and a second one finds nothing left to move', async () => {
    const items = fenced().map((f) => ({ ...f, resultJson: null }));
    const stale = { id: running[0].id, token: '00000000-0000-4000-8000-000000000000', resultJson: null };
    const moved = await store.jobCompleteMany([stale, ...items.slice(1)]);
    expect(moved.size).to.equal(249);
    expect(moved.has(running[0].id)).to.equal(false);
    expect((await store.jobCompleteMany(items)).size).to.equal(1);
  });
});
