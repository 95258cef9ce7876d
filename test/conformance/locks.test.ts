import { expect } from 'chai';
import { LockBusyError } from '../../lib/index.ts';
import { forEachDialect, sleep } from '../helpers/dialects.ts';

forEachDialect('locks', ({ fresh }) => {
  it('excludes other owners, fences by token, and passes to the next owner on release or expiry', async () => {
    const t = await fresh();
    const a = t.jobs({ worker: false });
    const b = (await t.another()).jobs({ worker: false });
    const held = await a.locks.tryAcquire('nightly-report', { ttl: 300 });
    expect(held).to.not.equal(null);
    expect(await b.locks.tryAcquire('nightly-report', { ttl: 300 })).to.equal(null);
    // Not re-entrant: another caller of the same instance is refused too. Renewals extend the lease.
    expect(await a.locks.tryAcquire('nightly-report', { ttl: 300 })).to.equal(null);
    expect(await held!.renew()).to.equal(true);
    expect(await held!.release()).to.equal(true);
    const next = await b.locks.tryAcquire('nightly-report', { ttl: 200 });
    expect(next!.token).to.be.greaterThan(held!.token);
    // b stops renewing: after the ttl a takes over; b's renew and release are refused.
    await sleep(300);
    const again = await a.locks.tryAcquire('nightly-report', { ttl: 5000 });
    expect(again!.token).to.be.greaterThan(next!.token);
    expect(await next!.renew()).to.equal(false);
    expect(await next!.release()).to.equal(false);
    expect(await b.locks.tryAcquire('nightly-report')).to.equal(null);
    expect(await a.locks.release('nightly-report')).to.equal(true);
    expect(await a.locks.release('nightly-report')).to.equal(false);
  });

  it('withLock renews while fn runs, refuses a busy lock, releases afterwards, and signals a lost lock', async () => {
    const t = await fresh();
    const a = t.jobs({ worker: false });
    const b = (await t.another()).jobs({ worker: false });
    const result = await a.locks.withLock(
      'rebuild-index',
      async ({ token }) => {
        await sleep(600); // twice the ttl: only renewals keep it
        const busy = await b.locks.withLock('rebuild-index', () => 'never', { ttl: 300 }).catch((e) => e);
        expect(busy).to.be.instanceOf(LockBusyError);
        return token;
      },
      { ttl: 300 },
    );
    expect(result).to.be.a('number');
    expect(await b.locks.tryAcquire('rebuild-index', { ttl: 300 })).to.not.equal(null);
    await b.locks.release('rebuild-index');

    // Another owner takes the lease behind the holder's back: the holder's signal fires.
    let lostSignal = false;
    await a.locks.withLock(
      'migrate-tenants',
      async ({ signal }) => {
        const place = t.dialect === 'sqlite' ? '?' : '$1';
        await t.query(`UPDATE ${t.prefix}leases SET owner = 'someone-else', token = token + 1 WHERE name = ${place}`, ['migrate-tenants']);
        await new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => resolve());
          setTimeout(resolve, 2000);
        });
        lostSignal = signal.aborted;
      },
      { ttl: 300 },
    );
    expect(lostSignal).to.equal(true);
    const bad = await a.locks.tryAcquire('bad name!').catch((e: Error) => e);
    expect((bad as Error).message).to.match(/lock name must be/);
    // A lease shorter than a few round trips would run out between renewals.
    const short = await a.locks.withLock('tiny', () => 'ran', { ttl: 99 }).catch((e: Error) => e);
    expect((short as Error).message).to.equal('lock ttl must be an integer number of ms from 100 to 86400000; got 99 (number)');
  });

  it('excludes two callers in the same process as well (each acquisition is its own owner)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const first = await jobs.locks.tryAcquire('nightly-report', { ttl: 5000 });
    expect(first).to.not.equal(null);
    expect(await jobs.locks.tryAcquire('nightly-report', { ttl: 5000 }), 'a second caller in this process').to.equal(null);
    // Two concurrent requests of one web server both calling withLock: one runs, the other is refused.
    let inside = 0;
    let peak = 0;
    const run = () =>
      jobs.locks.withLock('rebuild-index', async () => {
        peak = Math.max(peak, ++inside);
        await sleep(200);
        inside--;
      }, { ttl: 5000 });
    const outcomes = await Promise.allSettled([run(), run()]);
    expect(peak).to.equal(1);
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => ((o as PromiseRejectedResult).reason as Error).name)).to.deep.equal(['LockBusyError']);
    await first!.release();
    expect(await jobs.locks.tryAcquire('nightly-report', { ttl: 5000 }), 'free again after release').to.not.equal(null);
  });
});
