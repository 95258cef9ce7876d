/** The store verbs the admin needs, on every dialect: pause/resume honoured by workers, queue figures, throughput, run now, delete. */
import { expect } from 'chai';
import pg from 'pg';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { claimStatement, countStatements } from '../helpers/statements.ts';

/** A Jobs instance whose history holds `completed` completed and `failed` failed jobs. */
async function finishedJobs(t: TestDb, completed: number, failed: number) {
  const jobs = t.jobs({ worker: { pollInterval: 50 } });
  jobs.define('ok', async () => 1);
  jobs.define('bad', async () => {
    throw new Error('no');
  }, { maxAttempts: 1 });
  await jobs.enqueueMany([...Array.from({ length: completed }, () => ({ name: 'ok', payload: {} })), ...Array.from({ length: failed }, () => ({ name: 'bad', payload: {} }))]);
  await jobs.drain();
  return jobs;
}

forEachDialect('admin store verbs', ({ fresh }) => {
  it('a paused queue is not claimed (another process\'s worker too); resume runs its jobs', async () => {
    const t = await fresh();
    const producer = t.jobs({ worker: false });
    const other = await t.another();
    const worker = other.jobs({ worker: { pollInterval: 50 } });
    const ran: string[] = [];
    worker.define('note', async (p: { q: string }) => void ran.push(p.q));
    await producer.queues.pause('mail');
    await worker.start();
    await producer.enqueue('note', { q: 'mail' }, { queue: 'mail' });
    await producer.enqueue('note', { q: 'other' }, { queue: 'other' });
    await until(() => ran.includes('other'), 'the unpaused queue to run');
    await sleep(400); // eight poll rounds of the worker
    expect(ran).to.deep.equal(['other']);
    const paused = (await producer.queues.list()).find((q) => q.queue === 'mail')!;
    expect(paused).to.include({ pending: 1, due: 1, running: 0 });
    expect(paused.pausedAt).to.be.instanceOf(Date);
    expect(paused.oldestDueAgeMs).to.be.a('number').and.at.least(0);
    expect(await producer.queues.resume('mail')).to.equal(true);
    expect(await producer.queues.resume('mail')).to.equal(false);
    await until(() => ran.includes('mail'), 'the resumed queue to run');
    await until(async () => !(await producer.queues.list()).some((q) => q.queue === 'mail'), 'the mail queue to empty (and be listed no more)');
  });

  it('a paused queue does not make its worker spin on a due job it may not claim: claims stay at the poll rate', async () => {
    const t = await fresh();
    const poll = 100;
    const jobs = t.jobs({ worker: { pollInterval: poll } });
    let runs = 0;
    jobs.define('n', async () => void runs++);
    await jobs.queues.pause('default');
    await jobs.enqueue('n', {});
    const claims = countStatements(claimStatement(t));
    await jobs.start();
    const window = 1000;
    await sleep(window);
    claims.stop();
    expect(runs).to.equal(0);
    // One claim at start, then one per poll: a worker woken again and again by the due job it may not claim would send hundreds.
    expect(claims.count, `claim statements in ${window} ms at a ${poll} ms poll interval`).to.be.within(window / poll / 2, window / poll + 4);
    await jobs.queues.resume('default'); // wakes this process's worker at once
    await until(() => runs === 1, 'the job to run after resume', 3000);
  });

  it('a paused queue without jobs is listed; queue names are validated', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.queues.pause('empty');
    await jobs.queues.pause('empty');
    expect(await jobs.queues.list()).to.have.length(1);
    expect((await jobs.queues.list())[0]).to.include({ queue: 'empty', pending: 0, running: 0, oldestDueAgeMs: null });
    // Pausers at once: one inserts, the others find it paused (or are refused by its key, which means the same).
    await Promise.all(Array.from({ length: 8 }, () => jobs.queues.pause('burst')));
    expect((await jobs.queues.list()).map((q) => q.queue)).to.deep.equal(['burst', 'empty']);
    let err: unknown;
    try {
      await jobs.queues.pause("x'; DROP TABLE y; --");
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/queue must be/);
  });

  it('throughput counts completed and failed per bucket of the window', async () => {
    const jobs = await finishedJobs(await fresh(), 2, 1);
    const tp = await jobs.throughput();
    const sum = (k: 'completed' | 'failed') => tp.buckets.reduce((n, b) => n + b[k], 0);
    expect(sum('completed')).to.equal(2);
    expect(sum('failed')).to.equal(1);
    for (const b of tp.buckets) {
      expect(b.start % 60_000).to.equal(0);
      expect(b.start).to.be.within(tp.now - 3_660_000, tp.now);
    }
  });

  it('status counts finished jobs per state, each up to the cap and flagged when it reached it', async () => {
    const jobs = await finishedJobs(await fresh(), 3, 1);
    const { finished } = await jobs.status({ cap: 2 });
    expect(finished).to.deep.equal([
      { state: 'completed', count: 2, capped: true },
      { state: 'failed', count: 1, capped: false },
    ]);
  });

  it('list walks an index in id order and stops at the limit, never sorting all of history (PostgreSQL plans)', async function () {
    const t = await fresh();
    if (t.dialect !== 'postgres') return this.skip(); // SQLite orders its halves by the same (indexed) id column
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await t.query(`INSERT INTO ${t.prefix}history (id, name, queue, state, priority, attempts, max_attempts, run_at, created_at, finished_at)
      SELECT (lpad(to_hex(1700000000000 + i), 12, '0') || '70008' || lpad(to_hex(i), 15, '0'))::uuid, 'n', 'q',
        CASE WHEN i % 2 = 0 THEN 'completed' ELSE 'failed' END, 0, 1, 1, now(), now(), now() FROM generate_series(1, 20000) i`);
    await t.query(`ANALYZE ${t.prefix}history`);
    // Record the list statements as sent, then ask PostgreSQL how it runs them.
    const sent: { text: string; values: unknown[] }[] = [];
    const proto = pg.Pool.prototype as unknown as { query: (...args: unknown[]) => unknown };
    const original = proto.query;
    proto.query = function (this: unknown, ...args: unknown[]) {
      if (typeof args[0] === 'string' && args[0].includes('UNION ALL') === false && args[0].includes(`FROM ${t.prefix}history`) && args[0].includes('LIMIT')) {
        sent.push({ text: args[0], values: args[1] as unknown[] });
      }
      return original.apply(this, args);
    };
    try {
      const completed = await jobs.list({ state: 'completed', limit: 50 });
      await jobs.list({ state: 'completed', limit: 50, cursor: completed.nextCursor! });
      await jobs.list({ states: ['completed', 'failed', 'cancelled', 'skipped'], limit: 50 });
    } finally {
      proto.query = original;
    }
    expect(sent).to.have.length(3);
    for (const q of sent) {
      const plan = (await t.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${q.text}`, q.values)).map((r) => r['QUERY PLAN']).join('\n');
      expect(plan).to.match(/Index (Only )?Scan Backward/);
      expect(plan).not.to.match(/Seq Scan on/);
    }
  });

  it('runNow makes a delayed pending job due; it refuses finished jobs', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('later', async () => 'done');
    const { id } = await jobs.enqueue('later', {}, { delay: 3_600_000 });
    await jobs.start();
    expect(await jobs.runNow(id)).to.equal(true);
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job to complete');
    expect(await jobs.runNow(id)).to.equal(false);
  });

  it('retry brings a failed job back with one more attempt allowed; it refuses while a live job holds its refId', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('bad', async () => {
      throw new Error('no');
    }, { maxAttempts: 1 });
    const { id } = await jobs.enqueue('bad', {}, { refId: 'order-1' });
    await jobs.drain();
    expect(await jobs.get(id)).to.include({ state: 'failed', attempts: 1, maxAttempts: 1 });
    const holder = (await jobs.enqueue('bad', {}, { refId: 'order-1', delay: 3_600_000 })).id;
    const refused = await jobs.retry(id).catch((e: Error) => e);
    expect((refused as Error).message).to.equal(`cannot retry job ${id}: a live job with the same refId exists`);
    expect(await jobs.get(id)).to.include({ state: 'failed', attempts: 1, maxAttempts: 1 });
    expect(await jobs.cancel(holder)).to.equal(true);
    expect(await jobs.retry(id)).to.equal(true);
    expect(await jobs.get(id)).to.include({ state: 'pending', attempts: 1, maxAttempts: 2, refId: 'order-1' });
    expect(await jobs.retry(id), 'a pending job: made due now').to.equal(true);
    expect(await jobs.retry('01936f4e-8a1b-7c2d-9e3f-0a1b2c3d4e5f'), 'no such job').to.equal(false);
  });

  it('delete removes pending and finished jobs with their logs and attempts, never a running one', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    jobs.define('hold', async (_p, ctx) => {
      ctx.log('working');
      await hold;
    });
    jobs.define('quick', async (_p, ctx) => void ctx.log('hello'));
    const done = (await jobs.enqueue('quick', {})).id;
    await jobs.drain();
    const pending = (await jobs.enqueue('quick', {}, { delay: 3_600_000 })).id;
    const running = (await jobs.enqueue('hold', {})).id;
    await jobs.start();
    await until(async () => (await jobs.get(running))?.state === 'running', 'the job to run');
    expect(await jobs.deleteMany([done, pending, running])).to.have.members([done, pending]);
    expect(await jobs.get(done)).to.equal(null);
    expect(await jobs.get(pending)).to.equal(null);
    expect((await jobs.get(running))?.state).to.equal('running');
    expect(await t.query(`SELECT * FROM ${t.prefix}logs WHERE job_id = ${t.dialect === 'sqlite' ? '?' : '$1'}`, [done])).to.have.length(0);
    expect(await jobs.delete(done)).to.equal(false);
    release();
    await until(async () => (await jobs.get(running))?.state === 'completed', 'the held job to complete');
  });
});
