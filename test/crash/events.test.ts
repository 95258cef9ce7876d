/**
 * Cross-process outcomes (issue 16), on every dialect: jobs run by a worker in another process are
 * heard by jobs.subscribe here (jobs.on hears only this process's), and jobs.waitFor answers their
 * finished record; a throwing listener is reported and the others still hear; unsubscribing stops;
 * waitFor's timeout says the state the job was in.
 */
import { expect } from 'chai';
import { WaitTimeoutError, type FinishedJob } from '../../lib/index.ts';
import { createTestJobs } from '../../lib/testing.ts';
import { PROCESS_DIALECTS, forEachDialect, until, type TestDb } from '../helpers/dialects.ts';
import { spawnWorker } from '../helpers/processes.ts';

const workerEnv = (t: TestDb) => ({ DIALECT: t.dialect, DRIVER: t.driver, LOCATION: t.location, PREFIX: t.prefix, PGAPPNAME: t.prefix, POLL: 50 });

forEachDialect('outcomes across processes', ({ fresh }) => {
  it('subscribe hears jobs another process finished, and waitFor answers their record', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const here = t.jobs({ worker: false });
    await here.migrate();
    const heard: FinishedJob[] = [];
    const completed: string[] = [];
    const errors: unknown[] = [];
    here.on('error', (err) => errors.push(err));
    here.subscribe('completed', () => {
      throw new Error('a listener that throws');
    });
    const stop = here.subscribe('finished', (job) => void heard.push(job));
    here.subscribe('completed', (job) => void completed.push(job.id));
    let localEvents = 0;
    here.on('completed', () => localEvents++);
    await new Promise((r) => setTimeout(r, 100)); // the feed reads from when it started: let it start
    const worker = spawnWorker(workerEnv(t));
    try {
      await worker.waitFor(/^ready$/);
      const ids = (await here.enqueueMany([1, 2, 3].map((n) => ({ name: 'work', payload: { ms: 20 * n } })))).map((r) => r.id);
      const records = await Promise.all(ids.map((id) => here.waitFor(id, { timeout: 20_000 })));
      for (const job of records) expect(job).to.deep.include({ state: 'completed', result: { pid: worker.pid, resumedFrom: null } });
      await until(() => heard.length === 3, 'the three jobs to be heard', 10_000, 20);
      expect(heard.map((j) => j.id).sort()).to.deep.equal([...ids].sort());
      for (const job of heard) {
        expect(job).to.deep.include({ name: 'work', queue: 'default', state: 'completed', attempts: 1, error: null, result: { pid: worker.pid, resumedFrom: null } });
        expect(job.finishedAt).to.be.instanceOf(Date);
      }
      expect(completed.sort(), 'the listener after the one that threw').to.deep.equal([...ids].sort());
      expect(errors.length, 'each throw reported').to.equal(3);
      expect(localEvents, 'jobs.on hears only this process').to.equal(0);

      stop();
      const later = (await here.enqueue('work', { ms: 1 })).id;
      await here.waitFor(later, { timeout: 20_000 });
      await until(() => completed.length === 4, 'the listeners still subscribed to hear it', 10_000, 20);
      expect(heard.map((j) => j.id), 'unsubscribed: not heard').not.to.include(later);
    } finally {
      worker.kill('SIGTERM');
      await worker.exited;
      await here.stop();
    }
  });

  it('waitFor: a job not finished in time, or not found, rejects naming its state; bad input is refused', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const { id } = await jobs.enqueue('later', {}, { delay: 3_600_000 });
    const pending = await jobs.waitFor(id, { timeout: 200 }).catch((e: unknown) => e);
    expect(pending).to.be.instanceOf(WaitTimeoutError);
    expect(pending).to.deep.include({ jobId: id, state: 'pending' });
    // This instance runs no worker (worker: false): the message says so, the usual cause of a job that waits.
    expect((pending as Error).message).to.equal(`waitFor: job ${id} was still pending after 200 ms; this instance runs no worker (call start(), or run \`sqljobs worker\` elsewhere with a handler for the job)`);
    const unknown = '01900000-0000-7000-8000-000000000000';
    const missing = await jobs.waitFor(unknown, { timeout: 100 }).catch((e: unknown) => e);
    expect(missing).to.deep.include({ jobId: unknown, state: null });
    expect(await jobs.cancel(id)).to.equal(true);
    expect((await jobs.waitFor(id)).state, 'a cancelled job has finished').to.equal('cancelled');
    expect(() => jobs.subscribe('done' as never, () => undefined)).to.throw(TypeError, /subscribe: event must be one of completed, failed, cancelled, skipped, finished/);
    await jobs.waitFor(id, { timeout: 0 }).then(() => expect.fail('refused'), (e: Error) => expect(e.message).to.match(/waitFor: timeout/));
  });
}, PROCESS_DIALECTS);

describe('outcomes across processes: one statement finishing many jobs [sqlite]', () => {
  it('subscribe hears every one of 2,500 jobs finished at the same instant (pages within one millisecond)', async function () {
    this.timeout(30_000);
    const jobs = createTestJobs();
    await jobs.migrate();
    const heard = new Set<string>();
    jobs.subscribe('cancelled', (job) => void heard.add(job.id));
    await new Promise((r) => setTimeout(r, 100));
    const ids = (await jobs.enqueueMany(Array.from({ length: 2500 }, (_, n) => ({ name: 'later', payload: { n }, delay: 3_600_000 })))).map((r) => r.id);
    // One bulk delete-and-archive, as a bulk cancel writes them: every row the same finished_at.
    const db = (jobs as unknown as { store: { own: import('better-sqlite3').Database } }).store.own;
    db.exec(`INSERT INTO sqljobs_history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at)
      SELECT id, name, queue, 'cancelled', payload, priority, attempts, max_attempts, run_at, created_at, ${Date.now()} FROM sqljobs_jobs;
      DELETE FROM sqljobs_jobs;`);
    await until(() => heard.size === ids.length, `all 2,500 to be heard (heard ${heard.size})`, 20_000, 50);
    await jobs.close();
  });
});
