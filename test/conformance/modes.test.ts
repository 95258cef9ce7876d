import { expect } from 'chai';
import { forEachDialect, sleep, until } from '../helpers/dialects.ts';

forEachDialect('worker modes', ({ fresh }) => {
  it("mode 'producer' enqueues and queries but runs nothing: no worker, no leader, no schedules", async function () {
    this.timeout(15_000);
    const t = await fresh();
    const web = t.jobs({ mode: 'producer' });
    let ran = 0;
    web.define('mail', async () => void ran++);
    web.recurring('nightly', '0 3 * * *', {}, { name: 'mail' });
    await web.start();
    const { id } = await web.enqueue('mail', { to: 'a@example.com' });
    await sleep(800);
    expect(ran).to.equal(0);
    expect((await web.get(id))!.state).to.equal('pending');
    expect(web.isLeader()).to.equal(false);
    const status = await web.status();
    expect(status.workers, 'a producer registers no worker').to.have.length(0);
    expect(await web.schedules.list(), 'a producer writes no schedule').to.have.length(0);
    // A consumer-tier instance on the same database runs what the producer enqueued.
    const other = await t.another();
    const worker = other.jobs({ worker: { pollInterval: 100 } });
    worker.define('mail', async () => void ran++);
    await worker.start();
    await until(async () => (await web.get(id))!.state === 'completed', 'the job run by the worker tier');
    expect(ran).to.equal(1);
    await worker.stop();
    await web.close();
  });

  it('refuses contradictory mode options, naming the field', async () => {
    const t = await fresh();
    expect(() => t.jobs({ mode: 'both-ish' as 'both' })).to.throw(/mode must be 'both', 'producer' or 'consumer'; got "both-ish"/);
    expect(() => t.jobs({ mode: 'producer', worker: { concurrency: 2 } })).to.throw(/worker options do not apply to mode 'producer'/);
    expect(() => t.jobs({ mode: 'consumer', worker: false })).to.throw(/worker: false means mode 'producer'/);
    expect(() => t.jobs({ mode: 'producer', leader: true })).to.throw(/leader does not apply to mode 'producer'/);
    expect(t.jobs({ worker: false }).mode).to.equal('producer');
    expect(t.jobs({}).mode).to.equal('both');
  });
});
