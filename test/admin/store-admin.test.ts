/** The store verbs the admin needs, on every dialect: pause/resume honoured by workers, queue figures, throughput, run now, delete. */
import { expect } from 'chai';
import { forEachDialect, sleep, until } from '../helpers/dialects.ts';

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
    expect((await producer.queues.list()).find((q) => q.queue === 'mail')).to.equal(undefined);
  });

  it('a paused queue does not make its worker spin on a due job it may not claim', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    let runs = 0;
    jobs.define('n', async () => void runs++);
    await jobs.queues.pause('default');
    await jobs.enqueue('n', {});
    await jobs.start();
    await sleep(200);
    expect(runs).to.equal(0);
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
    let err: unknown;
    try {
      await jobs.queues.pause("x'; DROP TABLE y; --");
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/queue must be/);
  });

  it('throughput counts completed and failed per bucket of the window', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('ok', async () => 1);
    jobs.define('bad', async () => {
      throw new Error('no');
    }, { maxAttempts: 1 });
    await jobs.enqueueMany([{ name: 'ok', payload: {} }, { name: 'ok', payload: {} }, { name: 'bad', payload: {} }]);
    await jobs.drain();
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
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('ok', async () => 1);
    jobs.define('bad', async () => {
      throw new Error('no');
    }, { maxAttempts: 1 });
    await jobs.enqueueMany([...Array.from({ length: 3 }, () => ({ name: 'ok', payload: {} })), { name: 'bad', payload: {} }]);
    await jobs.drain();
    const { finished } = await jobs.status({ cap: 2 });
    expect(finished).to.deep.equal([
      { state: 'completed', count: 2, capped: true },
      { state: 'failed', count: 1, capped: false },
    ]);
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
    expect(await t.query(`SELECT * FROM ${t.prefix}logs WHERE job_id = ${t.dialect === 'postgres' ? '$1' : '?'}`, [done])).to.have.length(0);
    expect(await jobs.delete(done)).to.equal(false);
    release();
  });
});
