/**
 * A jobs database apart from the app's: createJobs({ db: jobsDb }) while the app writes to its
 * own database. Jobs work as usual; enqueue is then not part of the app's transaction (a job
 * enqueued inside an app transaction that rolls back still exists).
 */
import { expect } from 'chai';
import Database from 'better-sqlite3';
import pg from 'pg';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createJobs, type Jobs } from '../../lib/index.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix, until } from '../helpers/dialects.ts';

async function runOne(jobs: Jobs, name: string): Promise<string> {
  let ran = '';
  jobs.define(name, async (p: { order: string }) => {
    ran = p.order;
  });
  await jobs.start();
  await until(() => ran, `the ${name} job to run`);
  return ran;
}

describe('a jobs database apart from the app\'s', () => {
  const prefix = uniquePrefix();
  let app: pg.Pool;
  before(requireDatabase(DIALECTS.find((d) => d.name === 'postgres')!));
  before(async () => {
    app = new pg.Pool({ connectionString: PG_URL, max: 3 });
    await app.query(`CREATE TABLE ${prefix}orders (id serial PRIMARY KEY, item text)`);
  });
  after(async () => {
    await app.query(`DROP TABLE IF EXISTS ${prefix}orders`);
    await app.end();
  });

  it('app on PostgreSQL, jobs on SQLite: jobs run; an enqueue is not undone by the app\'s rollback', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-sep-'));
    const jobsDb = new Database(path.join(dir, 'jobs.db'));
    const jobs = createJobs({ db: jobsDb, tablePrefix: prefix, worker: { pollInterval: 20 } });
    try {
      const c = await app.connect();
      let id = '';
      try {
        await c.query('BEGIN');
        await c.query(`INSERT INTO ${prefix}orders (item) VALUES ('book')`);
        id = (await jobs.enqueue('ship', { order: 'book' })).id;
        await c.query('ROLLBACK');
      } finally {
        c.release();
      }
      expect((await app.query(`SELECT * FROM ${prefix}orders`)).rows).to.have.length(0);
      expect((await jobs.get(id))?.state, 'the job outlived the app rollback').to.equal('pending');
      expect(await runOne(jobs, 'ship')).to.equal('book');
      // The handler has returned; its outcome is written just after.
      await until(async () => (await jobs.get(id))?.state === 'completed', 'the job to be archived');
      // The jobs tables live in the SQLite file, none in the app's database.
      const inApp = await app.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, [`${prefix}jobs%`]);
      expect(inApp.rows).to.have.length(0);
      expect(jobsDb.prepare(`SELECT COUNT(*) AS n FROM ${prefix}history`).get()).to.deep.equal({ n: 1 });
    } finally {
      await jobs.close({ timeout: 2000 });
      jobsDb.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('app on one PostgreSQL pool, jobs on another (its own schema): the same, and opts.tx from the jobs pool joins its transaction', async () => {
    const schema = `${prefix}jobs_schema`;
    await app.query(`CREATE SCHEMA ${schema}`);
    const jobsPool = new pg.Pool({ connectionString: PG_URL, max: 3, options: `-c search_path=${schema}` });
    const jobs = createJobs({ db: jobsPool, tablePrefix: prefix, worker: { pollInterval: 20 } });
    try {
      await jobs.migrate();
      const c = await app.connect();
      let id = '';
      try {
        await c.query('BEGIN');
        id = (await jobs.enqueue('ship', { order: 'pen' })).id;
        await c.query('ROLLBACK');
      } finally {
        c.release();
      }
      expect((await jobs.get(id))?.state).to.equal('pending');
      // A transaction on the jobs database itself is joined, as usual.
      const j = await jobsPool.connect();
      let lost = '';
      try {
        await j.query('BEGIN');
        lost = (await jobs.enqueue('ship', { order: 'ink' }, { tx: j })).id;
        await j.query('ROLLBACK');
      } finally {
        j.release();
      }
      expect(await jobs.get(lost)).to.equal(null);
      expect(await runOne(jobs, 'ship')).to.equal('pen');
      const where = await app.query(`SELECT schemaname FROM pg_tables WHERE tablename = $1`, [`${prefix}jobs`]);
      expect(where.rows).to.deep.equal([{ schemaname: schema }]);
    } finally {
      await jobs.close({ timeout: 2000 });
      await jobsPool.end();
      await app.query(`DROP SCHEMA ${schema} CASCADE`);
    }
  });
});
