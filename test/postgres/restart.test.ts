/**
 * PostgreSQL only: restart the server while 5,000 jobs run. The worker reports the outage as
 * 'error' events, backs off, reconnects, and every job completes, once.
 * It restarts the local cluster with pg_ctlcluster, which a developer's machine (or a database
 * shared with others) may not want: it runs only with SQLJOBS_TEST_RESTART=1 (.ci/run sets it).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { DIALECTS, requireDatabase, until } from '../helpers/dialects.ts';

function restartCommand(): string[] | null {
  if (!existsSync('/etc/postgresql')) return null;
  const version = readdirSync('/etc/postgresql')[0];
  return version ? ['pg_ctlcluster', '--skip-systemctl-redirect', version, 'main', 'restart'] : null;
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
      // Each job's handler wrote once per attempt it ran; a job ran twice only if an attempt failed during the outage.
      const log = await t.query<{ job_id: string; runs: string; last: number }>(
        `SELECT job_id, count(*) AS runs, max(attempt) AS last FROM ${t.prefix}exec_log GROUP BY job_id`,
      );
      expect(log).to.have.length(N);
      const attempts = new Map((await t.query<{ id: string; attempts: number }>(`SELECT id::text, attempts FROM ${t.prefix}history`)).map((r) => [r.id, r.attempts]));
      for (const row of log) expect(Number(row.runs), `job ${row.job_id}`).to.be.at.most(attempts.get(row.job_id)!);
      await jobs.close();
    } finally {
      await until(async () => (await factory.available()) === null, 'PostgreSQL to be back', 30_000, 200);
      await t.cleanup().catch(() => undefined);
    }
  });
});
