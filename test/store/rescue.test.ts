/**
 * The rescuer at the store level, every dialect: it reads stalled jobs, decides retry or fail in
 * one place (lib/maintenance/rescuer.ts) and writes through the fenced fail(). Two rescuers at
 * once rescue each job once; a job of a live worker is never touched; at the attempt limit the
 * job fails for good with "worker lost".
 */
import { expect } from 'chai';
import { heartbeatLate, rescueStalled } from '../../lib/maintenance/rescuer.ts';
import { forEachDialect, sleep } from '../helpers/dialects.ts';
import { DIALECTS } from '../../lib/driver/portable/dialect.ts';
import { claimOne, storeOf } from './helpers.ts';

const live = { host: 'h', pid: 1, queues: null, names: ['x'], concurrency: 1 };

forEachDialect('store: rescue', ({ fresh }) => {
  it('two rescuers at once rescue each stalled job once; a live worker keeps its job; the last attempt fails for good', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const retried = (await jobs.enqueue('x', { n: 1 })).id;
    const exhausted = (await jobs.enqueue('x', { n: 2 }, { maxAttempts: 1 })).id;
    const kept = (await jobs.enqueue('x', { n: 3 })).id;
    // Two jobs claimed by a worker that never sends a heartbeat; one by a worker that does.
    await claimOne(store, 'x', 'silent');
    await claimOne(store, 'x', 'silent');
    await store.workerHeartbeat({ id: 'alive', ...live });
    const alive = await claimOne(store, 'x', 'alive');
    expect(alive.id).to.equal(kept);

    const [a, b] = await Promise.all([rescueStalled(store, 60_000), rescueStalled(store, 60_000)]);
    const all = [...a, ...b].sort((x, y) => x.id.localeCompare(y.id));
    expect(all.map((r) => [r.id, r.outcome])).to.deep.equal(
      [[retried, 'retry'], [exhausted, 'failed']].sort((x, y) => (x[0] as string).localeCompare(y[0] as string)),
    );

    expect(await jobs.get(retried)).to.include({ state: 'pending', attempts: 1 });
    const failed = (await jobs.get(exhausted))!;
    expect(failed.state).to.equal('failed');
    expect(failed.error!.message).to.equal('worker lost: worker silent stopped sending heartbeats for over 60000 ms');
    expect(await jobs.get(kept)).to.include({ state: 'running' });
    for (const id of [retried, exhausted]) {
      const attempts = (await jobs.attempts(id)).filter((r) => r.error?.message.startsWith('worker lost'));
      expect(attempts, `one "worker lost" attempt for ${id}`).to.have.length(1);
    }
    // The silent worker was never registered; the live one stays; another round finds nothing.
    expect((await store.workerList()).map((w) => w.id)).to.deep.equal(['alive']);
    expect(await rescueStalled(store, 60_000)).to.deep.equal([]);
  });

  it('the rescuer\'s own heartbeat is current only while younger than stallTimeout − heartbeatInterval (database clock)', async () => {
    const t = await fresh();
    const { store } = await storeOf(t);
    const self = { workerId: 'rescuer', heartbeatMs: 100 };
    expect(await heartbeatLate(store, self, 60_000), 'not registered').to.deep.equal({ ageMs: null });
    await store.workerHeartbeat({ id: 'rescuer', ...live });
    expect(await heartbeatLate(store, self, 60_000), 'just written').to.equal(null);
    await sleep(300);
    expect(await heartbeatLate(store, self, 1_000), '300 ms old, limit 900').to.equal(null);
    const late = await heartbeatLate(store, self, 350);
    expect(late?.ageMs, '300 ms old, limit 250').to.be.within(280, 5_000);
    await store.workerHeartbeat({ id: 'rescuer', ...live });
    expect(await heartbeatLate(store, self, 350), 'written again').to.equal(null);
  });

  it('with a confirmation, a round rescues only the jobs still silent under the same claim when it looks again, and nothing if the check fails', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const late = (await jobs.enqueue('x', { n: 1 })).id;
    const dead = (await jobs.enqueue('x', { n: 2 })).id;
    await store.workerHeartbeat({ id: 'late', ...live });
    await store.workerHeartbeat({ id: 'dead', ...live });
    await claimOne(store, 'x', 'late');
    await claimOne(store, 'x', 'dead');
    await sleep(300);
    // The check fails (the rescuer stopped, or its heartbeat is late again): nothing.
    expect(await rescueStalled(store, 200, { afterMs: 10, waitAndCheck: async () => false })).to.deep.equal([]);
    // While the round waits, the late worker's held-back heartbeat lands; the dead one's never does.
    const rescued = await rescueStalled(store, 200, {
      afterMs: 10,
      waitAndCheck: async () => {
        await store.workerHeartbeat({ id: 'late', ...live });
        return true;
      },
    });
    expect(rescued.map((r) => r.id)).to.deep.equal([dead]);
    expect((await jobs.get(late))!.state).to.equal('running');
  });

  it('with a confirmation, a worker that wrote anything during the wait keeps its job, even a heartbeat dated before it (as SQL Server dates a held one)', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const id = (await jobs.enqueue('x', {})).id;
    await store.workerHeartbeat({ id: 'late', ...live });
    await claimOne(store, 'x', 'late');
    await sleep(300);
    const d = DIALECTS[t.dialect];
    const rescued = await rescueStalled(store, 200, {
      afterMs: 10,
      waitAndCheck: async () => {
        // A heartbeat that lands now dated 1 ms after the last: still older than the stall limit.
        await t.query(`UPDATE ${t.prefix}workers SET heartbeat_at = ${d.plusMs('heartbeat_at', '1')} WHERE id = 'late'`);
        return true;
      },
    });
    expect(rescued).to.deep.equal([]);
    expect((await jobs.get(id))!.state).to.equal('running');
    expect((await rescueStalled(store, 200)).map((r) => r.id), 'rescued without the second look').to.deep.equal([id]);
  });
});
