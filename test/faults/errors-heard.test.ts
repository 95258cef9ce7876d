/**
 * Errors nobody hears: without an 'error' listener every error the library handled reaches the
 * logger (console by default), one line per distinct error a minute; start() rejects when the
 * worker's own connections cannot be used at all (a stock PgBouncer refuses a startup parameter
 * the app's pool settings carry), instead of leaving jobs pending in silence.
 */
import { expect } from 'chai';
import pg from 'pg';
import { createJobs } from '../../lib/index.ts';
import { DIALECTS, PG_URL, forEachDialect, requireDatabase, sleep, uniquePrefix, until, type TestDb } from '../helpers/dialects.ts';
import { pgbouncerMissing, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.ts';
import { isCI } from '../helpers/ci.ts';
import { dropped, stopAtLostClaim } from '../helpers/lost-answers.ts';

function renameTable(t: TestDb, from: string, to: string): string {
  return t.dialect === 'mysql'
    ? `RENAME TABLE ${t.prefix}${from} TO ${t.prefix}${to}`
    : t.dialect === 'mssql'
      ? `EXEC sp_rename '${t.prefix}${from}', '${t.prefix}${to}'`
      : `ALTER TABLE ${t.prefix}${from} RENAME TO ${t.prefix}${to}`;
}

forEachDialect('faults: errors are heard', ({ fresh }) => {
  it('a worker whose every claim fails says so to the logger, once a minute per distinct error, and recovers', async () => {
    const t = await fresh();
    const lines: string[] = [];
    const jobs = t.jobs({ logger: { error: (m: string) => lines.push(m) }, worker: { pollInterval: 30 } });
    jobs.define('x', async () => 'done');
    await jobs.start();
    await t.query(renameTable(t, 'jobs', 'jobs_away'));
    await sleep(1200); // about 40 polls, each claim failing the same way
    await t.query(renameTable(t, 'jobs_away', 'jobs'));
    const claimErrors = lines.filter((l) => l.startsWith('sqljobs: worker:'));
    expect(claimErrors, lines.join('\n')).to.have.length(1);
    expect(claimErrors[0]).to.match(/jobs_away|jobs/);
    // The worker goes on once the table is back.
    const { id } = await jobs.enqueue('x', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job to run after the outage');
  });

  it('an async logger whose promise rejects (its log service down): no unhandled rejection, and the worker goes on', async () => {
    const t = await fresh();
    const lines: string[] = [];
    const unhandled: unknown[] = [];
    const trap = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', trap);
    try {
      const jobs = t.jobs({ logger: { error: async (m: string) => {
        lines.push(m);
        throw new Error('log sink unreachable');
      } }, worker: { pollInterval: 30 } });
      jobs.define('x', async () => 'done');
      await jobs.start();
      await t.query(renameTable(t, 'jobs', 'jobs_away'));
      await until(() => lines.some((l) => l.startsWith('sqljobs: worker:')), 'the claim error logged', 3000);
      await t.query(renameTable(t, 'jobs_away', 'jobs'));
      const { id } = await jobs.enqueue('x', {});
      await until(async () => (await jobs.get(id))?.state === 'completed', 'the job to run after the outage');
    } finally {
      process.off('unhandledRejection', trap);
    }
    expect(unhandled).to.deep.equal([]);
  });

  it('the default logger is console.error; an error listener takes the errors instead', async () => {
    const t = await fresh();
    const printed: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void printed.push(args.map(String).join(' '));
    try {
      const quiet = t.jobs({ worker: { pollInterval: 30 } });
      quiet.define('x', async () => undefined);
      await quiet.start();
      await t.query(renameTable(t, 'jobs', 'jobs_away'));
      await until(() => printed.some((l) => l.startsWith('sqljobs: worker:')), 'console.error to print the claim error', 3000);
      const heard: unknown[] = [];
      quiet.on('error', (e) => heard.push(e));
      const before = printed.length;
      await until(() => heard.length > 0, "the 'error' listener to hear the next failure", 3000);
      expect(printed.length, 'nothing more printed once the app listens').to.equal(before);
      await t.query(renameTable(t, 'jobs_away', 'jobs'));
    } finally {
      console.error = original;
    }
  });
});

forEachDialect('faults: start() and a dropped connection', ({ fresh }) => {
  it("its first claim committed, then its answer lost: start() resolves, and every job runs once, its attempt refunded", async () => {
    const t = await fresh();
    // No poll and no heartbeat during the test: only the retried claim can find the lost claim's jobs.
    const jobs = t.jobs({ worker: { concurrency: 4, pollInterval: 60_000, heartbeatInterval: 60_000, stallTimeout: 180_000 } });
    const errors: unknown[] = [];
    jobs.on('error', (e) => errors.push(e));
    const runs: number[] = [];
    jobs.define('x', (p: { n: number }) => void runs.push(p.n));
    await jobs.migrate();
    const ids = (await jobs.enqueueMany([1, 2, 3].map((n) => ({ name: 'x' as const, payload: { n } })))).map((r) => r.id);
    const claim = jobs.store.jobClaim.bind(jobs.store);
    let claims = 0;
    jobs.store.jobClaim = async (req) => {
      if (++claims > 1) return claim(req);
      await claim(req);
      throw dropped();
    };
    await jobs.start();
    await until(async () => (await Promise.all(ids.map((id) => jobs.get(id)))).every((r) => r?.state === 'completed'), 'every job to complete', 10_000);
    expect(runs.sort()).to.deep.equal([1, 2, 3]);
    for (const id of ids) expect((await jobs.get(id))!.attempts, 'the lost claim refunded').to.equal(1);
    expect(errors.map(String)).to.include('Error: Connection terminated unexpectedly');
  });

  /** A worker polling once a minute, and one job waiting for it. */
  async function oneJobWaiting(t?: TestDb) {
    t ??= await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    jobs.on('error', () => undefined);
    jobs.define('x', () => 'ran');
    await jobs.migrate();
    const { id } = await jobs.enqueue('x', {});
    return { jobs, id };
  }

  it("its first heartbeat's connection dropped: start() resolves and the worker runs jobs", async () => {
    const { jobs, id } = await oneJobWaiting();
    const heartbeat = jobs.store.workerHeartbeat.bind(jobs.store);
    let beats = 0;
    jobs.store.workerHeartbeat = async (info) => {
      if (++beats === 1) throw dropped();
      return heartbeat(info);
    };
    await jobs.start();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job to complete', 10_000);
  });

  it('every claim committed, then its answer lost: start() rejects after three, and the jobs the last one took are pending again, attempts refunded', async () => {
    const { jobs, id } = await oneJobWaiting();
    const claim = jobs.store.jobClaim.bind(jobs.store);
    let claims = 0;
    jobs.store.jobClaim = async (req) => {
      claims++;
      await claim(req);
      throw dropped();
    };
    const failure = await jobs.start().then(() => null, (e: Error) => e);
    expect(failure?.message).to.equal('the worker cannot use the database: Connection terminated unexpectedly');
    expect(claims).to.equal(3);
    expect(await jobs.get(id)).to.include({ state: 'pending', attempts: 0 });
    expect((await jobs.status()).workers, 'no worker left registered').to.have.length(0);
  });

  it('stop() while start() waits to try again: both resolve, and nothing of the start is left (no worker registered, no listener)', async () => {
    const t = await fresh();
    const { jobs, id } = await oneJobWaiting(t);
    const heartbeat = jobs.store.workerHeartbeat.bind(jobs.store);
    let beats = 0;
    jobs.store.workerHeartbeat = async (info) => {
      if (++beats === 1) throw dropped();
      return heartbeat(info);
    };
    const starting = jobs.start();
    await sleep(30);
    await jobs.stop();
    await starting;
    await sleep(300); // past the start's next try, had it been made
    expect(beats, 'no registration after stop()').to.equal(1);
    expect((await jobs.status()).workers, 'no worker registered').to.have.length(0);
    expect(await jobs.get(id)).to.include({ state: 'pending', attempts: 0 });
    if (t.dialect === 'postgres') {
      const listening = await t.query(`SELECT 1 FROM pg_stat_activity WHERE query LIKE $1`, [`LISTEN "${t.prefix}%`]);
      expect(listening, 'no LISTEN connection left').to.have.length(0);
    }
  });

  it('stop() just as a claim lost its answer after committing: the jobs it took are pending again, attempts refunded', async () => {
    const { jobs } = await oneJobWaiting();
    await jobs.start();
    const stopped = stopAtLostClaim(jobs);
    const { id } = await jobs.enqueue('x', {});
    await stopped();
    expect(await jobs.get(id)).to.include({ state: 'pending', attempts: 0 });
  });

  it('stop() while a failed start gives back its lost claim: stop() waits for that, and the job is pending again', async () => {
    const { jobs, id } = await oneJobWaiting();
    const claim = jobs.store.jobClaim.bind(jobs.store);
    jobs.store.jobClaim = async (req) => {
      await claim(req);
      throw dropped();
    };
    const heartbeat = jobs.store.workerHeartbeat.bind(jobs.store);
    let beats = 0;
    let stopping: Promise<void> | null = null;
    jobs.store.workerHeartbeat = async (info) => {
      // The registration, the reconciliations before the 2nd and 3rd claims, then the abandoned start's.
      if (++beats === 4) {
        stopping = jobs.stop();
        await sleep(200);
      }
      return heartbeat(info);
    };
    const started = jobs.start().then(() => 'resolved', (e: Error) => e.message);
    await until(() => stopping !== null, 'the abandoned start');
    await stopping;
    expect(await jobs.get(id)).to.include({ state: 'pending', attempts: 0 });
    expect((await jobs.status()).workers, 'no worker left registered').to.have.length(0);
    expect(await started).to.equal('the worker cannot use the database: Connection terminated unexpectedly');
  });

  it('a claim connection refused at every try: start() rejects saying so, after three tries, with no worker left registered', async () => {
    const { jobs, id } = await oneJobWaiting();
    let claims = 0;
    jobs.store.jobClaim = async () => {
      claims++;
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    };
    const failure = await jobs.start().then(() => null, (e: Error) => e);
    expect(failure?.message).to.equal('the worker cannot use the database: connect ECONNREFUSED 127.0.0.1:1');
    expect(claims).to.equal(3);
    expect((await jobs.status()).workers, 'no worker left registered').to.have.length(0);
    expect(await jobs.get(id)).to.include({ state: 'pending', attempts: 0 });
  });
});

const postgres = DIALECTS.find((d) => d.name === 'postgres');
if (postgres) {
  describe('faults: start() rejects when the worker cannot use the database [postgres]', function () {
    before(requireDatabase(postgres, pgbouncerMissing));
    let bouncer: PgBouncer | null = null;
    before(async () => {
      if (!pgbouncerMissing() || isCI()) bouncer = await startPgBouncer('session');
    });
    after(async () => bouncer?.stop());

    it('behind a stock PgBouncer, connections that carry the app pool\'s startup options are refused: start() rejects saying why, and nothing was claimed', async () => {
      const prefix = uniquePrefix();
      // The app's pool asks for a startup parameter, which the worker's own pools inherit with the
      // rest of its settings. The jobs are written and read through a direct connection.
      const pool = new pg.Pool({ connectionString: bouncer!.url, max: 4, options: '-c statement_timeout=0' });
      pool.on('error', () => undefined);
      const direct = new pg.Pool({ connectionString: PG_URL, max: 2 });
      const producer = createJobs({ db: direct, tablePrefix: prefix, logger: false, worker: false });
      const jobs = createJobs({ db: pool, tablePrefix: prefix, logger: false, worker: { pollInterval: 50 } });
      jobs.define('x', async () => 'done');
      try {
        await producer.migrate();
        const { id } = await producer.enqueue('x', {});
        let failure: Error | null = null;
        await jobs.start().catch((e: Error) => (failure = e));
        expect(failure, 'start() rejected').to.be.instanceOf(Error);
        expect(failure!.message).to.match(/unsupported startup parameter: options/);
        expect((await producer.status()).workers, 'no worker left registered').to.have.length(0);
        await sleep(200);
        expect(await producer.get(id)).to.include({ state: 'pending', attempts: 0 });
      } finally {
        await jobs.close();
        await producer.close();
        for (const table of (await direct.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`])).rows) {
          await direct.query(`DROP TABLE IF EXISTS "${table.tablename}" CASCADE`); // a partition goes with its table
        }
        await direct.end();
        await pool.end();
      }
    });
  });
}
