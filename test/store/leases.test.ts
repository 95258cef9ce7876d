/**
 * Leases (leadership, named locks) taken by many instances at once. On MariaDB the take-over read
 * the row under a shared lock first (INSERT IGNORE meeting the existing key) and then asked for an
 * exclusive one: two instances holding the shared lock each waited for the other, and the database
 * broke the cycle with "Deadlock found when trying to get lock" (seen with 13 instances).
 */
import { expect } from 'chai';
import { forEachDialect } from '../helpers/dialects.ts';
import type { Store } from '../../lib/driver/store.ts';
import { storeOf } from './helpers.ts';

forEachDialect('store: one lease, many takers at once', ({ fresh }) => {
  it('each round exactly one taker gets the lease and none fails', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const stores: Store[] = [(await storeOf(t)).store];
    for (let i = 0; i < 3; i++) stores.push((await storeOf(await t.another())).store);
    let held = { name: 'leader', owner: 'first', token: (await stores[0].leaseAcquire({ name: 'leader', owner: 'first', ttlMs: 60_000 }))! };
    expect(held.token).to.equal(1);
    for (let round = 0; round < 12; round++) {
      expect(await stores[0].leaseRelease(held), `round ${round}: the holder lets go`).to.equal(true);
      const takers = Array.from({ length: 16 }, (_, i) => ({ store: stores[i % stores.length], owner: `taker-${round}-${i}` }));
      const got = await Promise.allSettled(takers.map((k) => k.store.leaseAcquire({ name: 'leader', owner: k.owner, ttlMs: 60_000 })));
      const failed = got.flatMap((g) => (g.status === 'rejected' ? [String((g.reason as Error).message)] : []));
      expect(failed, `round ${round}: takers that failed`).to.deep.equal([]);
      const won = got.flatMap((g, i) => (g.status === 'fulfilled' && g.value !== null ? [{ name: 'leader', owner: takers[i].owner, token: g.value }] : []));
      expect(won, `round ${round}: takers that got the lease`).to.have.length(1);
      expect(won[0].token, `round ${round}: the new holder's token`).to.equal(held.token + 1);
      held = won[0];
    }
  });

  it('a lease no one has held yet: one of many first takers gets it, none fails', async function () {
    const t = await fresh();
    const stores: Store[] = [(await storeOf(t)).store];
    for (let i = 0; i < 3; i++) stores.push((await storeOf(await t.another())).store);
    for (let round = 0; round < 6; round++) {
      const name = `new-${round}`;
      const got = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => stores[i % stores.length].leaseAcquire({ name, owner: `taker-${i}`, ttlMs: 60_000 })));
      const failed = got.flatMap((g) => (g.status === 'rejected' ? [String((g.reason as Error).message)] : []));
      expect(failed, `${name}: takers that failed`).to.deep.equal([]);
      const tokens = got.flatMap((g) => (g.status === 'fulfilled' && g.value !== null ? [g.value] : []));
      expect(tokens, `${name}: tokens handed out`).to.deep.equal([1]);
    }
  });
});
