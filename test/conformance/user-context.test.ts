/**
 * The user context of a job (issue 13): userId, replyTo and args, on the record, kept in history,
 * in the handler's context, filtered by list({ userId, replyTo, args }), and refused with the field named.
 */
import { expect } from 'chai';
import { JobValidationError, type JobContext, type Jobs, type ListFilter } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

const ARGS = { orderId: '42', note: 'straße <b>&"\'', empty: '' };

/**
 * Keys a JSON path would read as syntax (member access, wildcard, root, index, quoting, escapes),
 * and keys only escaped in a path (control characters, line separators), beside plain Unicode.
 */
const HOSTILE_KEYS = [
  'a.b', 'a"b', 'a\\b', '$', '*', '🦄', 'with space', '[0]', "it's", 'a"].b', '\\"', '"', '\\', '$.orderId', '\t', '\n', '\u0001', '\u2028', '日本', "x'); DROP TABLE t; --", 'k'.repeat(100),
];

/** The ids list() finds for a filter, sorted (the filters are compared as sets). */
async function idsOf(jobs: Jobs, filter: ListFilter): Promise<string[]> {
  return (await jobs.list(filter)).items.map((j) => j.id).sort();
}

forEachDialect('user context', ({ fresh }) => {
  it('round-trips userId, replyTo and args on the record (enqueue and enqueueMany); null when not set', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const a = await jobs.enqueue('report', { n: 1 }, { userId: 'user-7', replyTo: 'https://example.com/hook?x=1', args: ARGS, createdBy: 'api' });
    const [b, c] = await jobs.enqueueMany([
      { name: 'report', payload: 2, userId: 'user-8', replyTo: 'channel:ops', args: { k: 'v' } },
      { name: 'report', payload: 3 },
    ]);
    expect(await jobs.get(a.id)).to.deep.include({ userId: 'user-7', replyTo: 'https://example.com/hook?x=1', args: ARGS, createdBy: 'api' });
    expect(await jobs.get(b.id)).to.deep.include({ userId: 'user-8', replyTo: 'channel:ops', args: { k: 'v' } });
    expect(await jobs.get(c.id)).to.deep.include({ userId: null, replyTo: null, args: null, createdBy: null });
    const page = await jobs.list({});
    expect(page.items.find((j) => j.id === a.id)).to.deep.include({ userId: 'user-7', replyTo: 'https://example.com/hook?x=1', args: ARGS });
  });

  it('reaches the handler as ctx.userId, ctx.replyTo and ctx.args, and stays on the completed job in history', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    const seen: Record<string, unknown>[] = [];
    jobs.define('report', async (_p: unknown, ctx: JobContext) => {
      seen.push({ userId: ctx.userId, replyTo: ctx.replyTo, args: ctx.args });
      return { ok: true };
    });
    await jobs.start();
    const { id } = await jobs.enqueue('report', {}, { userId: 'user-7', replyTo: 'mailto:a@example.com', args: ARGS });
    const plain = await jobs.enqueue('report', {});
    await until(async () => (await jobs.get(id))?.state === 'completed' && (await jobs.get(plain.id))?.state === 'completed', 'both jobs to complete');
    expect(seen).to.deep.include({ userId: 'user-7', replyTo: 'mailto:a@example.com', args: ARGS });
    expect(seen).to.deep.include({ userId: null, replyTo: null, args: null });
    expect(await jobs.get(id)).to.deep.include({ state: 'completed', userId: 'user-7', replyTo: 'mailto:a@example.com', args: ARGS });
    const live = Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n);
    expect(live, 'moved out of the live table').to.equal(0);
    await jobs.stop();
  });

  it('keeps them on a failed job and on a cancelled one', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('boom', async () => {
      throw new Error('boom');
    });
    await jobs.start();
    const { id } = await jobs.enqueue('boom', {}, { userId: 'user-9', replyTo: 'queue:replies', args: { a: '1' }, maxAttempts: 1 });
    await until(async () => (await jobs.get(id))?.state === 'failed', 'the job to fail');
    expect(await jobs.get(id)).to.deep.include({ state: 'failed', userId: 'user-9', replyTo: 'queue:replies', args: { a: '1' } });
    const later = await jobs.enqueue('boom', {}, { userId: 'user-9', args: { b: '2' }, delay: 3_600_000 });
    expect(await jobs.cancel(later.id)).to.equal(true);
    expect(await jobs.get(later.id)).to.deep.include({ state: 'cancelled', userId: 'user-9', replyTo: null, args: { b: '2' } });
    await jobs.stop();
  });

  it('a recurring schedule passes them on to the jobs it enqueues, also to a skipped tick', async function () {
    this.timeout(15_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    const seen: Record<string, unknown>[] = [];
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    jobs.define('tick', async (_p: unknown, ctx: JobContext) => {
      seen.push({ userId: ctx.userId, replyTo: ctx.replyTo, args: ctx.args });
      await hold;
    });
    jobs.recurring('per-user', '* * * * * *', {}, { name: 'tick', userId: 'u-1', replyTo: 'r-1', args: { a: 'b' }, overlap: 'skip' });
    await jobs.start();
    await until(async () => (await jobs.list({ userId: 'u-1', state: 'skipped' })).items.length > 0, 'a skipped tick', 8000);
    release();
    expect(seen[0]).to.deep.equal({ userId: 'u-1', replyTo: 'r-1', args: { a: 'b' } });
    const skipped = (await jobs.list({ userId: 'u-1', state: 'skipped' })).items[0];
    expect(skipped).to.deep.include({ userId: 'u-1', replyTo: 'r-1', args: { a: 'b' }, createdBy: 'schedule:per-user' });
    await jobs.stop();
  });

  it('list({ userId }) finds a user\'s jobs, live and finished', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const mine = await jobs.enqueue('x', 1, { userId: 'alice' });
    const done = await jobs.enqueue('x', 2, { userId: 'alice', delay: 3_600_000 });
    await jobs.cancel(done.id);
    await jobs.enqueue('x', 3, { userId: 'bob' });
    await jobs.enqueue('x', 4, { createdBy: 'alice' });
    const page = await jobs.list({ userId: 'alice' });
    expect(page.items.map((j) => j.id).sort()).to.deep.equal([mine.id, done.id].sort());
    expect((await jobs.list({ userId: 'alice', state: 'cancelled' })).items.map((j) => j.id)).to.deep.equal([done.id]);
    expect((await jobs.list({ userId: 'nobody' })).items).to.deep.equal([]);
    const bad = await Promise.resolve()
      .then(() => jobs.list({ userId: 7 as unknown as string }))
      .catch((e: unknown) => e);
    expect(bad).to.be.instanceOf(JobValidationError).and.have.property('field', 'userId');
  });

  it('list({ replyTo }) finds the jobs of one reply address exactly, live and finished, and with userId', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const live = await jobs.enqueue('x', 1, { replyTo: 'https://example.com/hook?a=1&b=2', userId: 'alice' });
    const done = await jobs.enqueue('x', 2, { replyTo: 'https://example.com/hook?a=1&b=2', userId: 'bob', delay: 3_600_000 });
    await jobs.cancel(done.id);
    await jobs.enqueue('x', 3, { replyTo: 'https://example.com/hook?a=1' });
    await jobs.enqueue('x', 4, { replyTo: 'https://example.com/hook?a=1&b=2&c=3' });
    await jobs.enqueue('x', 5, { userId: 'alice', args: { replyTo: 'https://example.com/hook?a=1&b=2' } });
    const long = await jobs.enqueue('x', 6, { replyTo: 'r'.repeat(2000) });
    expect(await idsOf(jobs, { replyTo: 'https://example.com/hook?a=1&b=2' })).to.deep.equal([live.id, done.id].sort());
    expect(await idsOf(jobs, { replyTo: 'https://example.com/hook?a=1&b=2', state: 'cancelled' })).to.deep.equal([done.id]);
    expect(await idsOf(jobs, { replyTo: 'https://example.com/hook?a=1&b=2', userId: 'alice' })).to.deep.equal([live.id]);
    expect(await idsOf(jobs, { replyTo: 'https://example.com/hook?a=1&b=2', userId: 'carol' })).to.deep.equal([]);
    expect(await idsOf(jobs, { replyTo: 'r'.repeat(2000) })).to.deep.equal([long.id]);
    expect(await idsOf(jobs, { replyTo: 'nowhere' })).to.deep.equal([]);
  });

  it('list({ args }) finds the jobs whose args hold every pair given, live and finished, and with userId', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const a = await jobs.enqueue('x', 1, { userId: 'alice', args: { orderId: '42', region: 'eu', note: 'straße <b>&"\'' } });
    const b = await jobs.enqueue('x', 2, { userId: 'bob', args: { orderId: '42', region: 'us' }, delay: 3_600_000 });
    await jobs.cancel(b.id);
    const c = await jobs.enqueue('x', 3, { args: { orderId: '420', region: 'eu', empty: '' } });
    await jobs.enqueue('x', 4, { userId: 'alice' });
    await jobs.enqueue('x', 5, { args: { order: '42', orderId2: '42' }, replyTo: '42' });
    expect(await idsOf(jobs, { args: { orderId: '42' } }), 'live and finished').to.deep.equal([a.id, b.id].sort());
    expect(await idsOf(jobs, { args: { orderId: '42', region: 'eu' } }), 'every pair').to.deep.equal([a.id]);
    expect(await idsOf(jobs, { args: { region: 'eu' } })).to.deep.equal([a.id, c.id].sort());
    expect(await idsOf(jobs, { args: { note: 'straße <b>&"\'' } })).to.deep.equal([a.id]);
    expect(await idsOf(jobs, { args: { orderId: '42' }, state: 'cancelled' })).to.deep.equal([b.id]);
    expect(await idsOf(jobs, { args: { orderId: '42' }, userId: 'bob' })).to.deep.equal([b.id]);
    expect(await idsOf(jobs, { args: { region: 'eu' }, userId: 'bob' })).to.deep.equal([]);
    expect(await idsOf(jobs, { args: { empty: '' } }), 'an empty value matches only a job that has the key').to.deep.equal([c.id]);
    expect(await idsOf(jobs, { args: { orderId: '4' } }), 'values match whole').to.deep.equal([]);
    expect(await idsOf(jobs, { args: { orderId: '42', missing: '42' } })).to.deep.equal([]);
    // Paged: the filter holds on every page.
    const first = await jobs.list({ args: { orderId: '42' }, limit: 1 });
    const second = await jobs.list({ args: { orderId: '42' }, limit: 1, cursor: first.nextCursor! });
    expect([...first.items, ...second.items].map((j) => j.id).sort()).to.deep.equal([a.id, b.id].sort());
  });

  it('list({ args }) takes any key enqueue accepts as text, never as JSON path syntax', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const hostile = Object.fromEntries(HOSTILE_KEYS.map((k, i) => [k, `v${i}`]));
    const target = await jobs.enqueue('x', 1, { args: { ...hostile, orderId: 'o' } });
    // The same values under other keys: a key read as a wildcard, the root or a path would find this job too.
    const decoy = await jobs.enqueue('x', 2, { args: { ...Object.fromEntries(HOSTILE_KEYS.map((_, i) => [`k${i}`, `v${i}`])), a: 'v0', orderId: 'v13' } });
    const finished = await jobs.enqueue('x', 3, { args: { '*': 'w', 'a"b': 'w' }, delay: 60_000 });
    await jobs.cancel(finished.id);
    for (const [i, key] of HOSTILE_KEYS.entries()) {
      const what = `key ${JSON.stringify(key)}`;
      expect(await idsOf(jobs, { args: { [key]: `v${i}` } }), what).to.deep.equal([target.id]);
      expect(await idsOf(jobs, { args: { [key]: 'other' } }), what).to.deep.equal([]);
    }
    expect(await idsOf(jobs, { args: { k0: 'v0' } })).to.deep.equal([decoy.id]);
    expect(await idsOf(jobs, { args: { '*': 'w', 'a"b': 'w' } }), 'in history').to.deep.equal([finished.id]);
    expect(await idsOf(jobs, { args: { ...hostile } }), 'all of them at once').to.deep.equal([target.id]);
  });

  it('refuses bad replyTo and args filters, naming the field', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const cases: [unknown, string, RegExp][] = [
      [{ replyTo: 7 }, 'replyTo', /^list: replyTo must be a string of at most 2000 characters; got 7 \(number\)/],
      [{ replyTo: 'r'.repeat(2001) }, 'replyTo', /at most 2000 characters/],
      [{ replyTo: 'a\u0000b' }, 'replyTo', /NUL/],
      [{ args: 'orderId=42' }, 'args', /^list: args must be a plain object of string values/],
      [{ args: ['42'] }, 'args', /args must be a plain object/],
      [{ args: null }, 'args', /args must be a plain object/],
      [{ args: {} }, 'args', /^list: args must name at least one key \(leave args out to match any job\)/],
      [{ args: { n: 42 } }, 'args.n', /^list: args\.n must be a string of at most 2000 characters; got 42 \(number\)/],
      [{ args: { n: 'v'.repeat(2001) } }, 'args.n', /at most 2000/],
      [{ args: { n: 'a\u0000' } }, 'args.n', /NUL/],
      [{ args: { '': 'v' } }, 'args', /args keys must be 1-100 characters/],
      [{ args: { ['k'.repeat(101)]: 'v' } }, 'args', /args keys must be 1-100 characters/],
      [{ args: { '\ud800': 'v' } }, 'args', /lone surrogate/],
      [{ args: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }, 'args', /at most 50 keys/],
      [{ argz: { a: 'b' } }, 'argz', /is not a list filter; allowed: .*replyTo, args/],
    ];
    for (const [filter, field, message] of cases) {
      const err = await Promise.resolve()
        .then(() => jobs.list(filter as ListFilter))
        .catch((e: unknown) => e);
      expect(err, JSON.stringify(filter).slice(0, 80)).to.be.instanceOf(JobValidationError);
      expect((err as JobValidationError).field, JSON.stringify(filter).slice(0, 80)).to.equal(field);
      expect((err as JobValidationError).message).to.match(message);
    }
  });

  it('refuses bad values, naming the field and what is allowed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const refusal = async (opts: Record<string, unknown>) => {
      try {
        await jobs.enqueue('x', {}, opts);
      } catch (err) {
        expect(err).to.be.instanceOf(JobValidationError);
        return err as JobValidationError;
      }
      throw new Error(`accepted ${JSON.stringify(opts)}`);
    };
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ userId: 42 }, 'userId', /userId must be a non-empty string of at most 255 characters/],
      [{ userId: '' }, 'userId', /userId must be a non-empty string/],
      [{ userId: 'u'.repeat(256) }, 'userId', /at most 255/],
      [{ userId: 'a\u0000b' }, 'userId', /NUL/],
      [{ replyTo: 'r'.repeat(2001) }, 'replyTo', /replyTo must be a non-empty string of at most 2000 characters/],
      [{ replyTo: {} }, 'replyTo', /replyTo/],
      [{ args: 'a=1' }, 'args', /args must be a plain object of string values/],
      [{ args: ['1'] }, 'args', /args must be a plain object/],
      [{ args: new Map([['a', '1']]) }, 'args', /args must be a plain object/],
      [{ args: { n: 1 } }, 'args.n', /args\.n must be a string of at most 2000 characters; got 1 \(number\)/],
      [{ args: { n: null } }, 'args.n', /args\.n must be a string/],
      [{ args: { n: 'v'.repeat(2001) } }, 'args.n', /at most 2000/],
      [{ args: { ['k'.repeat(101)]: 'v' } }, 'args', /args keys must be 1-100 characters/],
      [{ args: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }, 'args', /args must have at most 50 keys/],
      [{ args: { s: '\ud800' } }, 'args.s', /lone surrogate/],
    ];
    for (const [opts, field, message] of cases) {
      const err = await refusal(opts);
      expect(err.field, JSON.stringify(opts).slice(0, 80)).to.equal(field);
      expect(err.message).to.match(message);
    }
    const many = await jobs.enqueueMany([{ name: 'x', payload: 1, args: { n: 2 as unknown as string } }]).catch((e: unknown) => e);
    expect(many).to.be.instanceOf(JobValidationError).and.have.property('field', 'args.n');
    // Nothing refused was written: only the valid job below is there.
    await jobs.enqueue('x', {}, { userId: 'u'.repeat(255), replyTo: 'r'.repeat(2000), args: { ['k'.repeat(100)]: 'v'.repeat(2000) } });
    expect(Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n)).to.equal(1);
  });
});
