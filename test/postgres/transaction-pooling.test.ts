/**
 * PostgreSQL behind a stock PgBouncer (Debian's package) in session and transaction mode. Behind a
 * transaction pooler nothing session-scoped may be relied on or left behind: the worker detects it,
 * polls instead of listening, leads by lease alone, keeps its planner settings to its own
 * transactions, and never ends a server connection (another client's transaction may be on it).
 */
import { expect } from 'chai';
import pg from 'pg';
import { createJobs, type Jobs } from '../../lib/index.ts';
import { keepsSession } from '../../lib/driver/postgres/pooler.ts';
import type { PostgresStore } from '../../lib/driver/postgres/store.ts';
import { DIALECTS, PG_URL, requireDatabase, sleep, uniquePrefix, until } from '../helpers/dialects.ts';
import { pgbouncerMissing, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.ts';
import { spawnWorker, type WorkerProc } from '../helpers/processes.ts';
import { isCI } from '../helpers/ci.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;

async function dropPrefixed(prefix: string): Promise<void> {
  const direct = new pg.Pool({ connectionString: PG_URL, max: 1 });
  try {
    const tables = await direct.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`]);
    for (const t of tables.rows) await direct.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
  } finally {
    await direct.end();
  }
}

function pool(url: string, max = 4): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max });
  p.on('error', () => undefined);
  return p;
}

/** A logger that keeps what it was told. */
function recorder(): { warn: string[]; error: string[]; logger: { warn(m: string): void; error(m: string): void } } {
  const warn: string[] = [];
  const error: string[] = [];
  return { warn, error, logger: { warn: (m) => warn.push(m), error: (m) => error.push(m) } };
}

/** Advisory locks held on the leadership key of this prefix, on any backend. */
async function ourLocks(direct: pg.Pool, prefix: string): Promise<number> {
  const r = await direct.query(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = (hashtext($1)::bigint & 4294967295)::oid`,
    [`${prefix}#leader:leader`],
  );
  return r.rows[0].n;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

describe('PostgreSQL behind PgBouncer: session and transaction pooling', function () {
  this.timeout(60_000);
  before(requireDatabase(postgres, pgbouncerMissing));
  const bouncers: Record<'session' | 'transaction', PgBouncer | null> = { session: null, transaction: null };
  before(async () => {
    if (pgbouncerMissing() && !isCI()) return;
    bouncers.session = await startPgBouncer('session');
    bouncers.transaction = await startPgBouncer('transaction');
  });
  after(async () => {
    await bouncers.session?.stop();
    await bouncers.transaction?.stop();
  });
  const url = (mode: 'session' | 'transaction') => bouncers[mode]!.url;

  describe('detection', function () {
    it('tells a transaction pooler from a session of its own (direct, session pooler)', async () => {
      const probe = (connectionString: string) => keepsSession(pg.Client, { connectionString });
      expect(await probe(PG_URL), 'direct').to.equal(true);
      expect(await probe(url('session')), 'PgBouncer session mode').to.equal(true);
      expect(await probe(url('transaction')), 'PgBouncer transaction mode').to.equal(false);
      // Again while other clients keep the pooler's server connections busy.
      const busy = pool(url('transaction'), 6);
      try {
        const load = Array.from({ length: 6 }, async () => {
          for (let i = 0; i < 40; i++) await busy.query('SELECT pg_sleep(0.001)');
        });
        const [during] = await Promise.all([probe(url('transaction')), ...load]);
        expect(during, 'transaction mode under load').to.equal(false);
      } finally {
        await busy.end();
      }
    });

    it("behind a transaction pooler: warns once, no LISTEN, no session lock, no planner SET left on a server connection", async () => {
      const prefix = uniquePrefix();
      const db = pool(url('transaction'));
      const log = recorder();
      const jobs = createJobs({ db, tablePrefix: prefix, logger: log.logger, leader: { leaseMs: 600 }, worker: { concurrency: 2 } });
      jobs.define('n', async () => undefined);
      try {
        await jobs.start();
        const store = jobs.store as PostgresStore;
        expect(await store.sessionScoped()).to.equal(false);
        expect(await store.listen({ onJob: () => undefined, onCancel: () => undefined, onReconnect: () => undefined, onError: () => undefined })).to.equal(null);
        await until(() => jobs.isLeader(), 'a lease-only leader', 5000);
        for (let i = 0; i < 20; i++) await store.jobClaim({ workerId: 'w', names: ['none'], limit: 1 });
        await jobs.stop();
        await jobs.start();
        expect(log.warn.filter((m) => /transaction pooler/.test(m)), log.warn.join('\n')).to.have.length(1);
        expect(log.error, log.error.join('\n')).to.deep.equal([]);
        // No session advisory lock of ours anywhere, and every server connection plans as usual.
        const direct = pool(PG_URL, 1);
        const locks = await ourLocks(direct, prefix);
        await direct.end();
        expect(locks).to.equal(0);
        const wide = pool(url('transaction'), 8);
        const clients = await Promise.all(Array.from({ length: 8 }, () => wide.connect()));
        try {
          for (const c of clients) await c.query('BEGIN');
          const seen = await Promise.all(clients.map(async (c) => (await c.query(`SELECT current_setting('enable_seqscan') AS s, current_setting('enable_sort') AS o`)).rows[0]));
          for (const s of seen) expect(s).to.deep.equal({ s: 'on', o: 'on' });
        } finally {
          for (const c of clients) {
            await c.query('ROLLBACK').catch(() => undefined);
            c.release();
          }
          await wide.end();
        }
      } finally {
        await jobs.close();
        await db.end();
        await dropPrefixed(prefix);
      }
    });

    it("pooler: 'transaction' says so without a warning; directUrl keeps LISTEN (a cross-instance wake-up long before the 60 s poll)", async () => {
      const prefix = uniquePrefix();
      const pools = [pool(url('transaction')), pool(url('transaction'))];
      const log = recorder();
      const said = createJobs({ db: pools[0], tablePrefix: prefix, logger: log.logger, pooler: 'transaction', worker: false });
      const direct = createJobs({ db: pools[1], tablePrefix: prefix, logger: log.logger, directUrl: PG_URL, worker: { pollInterval: 60_000 } });
      let startedAt = 0;
      direct.define('n', async () => void (startedAt = Date.now()));
      try {
        await said.migrate();
        expect(await (said.store as PostgresStore).sessionScoped()).to.equal(false);
        await direct.start();
        expect(await (direct.store as PostgresStore).sessionScoped()).to.equal(true);
        await sleep(100); // past the first claim
        const sent = Date.now();
        await said.enqueue('n', {});
        await until(() => startedAt > 0, 'the job to start', 5000, 2);
        // The poll comes every 60 s: a start within a second can only be the NOTIFY's.
        expect(startedAt - sent).to.be.below(1000);
        expect(log.warn).to.deep.equal([]);
      } finally {
        await direct.close();
        await said.close();
        for (const p of pools) await p.end();
        await dropPrefixed(prefix);
      }
    });

    it("ends a lock holder's session only when it is provably a lock session of ours (idle, its last statement ours)", async () => {
      const prefix = uniquePrefix();
      const db = pool(PG_URL);
      const jobs = createJobs({ db, tablePrefix: prefix, logger: false, worker: false });
      const store = jobs.store as PostgresStore;
      const key = `${prefix}#leader:x`;
      const foreign = new pg.Client({ connectionString: PG_URL });
      foreign.on('error', () => undefined);
      try {
        await foreign.connect();
        // Another client's session holding the key: idle, or inside a transaction.
        await foreign.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
        expect(await store.sessionLockEvict('#leader:x')).to.equal(0);
        await foreign.query('BEGIN');
        await foreign.query('SELECT 1');
        expect(await store.sessionLockEvict('#leader:x')).to.equal(0);
        await foreign.query('COMMIT');
        await foreign.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
        // A lock session of ours (another store's), idle: ended.
        const other = createJobs({ db, tablePrefix: prefix, logger: false, worker: false });
        const lock = await (other.store as PostgresStore).sessionLockTry('#leader:x');
        expect(lock).to.not.equal(null);
        let lost = false;
        lock!.onLost(() => (lost = true));
        expect(await store.sessionLockEvict('#leader:x')).to.equal(1);
        await until(() => lost, 'the evicted lock session to report its loss', 2000);
        await other.close();
      } finally {
        await foreign.end().catch(() => undefined);
        await jobs.close();
        await db.end();
      }
    });

    it('refuses pooler and directUrl values it cannot use, naming the field', () => {
      const db = pool(PG_URL);
      const make = (o: object) => () => createJobs({ db, ...o } as never);
      expect(make({ pooler: 'statement' })).to.throw(TypeError, /pooler must be 'auto', 'session' or 'transaction'; got "statement"/);
      expect(make({ directUrl: 'mysql://x@h/db' })).to.throw(TypeError, /directUrl must be a PostgreSQL connection string/);
      expect(make({ directUrl: 5432 })).to.throw(TypeError, /directUrl must be a PostgreSQL connection string.*got 5432/);
      void db.end();
    });
  });

  for (const mode of ['session', 'transaction'] as const) {
    it(`${mode} mode: 2 worker processes run 2,000 jobs, each exactly once (enqueue→start latency printed)`, async function () {
      this.timeout(120_000);
      const prefix = uniquePrefix();
      const db = pool(url(mode));
      const producer = createJobs({ db, tablePrefix: prefix, mode: 'producer', logger: false });
      const workers: WorkerProc[] = [];
      try {
        await producer.migrate();
        await db.query(`CREATE TABLE ${prefix}exec_log (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, started_at BIGINT NOT NULL, ended_at BIGINT NOT NULL)`);
        // The stock pollInterval: behind the transaction pooler the workers fall back to their 200 ms poll.
        for (let i = 0; i < 2; i++) workers.push(spawnWorker({ DIALECT: 'postgres', LOCATION: url(mode), PREFIX: prefix, CONCURRENCY: 50 }));
        await Promise.all(workers.map((w) => w.waitFor(/^ready$/)));
        const N = 2000;
        const ids: string[] = [];
        // Enqueued while the workers run, 20 every 40 ms or so (well within what they run), so that
        // latency is a wake-up's, not a backlog's.
        for (let i = 0; i < N / 20; i++) {
          ids.push(...(await producer.enqueueMany(Array.from({ length: 20 }, () => ({ name: 'exec', payload: {} })))).map((r) => r.id));
          await sleep(40);
        }
        await until(async () => Number((await db.query(`SELECT count(*) AS n FROM ${prefix}history`)).rows[0].n) === N, 'every job to finish', 90_000, 100);
        for (const w of workers) w.kill('SIGTERM');
        await Promise.all(workers.map((w) => w.exited));

        const rows = (await db.query<{ job_id: string; pid: number }>(`SELECT job_id, pid FROM ${prefix}exec_log`)).rows;
        expect(rows).to.have.length(N);
        expect(new Set(rows.map((r) => r.job_id))).to.deep.equal(new Set(ids));
        const perPid = new Map<number, number>();
        for (const r of rows) perPid.set(r.pid, (perPid.get(r.pid) ?? 0) + 1);
        // With LISTEN every worker hears of each batch at once, and the first to claim takes the
        // batch (seen: 14 % to 50 % on a loaded machine). Polling, a worker claims what is pending at
        // its poll, so under this light load the share follows the two poll timers' phase (measured:
        // 8 % to 50 %): both take part, not necessarily evenly.
        const floor = mode === 'session' ? 0.1 : 0.03;
        for (const w of workers) expect(perPid.get(w.pid) ?? 0, `jobs run by ${w.pid}`).to.be.at.least(N * floor);
        const lat = (await db.query<{ ms: number }>(`SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms FROM ${prefix}history`)).rows
          .map((r) => Number(r.ms))
          .sort((a, b) => a - b);
        console.log(`      PgBouncer ${mode} mode, 2 processes, ${N} jobs: enqueue→start median ${quantile(lat, 0.5).toFixed(1)} ms, p95 ${quantile(lat, 0.95).toFixed(1)} ms, max ${lat[lat.length - 1].toFixed(1)} ms`);
        if (mode === 'transaction') expect(quantile(lat, 0.95), 'within the 200 ms poll').to.be.below(600);
      } finally {
        for (const w of workers) w.kill('SIGKILL');
        await producer.close();
        await db.end();
        await dropPrefixed(prefix);
      }
    });
  }

  it('transaction mode, leader: true for 40 s in 2 processes: at most one leader at any moment, and an app transaction held through the pooler survives', async function () {
    this.timeout(90_000);
    const prefix = uniquePrefix();
    const db = pool(url('transaction'), 8);
    const producer = createJobs({ db, tablePrefix: prefix, mode: 'producer', logger: false });
    const procs: WorkerProc[] = [];
    const held: pg.Client[] = [];
    try {
      await producer.migrate();
      await db.query(`CREATE TABLE ${prefix}app (n INTEGER NOT NULL)`);
      const env = { DIALECT: 'postgres', LOCATION: url('transaction'), PREFIX: prefix, LEADER: 1500, LEADER_SAMPLE: 25, HEARTBEAT: 200, STALL: 1500 };
      for (let i = 0; i < 2; i++) procs.push(spawnWorker(env));
      await Promise.all(procs.map((p) => p.waitFor(/^ready$/)));
      const started = Date.now();
      await until(() => procs.some((p) => p.lines.includes('leader true')), 'a leader', 10_000);
      // App transactions opened now take the server connections the leader's statements just used.
      for (let i = 0; i < 3; i++) {
        const c = new pg.Client({ connectionString: url('transaction') });
        c.on('error', () => undefined);
        await c.connect();
        await c.query('BEGIN');
        await c.query(`INSERT INTO ${prefix}app (n) VALUES ($1)`, [i]);
        held.push(c);
      }
      // Each held transaction runs a statement every second (one at a time on its client).
      let alive = Promise.resolve();
      let lost: unknown = null;
      const ping = () => Promise.all(held.map((c) => c.query('SELECT 1'))).then(() => undefined, (err: unknown) => void (lost ??= err));
      const keepAlive = setInterval(() => (alive = alive.then(ping)), 1000);
      try {
        // Midway the leader is paused past its lease: the other takes over by lease alone; on
        // SIGCONT the old one does not trust its leadership any more.
        await sleep(15_000);
        const leader = procs.find((p) => p.lines.includes('leader true'))!;
        leader.kill('SIGSTOP');
        await sleep(4000);
        leader.kill('SIGCONT');
        await sleep(Math.max(0, 40_000 - (Date.now() - started)));
      } finally {
        clearInterval(keepAlive);
      }
      await alive;
      expect(lost, 'an app transaction held through the pooler was ended').to.equal(null);
      for (const c of held) await c.query('COMMIT');
      expect((await db.query(`SELECT count(*)::int AS n FROM ${prefix}app`)).rows[0].n, 'the app transactions committed').to.equal(3);

      // Leadership runs, from each process's samples: never two at once.
      const runs = procs.flatMap((p, i) => leadingRuns(p, i));
      expect(new Set(runs.map((r) => r.proc)).size, 'both processes led at some point').to.equal(2);
      runs.sort((a, b) => a.from - b.from);
      for (let i = 1; i < runs.length; i++) {
        expect(runs[i].from, `process ${runs[i].proc} led from ${runs[i].from} while process ${runs[i - 1].proc} led until ${runs[i - 1].to}`).to.be.greaterThan(runs[i - 1].to);
      }
      const direct = pool(PG_URL, 1);
      const locks = await ourLocks(direct, prefix);
      await direct.end();
      expect(locks, 'no session advisory lock left on a server connection').to.equal(0);
    } finally {
      for (const c of held) await c.end().catch(() => undefined);
      for (const p of procs) p.kill('SIGKILL');
      await producer.close();
      await db.end();
      await dropPrefixed(prefix);
    }
  });
});

/** A process's "leading <ms>" samples, as runs: a gap of more than 200 ms (8 periods) ends one. */
function leadingRuns(p: WorkerProc, proc: number): { proc: number; from: number; to: number }[] {
  const at = p.lines.filter((l) => l.startsWith('leading ')).map((l) => Number(l.slice(8)));
  const runs: { proc: number; from: number; to: number }[] = [];
  for (const t of at) {
    const last = runs[runs.length - 1];
    if (last && t - last.to <= 200) last.to = t;
    else runs.push({ proc, from: t, to: t });
  }
  return runs;
}
