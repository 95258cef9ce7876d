import { expect } from 'chai';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import type { JobContext, Jobs } from '../../lib/index.ts';
import { PRUNE_EVERY } from '../../lib/maintenance/service.ts';
import { countStatements, logInsert } from '../helpers/statements.ts';

/** Database now in ms (the clock every stored time comes from). */
async function dbNow(t: TestDb): Promise<number> {
  const sql = {
    sqlite: "SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS now",
    // Whole milliseconds, as the records' times are: a run_at read back as a Date is cut to the
    // millisecond, and against a clock read to the microsecond 300 ms could measure 299.985.
    postgres: 'SELECT floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8 AS now',
    mysql: 'SELECT ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS now',
    mssql: "SELECT DATEDIFF_BIG(millisecond, '19700101', SYSUTCDATETIME()) AS now",
  }[t.dialect];
  return Number((await t.query<{ now: number }>(sql))[0].now);
}

async function count(t: TestDb, table: string): Promise<number> {
  return Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}${table}`))[0].n);
}

/** Each job's rows in the attempts and logs tables. */
async function tracesOf(t: TestDb, ids: string[]): Promise<Record<string, { attempts: number; logs: number }>> {
  const per = async (table: string, id: string) =>
    Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}${table} WHERE job_id = ${t.dialect === 'sqlite' ? '?' : '$1'}`, [id]))[0].n);
  const out: Record<string, { attempts: number; logs: number }> = {};
  for (const id of ids) out[id] = { attempts: await per('attempts', id), logs: await per('logs', id) };
  return out;
}

/** Move finished jobs' finished_at into the past. */
async function backdate(t: TestDb, ids: string[], agoMs: number): Promise<void> {
  for (const id of ids) {
    const at = t.dialect === 'sqlite' ? Date.now() - agoMs : new Date(Date.now() - agoMs);
    await t.query(`UPDATE ${t.prefix}history SET finished_at = ${t.dialect === 'sqlite' ? '?' : '$1'} WHERE id = ${t.dialect === 'sqlite' ? '?' : '$2'}`, [at, id]);
  }
}

/** SQL for a timestamp column's value three days earlier, in the dialect's terms. */
function threeDaysBefore(t: TestDb, column: string): string {
  if (t.dialect === 'sqlite') return `${column} - ${3 * 86_400_000}`;
  if (t.dialect === 'postgres') return `${column} - interval '3 days'`;
  return t.dialect === 'mssql' ? `DATEADD(day, -3, ${column})` : `${column} - INTERVAL 3 DAY`;
}

/** Count an instance's history prunes (its store's own statement, wrapped: which instance ran it). */
function prunesOf(jobs: Jobs): { calls: number; deleted: number } {
  const seen = { calls: 0, deleted: 0 };
  const store = jobs.store;
  const prune = store.historyPrune.bind(store);
  store.historyPrune = async (req) => {
    seen.calls++;
    const n = await prune(req);
    seen.deleted += n;
    return n;
  };
  return seen;
}

/**
 * Enqueue a 'twice' job; once its first attempt runs, the database gives the job back (as a rescue
 * of a silent worker would) and the same worker claims it again while the first attempt still runs.
 */
async function runTwiceInOneWorker(t: TestDb, jobs: Jobs, signals: AbortSignal[]): Promise<string> {
  const { id } = await jobs.enqueue('twice', {});
  await until(() => signals.length === 1, 'the first attempt');
  const [{ token }] = await t.query<{ token: string }>(`SELECT token FROM ${t.prefix}jobs WHERE id = ${t.dialect === 'sqlite' ? '?' : '$1'}`, [id]);
  expect(await jobs.store.jobReleaseMany([{ id, token, delayMs: 0, refund: false }])).to.have.property('size', 1);
  await until(() => signals.length === 2, 'the second attempt, in the same worker');
  return id;
}

forEachDialect('processing', ({ fresh }) => {
  it('runs a job and moves it to history with its result; the hot table ends empty', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    jobs.define('double', async (p: { n: number }) => ({ n: p.n * 2 }));
    await jobs.start();
    const N = 2000;
    const ids = (await jobs.enqueueMany(Array.from({ length: N }, (_, i) => ({ name: 'double', payload: { n: i } })))).map((r) => r.id);
    // get() never returns null while a job moves between tables.
    let nulls = 0;
    const probe = ids[N - 1];
    while ((await count(t, 'jobs')) > 0) {
      if ((await jobs.get(probe)) === null) nulls++;
      await new Promise((r) => setImmediate(r)); // better-sqlite3 is synchronous: let the worker run
    }
    await jobs.stop();
    expect(nulls).to.equal(0);
    expect(await count(t, 'jobs')).to.equal(0);
    expect(await count(t, 'history')).to.equal(N);
    const j = await jobs.get(ids[21]);
    expect(j).to.include({ state: 'completed', attempts: 1 });
    expect(j!.result).to.deep.equal({ n: 42 });
    expect(j!.finishedAt).to.be.instanceOf(Date);
  });

  it('a payload reaches the handler, get() and list() as given: null stays null, none stays undefined, a string or number stays itself (live and in history)', async () => {
    const t = await fresh();
    // A queue with a limit is claimed by its own statements (lib/driver/portable/queues.ts).
    const jobs = t.jobs({ worker: { pollInterval: 60_000 }, queues: { limited: { concurrency: 2 } } });
    const given: [string, unknown][] = [['null', null], ['none', undefined], ['string', 'abc'], ['json-looking string', '{"a":1}'], ['number', 0], ['false', false], ['object', { a: null }], ['array', [null]]];
    const seen = new Map<string, unknown>();
    jobs.define('echo', (payload: unknown, ctx) => void seen.set(ctx.id, payload));
    const ids = new Map<string, string>();
    for (const [label, payload] of given) ids.set(label, (await jobs.enqueue('echo', payload as never)).id);
    // The same through the workflow path's insert (a serial key), and a null among others in one enqueueMany.
    given.push(['null, serial', null], ['null, in a batch of three', null]);
    ids.set('null, serial', (await jobs.enqueue('echo', null as never, { serial: 's' })).id);
    const many = await jobs.enqueueMany([{ name: 'echo', payload: { b: 1 } as never }, { name: 'echo', payload: null as never }, { name: 'echo', payload: undefined as never }]);
    ids.set('null, in a batch of three', many[1].id);
    given.push(['object, in a batch of three', { b: 1 }], ['none, in a batch of three', undefined]);
    ids.set('object, in a batch of three', many[0].id);
    ids.set('none, in a batch of three', many[2].id);
    given.push(['null, limited queue', null], ['string, limited queue', 'abc']);
    ids.set('null, limited queue', (await jobs.enqueue('echo', null as never, { queue: 'limited' })).id);
    ids.set('string, limited queue', (await jobs.enqueue('echo', 'abc' as never, { queue: 'limited' })).id);
    const listed = async () => new Map((await jobs.list({ name: 'echo', includePayload: true, limit: 100 })).items.map((j) => [j.id, j]));
    const before = await listed();
    for (const [label, payload] of given) {
      const id = ids.get(label)!;
      expect((await jobs.get(id))!.payload, `get(), pending: ${label}`).to.deep.equal(payload);
      expect(before.get(id)!.payload, `list(), pending: ${label}`).to.deep.equal(payload);
    }
    await jobs.start();
    await until(() => seen.size === given.length, 'every job to run');
    await until(async () => (await jobs.list({ name: 'echo', state: 'completed', limit: 100 })).items.length === given.length, 'every job in history');
    const after = await listed();
    for (const [label, payload] of given) {
      const id = ids.get(label)!;
      expect(seen.get(id), `handler: ${label}`).to.deep.equal(payload);
      expect((await jobs.get(id))!.payload, `get(), completed: ${label}`).to.deep.equal(payload);
      expect(after.get(id)!.payload, `list(), completed: ${label}`).to.deep.equal(payload);
    }
    expect(seen.has(ids.get('none')!) && seen.get(ids.get('none')!) === undefined, 'no payload is undefined').to.equal(true);
    expect(seen.get(ids.get('null')!), 'null is null').to.equal(null);
  });

  it('wakes a same-process worker at once on enqueue (poll interval 60 s)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const started: number[] = [];
    jobs.define('ping', async () => {
      started.push(performance.now());
    });
    await jobs.start();
    await sleep(100);
    const lat: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await jobs.enqueue('ping', {});
      await until(() => started.length === i + 1, 'the job to start', 2000, 1);
      lat.push(started[i] - t0);
    }
    lat.sort((a, b) => a - b);
    // Every start is a wake-up, never the 60 s poll; a rare hiccup of the shared 2-core machine (one
    // start in 20 over 50 ms, seen at 56 ms under CI load) is not a missed wake-up.
    const shown = `latencies ${lat.map((x) => x.toFixed(1))}`;
    expect(lat[lat.length - 2], shown).to.be.below(50);
    expect(lat[lat.length - 1], shown).to.be.below(250);
  });

  it('starts a delayed job never before its run_at and within 100 ms after it', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    let startedAt = 0;
    jobs.define('later', async () => {
      startedAt = await dbNow(t);
    });
    await jobs.start();
    const { id } = await jobs.enqueue('later', {}, { delay: 400 });
    const runAt = (await jobs.get(id))!.runAt.getTime();
    await until(() => startedAt, 'the delayed job', 3000);
    expect(startedAt).to.be.at.least(runAt);
    expect(startedAt - runAt).to.be.below(100);
  });

  it('runs a higher-priority job before every lower one not already running, FIFO within a priority', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const order: string[] = [];
    jobs.define('p', async (p: { label: string }) => {
      order.push(p.label);
      await sleep(1);
    });
    await jobs.enqueueMany(Array.from({ length: 200 }, (_, i) => ({ name: 'p', payload: { label: `low-${i}` } })));
    await jobs.start();
    // Long enough for the worker to claim low jobs ahead of its free slots.
    await until(() => order.length >= 60, 'low jobs to run');
    await jobs.enqueue('p', { label: 'high' }, { priority: 10 });
    const startedBefore = order.length; // started before the high job was committed
    await until(() => order.length === 201, 'all jobs', 20_000);
    await jobs.stop();
    const highAt = order.indexOf('high');
    // Jobs claimed ahead wait while the worker claims after the wake-up, so the high job starts next.
    expect(highAt - startedBefore, `high job started after ${highAt} of 200 low jobs`).to.be.at.most(10);
    const lows = order.filter((l) => l !== 'high').map((l) => Number(l.slice(4)));
    expect(lows, 'FIFO within one priority').to.deep.equal([...lows].sort((a, b) => a - b));
  });

  it('a wake-up during a claim does not hold back what it claimed for free slots: those start before the next claim', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, concurrency: 10 } });
    const started: number[] = [];
    jobs.define('ping', async (p: { n: number }) => {
      started.push(p.n);
    });
    await jobs.start();
    // The claim that brings the first job hears of another before it answers (as when an enqueue's
    // NOTIFY starts the claim and the same process's enqueue returns during it); the next claim waits.
    const claim = jobs.store.jobClaim.bind(jobs.store);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let woke = false;
    jobs.store.jobClaim = async (req) => {
      if (woke) await gate;
      const got = await claim(req);
      if (got.length && !woke) {
        woke = true;
        await jobs.enqueue('ping', { n: 2 });
      }
      return got;
    };
    await jobs.enqueue('ping', { n: 1 });
    try {
      // Nine slots stay free after it starts, so the new job could outrank nothing it would displace.
      await until(() => started.length >= 1, 'the claimed job to start while the next claim is pending', 2000);
      expect(started[0]).to.equal(1);
    } finally {
      release();
    }
    await until(() => started.length === 2, 'the second job');
    await jobs.stop();
  });

  it('outcomes queued behind a slow write go in statements of at most 500 (or the store\'s batch size), every job completed once', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, concurrency: 50 } });
    jobs.define('quick', () => undefined);
    await jobs.enqueueMany(Array.from({ length: 2500 }, (_, n) => ({ name: 'quick' as const, payload: n })));
    // The first write is held until every other job has run: at least 1,500 outcomes queue behind it.
    const complete = jobs.store.jobCompleteMany.bind(jobs.store);
    const sizes: number[] = [];
    let ran = 0;
    jobs.on('started', () => void ran++);
    jobs.store.jobCompleteMany = async (items) => {
      sizes.push(items.length);
      if (sizes.length === 1) await until(() => ran === 2500, 'every job to run while the first write waits', 30_000);
      return complete(items);
    };
    await jobs.start();
    await until(async () => (await count(t, 'history')) === 2500, 'every job in history', 45_000);
    await jobs.stop();
    const cap = Math.max(500, jobs.store.capabilities.outcomeBatch?.max ?? 100);
    expect(Math.max(...sizes), `the largest statement (${sizes.join(', ')})`).to.be.at.most(cap);
    expect(sizes.reduce((a, b) => a + b, 0)).to.equal(2500);
    expect(await count(t, 'jobs')).to.equal(0);
  });

  it('handlers that enqueue as they start (waking the worker inside a start) never run more than concurrency at once, in claim order', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, concurrency: 4 } });
    let active = 0;
    let most = 0;
    const order: number[] = [];
    jobs.define('parent', async (p: { n: number }) => {
      active++;
      // The synchronous part of the handler: what a start inside a start would overlap.
      most = Math.max(most, active);
      order.push(p.n);
      try {
        // On SQLite the enqueue and its wake-up run synchronously, inside the worker's start of this job.
        if (t.dialect === 'sqlite') jobs.enqueueSync('child', { n: p.n });
        else await jobs.enqueue('child', { n: p.n });
        await sleep(p.n % 3);
      } finally {
        active--;
      }
    });
    jobs.define('child', async () => {
      active++;
      most = Math.max(most, active);
      await sleep(1);
      active--;
    });
    await jobs.enqueueMany(Array.from({ length: 300 }, (_, n) => ({ name: 'parent' as const, payload: { n } })));
    await jobs.start();
    await until(async () => (await count(t, 'history')) === 600, 'every parent and child', 50_000);
    await jobs.stop();
    expect(most, 'handlers running at once').to.be.at.most(4);
    expect(order, 'parents start in claim order').to.deep.equal([...order].sort((a, b) => a - b));
  });

  it('the handler context works destructured, through a Proxy and as a prototype: signal, log, progress', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const seen: string[] = [];
    jobs.define('shape', async (_p, ctx) => {
      const { signal, log, progress, id, attempt } = ctx;
      seen.push(`${signal instanceof AbortSignal}:${new Proxy(ctx, {}).signal === signal}:${Object.create(ctx).signal === signal}:${id.length > 0}:${attempt}`);
      log('from a destructured log');
      progress(50);
    });
    await jobs.start();
    const { id } = await jobs.enqueue('shape', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job');
    await jobs.stop();
    expect(seen).to.deep.equal(['true:true:true:true:1']);
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal(['from a destructured log']);
  });

  it('prefetch 0: a wake-up that comes during a claim claims nothing beyond the free slots', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, concurrency: 1, prefetch: 0 } });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const started: number[] = [];
    jobs.define('hold', async (p: { n: number }) => {
      started.push(p.n);
      await gate;
    });
    await jobs.start();
    // The claim that takes the first job enqueues the second before it answers: its wake-up
    // arrives while the first job is claimed but not yet started.
    const claim = jobs.store.jobClaim.bind(jobs.store);
    let second: string | null = null;
    jobs.store.jobClaim = async (req) => {
      const got = await claim(req);
      if (got.length && second === null) second = (await jobs.enqueue('hold', { n: 2 })).id;
      return got;
    };
    await jobs.enqueue('hold', { n: 1 });
    await until(() => started.length === 1 && second, 'the first job to start');
    await sleep(200);
    // Claimed here, it would wait unstarted behind the first job while another worker could run it.
    expect((await jobs.get(second!))!.state, 'the second job is left pending').to.equal('pending');
    expect(started).to.deep.equal([1]);
    release();
    await until(async () => (await jobs.get(second!))?.state === 'completed', 'the second job once a slot is free', 5000);
    await jobs.stop();
  });


  it('jobs claimed ahead keep starting while the next claim is under way', async () => {
    const t = await fresh();
    // Up to 10 claimed ahead of the 2 slots once 20 runs finished; the next claim goes out once half
    // of those have started. Everything is enqueued before the start: no wake-up for new jobs comes
    // (one would rightly make the backlog wait for a claim that may hold a job that outranks it).
    const jobs = t.jobs({ worker: { pollInterval: 60_000, concurrency: 2, prefetch: 10 } });
    let ran = 0;
    jobs.define('quick', () => void ran++);
    await jobs.enqueueMany(Array.from({ length: 200 }, () => ({ name: 'quick' as const, payload: {} })));
    // Every claim after the first one claimed ahead waits until released.
    const claim = jobs.store.jobClaim.bind(jobs.store);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let ahead = 0;
    let ranBeforeIt = 0;
    let claimsHeld = 0;
    jobs.store.jobClaim = async (req) => {
      if (ahead) {
        claimsHeld++;
        await held;
      }
      const got = await claim(req);
      if (got.length > 2 && !ahead) [ahead, ranBeforeIt] = [got.length, ran];
      return got;
    };
    try {
      await jobs.start();
      await until(() => claimsHeld > 0, 'a claim after the first one claimed ahead (none came: the worker never claimed ahead, or took every job in one claim)');
      expect(ahead, 'claimed ahead of the 2 slots').to.be.within(3, 12);
      // The slots its first jobs free take the rest of it, not a round trip later.
      await until(() => ran === ranBeforeIt + ahead, 'every job claimed ahead to run while the next claim waits', 5_000);
    } finally {
      release();
    }
    await until(() => ran === 200, 'the rest');
    await jobs.stop();
  });

  it('retries with backoff, records message and stack per attempt, then fails for good', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const starts: number[] = [];
    let fixed = false;
    jobs.define(
      'flaky',
      async (_p, ctx) => {
        if (fixed) return 'fixed';
        starts.push(await dbNow(t));
        throw new Error(`boom on attempt ${ctx.attempt}`);
      },
      { maxAttempts: 4, backoff: { type: 'exponential', baseMs: 100, jitter: 0.2 } },
    );
    const events: string[] = [];
    const delays: number[] = [];
    jobs.on('retrying', (e) => {
      events.push(`retrying:${e.attempt}`);
      delays.push(e.delayMs);
    });
    jobs.on('failed', (e) => events.push(`failed:${e.attempt}`));
    await jobs.start();
    const { id } = await jobs.enqueue('flaky', {});
    await until(async () => (await jobs.get(id))?.state === 'failed', 'the job to fail for good', 10_000);
    // The event follows the write's answer, which another connection's read can beat.
    await until(() => events.includes('failed:4'), 'the failed event', 2000);
    const attempts = await jobs.attempts(id);
    expect(attempts.map((a) => a.attempt)).to.deep.equal([1, 2, 3, 4]);
    for (const a of attempts) {
      expect(a.outcome).to.equal('failed');
      expect(a.error!.message).to.equal(`boom on attempt ${a.attempt}`);
      expect(a.error!.stack).to.include('processing.test.ts');
    }
    // The delays follow 100, 200, 400 ms ± 20 % jitter, and each retry starts after its delay,
    // woken by its timer (the poll is a minute away). What lies between (the failure's write and
    // commit, the claim) is this machine's: it took over 100 ms under load, so it is bounded loosely.
    [100, 200, 400].forEach((base, i) => expect(delays[i], `delay ${i} of ${delays}`).to.be.within(base * 0.8, base * 1.2));
    const gaps = starts.slice(1).map((s, i) => s - starts[i]);
    gaps.forEach((gap, i) => expect(gap, `gap ${i} of ${gaps} after delays ${delays}`).to.be.within(delays[i] - 5, delays[i] + 400));
    const job = await jobs.get(id);
    expect(job).to.include({ state: 'failed', attempts: 4 });
    expect(job!.error!.message).to.equal('boom on attempt 4');
    expect(events).to.deep.equal(['retrying:1', 'retrying:2', 'retrying:3', 'failed:4']);
    expect(await count(t, 'jobs')).to.equal(0);
    // A failed job can be retried after a fix (the next deploy's handler): it runs once more.
    fixed = true;
    await jobs.retry(id);
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the retried job');
    expect((await jobs.get(id))!.attempts).to.equal(5);
  });

  it('discard fails at once; snooze runs again later without spending an attempt', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    let snoozes = 0;
    jobs.define('discarded', async (_p, ctx) => ctx.discard('bad input: no such customer'));
    jobs.define('snoozer', async (_p, ctx) => {
      if (snoozes++ < 2) ctx.snooze(50);
      return ctx.attempt;
    });
    await jobs.start();
    const d = await jobs.enqueue('discarded', {});
    const s = await jobs.enqueue('snoozer', {});
    await until(async () => (await jobs.get(d.id))?.state === 'failed', 'discard');
    expect((await jobs.get(d.id))!.attempts).to.equal(1);
    expect((await jobs.get(d.id))!.error!.message).to.equal('bad input: no such customer');
    await until(async () => (await jobs.get(s.id))?.state === 'completed', 'snoozed job');
    expect(snoozes).to.equal(3);
    expect((await jobs.get(s.id))!.result).to.equal(1);
  });

  it('snooze: the job runs again the asked delay after the release (database clock), never sooner, with its attempt given back', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const delay = 300;
    const runs: { attempt: number; at: number }[] = [];
    jobs.define('snoozer', async (_p, ctx) => {
      runs.push({ attempt: ctx.attempt, at: await dbNow(t) });
      if (runs.length === 1) ctx.snooze(delay);
      return runs.length;
    });
    await jobs.start();
    const { id } = await jobs.enqueue('snoozer', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the snoozed job', 5000);
    // The release wrote run_at = its now + delay; the first run read the clock before it released.
    const runAt = (await jobs.get(id))!.runAt.getTime();
    expect(runAt - runs[0].at, 'run_at after the release').to.be.within(delay, delay + 500);
    expect(runs[1].at, 'the second run started at or after run_at').to.be.at.least(runAt);
    expect(runs[1].at - runs[0].at, 'the delay seen by the job').to.be.within(delay, delay + 600);
    expect(runs.map((r) => r.attempt)).to.deep.equal([1, 1]);
    expect(await jobs.get(id)).to.include({ attempts: 1, result: 2 });
  });

  it('times out an attempt: the signal fires at the timeout, and the attempt fails with it', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const timeout = 300;
    let firedAfter = 0;
    jobs.define(
      'slow',
      (_p, ctx) =>
        new Promise((resolve) => {
          const start = performance.now();
          ctx.signal.addEventListener('abort', () => {
            firedAfter = performance.now() - start;
            resolve('too late');
          });
        }),
      { timeout, maxAttempts: 1 },
    );
    await jobs.start();
    const { id } = await jobs.enqueue('slow', {});
    await until(async () => (await jobs.get(id))?.state === 'failed', 'the timeout');
    // The timer starts just before the handler is called; Node timers may fire up to 1 ms early by the high-resolution clock.
    expect(firedAfter, 'ms from the handler start to the signal').to.be.within(timeout - 2, timeout + 250);
    expect((await jobs.get(id))!.error!.message).to.match(/timed out after 300 ms/);
    // The database's clock agrees: the attempt lasted at least the timeout, from its claim to its failure.
    const [attempt] = await jobs.attempts(id);
    expect(attempt.finishedAt!.getTime() - attempt.startedAt!.getTime(), 'attempt duration (database clock)').to.be.within(timeout, timeout + 500);
  });

  it('refuses an unserialisable result clearly', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    jobs.define('weird', async () => ({ big: 1n }), { maxAttempts: 1 });
    await jobs.start();
    const { id } = await jobs.enqueue('weird', {});
    await until(async () => (await jobs.get(id))?.state === 'failed', 'the failure');
    expect((await jobs.get(id))!.error!.message).to.match(/job "weird": result\.big is a BigInt/);
  });

  it('cancels a pending job and a running one; the handler\'s late result does not overwrite cancelled', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    let signalled = false;
    let started = false;
    jobs.define('long', async (_p, ctx) => {
      ctx.signal.addEventListener('abort', () => (signalled = true));
      started = true;
      await sleep(300); // ignores the signal on purpose
      return 'finished anyway';
    });
    const pending = await jobs.enqueue('long', {}, { delay: 60_000 });
    expect(await jobs.cancel(pending.id)).to.equal(true);
    expect((await jobs.get(pending.id))!.state).to.equal('cancelled');
    await jobs.start();
    const running = await jobs.enqueue('long', {});
    // Claimed is not yet started: wait for the handler itself, so the cancel reaches a running handler.
    await until(() => started, 'the handler to start');
    expect(await jobs.cancel(running.id)).to.equal(true);
    expect(signalled, 'a same-process cancel signals the handler at once').to.equal(true);
    await sleep(500);
    const j = await jobs.get(running.id);
    expect(j).to.include({ state: 'cancelled' });
    expect(j!.result ?? null).to.equal(null);
    expect(await jobs.cancel(running.id)).to.equal(false);
  });

  it('cancel from another instance reaches the running handler (NOTIFY or heartbeat)', async () => {
    const t = await fresh();
    // Without NOTIFY (SQLite, MySQL) there is no cross-process wake-up: another process's enqueue is found by polling.
    const notify = t.jobs({ worker: false }).store.capabilities.notify;
    const worker = t.jobs({ worker: { pollInterval: notify ? 60_000 : 50, heartbeatInterval: 200, stallTimeout: 5000 } });
    let abortedAt = 0;
    let reason: unknown = null;
    const heard: string[] = [];
    worker.on('aborted', (e) => heard.push(e.reason));
    worker.define('long', async (_p, ctx) => {
      await new Promise((r) => ctx.signal.addEventListener('abort', r));
      reason = (ctx.signal.reason as { reason?: unknown }).reason;
      abortedAt = Date.now();
      return 'ignored';
    });
    await worker.start();
    const other = (await t.another()).jobs({ worker: false });
    const { id } = await other.enqueue('long', {});
    await until(async () => (await other.get(id))?.state === 'running', 'the job to run', 5000);
    const cancelledAt = Date.now();
    expect(await other.cancel(id)).to.equal(true);
    await until(() => abortedAt, 'the signal in the worker', 2000);
    expect(abortedAt - cancelledAt).to.be.below(notify ? 100 : 450);
    // Said as a cancel, also where the heartbeat finds it (it was said as lost there).
    expect(reason).to.equal('cancelled');
    await sleep(100);
    expect(heard).to.deep.equal(['cancelled']);
    expect((await other.get(id))!.state).to.equal('cancelled');
  });

  it('saves checkpoints so the next attempt resumes from them', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const seen: unknown[] = [];
    jobs.define(
      'resumable',
      async (_p, ctx) => {
        seen.push(ctx.checkpoint);
        const done = ((ctx.checkpoint as { done?: number } | null)?.done ?? 0) + 5;
        await ctx.saveCheckpoint({ done });
        if (ctx.attempt < 3) throw new Error('interrupted');
        return done;
      },
      { backoff: { type: 'fixed', baseMs: 10, jitter: 0 } },
    );
    await jobs.start();
    const { id } = await jobs.enqueue('resumable', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'completion');
    expect(seen).to.deep.equal([null, { done: 5 }, { done: 10 }]);
    expect((await jobs.get(id))!.result).to.equal(15);
  });

  it('records progress and logs, written in batches', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, logFlushInterval: 50 } });
    // Counted at the driver: round trips (SQLite: write transactions) that insert log lines.
    const statements = countStatements(logInsert(t));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('chatty', async (_p, ctx: JobContext) => {
      for (let i = 0; i < 1000; i++) ctx.log(`line ${i}`);
      ctx.progress(40, 'two fifths');
      await gate;
      ctx.progress(100, 'done');
    });
    await jobs.start();
    const { id } = await jobs.enqueue('chatty', {});
    await until(async () => (await jobs.get(id))?.progress === 40, 'progress 40 while running');
    expect((await jobs.get(id))!.progressMessage).to.equal('two fifths');
    release();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'completion');
    const logs = await jobs.logs(id, { limit: 1000 });
    expect(logs).to.have.length(1000);
    expect(logs.map((l) => l.message)).to.deep.equal(Array.from({ length: 1000 }, (_, i) => `line ${i}`));
    statements.stop();
    expect(statements.count, 'statements for 1000 log lines').to.be.within(1, Math.ceil(1000 / 200) + 2);
    expect((await jobs.get(id))!.progress).to.equal(100);
  });

  it('a log line and a progress message past 64 KiB come back whole, while running and in history', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, logFlushInterval: 20 } });
    // Past 65,535 by an amount that a length kept modulo 65,536 would show; a pattern, so a cut shows too.
    const long = (tag: string) => `${tag}:` + Array.from({ length: 10_100 }, (_, i) => `${i % 10}ab¢€𝄞`).join('');
    const line = long('line');
    const message = long('progress');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('verbose', async (_p, ctx: JobContext) => {
      ctx.log(line);
      ctx.progress(50, message);
      await gate;
    });
    await jobs.start();
    const { id } = await jobs.enqueue('verbose', {});
    await until(async () => (await jobs.get(id))?.progress === 50, 'progress 50 while running');
    expect((await jobs.get(id))!.progressMessage).to.equal(message);
    release();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'completion');
    expect(line.length).to.be.above(70_000);
    expect((await jobs.get(id))!.progressMessage).to.equal(message);
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal([line]);
  });

  it('progress messages of 1,000,000 characters from 21 running jobs, flushed together, are all stored (one MariaDB packet held 21 MB: the server dropped it)', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 21, prefetch: 0, pollInterval: 60_000, logFlushInterval: 300 } });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const errors: unknown[] = [];
    jobs.on('error', (e) => errors.push(e));
    jobs.define('big', async (p: { n: number }, ctx: JobContext) => {
      ctx.progress(50, p.n === 0 ? 'tiny' : String(p.n % 10).repeat(1_000_000));
      await gate;
    });
    const ids = (await jobs.enqueueMany(Array.from({ length: 21 }, (_, n) => ({ name: 'big', payload: { n } })))).map((r) => r.id);
    await jobs.start();
    await until(async () => (await jobs.list({ state: 'running', limit: 50 })).items.filter((j) => j.progress === 50).length === 21, 'every progress stored while running', 30_000);
    release();
    await until(async () => (await jobs.list({ state: 'completed', limit: 50 })).items.length === 21, 'every job completed', 30_000);
    const tiny = await jobs.get(ids[0]);
    expect(tiny?.progressMessage).to.equal('tiny');
    expect((await jobs.get(ids[7]))?.progressMessage).to.equal('7'.repeat(1_000_000));
    expect(errors).to.deep.equal([]);
  });

  it('a log from an attempt whose job was taken back and claimed again here aborts that attempt, not the new one, whose lines are kept', async () => {
    const t = await fresh();
    // No heartbeat within the test (it would find the first attempt lost too): only its log write can.
    const jobs = t.jobs({ worker: { concurrency: 2, prefetch: 0, pollInterval: 50, logFlushInterval: 200, heartbeatInterval: 60_000 } });
    const signals: AbortSignal[] = [];
    let logFromFirst!: () => void;
    let finishSecond!: () => void;
    const secondMayFinish = new Promise<void>((r) => (finishSecond = r));
    const aborted: string[] = [];
    jobs.on('aborted', (e) => aborted.push(`${e.attempt}:${e.reason}`));
    jobs.define('twice', async (_p, ctx: JobContext) => {
      const attempt = signals.push(ctx.signal);
      if (attempt > 1) {
        ctx.log('a line from the second attempt');
        return secondMayFinish;
      }
      await new Promise<void>((r) => (logFromFirst = r));
      ctx.log('a late line from the first attempt');
      await new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }));
    });
    await jobs.start();
    const id = await runTwiceInOneWorker(t, jobs, signals);
    // Both attempts' lines wait in the same flush window (200 ms).
    logFromFirst();
    await until(() => signals[0].aborted, 'the first attempt aborted once its log write found it lost', 3000);
    expect(signals[1].aborted, 'the second attempt').to.equal(false);
    finishSecond();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the second attempt completes');
    expect((await jobs.get(id))!.attempts).to.equal(2);
    expect(aborted).to.deep.equal(['1:lost']);
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal(['a line from the second attempt']);
  });

  it('the heartbeat aborts an attempt whose job was taken back and claimed again here, not the new one', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 2, prefetch: 0, pollInterval: 50, heartbeatInterval: 100 } });
    const signals: AbortSignal[] = [];
    let finishSecond!: () => void;
    const secondMayFinish = new Promise<void>((r) => (finishSecond = r));
    jobs.define('twice', async (_p, ctx: JobContext) => {
      if (signals.push(ctx.signal) > 1) return secondMayFinish;
      await new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }));
    });
    await jobs.start();
    const id = await runTwiceInOneWorker(t, jobs, signals);
    await until(() => signals[0].aborted, 'the first attempt aborted by a heartbeat', 3000);
    await sleep(300); // three more heartbeats
    expect(signals[1].aborted, 'the second attempt').to.equal(false);
    finishSecond();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the second attempt completes');
  });

  it('an attempt whose job was taken back and claimed again here completes beside the new one: only the new one is completed, the lost one is lost', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 2, prefetch: 0, pollInterval: 50, heartbeatInterval: 60_000 } });
    const signals: AbortSignal[] = [];
    let finishBoth!: () => void;
    const bothMayFinish = new Promise<void>((r) => (finishBoth = r));
    const seen: string[] = [];
    jobs.on('completed', (e) => seen.push(`${e.attempt}:completed:${JSON.stringify(e.result)}`));
    jobs.on('aborted', (e) => seen.push(`${e.attempt}:${e.reason}`));
    jobs.define('twice', async (_p, ctx: JobContext) => {
      const attempt = signals.push(ctx.signal);
      await bothMayFinish;
      return { attempt };
    });
    await jobs.start();
    const id = await runTwiceInOneWorker(t, jobs, signals);
    // Both handlers return in the same tick: their completions go in the same batch.
    finishBoth();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job completed');
    await until(() => seen.length === 2, 'both attempts heard');
    expect(seen.sort()).to.deep.equal(['1:lost', '2:completed:{"attempt":2}']);
    expect((await jobs.get(id))!.result).to.deep.equal({ attempt: 2 });
  });

  it('keeps per-worker and per-queue concurrency limits', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, concurrency: 6, queueConcurrency: { slow: 2 } } });
    const inFlight = { slow: 0, fast: 0, total: 0 };
    const peak = { slow: 0, fast: 0, total: 0 };
    const handler = (q: 'slow' | 'fast') => async () => {
      inFlight[q]++;
      inFlight.total++;
      peak[q] = Math.max(peak[q], inFlight[q]);
      peak.total = Math.max(peak.total, inFlight.total);
      await sleep(5 + Math.random() * 10);
      inFlight[q]--;
      inFlight.total--;
    };
    jobs.define('s', handler('slow'), { queue: 'slow' });
    jobs.define('f', handler('fast'), { queue: 'fast' });
    await jobs.enqueueMany([
      ...Array.from({ length: 40 }, () => ({ name: 's' as const, payload: {} })),
      ...Array.from({ length: 80 }, () => ({ name: 'f' as const, payload: {} })),
    ]);
    await jobs.drain();
    expect(peak.slow).to.equal(2);
    expect(peak.total).to.equal(6);
    expect(peak.fast).to.be.at.most(6);
    expect(await count(t, 'history')).to.equal(120);
  });

  it('leaves jobs it has no handler for pending (a producer or a rolling deploy burns no attempts)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('known', async () => 1);
    await jobs.start();
    const unknown = await jobs.enqueue('unknown', {});
    const known = await jobs.enqueue('known', {});
    await until(async () => (await jobs.get(known.id))?.state === 'completed', 'the known job');
    await sleep(200);
    expect(await jobs.get(unknown.id)).to.include({ state: 'pending', attempts: 0 });
  });

  it('graceful stop: waits up to the timeout, then aborts and returns the job to pending with its attempt refunded', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, concurrency: 2 } });
    let aborted = false;
    const startedNames: string[] = [];
    jobs.define('long', async (_p, ctx) => {
      startedNames.push('long');
      await new Promise((r) => ctx.signal.addEventListener('abort', r));
      aborted = true;
    });
    jobs.define('short', async () => {
      startedNames.push('short');
      await sleep(50);
    });
    await jobs.start();
    const long = await jobs.enqueue('long', {});
    const short = await jobs.enqueue('short', {});
    await until(() => startedNames.length === 2, 'both jobs to start');
    const t0 = Date.now();
    const stopping = jobs.stop({ timeout: 300 });
    const late = await jobs.enqueue('short', {});
    await stopping;
    const took = Date.now() - t0;
    expect(took).to.be.within(290, 800);
    expect(aborted).to.equal(true);
    expect((await jobs.get(short.id))!.state).to.equal('completed');
    expect(await jobs.get(long.id)).to.include({ state: 'pending', attempts: 0 });
    expect(await jobs.get(late.id)).to.include({ state: 'pending', attempts: 0 });
    expect(startedNames).to.deep.equal(['long', 'short']);
    expect(await count(t, 'workers')).to.equal(0);
  });

  it('transactional completion: the handler\'s writes commit with the completion, exactly once across retries', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    await jobs.migrate();
    await t.query(`CREATE TABLE ${t.prefix}ledger (job_id ${t.dialect === 'mssql' ? 'NVARCHAR(100)' : 'TEXT'} NOT NULL, attempt INTEGER NOT NULL)`);
    const insert = `INSERT INTO ${t.prefix}ledger (job_id, attempt) VALUES (${t.dialect === 'sqlite' ? '?, ?' : '$1, $2'})`;
    jobs.define(
      'charge',
      (_p, ctx) => {
        const fail = () => {
          if (ctx.attempt === 1) throw new Error('card network timeout after the write');
          return { charged: true };
        };
        if (t.dialect === 'sqlite') {
          (ctx.tx as import('better-sqlite3').Database).prepare(insert).run(ctx.id, ctx.attempt);
          return fail();
        }
        // SQL Server's transaction and a mysql2 connection run through the app's own way of querying ($n mapped).
        if (t.dialect === 'mssql' || t.dialect === 'mysql') return t.appQuery(ctx.tx, insert, [ctx.id, ctx.attempt]).then(fail);
        return (ctx.tx as import('pg').PoolClient).query(insert, [ctx.id, ctx.attempt]).then(fail);
      },
      { transactional: true, backoff: { type: 'fixed', baseMs: 10, jitter: 0 } },
    );
    await jobs.start();
    const { id } = await jobs.enqueue('charge', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the retried job');
    const rows = await t.query<{ attempt: number }>(`SELECT attempt FROM ${t.prefix}ledger`);
    expect(rows.map((r) => Number(r.attempt))).to.deep.equal([2]);
    expect((await jobs.get(id))!.result).to.deep.equal({ charged: true });
  });

  it('SQLite: define() refuses an async transactional handler, whose writes after its first await would commit on their own', async function () {
    const t = await fresh();
    if (t.dialect !== 'sqlite') return this.skip(); // the others hold a transaction across awaits
    const jobs = t.jobs({ worker: false });
    expect(() => jobs.define('charge', async () => undefined, { transactional: true })).to.throw(
      'job "charge": a transactional handler on SQLite must be synchronous (better-sqlite3 cannot hold a transaction across an await); this one is an async function',
    );
    jobs.define('charge', async () => undefined); // not transactional: fine
  });

  it('transactional completion keeps what the handler logged and its progress', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000, logFlushInterval: 60_000 } });
    // Synchronous, as SQLite requires of a transactional handler (the others accept it too).
    jobs.define(
      'noted',
      (_p, ctx) => {
        ctx.log('first line');
        ctx.progress(60, 'most of it');
        ctx.log('second line');
        return { noted: true };
      },
      { transactional: true },
    );
    await jobs.start();
    const { id } = await jobs.enqueue('noted', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job');
    expect((await jobs.logs(id)).map((l) => l.message)).to.deep.equal(['first line', 'second line']);
    expect(await jobs.get(id)).to.include({ progress: 60, progressMessage: 'most of it' });
  });

  it('graceful stop gives back what a claim in flight brings back (attempt refunded)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    jobs.define('x', async () => undefined);
    const store = jobs.store;
    const claim = store.jobClaim.bind(store);
    let inFlight!: () => void;
    const claimSent = new Promise<void>((r) => (inFlight = r));
    store.jobClaim = async (req) => {
      const got = await claim(req);
      inFlight();
      await sleep(200); // the claim has committed; its answer is still on the way when stop begins
      return got;
    };
    await jobs.migrate();
    const { id } = await jobs.enqueue('x', {});
    const starting = jobs.start(); // start() makes the first claim itself
    await claimSent;
    await jobs.stop({ timeout: 1000 });
    await starting;
    expect(await jobs.get(id)).to.include({ state: 'pending', attempts: 0 });
  });

  it('drain() runs everything due, then resolves', async () => {
    const t = await fresh();
    const jobs = t.jobs();
    let n = 0;
    jobs.define('inc', async () => {
      n++;
    });
    await jobs.enqueueMany(Array.from({ length: 50 }, () => ({ name: 'inc', payload: null })));
    await jobs.enqueue('inc', null, { delay: 60_000 });
    await jobs.drain();
    expect(n).to.equal(50);
    expect(await count(t, 'jobs')).to.equal(1);
  });

  it('drain() waits for a retry due at once, even when the wake-up for it claims it while drain asks what is still due', async () => {
    const t = await fresh();
    const jobs = t.jobs();
    jobs.define('flaky', async (_p: null, ctx) => {
      if (ctx.attempt === 1) throw new Error('once');
      await sleep(300);
      return 'second';
    }, { maxAttempts: 2, backoff: { type: 'fixed', baseMs: 0, jitter: 0 } });
    await jobs.start();
    const { id } = await jobs.enqueue('flaky', null);
    // The question "what is due?" answered late: the retry's own wake-up claims the job meanwhile.
    const store = (jobs as unknown as { store: { jobNextDueIn: (...a: unknown[]) => Promise<number | null> } }).store;
    const nextDueIn = store.jobNextDueIn.bind(store);
    store.jobNextDueIn = async (...a) => {
      await sleep(100);
      return nextDueIn(...a);
    };
    await jobs.drain();
    expect(await jobs.get(id)).to.include({ state: 'completed', attempts: 2 });
  });

  it('retentionDays: the leader prunes finished jobs older than the retention with their attempts and logs; live jobs, recent history and followers are left alone', async () => {
    const t = await fresh();
    const other = await t.another();
    PRUNE_EVERY.ms = 100; // read when a worker starts: both instances below prune (or would) ten times a second
    try {
      const opts = { retentionDays: 1, leader: { leaseMs: 1000 }, worker: { pollInterval: 50 } };
      const [leader, follower] = [t.jobs(opts), other.jobs(opts)];
      const pruned = [prunesOf(leader), prunesOf(follower)];
      for (const j of [leader, follower]) {
        j.define('work', async (p: { flaky: boolean }, ctx) => {
          ctx.log('first line');
          ctx.log('second line');
          if (p.flaky && ctx.attempt === 1) throw new Error('once');
        }, { maxAttempts: 2, backoff: { type: 'fixed', baseMs: 0, jitter: 0 } });
      }
      const ids = [];
      for (let i = 0; i < 6; i++) ids.push((await leader.enqueue('work', { flaky: i % 2 === 0 })).id);
      const live = (await leader.enqueue('work', { flaky: false }, { delay: 3_600_000 })).id;
      await leader.start();
      await until(() => leader.isLeader(), 'the first instance to lead');
      await follower.start();
      await until(async () => (await count(t, 'history')) === 6 && (await count(t, 'logs')) === 6 * 2 + 3 * 2, 'the jobs to finish and their logs to be written');
      const [old, recent] = [ids.slice(0, 3), ids.slice(3)];
      const before = await tracesOf(t, ids);
      // Something to prune beside the rows: every job logged, the flaky ones recorded their failed attempt.
      for (const id of old) expect(before[id].logs, id).to.be.greaterThan(0);
      expect(before[old[0]].attempts).to.equal(1);
      // Three finished 3 days ago, one half a day ago (within the retention), two just now.
      await backdate(t, old, 3 * 86_400_000);
      await backdate(t, [recent[0]], 43_200_000);
      await until(async () => (await count(t, 'history')) === 3, 'the old jobs to be pruned');
      const calls = pruned[0].calls;
      await until(() => pruned[0].calls >= calls + 5, 'the leader to prune five more times');
      const after = await tracesOf(t, ids);
      for (const id of old) {
        expect(await leader.get(id), id).to.equal(null);
        expect(after[id], id).to.deep.equal({ attempts: 0, logs: 0 });
      }
      for (const id of recent) {
        expect((await leader.get(id))?.state, id).to.equal('completed');
        expect(after[id], id).to.deep.equal(before[id]);
      }
      expect((await leader.get(live))?.state).to.equal('pending');
      expect(pruned[0].deleted).to.equal(3);
      expect(pruned[1], 'the follower never prunes').to.deep.equal({ calls: 0, deleted: 0 });
      expect(follower.isLeader()).to.equal(false);
    } finally {
      PRUNE_EVERY.ms = 60_000;
    }
  });

  it('a retention round prunes history in batches, then the keys, batches and ticks past it once (they were deleted again with every batch of 1,000 jobs: a million-row keys table scanned each time)', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ retentionDays: 1, leader: { leaseMs: 1000 }, worker: { pollInterval: 50 } });
    jobs.define('noop', async () => undefined);
    await jobs.migrate();
    await jobs.enqueueMany(Array.from({ length: 2_500 }, (_, i) => ({ name: 'noop' as const, payload: i })));
    await jobs.enqueue('noop', 'keyed', { unique: { key: 'once-only' } });
    await jobs.batch([{ name: 'noop', payload: 'in a batch' }]);
    await jobs.drain();
    const ago = (column: string) => threeDaysBefore(t, column);
    await t.query(`UPDATE ${t.prefix}history SET finished_at = ${ago('finished_at')}`);
    await t.query(`UPDATE ${t.prefix}keys SET touched_at = ${ago('touched_at')}`);
    await t.query(`UPDATE ${t.prefix}batches SET finished_at = ${ago('finished_at')}`);
    expect([await count(t, 'keys'), await count(t, 'batches')]).to.deep.equal([1, 1]);
    const deletes = countStatements(new RegExp(`DELETE FROM ${t.prefix}(history|keys)\\b`, 'i'), { perStatement: true });
    PRUNE_EVERY.ms = 100;
    try {
      await jobs.start();
      await until(async () => (await count(t, 'history')) === 0 && (await count(t, 'keys')) === 0 && (await count(t, 'batches')) === 0, 'history, keys and batches pruned', 30_000);
      await jobs.stop();
    } finally {
      PRUNE_EVERY.ms = 60_000;
    }
    const order = deletes.texts.map((text) => (new RegExp(`DELETE FROM ${t.prefix}history`, 'i').test(text) ? 'history' : 'keys'));
    expect(order.filter((o) => o === 'history').length, 'history deleted in three batches').to.be.at.least(3);
    expect(order.slice(0, order.lastIndexOf('history') + 1), 'no keys statement between the round\'s history batches').to.not.include('keys');
  });

  it('keys past the retention are pruned also in rounds whose history fails (they were pruned only after it succeeded)', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ retentionDays: 1, leader: { leaseMs: 1000 }, worker: { pollInterval: 50 } });
    jobs.define('noop', async () => undefined);
    await jobs.migrate();
    await jobs.enqueue('noop', 'keyed', { unique: { key: 'old-key' } });
    await jobs.drain();
    await t.query(`UPDATE ${t.prefix}keys SET touched_at = ${threeDaysBefore(t, 'touched_at')}`);
    const heard: unknown[] = [];
    jobs.on('error', (err) => heard.push(err));
    jobs.store.historyPrune = async () => {
      throw new Error('a month that cannot be read');
    };
    PRUNE_EVERY.ms = 100;
    try {
      await jobs.start();
      await until(async () => (await count(t, 'keys')) === 0, 'the old key pruned', 20_000);
      await jobs.stop();
    } finally {
      PRUNE_EVERY.ms = 60_000;
    }
    expect(heard.map(String).join('\n')).to.include('a month that cannot be read');
  });
});
