/**
 * A claim the database rolls back for contention (a deadlock victim, a lock wait timeout) is tried
 * again at once, not at the next poll: with a poll of a minute, a job would otherwise wait that
 * long (seen on MariaDB: a claim chosen as the victim of a deadlock with a completion).
 */
import { expect } from 'chai';
import { forEachDialect, until } from '../helpers/dialects.ts';

forEachDialect('faults: a claim rolled back for contention', ({ fresh }) => {
  it('is tried again within milliseconds, not at the next poll (60 s)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const errors: unknown[] = [];
    jobs.on('error', (err) => void errors.push(err));
    let ran = 0;
    jobs.define('x', async () => void ran++);
    await jobs.start();
    const store = jobs.store;
    const claim = store.jobClaim.bind(store);
    let refusals = 1;
    store.jobClaim = async (req) => {
      if (refusals-- > 0) throw Object.assign(new Error('Deadlock found when trying to get lock; try restarting transaction'), { code: 'ER_LOCK_DEADLOCK', errno: 1213 });
      return claim(req);
    };
    await jobs.enqueue('x', {});
    await until(() => ran === 1, 'the job to run after the refused claim', 2_000);
    expect(errors, 'the refusal is reported').to.have.length(1);
    await jobs.stop();
  });
});
