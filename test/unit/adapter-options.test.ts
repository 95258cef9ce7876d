/**
 * The HTTP adapters' and locks' options are checked when given, naming the field: a misspelt
 * option was ignored (`userID`, `ttlMs`), and a value that is not a function failed at the first
 * enqueue with a bare "options.userId is not a function" in a 500.
 */
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { createJobs, jobsMiddleware, koaJobs } from '../../lib/index.ts';

describe('adapter and lock options, checked when given', () => {
  const db = new Database(':memory:');
  const jobs = createJobs({ db, worker: false });
  after(async () => {
    await jobs.close();
    db.close();
  });

  it('jobsMiddleware and koaJobs refuse an unknown option, naming it and what is allowed', () => {
    expect(() => jobsMiddleware(jobs, { userID: () => 'u' } as never)).to.throw(TypeError, /^jobsMiddleware: unknown option "userID"; allowed: commitWhen, transaction, onCommitError, userId$/);
    expect(() => koaJobs(jobs, { onCommitError: () => undefined } as never)).to.throw(TypeError, /^koaJobs: unknown option "onCommitError"; allowed: commitWhen, transaction, userId$/);
  });

  it('jobsMiddleware and koaJobs refuse an option that is not a function of the request', () => {
    expect(() => jobsMiddleware(jobs, { userId: 'user-1' } as never)).to.throw(TypeError, /^jobsMiddleware: userId must be a function of the request; got "user-1"$/);
    expect(() => koaJobs(jobs, { commitWhen: true } as never)).to.throw(TypeError, /^koaJobs: commitWhen must be a function of the request; got true \(boolean\)$/);
    expect(() => jobsMiddleware(jobs, 'x' as never)).to.throw(TypeError, /^jobsMiddleware: options must be an object; got "x"$/);
    expect(jobsMiddleware(jobs, { userId: undefined, commitWhen: (_req, res) => res.statusCode < 300 })).to.be.a('function');
  });

  it('locks refuse an unknown option before touching the database', async () => {
    const err = await jobs.locks.tryAcquire('report', { ttlMs: 5_000 } as never).catch((e: Error) => e);
    expect(err).to.be.instanceOf(TypeError).with.property('message', 'unknown lock option "ttlMs"; allowed: ttl (ms)');
    const busy = await jobs.locks.withLock('report', () => 1, { tll: 10 } as never).catch((e: Error) => e);
    expect(busy).to.be.instanceOf(TypeError).with.property('message', 'unknown lock option "tll"; allowed: ttl (ms)');
    const held = await jobs.locks.tryAcquire('report', { ttl: 5_000 });
    expect(held?.token).to.equal(1);
  });
});
