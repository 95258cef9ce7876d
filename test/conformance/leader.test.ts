import { expect } from 'chai';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import type { Jobs } from '../../lib/index.ts';
import { lockName } from '../../lib/driver/mysql/store.ts';
import { leadershipKey } from '../../lib/maintenance/leader.ts';

async function instances(t: TestDb, n: number): Promise<Jobs[]> {
  const out: Jobs[] = [];
  for (let i = 0; i < n; i++) {
    const handle = i === 0 ? t : await t.another();
    const jobs = handle.jobs({ leader: { leaseMs: 300 }, worker: { pollInterval: 1000, heartbeatInterval: 100, stallTimeout: 300 } });
    jobs.define('noop', async () => undefined);
    out.push(jobs);
  }
  return out;
}

forEachDialect('leader election', ({ fresh }) => {
  it('elects exactly one leader, which alone sweeps; another takes over when it stops', async () => {
    const t = await fresh();
    const all = await instances(t, 3);
    const sweeps = all.map(() => 0);
    all.forEach((jobs, i) => {
      const stalled = jobs.store.jobStalledList.bind(jobs.store);
      jobs.store.jobStalledList = (req) => {
        sweeps[i]++;
        return stalled(req);
      };
    });
    for (const jobs of all) await jobs.start();
    await until(() => all.filter((j) => j.isLeader()).length === 1, 'one leader', 3000);
    await sleep(1500);
    expect(all.filter((j) => j.isLeader())).to.have.length(1);
    const leader = all.findIndex((j) => j.isLeader());
    sweeps.forEach((n, i) => (i === leader ? expect(n, 'the leader sweeps').to.be.greaterThan(0) : expect(n, `follower ${i} sweeps`).to.equal(0)));

    const events: boolean[] = [];
    all[leader].on('leader', (e) => events.push(e.leader));
    const stoppedAt = Date.now();
    await all[leader].stop();
    expect(events).to.deep.equal([false]);
    const rest = all.filter((_, i) => i !== leader);
    await until(() => rest.some((j) => j.isLeader()), 'a new leader', 2000);
    expect(Date.now() - stoppedAt).to.be.below(1000);
    expect(rest.filter((j) => j.isLeader())).to.have.length(1);
  });

  it('a leader that loses its lock steps down at once, and another is elected', async () => {
    const t = await fresh();
    const all = await instances(t, 2);
    for (const jobs of all) await jobs.start();
    await until(() => all.some((j) => j.isLeader()), 'a leader', 3000);
    const leader = all.find((j) => j.isLeader())!;
    const other = all.find((j) => j !== leader)!;
    let steppedDownAt = 0;
    leader.on('leader', (e) => {
      if (!e.leader) steppedDownAt = Date.now();
    });
    const lostAt = Date.now();
    if (t.dialect === 'postgres') {
      // Kill the backend that holds the advisory lock.
      const rows = await t.query<{ pid: number }>(
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = (hashtext($1)::bigint & 4294967295)::oid`,
        [`${t.prefix}${leadershipKey('leader')}`],
      );
      expect(rows).to.have.length(1);
      await t.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    } else if (t.dialect === 'mssql') {
      // Kill the session that holds the app lock.
      const holder = await leader.status();
      const spid = /session (\d+)/.exec(holder.leader ?? '')?.[1];
      expect(spid, holder.leader ?? 'no leader').to.match(/^\d+$/);
      await t.query(`KILL ${Number(spid)}`);
    } else if (t.dialect === 'mysql') {
      // Kill the connection that holds the GET_LOCK.
      const rows = await t.query<{ id: number | null }>('SELECT IS_USED_LOCK(?) AS id', [lockName(`${t.prefix}${leadershipKey('leader')}`)]);
      expect(rows[0].id).to.not.equal(null);
      await t.query(`KILL CONNECTION ${Number(rows[0].id)}`);
    } else {
      // Another owner takes the lease (as after a pause longer than the lease).
      await t.query(`UPDATE ${t.prefix}leases SET owner = 'elsewhere', token = token + 1 WHERE name = '${leadershipKey('leader')}'`);
    }
    await until(() => steppedDownAt, 'the leader to step down', 2000);
    expect(steppedDownAt - lostAt).to.be.below(500);
    if (t.dialect !== 'sqlite') await until(() => other.isLeader() || leader.isLeader(), 'a new leader', 2000);
  });

  it('worker.leaderOnly: only the leader processes jobs; a standby takes over on failover', async () => {
    const t = await fresh();
    const ran: string[] = [];
    const make = async (label: string, handle: TestDb) => {
      const jobs = handle.jobs({ leader: { leaseMs: 300 }, worker: { pollInterval: 50, leaderOnly: true } });
      jobs.define('work', async () => {
        ran.push(label);
      });
      await jobs.start();
      return jobs;
    };
    const a = await make('a', t);
    await until(() => a.isLeader(), 'a to lead', 3000);
    const b = await make('b', await t.another());
    await a.enqueueMany(Array.from({ length: 20 }, () => ({ name: 'work', payload: null })));
    await until(() => ran.length === 20, 'the first 20 jobs', 5000);
    expect(new Set(ran)).to.deep.equal(new Set(['a']));
    await a.stop();
    await until(() => b.isLeader(), 'b to take over', 3000);
    await b.enqueueMany(Array.from({ length: 20 }, () => ({ name: 'work', payload: null })));
    await until(() => ran.length === 40, 'the next 20 jobs', 5000);
    expect(ran.slice(20)).to.deep.equal(Array(20).fill('b'));
    expect(() => t.jobs({ worker: { leaderOnly: true } })).to.throw(/leaderOnly needs leader: true/);
  });

  it("an app lock named 'leader' neither blocks leadership nor is blocked by it", async () => {
    const t = await fresh();
    const app = t.jobs({ worker: false });
    const appLock = await app.locks.tryAcquire('leader', { ttl: 10_000 });
    expect(appLock).to.not.equal(null);
    const [leader] = await instances(t, 1);
    await leader.start();
    await until(() => leader.isLeader(), 'leadership despite the app lock', 3000);
    await appLock!.release();
    expect(await app.locks.withLock('leader', () => 'ran', { ttl: 1000 })).to.equal('ran');
  });

  it('a contender that may not evict the stale holder gives the lease back, so the next lock holder leads', async function () {
    const t = await fresh();
    if (t.driver !== 'pg') this.skip(); // a raw PostgreSQL session stands in for a hung leader
    const [a, c] = await instances(t, 2);
    await a.migrate();
    const hung = await (t.db as import('pg').Pool).connect();
    const evictions = [0, 0];
    // Neither may end other sessions (e.g. another database role without pg_signal_backend).
    [a, c].forEach((j, i) => {
      j.store.sessionLockEvict = async () => {
        evictions[i]++;
        throw new Error('permission denied to terminate process');
      };
    });
    a.on('error', () => undefined);
    c.on('error', () => undefined);
    try {
      await hung.query('SELECT pg_advisory_lock(hashtext($1))', [`${t.prefix}${leadershipKey('leader')}`]);
      await a.start();
      await until(() => evictions[0] >= 2, 'A to find the lease lapsed and fail to evict, twice');
    } finally {
      await hung.query('SELECT pg_advisory_unlock_all()');
      hung.release();
    }
    // Who takes the freed session lock first is no race here: A never gets it (as when C's session
    // holds it), so A keeps taking the lease and failing to evict, every round. C holds the lock; it
    // leads only if A gives the lease back after each failed eviction.
    let tries = 0;
    a.store.sessionLockTry = async () => {
      tries++;
      return null;
    };
    await c.start();
    await until(() => c.isLeader(), 'C, holding the session lock, to lead', 3000);
    const led = tries;
    await until(() => tries > led + 2, 'A to keep contending (and find the lease renewed by C)');
    expect(a.isLeader()).to.equal(false);
    expect(c.isLeader()).to.equal(true);
    expect(evictions[1], 'C had nobody to evict').to.equal(0);
  });
});
