/**
 * Claims and leases at the store level, every dialect: the claim order (priority first, then
 * due time, then FIFO), two claimers at once never sharing a job, paused queues skipped, names
 * and queues respected, and lease tokens that grow with every change of owner.
 */
import { expect } from 'chai';
import { forEachDialect, sleep } from '../helpers/dialects.ts';
import { storeOf } from './helpers.ts';

forEachDialect('store: claim and leases', ({ fresh }) => {
  it('claims by priority (higher first), then FIFO; only the names and queues asked for; a paused queue is skipped', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const low = [];
    for (let i = 0; i < 5; i++) low.push((await jobs.enqueue('x', { i }, { priority: 0 })).id);
    const high = (await jobs.enqueue('x', { i: 'high' }, { priority: 10 })).id;
    const other = (await jobs.enqueue('y', {}, { priority: 100 })).id;
    const paused = (await jobs.enqueue('x', {}, { priority: 50, queue: 'held' })).id;
    await store.queuePause('held');

    const first = await store.jobClaim({ workerId: 'w', names: ['x'], limit: 3 });
    expect(first.map((j) => j.id)).to.deep.equal([high, low[0], low[1]]);
    const rest = await store.jobClaim({ workerId: 'w', names: ['x'], limit: 10 });
    expect(rest.map((j) => j.id)).to.deep.equal(low.slice(2));
    expect(await store.jobClaim({ workerId: 'w', names: ['x'], queues: ['held'], limit: 10 }), 'a paused queue').to.deep.equal([]);
    await store.queueResume('held');
    expect((await store.jobClaim({ workerId: 'w', names: ['x'], queues: ['held'], limit: 10 })).map((j) => j.id)).to.deep.equal([paused]);
    expect((await jobs.get(other))!.state, 'a name not asked for stays pending').to.equal('pending');
    for (const j of [...first, ...rest]) expect(j.attempts).to.equal(1);
    // Every claim issues new tokens (a dialect may share one among the jobs of one claim: the fence is id and token).
    const firstTokens = new Set(first.map((j) => j.token));
    expect(rest.filter((j) => firstTokens.has(j.token)), 'a later claim reuses no token').to.deep.equal([]);
  });

  it('two claimers at once share no job, and together take every due one', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const other = await (await t.another()).jobs({ worker: false });
    const ids = (await jobs.enqueueMany(Array.from({ length: 200 }, (_, i) => ({ name: 'x', payload: { i } })))).map((r) => r.id);
    const claimers = [store, other.store];
    const taken: string[][] = [[], []];
    await Promise.all(
      claimers.map(async (s, k) => {
        for (;;) {
          const got = await s.jobClaim({ workerId: `w${k}`, names: ['x'], limit: 7 });
          if (!got.length) return;
          taken[k].push(...got.map((j) => j.id));
          await sleep(0);
        }
      }),
    );
    const all = [...taken[0], ...taken[1]];
    expect(new Set(all).size, 'no job claimed twice').to.equal(all.length);
    expect([...all].sort()).to.deep.equal([...ids].sort());
  });

  it('a lease token grows with every change of owner, stays while the owner renews, and a stale token renews nothing', async () => {
    const t = await fresh();
    const { store } = await storeOf(t);
    const a = await store.leaseAcquire({ name: 'res', owner: 'a', ttlMs: 60_000 });
    expect(a).to.be.a('number');
    expect(await store.leaseAcquire({ name: 'res', owner: 'b', ttlMs: 60_000 }), 'held by a').to.equal(null);
    expect(await store.leaseAcquire({ name: 'res', owner: 'a', ttlMs: 60_000 }), 'a again: same token').to.equal(a);
    expect(await store.leaseRenew({ name: 'res', owner: 'a', token: a!, ttlMs: 60_000 })).to.equal(true);
    expect(await store.leaseRelease({ name: 'res', owner: 'a', token: a! })).to.equal(true);
    const b = await store.leaseAcquire({ name: 'res', owner: 'b', ttlMs: 60_000 });
    expect(b).to.be.greaterThan(a!);
    expect(await store.leaseRenew({ name: 'res', owner: 'a', token: a!, ttlMs: 60_000 }), 'a stale owner').to.equal(false);
    expect(await store.leaseRelease({ name: 'res', owner: 'a', token: a! }), 'a stale owner cannot release').to.equal(false);
    // Expired: another owner takes it, with a greater token still.
    expect(await store.leaseRelease({ name: 'res', owner: 'b', token: b! })).to.equal(true);
    const c1 = await store.leaseAcquire({ name: 'res', owner: 'c', ttlMs: 20 });
    await sleep(60);
    const d = await store.leaseAcquire({ name: 'res', owner: 'd', ttlMs: 60_000 });
    expect(d).to.be.greaterThan(c1!);
    expect(await store.leaseRenew({ name: 'res', owner: 'c', token: c1!, ttlMs: 60_000 }), 'an expired owner').to.equal(false);
  });
});
