/**
 * Flow control (issue 14), the claim side: fair groups, global concurrency, per-group concurrency
 * and rate limits, through the public API on every dialect. Instances made with t.another() have
 * their own connections, as separate processes would (test/crash/flow-control.test.ts runs the
 * limits in separate processes).
 */
import { expect } from 'chai';
import { JobValidationError, type Jobs } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

interface AppConn {
  query(sql: string): Promise<unknown>;
  release(): void;
}

interface Run {
  group: string | null;
  /** The serial key and the job's place in it, when the payload names them. */
  key: string | null;
  n: number;
  start: number;
  end: number;
}

/** Define `name` on each instance to record its runs (start and end, this process's clock) and take `ms`. */
function recordRuns(instances: Jobs[], name: string, ms: () => number): Run[] {
  const runs: Run[] = [];
  for (const jobs of instances) {
    jobs.define(name, async (p: { group?: string; key?: string; n?: number }) => {
      const run = { group: p.group ?? null, key: p.key ?? null, n: p.n ?? 0, start: performance.now(), end: Infinity };
      runs.push(run);
      await new Promise((r) => setTimeout(r, ms()));
      run.end = performance.now();
    });
  }
  return runs;
}

/** The most runs that overlap at one instant (from their start and end times). */
function peak(runs: Run[]): number {
  const edges = runs.flatMap((r) => [{ at: r.start, d: 1 }, { at: r.end, d: -1 }]).sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of edges) most = Math.max(most, (now += e.d));
  return most;
}

/** `counts[key]` jobs of each serial key in `queue` (payload: key and place n), the keys' jobs interleaved. */
function serialItems(queue: string, counts: Record<string, number>, group?: string) {
  const most = Math.max(...Object.values(counts));
  return Array.from({ length: most }, (_, n) => Object.keys(counts).filter((key) => n < counts[key]))
    .flatMap((keys, n) => keys.map((key) => ({ name: 'step' as const, payload: { key, n, group }, queue, serial: key, ...(group ? { group } : {}) })));
}

/** Each serial key's runs are its jobs in enqueue order (n = 0, 1, …), each starting after the one before ended. */
function expectSerial(runs: Run[], counts: Record<string, number>): void {
  for (const [key, perKey] of Object.entries(counts)) {
    const mine = runs.filter((r) => r.key === key).sort((x, y) => x.start - y.start);
    expect(mine.map((r) => r.n), `${key} in enqueue order`).to.deep.equal([...Array(perKey).keys()]);
    for (let i = 1; i < mine.length; i++) expect(mine[i].start, `${key} #${i} starts after #${i - 1} ended`).to.be.at.least(mine[i - 1].end);
  }
}

/** Fail when more than `limit` of these start times (sorted) fall within one window of `intervalMs`, less `slackMs`. */
function expectRate(starts: number[], limit: number, intervalMs: number, slackMs: number, what: string): void {
  for (let i = 0; i + limit < starts.length; i++) {
    expect(starts[i + limit] - starts[i], `${what}: starts ${i} and ${i + limit} are a window apart`).to.be.at.least(intervalMs - slackMs);
  }
}

/**
 * How much earlier than its window a handler may seem to start: the window counts claims as the
 * database dates them, and a claim's round trip (the first ones' above all) can delay its
 * handlers by tens of milliseconds against those of the next claim.
 */
const HANDLER_SLACK = 100;

/** The start times the database recorded (its clock decides the window), once `n` jobs of the queue completed. */
async function datedStarts(jobs: Jobs, queue: string, n: number): Promise<{ group: string | null; at: number }[]> {
  const done = await until(async () => {
    const { items } = await jobs.list({ queue, state: 'completed', limit: n + 1 });
    return items.length === n ? items : null;
  }, `the ${n} completions to be written`);
  return done!.map((j) => ({ group: j.group, at: j.startedAt!.getTime() })).sort((x, y) => x.at - y.at);
}

const finished = (runs: Run[]) => runs.filter((r) => r.end !== Infinity).length;

/** Count calls of the managed claim on an instance's store (the claims a worker sends for limited queues). */
function countManagedClaims(jobs: Jobs): { n: number } {
  const store = (jobs as unknown as { store: { jobClaimManaged: (...a: unknown[]) => Promise<unknown> } }).store;
  const counter = { n: 0 };
  const real = store.jobClaimManaged.bind(store);
  store.jobClaimManaged = (...a: unknown[]) => {
    counter.n++;
    return real(...a);
  };
  return counter;
}

forEachDialect('flow control: fair groups and queue limits', ({ fresh }) => {
  it('groups: with 2,000 ready jobs of group A ahead of 20 of group B, all of B start before the 100th of A', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 2, pollInterval: 50 } });
    const order: string[] = [];
    jobs.define('tenant-work', async (p: { group: string }) => void order.push(p.group));
    await jobs.migrate();
    for (let i = 0; i < 2000; i += 500) {
      await jobs.enqueueMany(Array.from({ length: 500 }, () => ({ name: 'tenant-work' as const, payload: { group: 'A' }, group: 'A' })));
    }
    await jobs.enqueueMany(Array.from({ length: 20 }, () => ({ name: 'tenant-work' as const, payload: { group: 'B' }, group: 'B' })));
    await jobs.start();
    await until(() => order.filter((g) => g === 'B').length === 20, 'every job of B to run', 60_000);
    const hundredthOfA = order.reduce((at, g, i) => (at === -1 && g === 'A' && order.slice(0, i + 1).filter((x) => x === 'A').length === 100 ? i : at), -1);
    const lastOfB = order.lastIndexOf('B');
    expect(hundredthOfA === -1 || lastOfB < hundredthOfA, `B's last start (${lastOfB}) before A's 100th (${hundredthOfA})`).to.equal(true);
    await jobs.stop();
    const job = (await jobs.list({ queue: 'default', limit: 1 })).items[0];
    expect(job.group).to.be.oneOf(['A', 'B']);
  });

  it("a managed queue's backlog does not starve the other queues of the worker's slots", async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 2, pollInterval: 50, prefetch: 0 } });
    const order: string[] = [];
    jobs.define('work', async (p: { queue: string }) => void order.push(p.queue));
    await jobs.migrate();
    await jobs.enqueueMany(Array.from({ length: 200 }, (_, i) => ({ name: 'work' as const, payload: { queue: 'fair' }, queue: 'fair', group: `g${i % 4}` })));
    await jobs.enqueueMany(Array.from({ length: 5 }, () => ({ name: 'work' as const, payload: { queue: 'default' } })));
    await jobs.start();
    await until(() => order.filter((q) => q === 'default').length === 5, 'the default queue to run', 30_000);
    expect(order.lastIndexOf('default'), 'the plain jobs ran among the first of the grouped backlog').to.be.below(60);
    await jobs.stop();
  });

  it('jobs claimed ahead for a busy plain queue do not keep a managed queue from its turn', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 2, pollInterval: 50 } });
    const order: string[] = [];
    jobs.define('quick', async (p: { queue: string }) => void order.push(p.queue));
    await jobs.migrate();
    const backlog = 8000;
    for (let i = 0; i < backlog; i += 1000) await jobs.enqueueMany(Array.from({ length: 1000 }, () => ({ name: 'quick' as const, payload: { queue: 'plain' } })));
    await jobs.start();
    // Once jobs are short the worker claims ahead (prefetch); then the managed queue gets jobs.
    await until(() => order.length >= 200, 'the plain backlog to get going', 30_000);
    await jobs.enqueueMany(Array.from({ length: 5 }, (_, i) => ({ name: 'quick' as const, payload: { queue: 'fair' }, queue: 'fair', group: `g${i}` })));
    await until(() => order.filter((q) => q === 'fair').length === 5, 'the managed jobs to run', 30_000);
    // Counted in jobs left, not jobs run meanwhile: how many plain jobs a poll interval holds grows
    // with the worker's speed (1,754 once in CI), while a starved managed queue waits for them all.
    const plainLeft = backlog - order.slice(0, order.lastIndexOf('fair') + 1).filter((q) => q === 'plain').length;
    expect(plainLeft, 'plain jobs still waiting when the managed ones had run').to.be.above(backlog / 4);
    await jobs.stop();
  });

  it('concurrency: 3 over three instances of concurrency 10 runs at most 3 at once, and 3 at once', async () => {
    const t = await fresh();
    const instances = [t.jobs({ queues: { scarce: { concurrency: 3 } }, worker: { concurrency: 10, pollInterval: 30 } })];
    for (let i = 0; i < 2; i++) instances.push((await t.another()).jobs({ queues: { scarce: { concurrency: 3 } }, worker: { concurrency: 10, pollInterval: 30 } }));
    const runs = recordRuns(instances, 'limited', () => 20 + Math.floor(Math.random() * 40));
    await instances[0].migrate();
    await instances[0].enqueueMany(Array.from({ length: 60 }, () => ({ name: 'limited' as const, payload: {}, queue: 'scarce' })));
    await Promise.all(instances.map((j) => j.start()));
    await until(() => runs.filter((r) => r.end !== Infinity).length === 60, 'every job to run', 60_000);
    expect(peak(runs), 'most running at once').to.equal(3);
    await Promise.all(instances.map((j) => j.stop()));
  });

  it('a pending job an open transaction holds (it enqueued a dependent of it) does not stall the claims of its managed queue', async function () {
    const t = await fresh();
    // SQLite runs one writer at a time: the open transaction holds the whole database.
    if (t.driver !== 'pg' && t.driver !== 'mysql2') return this.skip();
    // Concurrency 1: the held job is at the head of the queue, picked first by every claim.
    const jobs = t.jobs({ queues: { exports: { concurrency: 1 } }, worker: { concurrency: 5, pollInterval: 30 } });
    const ran: number[] = [];
    jobs.define('export', (p: { n: number }) => void ran.push(p.n));
    jobs.define('after', () => undefined);
    await jobs.migrate();
    const [held] = await jobs.enqueueMany(Array.from({ length: 21 }, (_, n) => ({ name: 'export' as const, payload: { n }, queue: 'exports' })));
    const pool = t.db as unknown as { connect?(): Promise<AppConn>; getConnection?(): Promise<AppConn> };
    const conn = t.driver === 'pg' ? await pool.connect!() : await pool.getConnection!();
    await conn.query(t.driver === 'pg' ? 'BEGIN' : 'START TRANSACTION');
    try {
      // The dependent's enqueue locks its parent's row until the transaction ends.
      await jobs.enqueue('after', {}, { dependsOn: held.id, tx: conn as never });
      await jobs.start();
      await until(() => ran.length === 20, 'the 20 jobs no transaction holds to run', 10_000);
      expect(ran).to.not.include(0);
    } finally {
      await conn.query('COMMIT');
      conn.release();
    }
    await until(() => ran.length === 21, 'the held one to run once the transaction ended', 10_000);
    await jobs.stop();
  });

  it('groupConcurrency: at most one job per group at once, while groups run side by side', async () => {
    const t = await fresh();
    const a = t.jobs({ queues: { tenants: { groupConcurrency: 1 } }, worker: { concurrency: 8, pollInterval: 30 } });
    const b = (await t.another()).jobs({ queues: { tenants: { groupConcurrency: 1 } }, worker: { concurrency: 8, pollInterval: 30 } });
    const runs = recordRuns([a, b], 'per-tenant', () => 10 + Math.floor(Math.random() * 20));
    await a.migrate();
    await a.start();
    const groups = ['g1', 'g2', 'g3'];
    await a.enqueueMany(Array.from({ length: 36 }, (_, i) => ({ name: 'per-tenant' as const, payload: { group: groups[i % 3] }, queue: 'tenants', group: groups[i % 3] })));
    await b.start();
    await until(() => runs.filter((r) => r.end !== Infinity).length === 36, 'every job to run', 60_000);
    for (const g of groups) expect(peak(runs.filter((r) => r.group === g)), `${g} at once`).to.equal(1);
    expect(peak(runs), 'groups side by side').to.be.greaterThan(1);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('rateLimit: at most limit starts in any window of intervalMs across two instances, and close to the limit', async () => {
    const t = await fresh();
    const queues = { metered: { rateLimit: { limit: 10, intervalMs: 500 } } };
    const a = t.jobs({ queues, worker: { concurrency: 10, pollInterval: 50 } });
    const b = (await t.another()).jobs({ queues, worker: { concurrency: 10, pollInterval: 50 } });
    for (const j of [a, b]) j.define('call-api', async () => undefined);
    await a.migrate();
    await a.enqueueMany(Array.from({ length: 200 }, () => ({ name: 'call-api' as const, payload: {}, queue: 'metered' })));
    await Promise.all([a.start(), b.start()]);
    await new Promise((r) => setTimeout(r, 2_200));
    await Promise.all([a.stop(), b.stop()]);
    // Start times as the database recorded them (its clock decides the window).
    const starts = (await a.list({ queue: 'metered', state: 'completed', limit: 500 })).items.map((j) => j.startedAt!.getTime()).sort((x, y) => x - y);
    for (let i = 0; i + 10 < starts.length; i++) {
      expect(starts[i + 10] - starts[i], `starts ${i} and ${i + 10} are a window apart`).to.be.at.least(500);
    }
    // 2.2 s at 10 per 500 ms allows 50 starts: the limit, not the workers, sets the pace.
    expect(starts.length).to.be.within(35, 50);
  });

  it('a job a limit holds back stays pending with its attempts untouched, and held workers do not claim in a storm', async () => {
    const t = await fresh();
    const queues = { single: { concurrency: 1 } };
    const a = t.jobs({ queues, worker: { concurrency: 5, pollInterval: 200 } });
    const b = (await t.another()).jobs({ queues, worker: { concurrency: 5, pollInterval: 200 } });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started = 0;
    for (const j of [a, b]) {
      j.define('one-at-a-time', async (p: { long: boolean }) => {
        started++;
        if (p.long) await held;
      });
    }
    await a.migrate();
    const first = await a.enqueue('one-at-a-time', { long: true }, { queue: 'single' });
    await a.start();
    await until(async () => (await a.get(first.id))?.state === 'running', 'the long job to start');
    const claims = countManagedClaims(b);
    await b.start();
    // Enqueues in the held queue wake the workers; they must not claim for each of them.
    for (let i = 0; i < 20; i++) await a.enqueue('one-at-a-time', { long: false }, { queue: 'single' });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(started, 'nothing else started while the limit is full').to.equal(1);
    // One claim at start, then about one per poll (200 ms): never one per wake-up.
    expect(claims.n, 'managed claims in 1 s').to.be.at.most(8);
    const waiting = (await a.list({ queue: 'single', state: 'pending', limit: 50 })).items;
    expect(waiting).to.have.length(20);
    expect(waiting.every((j) => j.attempts === 0), 'no attempt spent').to.equal(true);
    release();
    await until(() => started === 21, 'the rest to run once the slot frees', 20_000);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a group at its groupConcurrency holds the queue: enqueues of that group cost no claim each', async () => {
    const t = await fresh();
    const queues = { tenants: { groupConcurrency: 1 } };
    const a = t.jobs({ queues, worker: { concurrency: 5, pollInterval: 200 } });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started = 0;
    a.define('tenant-job', async (p: { long: boolean }) => {
      started++;
      if (p.long) await held;
    });
    await a.start();
    await a.enqueue('tenant-job', { long: true }, { queue: 'tenants', group: 'A' });
    await until(() => started === 1, 'the long job to start');
    const claims = countManagedClaims(a);
    for (let i = 0; i < 20; i++) await a.enqueue('tenant-job', { long: false }, { queue: 'tenants', group: 'A' });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(started).to.equal(1);
    expect(claims.n, 'managed claims in 1 s').to.be.at.most(8);
    release();
    await until(() => started === 21, 'the rest to run', 20_000);
    await a.stop();
  });

  it('drain() waits for a slot another instance holds, then runs the job (it does not wait an hour)', async () => {
    const t = await fresh();
    const queues = { single: { concurrency: 1 } };
    const a = t.jobs({ queues, worker: { pollInterval: 50 } });
    const b = (await t.another()).jobs({ queues, worker: { pollInterval: 50 } });
    let ran = 0;
    for (const j of [a, b]) j.define('slot', async (p: { ms: number }) => void (await new Promise((r) => setTimeout(r, p.ms)), ran++));
    await a.start();
    await a.enqueue('slot', { ms: 1500 }, { queue: 'single' });
    await until(() => a.queues.list().then((qs) => qs.some((q) => q.queue === 'single' && q.running === 1)), 'the slot to be taken');
    await b.migrate();
    await b.enqueue('slot', { ms: 1 }, { queue: 'single' });
    const t0 = Date.now();
    await b.drain();
    expect(Date.now() - t0, 'drain returned soon after the slot freed').to.be.below(6_000);
    expect(ran).to.be.at.least(1);
    await a.stop();
  });

  it('a managed job is not claimed into a worker whose slots are busy with long jobs: an idle instance takes it', async () => {
    const t = await fresh();
    const queues = { single: { concurrency: 1 } };
    const a = t.jobs({ queues, worker: { concurrency: 2, pollInterval: 50 } });
    const b = (await t.another()).jobs({ queues, worker: { concurrency: 2, pollInterval: 50 } });
    const ranOn: string[] = [];
    for (const [name, j] of [['a', a], ['b', b]] as const) {
      j.define('long', async () => void (await new Promise((r) => setTimeout(r, 2_500))));
      j.define('limited', async () => void ranOn.push(name));
    }
    await a.migrate();
    await a.enqueueMany([{ name: 'long', payload: {} }, { name: 'long', payload: {} }]);
    await a.start();
    await until(() => a.queues.list().then((qs) => qs.some((q) => q.queue === 'default' && q.running === 2)), 'both of a\'s slots to be busy');
    await b.start();
    await a.enqueue('limited', {}, { queue: 'single' });
    await until(() => ranOn.length === 1, 'the limited job to run', 2_000);
    expect(ranOn).to.deep.equal(['b']);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('jobs.queues.configure changes the limits at run time for every instance; a restart with the same code keeps the edit', async () => {
    const t = await fresh();
    const a = t.jobs({ queues: { busy: { concurrency: 5 } }, worker: { concurrency: 10, pollInterval: 30 } });
    const runs = recordRuns([a], 'work', () => 30);
    await a.start();
    await a.queues.configure('busy', { concurrency: 1 });
    expect((await a.queues.settings()).find((q) => q.queue === 'busy')).to.deep.include({ concurrency: 1, groupConcurrency: null, rateLimit: null });
    await a.enqueueMany(Array.from({ length: 8 }, () => ({ name: 'work' as const, payload: {}, queue: 'busy' })));
    await until(() => runs.filter((r) => r.end !== Infinity).length === 8, 'every job to run');
    expect(peak(runs)).to.equal(1);
    await a.stop();
    // The same code settings: the run-time edit stays. Changed code settings: they win.
    const same = t.jobs({ queues: { busy: { concurrency: 5 } }, worker: false });
    await same.start();
    expect((await same.queues.settings()).find((q) => q.queue === 'busy')?.concurrency).to.equal(1);
    const changed = t.jobs({ queues: { busy: { concurrency: 4, rateLimit: { limit: 100, intervalMs: 1000, per: 'group' } } }, worker: false });
    await changed.start();
    expect((await changed.queues.settings()).find((q) => q.queue === 'busy')).to.deep.include({
      concurrency: 4, rateLimit: { limit: 100, intervalMs: 1000, per: 'group' },
    });
  });

  it('a paused managed queue is not claimed until resumed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ queues: { paused: { concurrency: 2 } }, worker: { pollInterval: 30 } });
    let ran = 0;
    jobs.define('later', async () => void ran++);
    await jobs.start();
    await jobs.queues.pause('paused');
    await jobs.enqueue('later', {}, { queue: 'paused' });
    await new Promise((r) => setTimeout(r, 300));
    expect(ran).to.equal(0);
    await jobs.queues.resume('paused');
    await until(() => ran === 1, 'the job to run once resumed');
    await jobs.stop();
  });

  it('drain() runs the jobs of managed queues too', async () => {
    const t = await fresh();
    const jobs = t.jobs({ queues: { slow: { rateLimit: { limit: 2, intervalMs: 200 } } }, worker: { pollInterval: 1000 } });
    let ran = 0;
    jobs.define('metered', async () => void ran++);
    await jobs.migrate();
    await jobs.start();
    await jobs.enqueueMany(Array.from({ length: 6 }, () => ({ name: 'metered' as const, payload: {}, queue: 'slow' })));
    await jobs.drain();
    expect(ran).to.equal(6);
    await jobs.stop();
  });

  it('a serial key inside a queue with concurrency: each key in order without overlap, and never more than the limit at once', async () => {
    const t = await fresh();
    const queues = { scarce: { concurrency: 2 } };
    const instances = [t.jobs({ queues, worker: { concurrency: 6, pollInterval: 30 } }), (await t.another()).jobs({ queues, worker: { concurrency: 6, pollInterval: 30 } })];
    const runs = recordRuns(instances, 'step', () => 10 + Math.floor(Math.random() * 20));
    await instances[0].migrate();
    // Keyless jobs first compete for the slots; three keys could then run three at once, the limit
    // allows two; k1's tail runs alone, where a slot is free that only k1's waiting jobs could take.
    const counts = { k1: 10, k2: 5, k3: 3 };
    await instances[0].enqueueMany([...Array.from({ length: 4 }, () => ({ name: 'step' as const, payload: {}, queue: 'scarce' })), ...serialItems('scarce', counts)]);
    await Promise.all(instances.map((j) => j.start()));
    await until(() => finished(runs) === 22, 'every job to run', 30_000);
    expectSerial(runs, counts);
    expect(peak(runs), 'most running at once').to.equal(2);
    await Promise.all(instances.map((j) => j.stop()));
  });

  it('serial keys on grouped jobs with groupConcurrency: both hold (each key in order, each group at most its limit)', async () => {
    const t = await fresh();
    const queues = { tenants: { groupConcurrency: 2 } };
    const instances = [t.jobs({ queues, worker: { concurrency: 8, pollInterval: 30 } }), (await t.another()).jobs({ queues, worker: { concurrency: 8, pollInterval: 30 } })];
    const runs = recordRuns(instances, 'step', () => 10 + Math.floor(Math.random() * 20));
    await instances[0].migrate();
    // Three keys per group: the keys alone would let a group run three at once.
    const keysOf = { g1: { a: 8, b: 4, c: 3 }, g2: { d: 8, e: 4, f: 3 } };
    await instances[0].enqueueMany(Object.entries(keysOf).flatMap(([group, counts]) => serialItems('tenants', counts, group)));
    await Promise.all(instances.map((j) => j.start()));
    await until(() => finished(runs) === 30, 'every job to run', 30_000);
    expectSerial(runs, { ...keysOf.g1, ...keysOf.g2 });
    for (const g of Object.keys(keysOf)) expect(peak(runs.filter((r) => r.group === g)), `${g} at once`).to.equal(2);
    await Promise.all(instances.map((j) => j.stop()));
  });

  it('a serial key inside a rate-limited queue: each key in order without overlap, and at most limit starts in any window', async () => {
    const t = await fresh();
    const queues = { metered: { rateLimit: { limit: 4, intervalMs: 300 } } };
    const instances = [t.jobs({ queues, worker: { concurrency: 6, pollInterval: 30 } }), (await t.another()).jobs({ queues, worker: { concurrency: 6, pollInterval: 30 } })];
    const runs = recordRuns(instances, 'step', () => 5);
    await instances[0].migrate();
    // k1's tail runs alone, with room in the window that only its waiting jobs could take.
    const counts = { k1: 8, k2: 4, k3: 3 };
    await instances[0].enqueueMany(serialItems('metered', counts));
    await Promise.all(instances.map((j) => j.start()));
    await until(() => finished(runs) === 15, 'every job to run', 30_000);
    expectSerial(runs, counts);
    expectRate(runs.map((r) => r.start).sort((x, y) => x - y), 4, 300, HANDLER_SLACK, 'handler starts');
    expectRate((await datedStarts(instances[0], 'metered', 15)).map((s) => s.at), 4, 300, 0, 'starts the database dated');
    await Promise.all(instances.map((j) => j.stop()));
  });

  it("rateLimit per: 'group': each group has its own window, both reach the limit in one window and none exceeds it", async () => {
    const t = await fresh();
    const queues = { metered: { rateLimit: { limit: 3, intervalMs: 500, per: 'group' as const } } };
    const jobs = t.jobs({ queues, worker: { concurrency: 10, pollInterval: 30 } });
    const runs = recordRuns([jobs], 'call', () => 5);
    await jobs.start();
    await jobs.enqueueMany(['A', 'B'].flatMap((group) => Array.from({ length: 7 }, () => ({ name: 'call' as const, payload: { group }, queue: 'metered', group }))));
    await until(() => finished(runs) === 14, 'every job to run', 30_000);
    const startsOf = (g: string) => runs.filter((r) => r.group === g).map((r) => r.start).sort((x, y) => x - y);
    const [a, b] = [startsOf('A'), startsOf('B')];
    const dated = await datedStarts(jobs, 'metered', 14);
    for (const [g, starts] of [['A', a], ['B', b]] as const) {
      expectRate(starts, 3, 500, HANDLER_SLACK, `${g}'s handler starts`);
      expectRate(dated.filter((s) => s.group === g).map((s) => s.at), 3, 500, 0, `${g}'s starts the database dated`);
    }
    // Six starts in one window: twice a queue-wide limit of 3, so each group counted its own.
    expect(Math.max(a[2], b[2]) - Math.min(a[0], b[0]), 'both groups reached their limit within one window').to.be.below(500);
    await jobs.stop();
  });

  it('refuses bad queue settings and group, naming the field', async () => {
    const t = await fresh();
    expect(() => t.jobs({ queues: { q: { concurrency: 0 } }, worker: false })).to.throw(JobValidationError, /queues\.q\.concurrency must be an integer from 1/);
    expect(() => t.jobs({ queues: { q: { rateLimit: { limit: 5 } } } as never, worker: false })).to.throw(/queues\.q\.rateLimit\.intervalMs is required/);
    expect(() => t.jobs({ queues: { q: { rateLimit: { limit: 5, intervalMs: 10, per: 'user' } } } as never, worker: false })).to.throw(/rateLimit\.per must be 'queue' or 'group'/);
    expect(() => t.jobs({ queues: { q: { speed: 1 } } as never, worker: false })).to.throw(/queues\.q\.speed is not a queue setting/);
    const jobs = t.jobs({ worker: false });
    try {
      await jobs.queues.configure('q', { groupConcurrency: 1.5 });
      expect.fail('configure accepted 1.5');
    } catch (err) {
      expect(err).to.be.instanceOf(JobValidationError).with.property('field', 'settings.groupConcurrency');
    }
    try {
      await jobs.enqueue('x', {}, { group: '' });
      expect.fail('enqueue accepted an empty group');
    } catch (err) {
      expect(err).to.be.instanceOf(JobValidationError).with.property('field', 'group');
    }
  });
});
