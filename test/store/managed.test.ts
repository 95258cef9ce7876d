/**
 * Managed queues at the store level, every dialect: the general claim skips them; the managed
 * claim takes grouped jobs in turns, stays within concurrency, group concurrency and the rate
 * window, and says which limit held the rest back (and when the window frees a start).
 */
import { expect } from 'chai';
import { forEachDialect } from '../helpers/dialects.ts';
import { storeOf } from './helpers.ts';

const NONE = { concurrency: null, groupConcurrency: null, rateLimit: null };

forEachDialect('store: managed queues', ({ fresh }) => {
  it('a grouped enqueue makes its queue managed: the general claim skips it, the managed claim takes the groups in turns', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const a = [];
    for (let i = 0; i < 5; i++) a.push((await jobs.enqueue('x', { i }, { queue: 'tenants', group: 'A' })).id);
    const b = [];
    for (let i = 0; i < 2; i++) b.push((await jobs.enqueue('x', { i }, { queue: 'tenants', group: 'B' })).id);
    const plain = (await jobs.enqueue('x', {}, { queue: 'other' })).id;
    expect((await store.queueSettingsList()).map((q) => q.queue)).to.deep.equal(['tenants']);
    expect((await store.jobClaim({ workerId: 'w', names: ['x'], limit: 10 })).map((j) => j.id), 'the general claim').to.deep.equal([plain]);
    const claim = await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'tenants', limit: 10 });
    // claimOrder sorts by priority, run time and id; the order taken is the fair one: A, B, A, B, A, A, A.
    expect(new Set(claim.rows.map((j) => j.id))).to.deep.equal(new Set([...a, ...b]));
    expect(claim.heldBy).to.equal(null);
    for (const j of claim.rows) expect(j.attempts).to.equal(1);
  });

  it('the fair order: each group one at a time within a priority; a group idle until now joins at the current turn', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const ids: Record<string, string[]> = { A: [], B: [], C: [] };
    for (let i = 0; i < 6; i++) ids.A.push((await jobs.enqueue('x', {}, { queue: 'q', group: 'A' })).id);
    for (let i = 0; i < 3; i++) ids.B.push((await jobs.enqueue('x', {}, { queue: 'q', group: 'B' })).id);
    const groupOf = (id: string) => Object.keys(ids).find((g) => ids[g].includes(id));
    const take = async (n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push(...(await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 1 })).rows.map((j) => groupOf(j.id)!));
      return out;
    };
    expect(await take(4)).to.deep.equal(['A', 'B', 'A', 'B']);
    // C arrives now: it takes turns from here, not ahead of A and B until it caught up.
    for (let i = 0; i < 3; i++) ids.C.push((await jobs.enqueue('x', {}, { queue: 'q', group: 'C' })).id);
    const next = await take(5);
    expect(next.filter((g) => g === 'C').length, 'C within the next turns').to.be.within(1, 3);
    expect(next.slice(0, 3).filter((g) => g === 'C').length, 'not all of C first').to.be.at.most(2);
  });

  it('a higher-priority job claimed first does not push a joining group behind the backlog of its priority', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await jobs.enqueueMany(Array.from({ length: 50 }, () => ({ name: 'x', payload: {}, queue: 'q', group: 'A' })));
    await jobs.enqueue('x', {}, { queue: 'q', group: 'A', priority: 10 });
    expect((await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 1 })).rows[0].priority).to.equal(10);
    const b = (await jobs.enqueue('x', {}, { queue: 'q', group: 'B' })).id;
    const next = (await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 3 })).rows.map((j) => j.id);
    expect(next, "B within the next turns, not after A's 50").to.include(b);
  });

  it('a grouped job retried from history is ranked again in its group, not ahead of every group', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const { id } = await jobs.enqueue('x', {}, { queue: 'q', group: 'A', maxAttempts: 1 });
    const [job] = (await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 1 })).rows;
    await store.jobFailMany([{ id, token: job.token, flow: job.flow, attempt: 1, startedAt: null, error: { message: 'x' }, retryDelayMs: null }]);
    await jobs.enqueueMany(Array.from({ length: 3 }, () => ({ name: 'x', payload: {}, queue: 'q', group: 'B' })));
    expect(await jobs.retry(id)).to.equal(true);
    const rank = await t.query<{ fair_rank: number }>(`SELECT fair_rank FROM ${t.prefix}jobs WHERE id = ${t.dialect === 'sqlite' ? '?' : '$1'}`, [id]);
    expect(Number(rank[0].fair_rank), 'a rank in the turns').to.be.greaterThan(0);
  });

  it('enqueues that join the same groups in opposite orders take turns without a deadlock', async () => {
    const t = await fresh();
    const { jobs } = await storeOf(t);
    const other = (await t.another()).jobs({ worker: false });
    const groups = ['A', 'B', 'C', 'D'];
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? jobs : other).enqueueMany(
      (i % 2 ? groups : [...groups].reverse()).map((g) => ({ name: 'x', payload: { i }, queue: 'q', group: g })),
    )));
    expect((await jobs.list({ queue: 'q', limit: 500 })).items).to.have.length(80);
  });

  it('concurrency: claims take only what the running count leaves, and say so', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, concurrency: 2 }, codeHash: null });
    await jobs.enqueueMany(Array.from({ length: 5 }, () => ({ name: 'x', payload: {}, queue: 'q' })));
    const first = await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 5 });
    expect(first.rows).to.have.length(2);
    expect(first.heldBy).to.equal('concurrency');
    const second = await store.jobClaimManaged({ workerId: 'w2', names: ['x'], queue: 'q', limit: 5 });
    expect(second.rows).to.have.length(0);
    expect(second.heldBy).to.equal('concurrency');
    expect(second.retryInMs).to.equal(null);
    // One finishes: one more may start.
    await store.jobCompleteMany([{ id: first.rows[0].id, token: first.rows[0].token, resultJson: null, flow: first.rows[0].flow }]);
    expect((await store.jobClaimManaged({ workerId: 'w2', names: ['x'], queue: 'q', limit: 5 })).rows).to.have.length(1);
    const pending = (await jobs.list({ queue: 'q', state: 'pending' })).items;
    expect(pending.map((j) => j.attempts)).to.deep.equal([0, 0]);
  });

  it('groupConcurrency: one claim takes at most the room of each group, past a busy group to the others', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, groupConcurrency: 1 }, codeHash: null });
    // A's backlog comes first in claim order (higher priority): the claim must look past it.
    await jobs.enqueueMany(Array.from({ length: 30 }, () => ({ name: 'x', payload: {}, queue: 'q', group: 'A', priority: 5 })));
    await jobs.enqueueMany([{ name: 'x', payload: {}, queue: 'q', group: 'B' }, { name: 'x', payload: {}, queue: 'q', group: 'C' }]);
    const claim = await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 10 });
    const groups = await Promise.all(claim.rows.map(async (j) => (await jobs.get(j.id))!.group));
    expect(groups.sort()).to.deep.equal(['A', 'B', 'C']);
    expect(claim.heldBy).to.equal('groupConcurrency');
  });

  it('rateLimit: at most limit starts in the window; the answer says when the window frees one', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, rateLimit: { limit: 3, intervalMs: 60_000, per: 'queue' } }, codeHash: null });
    await jobs.enqueueMany(Array.from({ length: 5 }, () => ({ name: 'x', payload: {}, queue: 'q' })));
    const first = await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 5 });
    expect(first.rows).to.have.length(3);
    expect(first.heldBy).to.equal('rateLimit');
    // Finishing them frees no start: the window counts starts, not running jobs.
    await store.jobCompleteMany(first.rows.map((j) => ({ id: j.id, token: j.token, resultJson: null, flow: j.flow })));
    const held = await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 5 });
    expect(held.rows).to.have.length(0);
    expect(held.heldBy).to.equal('rateLimit');
    expect(held.retryInMs).to.be.within(50_000, 60_000);
  });

  it('rateLimit per group: each group has its own window', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, rateLimit: { limit: 2, intervalMs: 60_000, per: 'group' } }, codeHash: null });
    for (const g of ['A', 'B']) await jobs.enqueueMany(Array.from({ length: 4 }, () => ({ name: 'x', payload: {}, queue: 'q', group: g })));
    const claim = await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 8 });
    expect(claim.rows).to.have.length(4);
    expect((await store.jobClaimManaged({ workerId: 'w', names: ['x'], queue: 'q', limit: 8 })).rows).to.have.length(0);
  });

  it('settings from code replace the stored ones only when the code changed; a run-time edit always', async () => {
    const t = await fresh();
    const { store } = await storeOf(t);
    expect(await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, concurrency: 5 }, codeHash: 'h1' })).to.equal(true);
    expect(await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, concurrency: 1 }, codeHash: null })).to.equal(true);
    expect(await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, concurrency: 5 }, codeHash: 'h1' })).to.equal(false);
    expect((await store.queueSettingsList())[0]).to.deep.include({ queue: 'q', concurrency: 1, codeHash: 'h1' });
    expect(await store.queueSettingsSave({ queue: 'q', settings: { ...NONE, concurrency: 7 }, codeHash: 'h2' })).to.equal(true);
    expect((await store.queueSettingsList())[0]).to.deep.include({ concurrency: 7, codeHash: 'h2' });
  });
});
