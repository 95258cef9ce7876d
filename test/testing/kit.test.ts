/**
 * sqljobs/testing (issue 16): an app's tests run its jobs without worker timing. Jobs on an
 * in-memory SQLite database, drain (what is due, what that enqueues, and with `delayed` what waits
 * for a time), runOnce (exactly one job), expectEnqueued (a partial payload match, and a failure
 * that lists what is waiting).
 */
import { expect } from 'chai';
import { createTestJobs, drain, enqueued, expectEnqueued, EnqueuedAssertionError, runOnce } from '../../lib/testing.ts';

type AppJobs = {
  'welcome-email': { to: string; locale: string };
  'signup': { email: string };
  'sync': { n: number };
};

describe('sqljobs/testing', () => {
  it('expectEnqueued finds a waiting job by a partial payload, and otherwise says what is waiting', async () => {
    const jobs = createTestJobs<AppJobs>();
    await jobs.enqueue('welcome-email', { to: 'ada@example.com', locale: 'en' });
    await jobs.enqueue('sync', { n: 1 });
    const job = await expectEnqueued(jobs, 'welcome-email', { to: 'ada@example.com' });
    expect(job.payload).to.deep.equal({ to: 'ada@example.com', locale: 'en' });
    expect(await enqueued(jobs, 'welcome-email', { locale: 'fr' })).to.deep.equal([]);
    const err = await expectEnqueued(jobs, 'welcome-email', { to: 'bob@example.com' }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(EnqueuedAssertionError);
    expect((err as Error).message).to.equal(
      'expected a "welcome-email" job with a payload matching {"to":"bob@example.com"} to be enqueued; waiting:\n' +
      '  welcome-email {"to":"ada@example.com","locale":"en"}\n  sync {"n":1}');
    await jobs.close();
  });

  it('drain runs what is due and what it enqueues, and answers the finished jobs; the jobs left are only those waiting for a time', async () => {
    const jobs = createTestJobs<AppJobs>();
    jobs.define('signup', async ({ email }) => {
      await jobs.enqueue('welcome-email', { to: email, locale: 'en' });
      await jobs.enqueue('sync', { n: 2 }, { delay: 3_600_000 });
      return 'signed up';
    });
    jobs.define('welcome-email', async ({ to }) => `sent to ${to}`);
    jobs.define('sync', async ({ n }) => n * 2);
    await jobs.enqueue('signup', { email: 'ada@example.com' });
    const finished = await drain(jobs);
    expect(finished.map((j) => [j.name, j.state, j.result])).to.deep.equal([['signup', 'completed', 'signed up'], ['welcome-email', 'completed', 'sent to ada@example.com']]);
    expect((await enqueued(jobs, 'sync')).map((j) => j.payload)).to.deep.equal([{ n: 2 }]);
    const later = await drain(jobs, { delayed: true });
    expect(later.map((j) => [j.name, j.result])).to.deep.equal([['sync', 4]]);
    await jobs.close();
  });

  it('drain answers the dependents a failed job cancelled (they finished meanwhile, with no worker event), after it', async () => {
    const jobs = createTestJobs<AppJobs>();
    jobs.define('sync', async ({ n }) => {
      if (n === 1) throw new Error('sync broke');
      return n;
    }, { maxAttempts: 1 });
    const root = await jobs.enqueue('sync', { n: 1 });
    const child = await jobs.enqueue('sync', { n: 2 }, { dependsOn: root.id });
    const grandchild = await jobs.enqueue('sync', { n: 3 }, { dependsOn: child.id });
    const finished = await drain(jobs);
    expect(finished.map((j) => [j.id, j.state])).to.deep.equal([[root.id, 'failed'], [child.id, 'cancelled'], [grandchild.id, 'cancelled']]);
    await jobs.close();
  });

  it('drain with delayed runs retries waiting for their backoff until the job ends', async () => {
    const jobs = createTestJobs<AppJobs>();
    let tries = 0;
    jobs.define('sync', async () => {
      if (++tries < 3) throw new Error(`try ${tries}`);
      return 'synced';
    }, { maxAttempts: 5, backoff: { type: 'fixed', baseMs: 3_600_000, jitter: 0 } });
    const { id } = await jobs.enqueue('sync', { n: 1 });
    expect(await drain(jobs)).to.deep.equal([]);
    expect((await jobs.get(id))?.state, 'waiting an hour for its retry').to.equal('pending');
    const [done] = await drain(jobs, { delayed: true });
    expect([done.id, done.state, done.attempts, done.result]).to.deep.equal([id, 'completed', 3, 'synced']);
    await jobs.close();
  });

  it('runOnce runs exactly one due job (the next a worker would take, or the next of a name) and answers its record; null when none is due', async () => {
    const jobs = createTestJobs<AppJobs>();
    const ran: number[] = [];
    jobs.define('sync', async ({ n }) => void ran.push(n));
    jobs.define('welcome-email', async () => 'sent');
    for (const n of [1, 2, 3]) await jobs.enqueue('sync', { n });
    await jobs.enqueue('welcome-email', { to: 'x@example.com', locale: 'en' }, { priority: -1 });
    const first = await runOnce(jobs);
    expect([first?.name, first?.state, ran]).to.deep.equal(['sync', 'completed', [1]]);
    expect((await enqueued(jobs, "sync")).map((j) => j.payload?.n), 'the others still wait').to.deep.equal([2, 3]);
    const mail = await runOnce(jobs, 'welcome-email');
    expect([mail?.name, mail?.result, ran]).to.deep.equal(['welcome-email', 'sent', [1]]);
    await runOnce(jobs);
    await runOnce(jobs);
    expect(ran).to.deep.equal([1, 2, 3]);
    expect(await runOnce(jobs)).to.equal(null);
    await jobs.close();
  });
});
