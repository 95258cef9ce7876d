/**
 * Liveness and schedule verbs at the store level, every dialect (statements written once in
 * lib/driver/portable/): the next-due probe a worker sleeps on, a heartbeat that re-registers its
 * worker and answers the attempts it still owns, and a schedule's compare-and-set advance.
 */
import { expect } from 'chai';
import { buildSchedule } from '../../lib/schedule/schedule.ts';
import { forEachDialect } from '../helpers/dialects.ts';
import { claimOne, storeOf } from './helpers.ts';

const worker = { host: 'h', pid: 1, queues: null, names: ['x'], concurrency: 1 };

forEachDialect('store: liveness and schedules', ({ fresh }) => {
  it('answers ms until the next due job of these names and queues, never negative, skipping paused queues; null when none', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    expect(await store.jobNextDueIn({ names: ['x'] })).to.equal(null);
    await jobs.enqueue('x', {}, { queue: 'later', delay: 60_000 });
    const later = (await store.jobNextDueIn({ names: ['x'] }))!;
    expect(later).to.be.within(50_000, 60_000);
    await jobs.enqueue('x', {}, { queue: 'now', runAt: new Date(Date.now() - 60_000) });
    expect(await store.jobNextDueIn({ names: ['x'] })).to.equal(0);
    expect(await store.jobNextDueIn({ names: ['x'], queues: ['later'] })).to.be.within(50_000, 60_000);
    expect(await store.jobNextDueIn({ names: ['y'] })).to.equal(null);
    expect(await store.jobNextDueIn({ names: [] }), 'no names').to.equal(null);
    expect(await store.jobNextDueIn({ names: ['x'], queues: [] }), 'no queues').to.equal(null);
    await store.queuePause('now');
    expect(await store.jobNextDueIn({ names: ['x'] })).to.be.within(50_000, 60_000);
    await store.queuePause('later');
    expect(await store.jobNextDueIn({ names: ['x'] })).to.equal(null);
  });

  it('a heartbeat registers its worker again after a sweep and answers the attempts it still owns', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await jobs.enqueue('x', {});
    expect(await store.workerHeartbeat({ id: 'w1', ...worker })).to.deep.equal([]);
    const job = await claimOne(store, 'x', 'w1');
    expect(await store.workerHeartbeat({ id: 'w1', ...worker })).to.deep.equal([{ id: job.id, token: job.token }]);
    await store.workerRemove('w1');
    expect(await store.workerList()).to.deep.equal([]);
    expect(await store.workerHeartbeat({ id: 'w1', ...worker })).to.have.length(1);
    expect((await store.workerList()).map((w) => w.id)).to.deep.equal(['w1']);
    await store.workerRemoveStale(60_000);
    expect((await store.workerList()).map((w) => w.id), 'a fresh heartbeat is not stale').to.deep.equal(['w1']);
    expect(await store.jobStalledList({ stallMs: 60_000, limit: 10 })).to.deep.equal([]);
  });

  it('answers which attempts history holds as completed by this worker: not another attempt, worker or outcome', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await jobs.enqueueMany([{ name: 'x', payload: {} }, { name: 'x', payload: {} }, { name: 'x', payload: {} }]);
    const done = await claimOne(store, 'x', 'w1');
    const failed = await claimOne(store, 'x', 'w1');
    const running = await claimOne(store, 'x', 'w1');
    expect(await store.jobCompleteMany([{ id: done.id, token: done.token, resultJson: null }])).to.deep.equal(new Set([done.id]));
    await store.jobFailMany([{ id: failed.id, token: failed.token, attempt: 1, startedAt: failed.startedAt, error: { message: 'no', name: 'Error' }, retryDelayMs: null }]);
    const attempts = [done, failed, running].map((j) => ({ id: j.id, attempt: j.attempts }));
    expect(await store.jobCompletedBy({ workerId: 'w1', attempts })).to.deep.equal(new Set([done.id]));
    expect(await store.jobCompletedBy({ workerId: 'w2', attempts }), 'another worker').to.deep.equal(new Set());
    expect(await store.jobCompletedBy({ workerId: 'w1', attempts: [{ id: done.id, attempt: 2 }] }), 'another attempt').to.deep.equal(new Set());
    expect(await store.jobCompletedBy({ workerId: 'w1', attempts: [] })).to.deep.equal(new Set());
  });

  it('answers which attempts this worker recorded as failed (retried or for good): not a rescue of them, another attempt, worker or outcome', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await jobs.enqueueMany(Array.from({ length: 6 }, () => ({ name: 'x', payload: {} })));
    const [retried, dead, rescued, named, done, running] = [
      await claimOne(store, 'x', 'w1'), await claimOne(store, 'x', 'w1'), await claimOne(store, 'x', 'w1'),
      await claimOne(store, 'x', 'w1'), await claimOne(store, 'x', 'w1'), await claimOne(store, 'x', 'w1'),
    ];
    const fail = (j: typeof retried, error: { name: string; stack?: string }, retryDelayMs: number | null) =>
      ({ id: j.id, token: j.token, attempt: j.attempts, startedAt: j.startedAt, error: { message: 'no', ...error }, retryDelayMs });
    // The rescuer writes through the same statement, for the same worker, its error named WorkerLost
    // without a stack; a handler's own error of that name has one.
    const applied = await store.jobFailMany([
      fail(retried, { name: 'Error', stack: 'Error: no\n    at x' }, 60_000), fail(dead, { name: 'TypeError' }, null),
      fail(rescued, { name: 'WorkerLost' }, 60_000), fail(named, { name: 'WorkerLost', stack: 'WorkerLost: no\n    at x' }, null),
    ]);
    expect(applied).to.deep.equal(new Set([retried.id, dead.id, rescued.id, named.id]));
    await store.jobCompleteMany([{ id: done.id, token: done.token, resultJson: null }]);
    const attempts = [retried, dead, rescued, named, done, running].map((j) => ({ id: j.id, attempt: j.attempts }));
    expect(await store.jobFailedBy({ workerId: 'w1', attempts })).to.deep.equal(new Set([retried.id, dead.id, named.id]));
    expect(await store.jobFailedBy({ workerId: 'w2', attempts }), 'another worker').to.deep.equal(new Set());
    expect(await store.jobFailedBy({ workerId: 'w1', attempts: [{ id: retried.id, attempt: 2 }] }), 'another attempt').to.deep.equal(new Set());
    expect(await store.jobFailedBy({ workerId: 'w1', attempts: [] })).to.deep.equal(new Set());
  });

  it('advances a schedule only from the next run it read, disables it when it ended, and removes it once', async () => {
    const t = await fresh();
    const { store } = await storeOf(t);
    const at = Date.now() - 1000;
    await store.scheduleUpsert({ def: buildSchedule('s', { every: 1, unit: 'minutes' }, null, {}, at), nextRunAt: at, codeHash: null });
    const due = await store.scheduleListDue();
    expect(due.due.map((s) => [s.key, s.nextRunAt])).to.deep.equal([['s', at]]);
    expect(due.now).to.be.at.least(at);
    await store.scheduleAdvance({ key: 's', from: at - 1, nextRunAt: at + 60_000 });
    expect((await store.scheduleList())[0].nextRunAt, 'from a next run it did not read').to.equal(at);
    await store.scheduleAdvance({ key: 's', from: at, nextRunAt: at + 60_000 });
    expect((await store.scheduleList())[0]).to.include({ nextRunAt: at + 60_000, enabled: true });
    expect((await store.scheduleListDue()).due).to.deep.equal([]);
    await store.scheduleAdvance({ key: 's', from: at + 60_000, nextRunAt: null });
    expect((await store.scheduleList())[0]).to.include({ nextRunAt: null, enabled: false });
    expect(await store.scheduleSetEnabled({ key: 's', enabled: true, nextRunAt: at })).to.equal(true);
    expect((await store.scheduleList())[0]).to.include({ nextRunAt: at, enabled: true });
    expect(await store.scheduleSetEnabled({ key: 'missing', enabled: true, nextRunAt: null })).to.equal(false);
    expect(await store.scheduleRemove('s')).to.equal(true);
    expect(await store.scheduleRemove('s')).to.equal(false);
    expect(await store.scheduleList()).to.deep.equal([]);
  });
});
