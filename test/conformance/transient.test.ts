/**
 * Transient jobs (issue 13): a defined handler run in this process now, with the worker's context,
 * writing nothing, listed while it runs; serial keys run one at a time in call order.
 */
import { expect } from 'chai';
import { JobAbortError, JobValidationError, type JobContext } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

forEachDialect('transient jobs', ({ fresh }) => {
  it('runs the handler now with progress, logs and a signal, lists it while it runs, and writes nothing', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let signal: AbortSignal | null = null;
    jobs.define('resize', async (p: { w: number }, ctx: JobContext) => {
      signal = ctx.signal;
      ctx.progress(40, 'halfway');
      ctx.log('started');
      await gate;
      return { w: p.w * 2, queue: ctx.queue, attempt: ctx.attempt };
    });
    const running = jobs.runTransient('resize', { w: 21 });
    await until(async () => jobs.transient()[0]?.progress === 40, 'the run to report progress');
    const [listed] = jobs.transient();
    expect(listed).to.deep.include({ name: 'resize', state: 'running', serial: null, progress: 40, progressMessage: 'halfway' });
    expect(listed.logs.map((l) => l.message)).to.deep.equal(['started']);
    release();
    expect(await running).to.deep.equal({ w: 42, queue: 'transient', attempt: 1 });
    expect(jobs.transient()).to.deep.equal([]);
    expect(signal!.aborted).to.equal(false);
    await jobs.migrate();
    for (const table of ['jobs', 'history', 'logs']) {
      expect(Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}${table}`))[0].n), table).to.equal(0);
    }
  });

  it('runs the same serial key one at a time in call order; other keys are not held back', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const events: string[] = [];
    let inFlight = 0;
    let peak = 0;
    jobs.define('step', async (p: { key: string; n: number; ms: number }) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      events.push(`start ${p.key}${p.n}`);
      await sleep(p.ms);
      events.push(`end ${p.key}${p.n}`);
      inFlight--;
      return p.n;
    });
    const a = [60, 5, 30, 1].map((ms, n) => jobs.runTransient('step', { key: 'a', n, ms }, { serial: 'a' }));
    const b = jobs.runTransient('step', { key: 'b', n: 0, ms: 5 }, { serial: 'b' });
    expect(jobs.transient().filter((r) => r.serial === 'a').map((r) => r.state)).to.deep.equal(['running', 'waiting', 'waiting', 'waiting']);
    expect(await Promise.all(a)).to.deep.equal([0, 1, 2, 3]);
    await b;
    const onA = events.filter((e) => e.endsWith('a0') || e.endsWith('a1') || e.endsWith('a2') || e.endsWith('a3'));
    expect(onA).to.deep.equal(['start a0', 'end a0', 'start a1', 'end a1', 'start a2', 'end a2', 'start a3', 'end a3']);
    expect(events.indexOf('end b0'), 'b ran beside a0').to.be.lessThan(events.indexOf('end a0'));
    expect(peak).to.equal(2);
  });

  it('a failed or timed-out run rejects without blocking its serial key; cancel aborts a run', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    jobs.define('flaky', async (p: { fail?: boolean; ms?: number }, ctx: JobContext) => {
      if (p.fail) throw new Error('flaky broke');
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, p.ms ?? 0);
        ctx.signal.addEventListener('abort', () => (clearTimeout(timer), reject(ctx.signal.reason)));
      });
      return 'ok';
    });
    const failed = jobs.runTransient('flaky', { fail: true }, { serial: 'k' });
    const timedOut = jobs.runTransient('flaky', { ms: 5_000 }, { serial: 'k', timeout: 50 });
    const after = jobs.runTransient('flaky', { ms: 1 }, { serial: 'k' });
    await failed.then(() => expect.fail('should reject'), (err: Error) => expect(err.message).to.equal('flaky broke'));
    await timedOut.then(() => expect.fail('should time out'), (err: JobAbortError) => expect(err.reason).to.equal('timeout'));
    expect(await after).to.equal('ok');
    const long = jobs.runTransient('flaky', { ms: 5_000 });
    const [run] = jobs.transient();
    expect(await jobs.cancel(run.id)).to.equal(true);
    await long.then(() => expect.fail('should be cancelled'), (err: JobAbortError) => expect(err.reason).to.equal('cancelled'));
  });

  it('refuses a job this process does not define, and bad options, naming the field', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    jobs.define('x', async () => 1);
    jobs.define('tx', () => 1, { transactional: true });
    // A rejected promise, never a throw: a caller's .catch() hears it.
    const refused = async (run: () => Promise<unknown>, pattern: RegExp, field: string) => {
      let thrown: unknown = null;
      let promise: Promise<unknown> | null = null;
      try {
        promise = run();
      } catch (err) {
        thrown = err;
      }
      expect(thrown, 'thrown synchronously').to.equal(null);
      const err = await promise!.then(() => expect.fail(`should be refused: ${pattern}`), (e: unknown) => e);
      expect(err).to.be.instanceOf(JobValidationError);
      expect((err as Error).message).to.match(pattern);
      expect((err as JobValidationError).field).to.equal(field);
    };
    await refused(() => jobs.runTransient('nope', {}), /not defined in this process/, 'name');
    await refused(() => jobs.runTransient('x', {}, { serial: '' }), /serial must be a key/, 'serial');
    await refused(() => jobs.runTransient('x', {}, { bogus: 1 } as never), /bogus is not an option/, 'bogus');
    // Past what a timer holds, a timeout would fire at once (Node clamps it to 1 ms).
    await refused(() => jobs.runTransient('x', {}, { timeout: 2 ** 31 }), /timeout must be at most 2147483647 ms/, 'timeout');
    await refused(() => jobs.runTransient('x', { at: new Date() }), /payload\.at is a Date/, 'payload.at');
    await refused(() => jobs.runTransient('tx', {}), /is transactional/, 'name');
  });
});
