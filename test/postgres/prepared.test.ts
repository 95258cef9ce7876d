/**
 * PostgreSQL's claim is prepared once per connection on the claim connection while it keeps its
 * session, so the server plans it once instead of on every call; behind a transaction pooler it is
 * not; a prepared statement the server lost (a pooler not detected) falls back to plain statements
 * without losing a job. The batch writes (completion, failure, release, progress, logs) are never
 * prepared: a generic plan made for small batches joined each item of a large one against every
 * running row (issue 17).
 */
import { expect } from 'chai';
import pg from 'pg';
import { createJobs, type Jobs } from '../../lib/index.ts';
import type { PostgresStore } from '../../lib/driver/postgres/store.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix, until } from '../helpers/dialects.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

interface Prepared {
  statement: string;
  generic: number;
  custom: number;
}

/** The statements prepared on the session of one connection of `pool`. */
async function preparedOn(pool: pg.Pool): Promise<Prepared[]> {
  const c = await pool.connect();
  try {
    const r = await c.query('SELECT statement, generic_plans::int AS generic, custom_plans::int AS custom FROM pg_prepared_statements');
    return r.rows as Prepared[];
  } finally {
    c.release();
  }
}

/** Our own connections: the claim connection and the private pool (one connection each here). */
function ownPools(jobs: Jobs): { claimer: pg.Pool; own: pg.Pool } {
  const store = (jobs as unknown as { store: PostgresStore }).store as unknown as { claimPool(): pg.Pool; own: pg.Pool };
  return { claimer: store.claimPool(), own: store.own };
}

describe('PostgreSQL: hot statements prepared on our own connections', function () {
  this.timeout(30_000);
  before(requireDatabase(postgres));
  let app: pg.Pool;
  let opened: Jobs[] = [];
  const prefixes: string[] = [];
  beforeEach(() => {
    app = new pg.Pool({ connectionString: PG_URL, max: 4 });
  });
  afterEach(async () => {
    for (const j of opened) await j.close().catch(() => undefined);
    opened = [];
    for (const p of prefixes.splice(0)) {
      const t = await app.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${p.replaceAll('_', '\\_')}%`]);
      for (const row of t.rows) await app.query(`DROP TABLE IF EXISTS "${row.tablename}" CASCADE`);
    }
    await app.end();
  });

  /** An instance whose worker runs `count` jobs (one of them failing once), on one private connection. */
  async function run(opts: { pooler?: 'transaction'; directUrl?: string; count: number; before?: (jobs: Jobs) => Promise<void> }): Promise<Jobs> {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const seen = new Set<number>();
    const jobs = createJobs({ db: app, tablePrefix: prefix, workerPoolSize: 1, logger: false, pooler: opts.pooler, directUrl: opts.directUrl, worker: { concurrency: 5, pollInterval: 50 } });
    opened.push(jobs);
    let failedOnce = false;
    jobs.define('work', async (payload: { n: number }, ctx) => {
      await ctx.progress(50);
      ctx.log(`job ${payload.n}`);
      if (payload.n === 0 && !failedOnce) {
        failedOnce = true;
        throw new Error('once');
      }
      seen.add(payload.n);
    }, { backoff: { type: 'fixed', baseMs: 10 } });
    await jobs.migrate();
    await opts.before?.(jobs);
    await jobs.enqueueMany(Array.from({ length: opts.count }, (_, n) => ({ name: 'work', payload: { n } })));
    await jobs.start();
    await until(() => seen.size === opts.count, 'every job run', 15_000);
    return jobs;
  }

  it('on a direct connection: the claim is prepared and run many times; the batch writes are planned per call', async () => {
    const jobs = await run({ count: 300 });
    const { claimer, own } = ownPools(jobs);
    const claim = (await preparedOn(claimer)).find((p) => /^WITH next AS/.test(p.statement));
    expect(claim, 'the claim is prepared on the claim connection').to.not.equal(undefined);
    expect(claim!.generic + claim!.custom).to.be.greaterThan(1);
    // The completion, the failure, progress and logs ran on this connection: none of them prepared.
    expect(await preparedOn(own)).to.deep.equal([]);
  });

  it('behind a transaction pooler (pooler: "transaction") nothing is prepared', async () => {
    const jobs = await run({ count: 50, pooler: 'transaction' });
    const { own } = ownPools(jobs);
    expect(await preparedOn(own)).to.deep.equal([]);
  });

  it('with directUrl: claims (on the direct connection) are prepared, the private pool (through db, maybe a transaction pooler) is not', async () => {
    const jobs = await run({ count: 50, directUrl: PG_URL });
    const { claimer, own } = ownPools(jobs);
    expect((await preparedOn(claimer)).map((p) => p.statement.trim().slice(0, 13))).to.deep.equal(['WITH next AS ']);
    expect(await preparedOn(own)).to.deep.equal([]);
  });

  it('a prepared statement the server lost (DEALLOCATE ALL behind our back): plain statements from then on, no job lost', async () => {
    let deallocated = false;
    const jobs = await run({
      count: 200,
      before: async (j) => {
        // Once the first statements are prepared, the server forgets them; the client still believes it has them.
        j.on('completed', () => {
          if (deallocated) return;
          deallocated = true;
          void (async () => {
            const { claimer } = ownPools(j);
            const c = await claimer.connect();
            await c.query('DEALLOCATE ALL');
            c.release();
          })();
        });
      },
    });
    expect(deallocated).to.equal(true);
    // Every outcome is written (the completions after the loss among them).
    const counts = async () =>
      (await app.query(`SELECT (SELECT count(*)::int FROM ${prefixes[0]}jobs) AS live, (SELECT count(*)::int FROM ${prefixes[0]}history WHERE state = 'completed') AS done`)).rows[0];
    await until(async () => (await counts()).done === 200, 'every completion written', 10_000);
    expect(await counts()).to.deep.equal({ live: 0, done: 200 });
    // Claims after the loss (the first claim may have taken all 200): the lost statement fails once, then plain ones run.
    await jobs.enqueueMany(Array.from({ length: 20 }, (_, i) => ({ name: 'work', payload: { n: 1000 + i } })));
    await until(async () => (await counts()).done === 220, 'the jobs enqueued after the loss run', 10_000);
    // From then on statements go unnamed: none of those prepared before the loss is used again.
    for (const p of await preparedOn(ownPools(jobs).claimer)) expect(p.generic + p.custom, p.statement.slice(0, 40)).to.be.at.most(1);
  });
});
