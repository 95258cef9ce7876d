/**
 * Bad input gets a clear error naming the field and what is allowed, the same on every database,
 * and nothing is written; input at the edge of what is allowed is stored exactly.
 */
import { expect } from 'chai';
import type Database from 'better-sqlite3';
import express from 'express';
import request from 'supertest';
import { JobValidationError, jobsMiddleware } from '../../lib/index.ts';
import { forEachDialect, type TestDb } from '../helpers/dialects.ts';

/** The error `run` throws or rejects with; fails the test when it succeeds. */
async function refusal(run: () => unknown): Promise<Error> {
  try {
    await run();
  } catch (err) {
    return err as Error;
  }
  return expect.fail('the input was accepted');
}

async function expectRefused(run: () => unknown, cls: Function, message: RegExp): Promise<void> {
  const err = await refusal(run);
  expect(err, `${message}: ${err.message}`).to.be.instanceOf(cls);
  expect(err.message).to.match(message);
}

async function jobCount(t: TestDb): Promise<number> {
  const [live] = await t.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`);
  const [done] = await t.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${t.prefix}history`);
  return Number(live.n) + Number(done.n);
}

/** `value` inside `levels` nested objects: { a: { a: ... value } }. */
function nested(levels: number, value: unknown): object {
  let v = value;
  for (let i = 0; i < levels; i++) v = { a: v };
  return v as object;
}

forEachDialect('validation of bad input', ({ fresh }) => {
  it('refuses a payload nested deeper than 31 levels (a 100,000-deep one too) and stores one at the limit', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    let deep: object = [1];
    for (let i = 1; i < 100_000; i++) deep = [deep];
    await expectRefused(() => jobs.enqueue('deep', deep), JobValidationError, /^job "deep": payload(\[0\]){31} is nested 32 arrays or objects deep; at most 31 levels are allowed/);
    await expectRefused(() => jobs.enqueue('deep', nested(32, 1)), JobValidationError, /job "deep": payload(\.a){31} is nested 32 .* at most 31 levels/);
    await expectRefused(() => jobs.enqueue('deep', {}, { meta: nested(32, 1) as never }), JobValidationError, /job "deep": meta(\.a){31} is nested 32/);
    expect(await jobCount(t)).to.equal(0);
    const { id } = await jobs.enqueue('deep', nested(31, 'bottom'), { meta: nested(31, true) as never });
    const got = await jobs.get(id);
    expect(got!.payload).to.deep.equal(nested(31, 'bottom'));
    expect(got!.meta).to.deep.equal(nested(31, true));
  });

  it('refuses NUL and lone surrogates in payload values and keys, meta and text options, on every database; keeps pairs (emoji) exactly', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const cases: [unknown, object, RegExp][] = [
      [{ items: [1, 2, 3, { note: 'a\u0000b' }] }, {}, /^job "text": payload\.items\[3\]\.note contains a NUL character \(U\+0000\) at index 1, which PostgreSQL cannot store; text may hold any Unicode except U\+0000/],
      [{ ['k\u0000']: 1 }, {}, /^job "text": payload key "k\\u0000" contains a NUL character \(U\+0000\)/],
      ['x\ud800', {}, /^job "text": payload contains a lone surrogate \(U\+D800\) at index 1, which is not Unicode text .*surrogates are allowed only as pairs/],
      [{ s: ['\udc00y'] }, {}, /^job "text": payload\.s\[0\] contains a lone surrogate \(U\+DC00\) at index 0/],
      [{ nest: { ['\udbff']: 'v' } }, {}, /^job "text": payload\.nest key "\\udbff" contains a lone surrogate \(U\+DBFF\)/],
      [{}, { meta: { m: '\u0000' } }, /^job "text": meta\.m contains a NUL character/],
      [{}, { tag: 'bad\u0000tag' }, /^job "text": tag contains a NUL character \(U\+0000\) at index 3/],
      [{}, { refId: 'r\ud83d' }, /^job "text": refId contains a lone surrogate \(U\+D83D\)/],
      [{}, { createdBy: '\ude00' }, /^job "text": createdBy contains a lone surrogate \(U\+DE00\)/],
      [{}, { batchId: '\u0000' }, /^job "text": batchId contains a NUL character/],
    ];
    for (const [payload, opts, re] of cases) await expectRefused(() => jobs.enqueue('text', payload as never, opts), JobValidationError, re);
    await expectRefused(
      () => jobs.enqueueMany([{ name: 'text', payload: 1 }, { name: 'text', payload: { v: '\u0000' } }]),
      JobValidationError,
      /^job "text": payload\.v contains a NUL character/,
    );
    expect(await jobCount(t)).to.equal(0);
    // Surrogate pairs are text; a backslash followed by "u0000" is text too (not a NUL).
    const fine = { ['😀 key']: 'smile 😀, rocket 🚀, 𝄞', literal: '\\u0000 and \\ud800', accents: 'Ünïcødé' };
    const { id } = await jobs.enqueue('text', fine, { tag: 'tag 🚀', refId: 'ref-😀', meta: { ['𝄞']: '🎵' } });
    const got = await jobs.get(id);
    expect(got!.payload).to.deep.equal(fine);
    expect(got).to.include({ tag: 'tag 🚀', refId: 'ref-😀' });
    expect(got!.meta).to.deep.equal({ ['𝄞']: '🎵' });
  });

  it('refuses runAt outside 1970..9999 and invalid Dates, naming the field; stores both bounds exactly', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const allowed = /runAt must be a valid Date from 1970-01-01T00:00:00\.000Z to 9999-12-31T23:59:59\.999Z \(what every supported database stores\)/;
    const bad: [Date, string][] = [
      [new Date('+010000-01-01T00:00:00Z'), 'got a Date \\(\\+010000-01-01T00:00:00\\.000Z\\)'],
      [new Date('0001-01-01T00:00:00Z'), 'got a Date \\(0001-01-01T00:00:00\\.000Z\\)'],
      [new Date('1969-12-31T23:59:59.999Z'), 'got a Date \\(1969-12-31T23:59:59\\.999Z\\)'],
      [new Date('not a date'), 'got a Date \\(Invalid Date\\)'],
    ];
    for (const [runAt, got] of bad) {
      await expectRefused(() => jobs.enqueue('when', {}, { runAt }), JobValidationError, new RegExp(`^job "when": ${allowed.source}; ${got}$`));
    }
    await expectRefused(() => jobs.enqueueMany([{ name: 'when', payload: {}, runAt: new Date(8.64e15) }]), JobValidationError, allowed);
    expect(await jobCount(t)).to.equal(0);
    for (const at of ['1970-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z']) {
      const { id } = await jobs.enqueue('when', {}, { runAt: new Date(at) });
      expect((await jobs.get(id))!.runAt.toISOString()).to.equal(at);
    }
  });

  it('refuses list filters of the wrong type, naming the field and what is allowed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const { id } = await jobs.enqueue('listed', {}, { tag: 'x' });
    const cases: [object, RegExp][] = [
      [{ createdAfter: 'str' }, /^list: createdAfter must be a valid Date from 1970-01-01T00:00:00\.000Z to 9999-12-31T23:59:59\.999Z .*; got "str"$/],
      [{ createdBefore: new Date('+010000-01-01T00:00:00Z') }, /^list: createdBefore must be a valid Date from 1970/],
      [{ createdAfter: new Date(NaN) }, /^list: createdAfter must be a valid Date .*got a Date \(Invalid Date\)/],
      [{ tag: 'a\u0000' }, /^list: tag contains a NUL character/],
      [{ refId: '\ud800' }, /^list: refId contains a lone surrogate/],
      [{ name: 42 }, /^list: name must be a string of at most 500 characters; got 42 \(number\)/],
      [{ states: 'pending' }, /^list: states must be an array of states; got "pending"/],
      [{ states: ['pending', 'done'] }, /^list: states\[1\] must be one of pending, running, completed, failed, cancelled, skipped; got "done"/],
      [{ limit: 501 }, /^list: limit must be an integer from 1 to 500; got 501 \(number\)/],
      [{ limit: '10' }, /^list: limit must be an integer from 1 to 500; got "10"/],
      [{ includePayload: 'yes' }, /^list: includePayload must be true or false/],
      [{ tags: 'x' }, /^list: tags is not a list filter; allowed: states, state, queue, name, tag/],
    ];
    for (const [filter, re] of cases) await expectRefused(() => jobs.list(filter as never), JobValidationError, re);
    const found = await jobs.list({ createdAfter: new Date('1970-01-01T00:00:00.000Z'), createdBefore: new Date('9999-12-31T23:59:59.999Z'), tag: 'x' });
    expect(found.items.map((j) => j.id)).to.deep.equal([id]);
  });

  it('refuses bad logs({ afterSeq, limit }) and status({ cap }), naming the option and its range', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const { id } = await jobs.enqueue('logged', {});
    for (const afterSeq of [NaN, -1, 1.5, '3', Infinity]) {
      await expectRefused(() => jobs.logs(id, { afterSeq: afterSeq as number }), TypeError, /^logs: afterSeq must be an integer from 0 to 9007199254740991; got /);
    }
    await expectRefused(() => jobs.logs(id, { limit: 0 }), TypeError, /^logs: limit must be a positive integer no greater than 1000; got 0 \(number\)/);
    for (const cap of [NaN, 0, 2.5, 10_000_001]) {
      await expectRefused(() => jobs.status({ cap }), TypeError, /^status: cap must be a positive integer no greater than 10000000; got /);
    }
    expect(await jobs.logs(id, { afterSeq: 0, limit: 1000 })).to.deep.equal([]);
    expect((await jobs.status({ cap: 10_000_000 })).live).to.be.an('array');
  });

  it('refuses defining a job name twice on one instance, keeping the first handler', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    const ran: string[] = [];
    jobs.define('once', async () => void ran.push('first'));
    await expectRefused(() => jobs.define('once', async () => void ran.push('second')), JobValidationError, /^job "once": is already defined on this instance; a name has one handler/);
    await jobs.enqueue('once', {});
    await jobs.drain();
    expect(ran).to.deep.equal(['first']);
  });

  it('refuses worker and instance options out of range, naming the option and the bound', async () => {
    const t = await fresh();
    const cases: [object, RegExp][] = [
      [{ worker: { concurrency: 1e9 } }, /^createJobs: worker.concurrency must be a positive integer no greater than 1000; got 1000000000 \(number\)/],
      [{ retentionDays: 1e-20 }, /^createJobs: retentionDays must be a number of days from 1 minute \(0\.0007\) to 36500; got 1e-20/],
      [{ retentionDays: 0 }, /^createJobs: retentionDays must be a number of days from 1 minute/],
      [{ retentionDays: 59 / 86_400 }, /^createJobs: retentionDays must be a number of days from 1 minute/],
      [{ worker: { queueConcurrency: { mail: 1e9 } } }, /^createJobs: worker.queueConcurrency.mail must be a positive integer no greater than 1000/],
      [{ worker: { queueConcurrency: { mail: undefined } } }, /^createJobs: worker.queueConcurrency.mail must be a positive integer .*got undefined/],
      [{ worker: { pollInterval: 2 ** 31 } }, /^createJobs: worker.pollInterval must be a positive integer no greater than 2147483647; got 2147483648/],
      [{ worker: { shutdownTimeout: 1e12 } }, /^createJobs: worker.shutdownTimeout must be a positive integer no greater than 2147483647/],
      [{ worker: { logFlushInterval: 2 ** 31 } }, /^createJobs: worker.logFlushInterval must be a positive integer no greater than 2147483647/],
      [{ worker: { heartbeatInterval: 1e12 } }, /^createJobs: worker.heartbeatInterval must be a positive integer no greater than 715827882/],
      [{ worker: { stallTimeout: 2 ** 31 } }, /^createJobs: worker.stallTimeout must be a positive integer no greater than 2147483647/],
      [{ worker: { prefetch: -1 } }, /^createJobs: worker.prefetch must be an integer from 0 to 10000; got -1/],
      [{ worker: { prefetch: 1e6 } }, /^createJobs: worker.prefetch must be an integer from 0 to 10000/],
      [{ workerPoolSize: 1e6 }, /^createJobs: workerPoolSize must be a positive integer no greater than 100; got 1000000/],
      [{ workerPoolSize: 0 }, /^createJobs: workerPoolSize must be a positive integer no greater than 100; got 0/],
      [{ maxPayloadBytes: 2 ** 40 }, /^createJobs: maxPayloadBytes must be a positive integer no greater than 67108864/],
      [{ leader: { leaseMs: 2 ** 31 } }, /^createJobs: leader.leaseMs must be a positive integer no greater than 2147483647/],
      [{ sqliteWal: 'yes' }, /^createJobs: sqliteWal must be true or false; got "yes"/],
    ];
    for (const [opts, re] of cases) await expectRefused(() => t.jobs(opts as never), TypeError, re);
    const edge = t.jobs({ workerPoolSize: 100, worker: { concurrency: 1000, prefetch: 10_000, pollInterval: 2 ** 31 - 1, queueConcurrency: { mail: 1000 } } });
    expect(edge.mode).to.equal('both');
    // One minute written in days (floating point makes it 59,999.99… ms): taken, as stored (rounded).
    expect(() => t.jobs({ retentionDays: 1 / 24 / 60, worker: false } as never)).to.not.throw();
  });

  it('refuses an explicit tx key that holds null or undefined (it would enqueue outside the transaction)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const say = /opts\.tx is (undefined|null): pass the open transaction's driver client .*or leave the key out to enqueue outside any transaction/;
    await expectRefused(() => jobs.enqueue('tx', {}, { tx: undefined }), JobValidationError, new RegExp(`^job "tx": ${say.source}`));
    await expectRefused(() => jobs.enqueue('tx', {}, { tx: null as never }), JobValidationError, /^job "tx": opts\.tx is null: /);
    await expectRefused(() => jobs.enqueueMany([{ name: 'tx', payload: {} }], { tx: undefined }), JobValidationError, /^enqueueMany: opts\.tx is undefined: /);
    await expectRefused(
      () => jobs.enqueueMany([{ name: 'tx', payload: {}, tx: t.db } as never]),
      JobValidationError,
      /^enqueueMany: items\[0\]\.tx is not an item option; pass the transaction once, as enqueueMany\(items, \{ tx \}\)/,
    );
    expect(await jobCount(t)).to.equal(0);
  });

  it('SQLite: refuses enqueue without tx while the app holds a transaction open on its handle; the app\'s rollback leaves nothing', async function () {
    const t = await fresh();
    if (t.dialect !== 'sqlite') return this.skip();
    const jobs = t.jobs({ worker: false });
    const db = t.db as Database.Database;
    db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)');
    // What an async ORM does on the shared handle: BEGIN, awaits, then COMMIT or ROLLBACK.
    db.exec('BEGIN');
    db.prepare('INSERT INTO orders (item) VALUES (?)').run('book');
    const joins = /^enqueue: the app's better-sqlite3 handle is inside a transaction this call was not given, and the job would silently join it .*call jobs\.enqueueSync\(\) inside db\.transaction\(\) or pass \{ tx: db \}/;
    await expectRefused(() => jobs.enqueue('receipt', { item: 'book' }), Error, joins);
    await expectRefused(() => jobs.enqueueMany([{ name: 'receipt', payload: {} }]), Error, joins);
    // Given the handle on purpose, it joins, and the app's rollback takes the job with it.
    const joined = await jobs.enqueue('receipt', { item: 'book' }, { tx: db });
    db.exec('ROLLBACK');
    expect(db.prepare('SELECT COUNT(*) AS n FROM orders').get()).to.deep.equal({ n: 0 });
    expect(await jobs.get(joined.id)).to.equal(null);
    expect(await jobCount(t)).to.equal(0);
    const after = await jobs.enqueue('receipt', { item: 'pen' });
    expect((await jobs.get(after.id))!.state).to.equal('pending');
  });

  it('SQLite: a request\'s buffered jobs are not written into a transaction the app holds open at the commit point (500, nothing lost silently)', async function () {
    const t = await fresh();
    if (t.dialect !== 'sqlite') return this.skip();
    const jobs = t.jobs({ worker: false });
    const db = t.db as Database.Database;
    const app = express();
    app.use(jobsMiddleware(jobs));
    app.post('/order', async (req, res) => {
      await req.jobs.enqueue('receipt', { item: 'book' }, { tag: 'book' });
      if (req.query.hold) db.exec('BEGIN'); // an async ORM's transaction, still open when the response goes out
      res.status(201).json({ ok: true });
    });
    const res = await request(app).post('/order?hold=1');
    db.exec('ROLLBACK');
    expect(res.status).to.equal(500);
    expect(await jobCount(t)).to.equal(0);
    await request(app).post('/order').expect(201);
    expect(await jobCount(t)).to.equal(1);
  });
});
