/**
 * PostgreSQL only: restart the server while 5,000 jobs run. The worker reports the outage as
 * 'error' events, backs off, reconnects, and every job completes, once.
 * It restarts the local cluster with pg_ctlcluster, which a developer's machine (or a database
 * shared with others) may not want: it runs only with SQLJOBS_TEST_RESTART=1 (.ci/run sets it).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { DIALECTS, requireDatabase, until, type TestDb } from '../helpers/dialects.ts';

function restartCommand(): string[] | null {
  if (!existsSync('/etc/postgresql')) return null;
  const version = readdirSync('/etc/postgresql')[0];
  return version ? ['pg_ctlcluster', '--skip-systemctl-redirect', version, 'main', 'restart'] : null;
}

/**
 * Each job ran once, counted in exec_log (no key: a second run shows as a second row): the
 * attempt that completed it ran exactly once, and any earlier run is an attempt recorded as failed
 * (its handler's row committed, then the outage failed it), so the job's attempts match its runs.
 */
async function expectRunOnce(t: TestDb, n: number): Promise<void> {
  const runs = new Map<string, number[]>();
  for (const r of await t.query<{ job_id: string; attempt: number }>(`SELECT job_id::text AS job_id, attempt FROM ${t.prefix}exec_log`)) {
    runs.set(r.job_id, [...(runs.get(r.job_id) ?? []), Number(r.attempt)]);
  }
  expect(runs.size, 'jobs that ran').to.equal(n);
  const final = new Map((await t.query<{ id: string; attempts: number }>(`SELECT id::text AS id, attempts FROM ${t.prefix}history`)).map((r) => [r.id, Number(r.attempts)]));
  const failed = new Set((await t.query<{ k: string }>(`SELECT job_id::text || ':' || attempt AS k FROM ${t.prefix}attempts WHERE error IS NOT NULL`)).map((r) => r.k));
  let again = 0;
  for (const [id, attempts] of runs) {
    attempts.sort((a, b) => a - b);
    expect(new Set(attempts).size, `job ${id}: no attempt ran twice (${attempts})`).to.equal(attempts.length);
    expect(attempts.at(-1), `job ${id}: the completing attempt ran (${attempts})`).to.equal(final.get(id));
    for (const a of attempts.slice(0, -1)) expect(failed.has(`${id}:${a}`), `job ${id}: run of attempt ${a} is a failed attempt`).to.equal(true);
    if (attempts.length > 1) again++;
  }
  expect(again, 'jobs run again after a failed attempt (the outage cut a few short)').to.be.below(n / 10);
}

describe('database restart [postgres]', function () {
  const factory = DIALECTS.find((d) => d.name === 'postgres')!;
  const cmd = restartCommand();
  before(function () {
    if (process.env.SQLJOBS_TEST_RESTART === '1') return;
    console.warn('\n  !!! SKIPPING the PostgreSQL restart: set SQLJOBS_TEST_RESTART=1 to restart the local cluster\n');
    this.skip();
  });
  before(requireDatabase(factory, () => (cmd ? null : 'no local cluster to restart (pg_ctlcluster, /etc/postgresql)')));

  it('loses no job and runs none twice when PostgreSQL restarts mid-run', async function () {
    this.timeout(120_000);
    const t = await factory.create();
    try {
      const jobs = t.jobs({ worker: { concurrency: 10, pollInterval: 200 } });
      await jobs.migrate();
      await t.query(`CREATE TABLE ${t.prefix}exec_log (job_id uuid NOT NULL, attempt int NOT NULL)`);
      const errors: unknown[] = [];
      jobs.on('error', (e) => errors.push(e));
      jobs.define(
        'exec',
        async (_p, ctx) => {
          await new Promise((r) => setTimeout(r, 1));
          await t.query(`INSERT INTO ${t.prefix}exec_log VALUES ($1, $2)`, [ctx.id, ctx.attempt]);
        },
        { backoff: { type: 'fixed', baseMs: 200, jitter: 0 } },
      );
      const N = 5000;
      await jobs.enqueueMany(Array.from({ length: N }, () => ({ name: 'exec', payload: null })));
      await jobs.start();
      await until(async () => Number((await t.query<{ n: string }>(`SELECT count(*) AS n FROM ${t.prefix}history`))[0].n) > 500, 'work to be under way', 30_000, 20);
      execFileSync(cmd![0], cmd!.slice(1), { stdio: 'ignore' });
      const done = async () => {
        try {
          return Number((await t.query<{ n: string }>(`SELECT count(*) AS n FROM ${t.prefix}history`))[0].n) === N;
        } catch {
          return false; // the test's own pool reconnects too
        }
      };
      await until(done, 'every job to finish after the restart', 90_000, 200);
      expect(errors.length, 'the outage was reported').to.be.greaterThan(0);
      const states = await t.query<{ state: string; n: string }>(`SELECT state, count(*) AS n FROM ${t.prefix}history GROUP BY state`);
      expect(states.map((r) => [r.state, Number(r.n)])).to.deep.equal([['completed', N]]);
      await expectRunOnce(t, N);
      await jobs.close();
    } finally {
      await until(async () => (await factory.available()) === null, 'PostgreSQL to be back', 30_000, 200);
      await t.cleanup().catch(() => undefined);
    }
  });
});
