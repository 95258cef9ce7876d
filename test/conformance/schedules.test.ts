import { expect } from 'chai';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';

async function expectRejected(p: Promise<unknown>, re: RegExp): Promise<void> {
  const err = await p.then(() => null, (e: Error) => e);
  expect(err, `rejected with ${re}`).to.be.instanceOf(Error);
  expect(err!.message).to.match(re);
}

const ms = (v: unknown) => (v instanceof Date ? v.getTime() : Number(v));

forEachDialect('recurring schedules', ({ fresh }) => {
  it('fires an every-second schedule once per tick across three instances without leadership', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const all = [];
    // Every execution is recorded here, with no key: a tick run twice would show twice.
    const runs: { id: string; instance: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const handle = i === 0 ? t : await t.another();
      const jobs = handle.jobs({ worker: { pollInterval: 100 } });
      jobs.define('tick', async (_p, ctx) => void runs.push({ id: ctx.id, instance: i }));
      jobs.recurring('every-second', '* * * * * *', { hello: 'world' }, { name: 'tick' });
      all.push(jobs);
    }
    for (const jobs of all) await jobs.start();
    await sleep(3500);
    // Stop firing, then let every fired job run.
    await all[0].schedules.toggle('every-second', false);
    await sleep(1200); // a scheduler round already under way finishes
    await until(async () => Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n) === 0, 'every fired job to run', 5000);
    for (const jobs of all) await jobs.stop();
    // Each job's run_at is its nominal slot: count executions per slot.
    const perSlot = new Map<number, number>();
    for (const r of runs) {
      const slot = (await all[0].get(r.id))!.runAt.getTime();
      perSlot.set(slot, (perSlot.get(slot) ?? 0) + 1);
    }
    const times = [...perSlot.keys()].sort((a, b) => a - b);
    expect(times.length).to.be.within(3, 6);
    for (const [slot, n] of perSlot) expect(n, `executions of the tick at ${new Date(slot).toISOString()}`).to.equal(1);
    times.slice(1).forEach((x, i) => expect(x - times[i], 'one second apart: none missing, none doubled').to.equal(1000));
    for (const x of times) expect(x % 1000, 'nominal slots, never now()').to.equal(0);
    const ticks = await t.query<{ fire_at: unknown; job_id: string }>(`SELECT fire_at, job_id FROM ${t.prefix}schedule_ticks WHERE schedule_key = 'every-second' ORDER BY fire_at`);
    expect(ticks.map((tk) => ms(tk.fire_at)), 'the ticks recorded are the slots run').to.deep.equal(times);
    const jobs = await all[0].list({ name: 'tick', limit: 100, includePayload: true });
    expect(jobs.items).to.have.length(ticks.length);
    expect(jobs.items[0].payload).to.deep.equal({ hello: 'world' });
    // The database refuses a second job for the same tick.
    const place = t.dialect === 'sqlite' ? '?, ?, ?' : '$1, $2, $3';
    const dup = await t
      .query(`INSERT INTO ${t.prefix}schedule_ticks (schedule_key, fire_at, job_id) VALUES (${place})`, ['every-second', ticks[0].fire_at, jobs.items[0].id])
      .catch((e: Error) => e);
    expect(dup).to.be.instanceOf(Error);
  });

  it('a schedule\'s payload reaches its jobs as given (null, a string, a JSON-looking string, an object, none); list() shows it', async function () {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const seen = new Map<string, unknown>();
    jobs.define('echo', (payload: unknown, ctx) => void seen.set(ctx.id, payload));
    const given: [string, unknown][] = [['null', null], ['string', 'abc'], ['json-looking', '{"a":1}'], ['object', { a: [1, null] }], ['none', undefined]];
    for (const [key, payload] of given) jobs.recurring(key, '0 0 1 1 *', payload as never, { name: 'echo' });
    await jobs.start();
    const listed = new Map((await jobs.schedules.list()).map((r) => [r.key, r.payload]));
    const triggered = new Map<string, string>();
    for (const [key, payload] of given) {
      expect(listed.get(key), `list(): ${key}`).to.deep.equal(payload === undefined ? null : payload);
      triggered.set(key, (await jobs.schedules.trigger(key))!.id);
    }
    await until(() => seen.size === given.length, 'every triggered job to run');
    for (const [key, payload] of given) {
      const id = triggered.get(key)!;
      expect(seen.has(id), `ran: ${key}`).to.equal(true);
      expect(seen.get(id), `handler: ${key}`).to.deep.equal(payload);
    }
    await jobs.stop();
  });

  it('a tick fired here runs at once on this process\'s worker, not at its next poll', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const started: { id: string; at: number }[] = [];
    jobs.define('tick', async (_p, ctx) => void started.push({ id: ctx.id, at: Date.now() }));
    jobs.recurring('every-second', '* * * * * *', {}, { name: 'tick' });
    await jobs.start();
    await until(() => started.length >= 2, 'two ticks to run', 8_000);
    await jobs.stop();
    for (const s of started) expect(s.at - (await jobs.get(s.id))!.runAt.getTime(), 'ms from the slot to the handler').to.be.below(5_000);
  });

  it('retention prunes the ticks fired before it with the jobs they made (they were kept forever)', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const jobs = t.jobs({ retentionDays: 1, worker: { pollInterval: 60_000 } });
    const started: string[] = [];
    jobs.define('tick', async (_p, ctx) => void started.push(ctx.id));
    jobs.recurring('every-second', '* * * * * *', {}, { name: 'tick' });
    await jobs.start();
    await until(() => started.length >= 2, 'two ticks to run', 8_000);
    await jobs.schedules.toggle('every-second', false);
    await jobs.stop();
    await jobs.drain();
    const ticks = async () => Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}schedule_ticks`))[0].n);
    const fired = await ticks();
    expect(fired).to.be.at.least(2);
    const threeDays = t.dialect === 'sqlite' ? 3 * 86_400_000 : t.dialect === 'postgres' ? "interval '3 days'" : t.dialect === 'mssql' ? null : 'INTERVAL 3 DAY';
    if (t.dialect === 'mssql') {
      await t.query(`UPDATE ${t.prefix}history SET finished_at = DATEADD(day, -3, finished_at)`);
      await t.query(`UPDATE ${t.prefix}schedule_ticks SET fire_at = DATEADD(day, -3, fire_at)`);
    } else {
      await t.query(`UPDATE ${t.prefix}history SET finished_at = finished_at - ${threeDays}`);
      // One tick stays recent: kept.
      await t.query(`UPDATE ${t.prefix}schedule_ticks SET fire_at = fire_at - ${threeDays} WHERE job_id <> '${started[0]}'`);
    }
    const { store } = jobs;
    expect(await store.historyPrune({ olderThanMs: 86_400_000, limit: 100 })).to.be.at.least(2);
    await store.retentionLeftoversPrune(86_400_000); // the round's end
    expect(await ticks(), 'the ticks left').to.equal(t.dialect === 'mssql' ? 0 : 1);
  });

  it('an interval given no startAt keeps its anchor across edits and deploys that change only its payload (it was re-anchored at each: run at once, or a day later)', async function () {
    const t = await fresh();
    const next = async (jobs: ReturnType<TestDb['jobs']>) => (await jobs.schedules.list()).find((s) => s.key === 'daily')!.nextRunAt!.getTime();
    const v1 = t.jobs({ worker: { pollInterval: 60_000 } });
    v1.define('report', async () => undefined);
    v1.recurring('daily', { every: 1, unit: 'days' }, { v: 1 }, { name: 'report' });
    await v1.start();
    const anchored = await next(v1);
    for (let i = 2; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 30));
      await v1.schedules.set('daily', { every: 1, unit: 'days' }, { v: i }, { name: 'report' });
      expect(await next(v1), `after edit ${i}`).to.equal(anchored);
    }
    await v1.stop();
    const v2 = t.jobs({ worker: { pollInterval: 60_000 } });
    v2.define('report', async () => undefined);
    v2.recurring('daily', { every: 1, unit: 'days' }, { v: 'deployed' }, { name: 'report' });
    await v2.start();
    expect(await next(v2), 'after a deploy that changed the payload').to.equal(anchored);
    expect((await v2.list({ name: 'report' })).items, 'nothing ran at once').to.have.length(0);
    // A new length is a new timing: anchored anew.
    await v2.schedules.set('daily', { every: 2, unit: 'days' }, null, { name: 'report' });
    expect(await next(v2)).to.not.equal(anchored);
    await v2.stop();
  });

  it('records a skipped job when the previous run is still live (overlap: skip)', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 100 } });
    jobs.define('slow', async () => sleep(2200));
    jobs.recurring('slow-every-second', '* * * * * *', {}, { name: 'slow', overlap: 'skip' });
    await jobs.start();
    await until(async () => (await jobs.list({ state: 'skipped' })).items.length >= 1, 'a skipped tick', 6000);
    await jobs.stop({ timeout: 5000 });
    const skipped = (await jobs.list({ state: 'skipped' })).items[0];
    expect(skipped.name).to.equal('slow');
    expect(skipped.error!.message).to.match(/previous run of schedule "slow-every-second" was still live/);
  });

  it('queues a tick until the previous run finishes (overlap: queue): never two live, none skipped', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 100, concurrency: 5 } });
    const runs: { start: number; end: number }[] = [];
    let live = 0;
    let peak = 0;
    jobs.define('slow', async () => {
      peak = Math.max(peak, ++live);
      const run = { start: Date.now(), end: 0 };
      runs.push(run);
      await sleep(1600);
      run.end = Date.now();
      live--;
    });
    jobs.recurring('slow-queued', '* * * * * *', {}, { name: 'slow', overlap: 'queue' });
    await jobs.start();
    await until(() => runs.length >= 3, 'three runs', 10_000);
    await jobs.stop({ timeout: 5000 });
    expect(peak, 'never two runs at once').to.equal(1);
    expect((await jobs.list({ state: 'skipped' })).items).to.have.length(0);
    for (let i = 1; i < runs.length; i++) {
      // The queued tick fires at the scheduler's next round after the previous run ends.
      expect(runs[i].start - runs[i - 1].end, `run ${i} starts after run ${i - 1} ends`).to.be.within(0, 1500);
    }
    const ticks = await t.query<{ fire_at: unknown }>(`SELECT fire_at FROM ${t.prefix}schedule_ticks WHERE schedule_key = 'slow-queued' ORDER BY fire_at`);
    const times = ticks.map((tk) => ms(tk.fire_at));
    expect(times.length).to.be.within(runs.length, runs.length + 1);
    // Ticks that passed while a run was live collapsed into the queued one.
    expect(times.slice(1).some((x, i) => x - times[i] > 1000), 'collapsed ticks').to.equal(true);
  });

  it('edits at run time persist across restarts until the code definition itself changes', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const instance = async (cron: string) => {
      const jobs = (await t.another()).jobs({ worker: { pollInterval: 1000 } });
      jobs.define('report', async () => undefined);
      jobs.recurring('report', cron, { v: 1 }, { name: 'report', timezone: 'Europe/Berlin' });
      await jobs.start();
      await jobs.stop();
      return jobs;
    };
    const stored = async (jobs: Awaited<ReturnType<typeof instance>>) => (await jobs.schedules.list()).find((x) => x.key === 'report')!;
    const first = await instance('0 6 * * *');
    expect(await stored(first)).to.include({ cron: '0 6 * * *' });
    // An operator edits it at run time: persisted at once, next run recomputed.
    await first.schedules.set('report', '30 7 * * *', { v: 2 }, { name: 'report', timezone: 'Europe/Berlin' });
    let s = await stored(first);
    expect(s).to.include({ cron: '30 7 * * *', timezone: 'Europe/Berlin' });
    expect(s.payload).to.deep.equal({ v: 2 });
    expect(new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit' }).format(s.nextRunAt!)).to.equal('07:30');
    await first.schedules.toggle('report', false);
    // A restart with the same code keeps the edit and the disabled flag.
    s = await stored(await instance('0 6 * * *'));
    expect(s).to.include({ cron: '30 7 * * *', enabled: false });
    expect(s.payload).to.deep.equal({ v: 2 });
    // A deploy that changes the code definition wins (the enabled flag stays the operator's).
    s = await stored(await instance('0 8 * * *'));
    expect(s).to.include({ cron: '0 8 * * *', enabled: false });
    expect(s.payload).to.deep.equal({ v: 1 });
    // A schedule created at run time only; bad input refused before anything is written.
    await first.schedules.set('adhoc', { every: 5, unit: 'minutes' }, { v: 3 }, { name: 'report' });
    expect((await first.schedules.list()).map((x) => x.key)).to.deep.equal(['adhoc', 'report']);
    await expectRejected(first.schedules.set('adhoc', '61 * * * *', {}, { name: 'report' }), /schedule "adhoc": schedule is not a valid cron expression/);
    await expectRejected(first.schedules.set('adhoc', '* * * * *', {}, { name: 'report', timezone: 'Mars/Olympus' }), /timezone must be an IANA timezone/);
    expect((await first.schedules.list()).find((x) => x.key === 'adhoc')!.everyMs).to.equal(300_000);
  });

  it('interval with a run limit, toggle, remove and trigger (counted as the last run), all persisted', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 100 } });
    let runs = 0;
    jobs.define('twice', async () => {
      runs++;
    });
    jobs.define('report', async () => undefined);
    jobs.recurring('twice', { every: 1, unit: 'seconds', limit: 2 });
    jobs.recurring('daily-report', '0 6 * * *', { kind: 'daily' }, { name: 'report', timezone: 'Europe/Berlin' });
    await jobs.start();
    await until(() => runs === 2, 'two runs', 6000);
    await sleep(1500);
    expect(runs).to.equal(2);
    const list = await jobs.schedules.list();
    const twice = list.find((s) => s.key === 'twice')!;
    expect(twice).to.include({ runs: 2, enabled: false });
    const daily = list.find((s) => s.key === 'daily-report')!;
    expect(daily).to.include({ cron: '0 6 * * *', timezone: 'Europe/Berlin', enabled: true, runs: 0 });
    expect(daily.nextRunAt!.getTime()).to.be.greaterThan(Date.now());
    expect(await jobs.schedules.toggle('daily-report', false)).to.equal(true);
    expect((await jobs.schedules.list()).find((s) => s.key === 'daily-report')!.enabled).to.equal(false);
    const triggered = await jobs.schedules.trigger('daily-report');
    expect(triggered!.existed).to.equal(false);
    await until(async () => (await jobs.get(triggered!.id))?.state === 'completed', 'the triggered run');
    expect((await jobs.get(triggered!.id))!.payload).to.deep.equal({ kind: 'daily' });
    // Its row shows the triggered run as its last one; the next run stays where it was.
    const after = (await jobs.schedules.list()).find((s) => s.key === 'daily-report')!;
    expect(after).to.include({ lastJobId: triggered!.id, runs: 1 });
    expect(after.lastRunAt!.getTime()).to.be.closeTo(Date.now(), 60_000);
    expect(after.nextRunAt!.getTime()).to.equal(daily.nextRunAt!.getTime());
    expect(await jobs.schedules.remove('daily-report')).to.equal(true);
    expect((await jobs.schedules.list()).map((s) => s.key)).to.deep.equal(['twice']);
  });
});
