/**
 * Store-level conformance: a schedule tick (schedule key, nominal fire time) fires at most once,
 * however many instances fire it at the same moment. Counted in the jobs tables (live and
 * history), which have no key on the tick: a second job for the slot would show there.
 */
import { expect } from 'chai';
import { forEachDialect, type TestDb } from '../helpers/dialects.ts';
import { ph, storeOf } from './helpers.ts';

async function jobsNamed(t: TestDb, name: string): Promise<number> {
  let n = 0;
  for (const table of ['jobs', 'history']) {
    n += Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}${table} WHERE name = ${ph(t, 1)}`, [name]))[0].n);
  }
  return n;
}

forEachDialect('store: schedule ticks', ({ fresh }) => {
  it('three instances firing the same tick at once make one job; firing it again makes none', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    const stores = [store, (await storeOf(await t.another())).store, (await storeOf(await t.another())).store];
    const fireAt = Math.floor(Date.now() / 1000) * 1000;
    const row = () => jobs.prepareRow('tick', {}, { runAt: new Date(fireAt) });
    const fired = await Promise.all(stores.map((s) => s.scheduleFire({ key: 'every-second', fireAt, row: row(), skipIfLive: null })));
    expect(fired.filter((f) => f !== null), 'instances that fired the tick').to.have.length(1);
    expect(await jobsNamed(t, 'tick')).to.equal(1);
    for (const s of stores) expect(await s.scheduleFire({ key: 'every-second', fireAt, row: row(), skipIfLive: null }), 'the same tick again').to.equal(null);
    expect(await jobsNamed(t, 'tick')).to.equal(1);
    // The next slot is a tick of its own.
    expect(await store.scheduleFire({ key: 'every-second', fireAt: fireAt + 1000, row: row(), skipIfLive: null })).to.not.equal(null);
    expect(await jobsNamed(t, 'tick')).to.equal(2);
  });
});
