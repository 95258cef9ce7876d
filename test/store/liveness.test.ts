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
    expect(await store.nextDueIn(['x'])).to.equal(null);
    await jobs.enqueue('x', {}, { queue: 'later', delay: 60_000 });
    const later = (await store.nextDueIn(['x']))!;
    expect(later).to.be.within(50_000, 60_000);
    await jobs.enqueue('x', {}, { queue: 'now', runAt: new Date(Date.now() - 60_000) });
    expect(await store.nextDueIn(['x'])).to.equal(0);
    expect(await store.nextDueIn(['x'], ['later'])).to.be.within(50_000, 60_000);
    expect(await store.nextDueIn(['y'])).to.equal(null);
    expect(await store.nextDueIn([]), 'no names').to.equal(null);
    expect(await store.nextDueIn(['x'], []), 'no queues').to.equal(null);
    await store.pauseQueue('now');
    expect(await store.nextDueIn(['x'])).to.be.within(50_000, 60_000);
    await store.pauseQueue('later');
    expect(await store.nextDueIn(['x'])).to.equal(null);
  });

  it('a heartbeat registers its worker again after a sweep and answers the attempts it still owns', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await jobs.enqueue('x', {});
    expect(await store.heartbeat({ id: 'w1', ...worker })).to.deep.equal([]);
    const job = await claimOne(store, 'x', 'w1');
    expect(await store.heartbeat({ id: 'w1', ...worker })).to.deep.equal([{ id: job.id, token: job.token }]);
    await store.removeWorker('w1');
    expect(await store.listWorkers()).to.deep.equal([]);
    expect(await store.heartbeat({ id: 'w1', ...worker })).to.have.length(1);
    expect((await store.listWorkers()).map((w) => w.id)).to.deep.equal(['w1']);
    await store.removeStaleWorkers(60_000);
    expect((await store.listWorkers()).map((w) => w.id), 'a fresh heartbeat is not stale').to.deep.equal(['w1']);
    expect(await store.stalledJobs(60_000, 10)).to.deep.equal([]);
  });

  it('advances a schedule only from the next run it read, disables it when it ended, and removes it once', async () => {
    const t = await fresh();
    const { store } = await storeOf(t);
    const at = Date.now() - 1000;
    await store.upsertSchedule(buildSchedule('s', { every: 1, unit: 'minutes' }, null, {}, at), at, null);
    const due = await store.dueSchedules();
    expect(due.due.map((s) => [s.key, s.nextRunAt])).to.deep.equal([['s', at]]);
    expect(due.now).to.be.at.least(at);
    await store.advanceSchedule('s', at - 1, at + 60_000);
    expect((await store.listSchedules())[0].nextRunAt, 'from a next run it did not read').to.equal(at);
    await store.advanceSchedule('s', at, at + 60_000);
    expect((await store.listSchedules())[0]).to.include({ nextRunAt: at + 60_000, enabled: true });
    expect((await store.dueSchedules()).due).to.deep.equal([]);
    await store.advanceSchedule('s', at + 60_000, null);
    expect((await store.listSchedules())[0]).to.include({ nextRunAt: null, enabled: false });
    expect(await store.setScheduleEnabled('s', true, at)).to.equal(true);
    expect((await store.listSchedules())[0]).to.include({ nextRunAt: at, enabled: true });
    expect(await store.setScheduleEnabled('missing', true, null)).to.equal(false);
    expect(await store.removeSchedule('s')).to.equal(true);
    expect(await store.removeSchedule('s')).to.equal(false);
    expect(await store.listSchedules()).to.deep.equal([]);
  });
});
