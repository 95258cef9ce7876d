/**
 * PostgreSQL's batch writes find the rows their items own by primary key, whatever the statistics
 * say (lib/driver/postgres/owned.ts). Joined as `j.id = x.id AND j.state = 'running'`, the
 * planner read every entry of the partial index on running rows instead, and that index keeps the
 * entries of finished jobs until a vacuum: each completion cost as much as all the jobs finished
 * before it (issue 17: with 4 worker processes, 99 µs of PostgreSQL CPU per job instead of 36).
 *
 * The table is set up as a busy run leaves it: thousands of jobs finished since the last vacuum,
 * a batch running, a backlog pending, statistics from before (none here). Each write's plan must reach the jobs table
 * through its primary key only. And the fence still holds on a row another transaction changes
 * while the write waits for it: checked again on the row's newest version.
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
import { scansOf } from '../helpers/pg-plans.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

describe('PostgreSQL: batch writes find owned rows by primary key', function () {
  this.timeout(60_000);
  before(requireDatabase(postgres));
  const prefix = uniquePrefix();
  let app: pg.Pool;
  let store: Store;
  let t: Tables;
  let running: ClaimedJob[];
  let close: () => Promise<void>;

  before(async () => {
    app = new pg.Pool({ connectionString: PG_URL, max: 3 });
    const jobs = createJobs<{ work: { n: number } }>({ db: app, tablePrefix: prefix, worker: false, logger: false });
    await jobs.migrate();
    // A backlog behind them, as a busy queue has: reading the whole table costs more than a probe per item.
    for (let n = 0; n < 20_000; n += 5000) await jobs.enqueueMany(Array.from({ length: 5000 }, (_, i) => ({ name: 'work' as const, payload: { n: n + i } })));
    close = () => jobs.close();
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
    await close();
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
    it(`${name}: the jobs table only through its primary key`, async () => {
      const found = await scans(build());
      expect(found.some((scan) => scan.endsWith(` using ${prefix}jobs_pkey`)), `${name}: ${found.join(', ')}`).to.equal(true);
      for (const scan of found) expect(scan, name).to.match(new RegExp(`^((Bitmap )?Index Scan using ${prefix}jobs_pkey|Bitmap Heap Scan)$`));
    });
  }

  /** `change` runs on a row in another transaction that commits while `write` waits for the row's lock. */
  async function whileChanged<T>(id: string, change: string, write: () => Promise<T>): Promise<T> {
    const c = await app.connect();
    try {
      await c.query('BEGIN');
      await c.query(`UPDATE ${t.jobs} SET ${change} WHERE id = $1`, [id]);
      const written = write();
      await new Promise((r) => setTimeout(r, 200));
      await c.query('COMMIT');
      return await written;
    } finally {
      c.release();
    }
  }

  it('a row taken from the attempt while the write waits for it (a rescue) is left alone', async () => {
    const [taken] = running.slice(-1);
    const applied = await whileChanged(taken.id, `state = 'pending', token = NULL`, () => store.jobCompleteMany([{ id: taken.id, token: taken.token, resultJson: null }]));
    expect(applied.has(taken.id)).to.equal(false);
    const row = await app.query(`SELECT state FROM ${t.jobs} WHERE id = $1`, [taken.id]);
    expect(row.rows).to.deep.equal([{ state: 'pending' }]);
    running = running.slice(0, -1);
  });

  it('a row the attempt still owns, changed elsewhere while the write waits (a checkpoint), is written', async () => {
    const [job] = running.slice(-1);
    const applied = await whileChanged(job.id, `checkpoint = '{"at": 1}'`, () => store.jobProgressMany([{ id: job.id, token: job.token, progress: 40, message: 'most' }]));
    expect(applied.has(job.id)).to.equal(true);
    const row = await app.query(`SELECT progress, checkpoint FROM ${t.jobs} WHERE id = $1`, [job.id]);
    expect(row.rows[0].progress).to.equal(40);
    expect(row.rows[0].checkpoint).to.deep.equal({ at: 1 });
  });

  it('the completion moves exactly the batch it owns, and a second one finds nothing left to move', async () => {
    const items = fenced().map((f) => ({ ...f, resultJson: null }));
    const stale = { id: running[0].id, token: '00000000-0000-4000-8000-000000000000', resultJson: null };
    const moved = await store.jobCompleteMany([stale, ...items.slice(1)]);
    expect(moved.size).to.equal(running.length - 1);
    expect(moved.has(running[0].id)).to.equal(false);
    expect((await store.jobCompleteMany(items)).size).to.equal(1);
  });
});
