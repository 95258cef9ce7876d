/**
 * The user context of a job (issue 13): userId, replyTo and args, on the record, kept in history,
 * in the handler's context, filtered by list({ userId }), and refused with the field named.
 */
import { expect } from 'chai';
import { JobValidationError, type JobContext } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

const ARGS = { orderId: '42', note: 'straße <b>&"\'', empty: '' };

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
