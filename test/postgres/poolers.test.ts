/**
 * PostgreSQL behind what apps put in front of it. No connection of ours carries a startup
 * parameter (a stock PgBouncer refuses them): the claim connection is planned to walk the claim
 * index by a SET once connected, checked here on a backlog whose statistics are stale.
 */
import { expect } from 'chai';
import pg from 'pg';
import { createJobs } from '../../lib/index.ts';
import { CLAIM_PLANNER, jobsClaim } from '../../lib/driver/postgres/claim.ts';
import { tables } from '../../lib/driver/portable/statement.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix, until } from '../helpers/dialects.ts';
import { pgbouncerMissing, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.ts';
import { isCI } from '../helpers/ci.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

async function dropPrefixed(pool: pg.Pool, prefix: string): Promise<void> {
  const tables = await pool.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`]);
  for (const t of tables.rows) await pool.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
}

describe('PostgreSQL: the claim plan and poolers', function () {
  before(requireDatabase(postgres));

  it('plans the claim to walk its index even when the statistics say the table is empty (20,000 pending jobs)', async () => {
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    const prefix = uniquePrefix();
    try {
      const jobs = createJobs({ db: pool, tablePrefix: prefix, worker: false });
      await jobs.migrate();
      await pool.query(`ALTER TABLE ${prefix}jobs SET (autovacuum_enabled = false)`);
      await pool.query(`ANALYZE ${prefix}jobs`); // statistics of an empty table
      await pool.query(
        `INSERT INTO ${prefix}jobs (id, name, queue, state, payload, priority, max_attempts, run_at)
         SELECT gen_random_uuid(), 'x', 'default', 'pending', '{}', 0, 3, now() - interval '1 minute' FROM generate_series(1, 20000)`,
      );
      const q = jobsClaim(tables(prefix))({ workerId: 'w', names: ['x'], limit: 10 }, crypto.randomUUID());
      const plan = async (begin: string) => {
        const c = await pool.connect();
        try {
          await c.query(begin);
          return (await c.query(`EXPLAIN ${q.text}`, q.values)).rows.map((r) => r['QUERY PLAN'] as string).join('\n');
        } finally {
          await c.query('ROLLBACK');
          c.release();
        }
      };
      // Without the settings, the stale estimate makes the planner bitmap-scan and sort every pending row.
      expect(await plan('BEGIN')).to.match(/Bitmap Heap Scan|Seq Scan on \w+_jobs\b/);
      const claimPlan = await plan(`BEGIN; ${CLAIM_PLANNER}`);
      expect(claimPlan).to.match(new RegExp(`Index Scan using ${prefix}jobs_claim`));
      expect(claimPlan).to.not.match(/Bitmap|Sort|Seq Scan on \w+_jobs\b/);
      // And the store's claim connection runs with them (it has one client: the one its claims use).
      await jobs.store.jobClaim({ workerId: 'w', names: ['none'], limit: 1 });
      const claimer = (jobs.store as unknown as { claimer: pg.Pool }).claimer;
      const shown = await claimer.query('SELECT current_setting($1) AS seq, current_setting($2) AS bitmap, current_setting($3) AS sort', ['enable_seqscan', 'enable_bitmapscan', 'enable_sort']);
      expect(shown.rows[0]).to.deep.equal({ seq: 'off', bitmap: 'off', sort: 'off' });
      await jobs.close();
    } finally {
      await dropPrefixed(pool, prefix);
      await pool.end();
    }
  });

  describe('the claim connection made ready while a worker starts (prepareClaims)', function () {
    const ours = async (pool: pg.Pool, app: string) =>
      (await pool.query(`SELECT query FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, [app])).rows.map((r) => String(r.query));

    /** Every statement our connections showed, looked at every few ms for `ms` (a probe's connections live for a few). */
    async function seenWithin(seen: () => Promise<string[]>, ms: number): Promise<string[]> {
      const all = new Set<string>();
      for (const end = Date.now() + ms; Date.now() < end; ) for (const q of await seen()) all.add(q);
      return [...all];
    }

    async function withStore(pooler: 'auto' | 'transaction', fn: (store: { prepareClaims(): void }, seen: () => Promise<string[]>, close: () => Promise<void>) => Promise<void>): Promise<void> {
      const app = `prep_${uniquePrefix()}`;
      const db = new pg.Pool({ connectionString: PG_URL, max: 2, application_name: app });
      const watcher = new pg.Pool({ connectionString: PG_URL, max: 1 });
      const jobs = createJobs({ db, tablePrefix: uniquePrefix(), worker: false, pooler, logger: false });
      try {
        await fn(jobs.store as unknown as { prepareClaims(): void }, () => ours(watcher, app), () => jobs.close());
      } finally {
        await jobs.close();
        await db.end();
        await watcher.end();
      }
    }

    it('connects the claim connection and sets its planner settings, once it knows the session is kept', async () => {
      await withStore('auto', async (store, seen) => {
        store.prepareClaims();
        await until(async () => (await seen()).includes(CLAIM_PLANNER), 'the claim connection, planned', 5_000);
      });
    });

    it('makes no connection behind a transaction pooler, nor once the store is closed', async () => {
      await withStore('transaction', async (store, seen) => {
        store.prepareClaims();
        expect(await seenWithin(seen, 300)).to.deep.equal([]);
      });
      await withStore('auto', async (store, seen, close) => {
        await close();
        store.prepareClaims();
        expect(await seenWithin(seen, 300)).to.deep.equal([]);
      });
    });
  });

  describe('behind a stock PgBouncer in session mode', function () {
    this.timeout(60_000);
    before(requireDatabase(postgres, pgbouncerMissing));
    let bouncer: PgBouncer | null = null;
    before(async () => {
      if (!pgbouncerMissing() || isCI()) bouncer = await startPgBouncer('session');
    });
    after(async () => bouncer?.stop());

    it('runs 500 jobs on two instances, each once (no startup parameter on any connection)', async () => {
      const prefix = uniquePrefix();
      const pools = [0, 1].map(() => new pg.Pool({ connectionString: bouncer!.url, max: 4 }));
      for (const p of pools) p.on('error', () => undefined);
      const runs = new Map<number, number>();
      const instances = pools.map((db) => {
        const jobs = createJobs({ db, tablePrefix: prefix, logger: false, worker: { pollInterval: 50 } });
        jobs.define('n', async (p: { n: number }) => {
          runs.set(p.n, (runs.get(p.n) ?? 0) + 1);
        });
        return jobs;
      });
      try {
        await instances[0].migrate();
        await instances[0].enqueueMany(Array.from({ length: 500 }, (_v, n) => ({ name: 'n', payload: { n } })));
        await Promise.all(instances.map((j) => j.start()));
        await until(() => runs.size === 500, 'every job to run', 30_000, 20);
        await until(async () => (await instances[0].status()).live.length === 0, 'no job left live', 10_000, 20);
        expect([...runs.values()].every((n) => n === 1), 'each job ran once').to.equal(true);
      } finally {
        for (const j of instances) await j.close();
        const direct = new pg.Pool({ connectionString: PG_URL, max: 1 });
        await dropPrefixed(direct, prefix).finally(() => direct.end());
        for (const p of pools) await p.end();
      }
    });
  });
});
