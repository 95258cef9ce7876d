/**
 * PostgreSQL only (pg and slonik): jobs.subscribe and jobs.waitFor hear jobs finished by another
 * process through NOTIFY (migration 018's trigger on history), with the poll lengthened to 60 s so
 * that only the push can deliver in time; after the LISTEN connection is killed the feed catches up
 * from history and tells no job twice; and no finishing statement NOTIFYs while nobody subscribes.
 */
import { expect } from 'chai';
import pg from 'pg';
import type { FinishedJob, Jobs } from '../../lib/index.ts';
import type { FinishedFeed } from '../../lib/finished.ts';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { spawnWorker } from '../helpers/processes.ts';

/** Only a push (or a reconnect's catch-up) can tell a job within the test's waits. */
const POLL_MS = 60_000;

/** A Jobs instance without a worker whose subscriptions poll every 60 s, migrated. */
async function subscriberOn(t: TestDb): Promise<Jobs> {
  const jobs = t.jobs({ worker: false });
  (jobs as unknown as { finished: FinishedFeed }).finished.pollMs = POLL_MS;
  await jobs.migrate();
  return jobs;
}

const finishedListeners = (t: TestDb) =>
  t.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()`, [`LISTEN "${t.prefix}finished"`]);
const leases = async (t: TestDb) => Number((await t.query<{ n: string }>(`SELECT count(*) AS n FROM ${t.prefix}subscribers WHERE expires_at > now()`))[0].n);

forEachDialect('finished jobs pushed by NOTIFY', ({ fresh }) => {

  it('a subscriber hears jobs another process finished in milliseconds, catches up after its LISTEN connection is killed, and hears none twice', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const here = await subscriberOn(t);
    const errors: Error[] = [];
    here.on('error', (err) => void errors.push(err as Error));
    const heard: { job: FinishedJob; at: number }[] = [];
    here.subscribe('finished', (job) => void heard.push({ job, at: performance.now() }));
    await until(async () => (await finishedListeners(t)).length === 1 && (await leases(t)) === 1, 'the subscriber to listen and hold its lease');
    await sleep(50); // the read made once it listens
    const worker = spawnWorker({ DIALECT: 'postgres', DRIVER: t.driver, LOCATION: t.location, PREFIX: t.prefix, PGAPPNAME: t.prefix, POLL: 50 });
    try {
      await worker.waitFor(/^ready$/);

      /** Enqueue, wait for the child to finish it and for it to be heard here; answers ms from the child's finish to hearing it. */
      const finishInChild = async (opts: { timeout?: number } = {}) => {
        const { id } = await here.enqueue('work', { ms: opts.timeout ? 5000 : 1 }, { maxAttempts: 1, ...opts });
        // "completed" is printed after the commit; "aborted" (the timeout) as the failure is about to be written.
        await worker.waitFor(new RegExp(`^(completed|aborted) ${id}\\b`), 10_000);
        const finished = performance.now();
        const told = (await until(() => heard.find((h) => h.job.id === id), `job ${id} to be heard`, 5000, 1))!;
        return { id, state: told.job.state, ms: told.at - finished };
      };
      const completed = [];
      for (let i = 0; i < 8; i++) completed.push(await finishInChild());
      const lateness = completed.map((c) => Math.max(0, Math.round(c.ms)));
      // The child says "completed" after its commit; the push comes with that commit.
      expect(Math.max(...lateness), `ms from the child's completion to hearing it: ${lateness}`).to.be.below(500);
      expect(completed.every((c) => c.state === 'completed')).to.equal(true);
      const failed = await finishInChild({ timeout: 50 }); // timed out in the child: failed for good
      expect(failed.state).to.equal('failed');

      // Kill the LISTEN connection, and finish a job at once, before it can reconnect (50 ms later):
      // its NOTIFY reaches nobody; the read after the reconnect finds it.
      const [{ pid }] = await finishedListeners(t);
      const other = (await t.another()).jobs({ worker: false });
      const { id: missed } = await other.enqueue('work', {}, { delay: 3_600_000 });
      await t.query('SELECT pg_terminate_backend($1)', [pid]);
      const cancelledAt = performance.now();
      expect(await other.cancel(missed)).to.equal(true);
      const told = (await until(() => heard.find((h) => h.job.id === missed), 'the job finished while the listener was down', 5000, 1))!;
      expect(told.job.state).to.equal('cancelled');
      console.log(`      finished → heard: ${lateness.join(', ')} ms; failed ${Math.round(failed.ms)} ms; caught up after the reconnect in ${Math.round(told.at - cancelledAt)} ms`);
      await until(async () => (await finishedListeners(t)).length === 1, 'the listener to reconnect', 5000);
      const after = [];
      for (let i = 0; i < 3; i++) after.push(await finishInChild());
      expect(Math.max(...after.map((c) => c.ms)), 'pushed again after the reconnect').to.be.below(500);

      expect(errors.map((e) => e.message), 'the killed connection, reported').to.deep.equal(['terminating connection due to administrator command']);
      await sleep(200);
      const ids = heard.map((h) => h.job.id);
      expect(ids.length, `told once each: ${ids}`).to.equal(new Set(ids).size);
      expect(new Set(ids)).to.deep.equal(new Set([...completed, failed, ...after].map((c) => c.id).concat(missed)));
    } finally {
      worker.kill('SIGTERM');
      await worker.exited;
    }
  });

  it('waitFor answers a job another process finished as its commit is pushed', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const here = await subscriberOn(t);
    const other = (await t.another()).jobs({ worker: false });
    const { id } = await other.enqueue('work', {}, { delay: 3_600_000 });
    // The wait's own look every 250 ms would see it too: the push is what wakes it within milliseconds.
    /** Cancel (in the other instance) a job being waited for here: ms from the cancel's answer to the wait's (0 when the wait answered first). */
    const cancelWaited = async (job: string, waiting: Promise<unknown>) => {
      const answered = waiting.then(() => performance.now());
      await sleep(300); // the wait's own looks are 250 ms apart by now
      await other.cancel(job);
      const cancelled = performance.now();
      return Math.max(0, (await answered) - cancelled);
    };
    const first = here.waitFor(id, { timeout: 10_000 });
    await until(async () => (await leases(t)) === 1, 'the wait to subscribe');
    const latencies = [await cancelWaited(id, first)];
    expect((await first).state).to.equal('cancelled');
    for (let i = 0; i < 9; i++) {
      const { id: next } = await other.enqueue('work', {}, { delay: 3_600_000 });
      latencies.push(await cancelWaited(next, here.waitFor(next, { timeout: 10_000 })));
    }
    // Looking every 250 ms alone, a wait answers within 100 ms 4 times in 10: 8 of 10 by chance about once in 80 runs.
    const prompt = latencies.filter((ms) => ms < 100).length;
    console.log(`      cancel → waitFor's answer: ${latencies.map(Math.round).join(', ')} ms`);
    expect(prompt, `answers within 100 ms of the cancel's commit: ${latencies.map(Math.round)}`).to.be.at.least(8);
  });

  it('no finishing statement sends a NOTIFY while no process subscribes; each does while one does', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('ok', async () => 'done');
    jobs.define('boom', async () => {
      throw new Error('boom');
    });
    await jobs.start();
    const listener = new pg.Client({ connectionString: t.location });
    await listener.connect();
    try {
      let notifications = 0;
      listener.on('notification', () => notifications++);
      await listener.query(`LISTEN "${t.prefix}finished"`);

      /** A completion, a failure and a cancel, each waited for (by get: a waitFor would subscribe). */
      const finishSome = async () => {
        const ok = await jobs.enqueue('ok', {});
        const boom = await jobs.enqueue('boom', {}, { maxAttempts: 1 });
        const later = await jobs.enqueue('ok', {}, { delay: 3_600_000 });
        await jobs.cancel(later.id);
        for (const { id } of [ok, boom, later]) await until(async () => ['completed', 'failed', 'cancelled'].includes((await jobs.get(id))?.state ?? ''), `job ${id} to finish`);
        await sleep(200); // a NOTIFY comes with the commit: anything sent has arrived by now
        return [ok.id, boom.id, later.id];
      };
      await finishSome();
      expect(notifications, 'nobody subscribes: no NOTIFY').to.equal(0);

      const subscriber = (await t.another()).jobs({ worker: false });
      const heard = new Map<string, string>();
      subscriber.subscribe('finished', (job) => void heard.set(job.id, job.state));
      await until(async () => (await leases(t)) === 1, 'the subscriber\'s lease');
      const ids = await finishSome();
      expect(notifications, 'a process subscribes: each finishing statement NOTIFYs').to.be.at.least(3);
      await until(() => ids.every((id) => heard.has(id)), 'the subscriber to hear the three');
      expect(ids.map((id) => heard.get(id))).to.deep.equal(['completed', 'failed', 'cancelled']);

      await subscriber.stop();
      expect(await leases(t), 'stop() ends the lease').to.equal(0);
      const before = notifications;
      await finishSome();
      expect(notifications, 'the subscriber stopped: no NOTIFY').to.equal(before);
    } finally {
      await listener.end();
    }
  });
}, ['postgres', 'slonik']);
