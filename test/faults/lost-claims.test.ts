/**
 * A claim whose answer is lost after its COMMIT (the connection killed at the wrong moment) gives
 * the database running jobs the worker never received. The worker compares what the database
 * says it runs with what it knows and returns the strangers to pending at once (attempt
 * refunded), long before the stall sweeper could: here the stall timeout is two minutes.
 *
 * The server kills every connection of the test's own sessions (PostgreSQL: its application
 * name; MariaDB: its own user) again and again while 2,000 jobs run.
 */
import { expect } from 'chai';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { createJobs, type Jobs } from '../../lib/index.ts';
import { DIALECTS, MYSQL_URL, PG_URL, requireDatabase, sleep, uniquePrefix, until } from '../helpers/dialects.ts';
import { trapCrashes } from '../helpers/traps.ts';

interface KillTarget {
  jobs: Jobs;
  /** End every server session of this test's jobs (app pool, worker pool, dedicated connections). */
  killAll(): Promise<number>;
  /** Rows of the live and history tables, through a connection that is never killed. */
  count(table: 'jobs' | 'history', where?: string): Promise<number>;
  cleanup(): Promise<void>;
}

const JOBS = 2000;

async function onPostgres(): Promise<KillTarget> {
  const prefix = uniquePrefix();
  const app = new pg.Pool({ connectionString: PG_URL, max: 10, application_name: `lost_${prefix}` });
  app.on('error', () => undefined); // the app's own idle connections are killed too; the app's pool replaces them
  const admin = new pg.Pool({ connectionString: PG_URL, max: 2 });
  const jobs = createJobs({ db: app, tablePrefix: prefix, worker: { concurrency: 10, pollInterval: 200, heartbeatInterval: 500, stallTimeout: 120_000 } });
  return {
    jobs,
    killAll: async () => (await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`lost_${prefix}`])).rowCount ?? 0,
    count: async (table, where = 'TRUE') => Number((await admin.query(`SELECT COUNT(*) AS n FROM ${prefix}${table} WHERE ${where}`)).rows[0].n),
    cleanup: async () => {
      await jobs.close({ timeout: 2000 }).catch(() => undefined);
      const tables = await admin.query(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`]);
      for (const t of tables.rows) await admin.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
      await app.end().catch(() => undefined);
      await admin.end();
    },
  };
}

async function onMariaDb(): Promise<KillTarget> {
  const prefix = uniquePrefix();
  const user = `lost_${process.pid}`;
  const admin = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
  await admin.query(`CREATE USER IF NOT EXISTS '${user}'@'%'`);
  await admin.query(`CREATE USER IF NOT EXISTS '${user}'@'localhost'`);
  await admin.query(`GRANT ALL ON test.* TO '${user}'@'%'`);
  await admin.query(`GRANT ALL ON test.* TO '${user}'@'localhost'`);
  const url = new URL(MYSQL_URL);
  url.username = user;
  const app = mysql.createPool({ uri: url.toString(), connectionLimit: 10, timezone: 'Z' });
  const jobs = createJobs({ db: app, tablePrefix: prefix, worker: { concurrency: 10, pollInterval: 200, heartbeatInterval: 500, stallTimeout: 120_000 } });
  return {
    jobs,
    killAll: async () => {
      const [rows] = await admin.query(`SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ?`, [user]);
      for (const r of rows as { id: number }[]) await admin.query(`KILL CONNECTION ${Number(r.id)}`).catch(() => undefined);
      return (rows as unknown[]).length;
    },
    count: async (table, where = 'TRUE') => Number(((await admin.query(`SELECT COUNT(*) AS n FROM ${prefix}${table} WHERE ${where}`))[0] as { n: number }[])[0].n),
    cleanup: async () => {
      await jobs.close({ timeout: 2000 }).catch(() => undefined);
      const [tables] = await admin.query(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?`, [`${prefix.replaceAll('_', '\\_')}%`]);
      for (const t of tables as { t: string }[]) await admin.query(`DROP TABLE IF EXISTS \`${t.t}\``);
      await app.end().catch(() => undefined);
      await admin.query(`DROP USER IF EXISTS '${user}'@'%'`);
      await admin.query(`DROP USER IF EXISTS '${user}'@'localhost'`);
      await admin.end();
    },
  };
}

const targets = [
  { factory: DIALECTS.find((d) => d.name === 'postgres'), open: onPostgres },
  { factory: DIALECTS.find((d) => d.name === 'mysql'), open: onMariaDb },
];

for (const { factory, open } of targets) {
  if (!factory) continue;
  describe(`faults: claims lost with their connection [${factory.name}]`, function () {
    before(requireDatabase(factory));
    const crashes = trapCrashes();
    let target: KillTarget | null = null;
    afterEach(async () => {
      await target?.cleanup();
      target = null;
    });

    it(`every one of ${JOBS} jobs completes while the server kills the worker's connections again and again; none is left running`, async function () {
      this.timeout(120_000);
      target = await open();
      const { jobs } = target;
      const runs = new Map<string, number>();
      jobs.define('work', async (p: { n: number }) => {
        await sleep(5 + Math.floor(Math.random() * 10)); // about three seconds of work at concurrency 10
        return p.n;
      });
      jobs.on('started', (e) => runs.set(e.id, (runs.get(e.id) ?? 0) + 1));
      await jobs.migrate();
      await jobs.enqueueMany(Array.from({ length: JOBS }, (_, n) => ({ name: 'work', payload: { n } })));
      await jobs.start();
      let rounds = 0;
      while (rounds < 12 && (await target.count('history')) < JOBS * 0.9) {
        if ((await target.killAll()) > 0) rounds++;
        await sleep(100 + Math.floor(Math.random() * 100));
      }
      expect(rounds, 'rounds that killed sessions while jobs ran').to.be.at.least(5);
      // Far less than the stall timeout (120 s): only reconciliation can bring lost claims back this soon.
      await until(async () => (await target!.count('history')) === JOBS, `all ${JOBS} jobs in history`, 45_000, 200);
      expect(await target.count('jobs')).to.equal(0);
      expect(await target.count('history', `state = 'completed'`)).to.equal(JOBS);
      expect(runs.size).to.equal(JOBS);
      crashes.expectNone();
    });
  });
}
