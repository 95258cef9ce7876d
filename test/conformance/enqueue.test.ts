import { expect } from 'chai';
import type pg from 'pg';
import type Database from 'better-sqlite3';
import type { DatabasePool } from 'slonik';
import type { ConnectionPool as MssqlPool } from 'mssql';
import { JobValidationError } from '../../lib/index.ts';
import mysqlCb from 'mysql2';
import type mysql from 'mysql2/promise';
import { MYSQL_URL, forEachDialect, sleep } from '../helpers/dialects.ts';
import { AWKWARD_STRINGS } from '../helpers/portable.ts';

forEachDialect('enqueue and read', ({ fresh }) => {
  it('enqueues immediate, delayed and scheduled jobs with string ids and reads them back', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const a = await jobs.enqueue('email', { to: 'a@example.com', n: 1 }, { tag: 't1', batchId: 'b1', createdBy: 'test', meta: { k: 'v' }, priority: 5, queue: 'mail' });
    const b = await jobs.enqueue('email', { to: 'b' }, { delay: 60_000 });
    const at = new Date(Date.now() + 3_600_000);
    const c = await jobs.enqueue('email', { to: 'c' }, { runAt: at });
    for (const r of [a, b, c]) {
      expect(r.id).to.be.a('string').and.match(/^[0-9a-f-]{36}$/);
      expect(r.existed).to.equal(false);
    }
    const ja = await jobs.get(a.id);
    expect(ja).to.include({ id: a.id, name: 'email', queue: 'mail', state: 'pending', priority: 5, attempts: 0, maxAttempts: 25, tag: 't1', batchId: 'b1', createdBy: 'test' });
    expect(ja!.payload).to.deep.equal({ to: 'a@example.com', n: 1 });
    expect(ja!.meta).to.deep.equal({ k: 'v' });
    expect(ja!.createdAt).to.be.instanceOf(Date);
    const jb = await jobs.get(b.id);
    expect(jb!.runAt.getTime() - jb!.createdAt.getTime()).to.be.within(59_000, 61_000);
    expect((await jobs.get(c.id))!.runAt.getTime()).to.equal(at.getTime());
    expect(await jobs.get('01a20000-0000-7000-8000-000000000000')).to.equal(null);
  });

  it('returns the live job for a repeated refId and says it existed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const first = await jobs.enqueue('sync', { v: 1 }, { refId: 'user-42' });
    const again = await jobs.enqueue('sync', { v: 2 }, { refId: 'user-42' });
    expect(again).to.deep.equal({ id: first.id, existed: true });
    expect((await jobs.get(first.id))!.payload).to.deep.equal({ v: 1 });
    const many = await jobs.enqueueMany([
      { name: 'sync', payload: 3, refId: 'user-42' },
      { name: 'sync', payload: 4, refId: 'user-43' },
    ]);
    expect(many[0]).to.deep.equal({ id: first.id, existed: true });
    expect(many[1].existed).to.equal(false);
    // Once the job is finished the refId is free again.
    expect(await jobs.cancel(first.id)).to.equal(true);
    const fresh2 = await jobs.enqueue('sync', { v: 5 }, { refId: 'user-42' });
    expect(fresh2.existed).to.equal(false);
    expect(fresh2.id).to.not.equal(first.id);
  });

  it('enqueueMany writes a batch with per-item options', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const items = Array.from({ length: 1500 }, (_, i) => ({ name: 'bulk', payload: { i }, priority: i % 3, tag: `t${i % 5}` }));
    const res = await jobs.enqueueMany(items);
    expect(res).to.have.length(1500);
    expect(new Set(res.map((r) => r.id)).size).to.equal(1500);
    const rows = await t.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`);
    expect(Number(rows[0].n)).to.equal(1500);
    const j = await jobs.get(res[7].id);
    expect(j).to.include({ priority: 1, tag: 't2' });
    expect(j!.payload).to.deep.equal({ i: 7 });
  });

  it('enqueueMany mixing new jobs and refIds of live ones answers each item in order, with its own options', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const live = await jobs.enqueue('sync', { v: 0 }, { refId: 'live-a' });
    const liveB = await jobs.enqueue('sync', { v: 0 }, { refId: 'live-b' });
    // Runs of rows without a refId longer and shorter than a multi-row statement, broken by refIds old and new.
    const refAt = new Map([[0, 'live-a'], [51, 'new-1'], [52, 'live-b'], [160, 'new-2']]);
    const before = Date.now();
    const items = Array.from({ length: 161 }, (_, i) => ({ name: 'bulk', payload: { i }, priority: i % 4, delay: i % 2 ? 60_000 : 0, refId: refAt.get(i) }));
    const res = await jobs.enqueueMany(items);
    expect(res).to.have.length(161);
    expect(res[0]).to.deep.equal({ id: live.id, existed: true });
    expect(res[52]).to.deep.equal({ id: liveB.id, existed: true });
    expect(res.filter((r) => r.existed)).to.have.length(2);
    expect(new Set(res.map((r) => r.id)).size).to.equal(161);
    for (const i of [1, 45, 46, 49, 50, 51, 53, 97, 98, 142, 143, 159, 160]) {
      const j = (await jobs.get(res[i].id))!;
      expect(j.payload, `item ${i}`).to.deep.equal({ i });
      expect(j.priority, `item ${i}`).to.equal(i % 4);
      expect(j.createdAt.getTime(), `item ${i}`).to.be.within(before - 1000, Date.now() + 1000);
      expect(j.runAt.getTime() - j.createdAt.getTime(), `item ${i}`).to.be.within(i % 2 ? 59_000 : 0, i % 2 ? 61_000 : 1000);
    }
    expect((await jobs.get(live.id))!.payload).to.deep.equal({ v: 0 });
    const rows = await t.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`);
    expect(Number(rows[0].n)).to.equal(161);
  });

  it('strings that quote, escape or delimit in SQL, JSON and array syntax come back exactly, one job and a batch', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    // Keys out of order, and a key repeated in no other: a payload is kept as the JSON text it was sent as.
    const payload = { z: 1, a: [...AWKWARD_STRINGS, ''], m: { '"k"': '\\', '': null } };
    const at = (i: number) => AWKWARD_STRINGS[i % AWKWARD_STRINGS.length];
    const opts = (i: number) => ({ tag: at(i), batchId: at(i + 1), createdBy: at(i + 2), meta: { note: at(i) } });
    const one = await jobs.enqueue('awkward', payload, { ...opts(0), refId: 'ref "one" \\ {x}' });
    const many = await jobs.enqueueMany(AWKWARD_STRINGS.map((_, i) => ({ name: 'awkward', payload: { i, s: AWKWARD_STRINGS[i] }, ...opts(i), refId: i % 2 ? `ref ${AWKWARD_STRINGS[i]}` : undefined })));
    const j = (await jobs.get(one.id))!;
    expect(j.payload).to.deep.equal(payload);
    expect(Object.keys(j.payload as object)).to.deep.equal(['z', 'a', 'm']);
    expect(j).to.include({ tag: at(0), batchId: at(1), createdBy: at(2) });
    for (const [i, r] of many.entries()) {
      const got = (await jobs.get(r.id))!;
      expect(got.payload, `item ${i}`).to.deep.equal({ i, s: AWKWARD_STRINGS[i] });
      expect(got, `item ${i}`).to.include({ tag: at(i), batchId: at(i + 1), createdBy: at(i + 2) });
      expect(got.meta, `item ${i}`).to.deep.equal({ note: AWKWARD_STRINGS[i] });
    }
    // The refIds were stored as given: each finds its live job again.
    const again = await jobs.enqueueMany(AWKWARD_STRINGS.map((_, i) => ({ name: 'awkward', payload: {}, refId: i % 2 ? `ref ${AWKWARD_STRINGS[i]}` : 'ref "one" \\ {x}' })));
    expect(again.map((r) => r.existed)).to.deep.equal(AWKWARD_STRINGS.map(() => true));
    expect(again.map((r) => r.id)).to.deep.equal(AWKWARD_STRINGS.map((_, i) => (i % 2 ? many[i].id : one.id)));
  });

  it('stores Buffer payloads as binary', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const bytes = Buffer.from([0, 1, 2, 255, 254, 0x7b]);
    const { id } = await jobs.enqueue('bin', bytes);
    const got = await jobs.get(id);
    expect(Buffer.isBuffer(got!.payload)).to.equal(true);
    expect((got!.payload as Buffer).equals(bytes)).to.equal(true);
    const col = { sqlite: 'typeof(payload_bin)', postgres: 'pg_typeof(payload_bin)::text', mysql: 'HEX(payload_bin)', mssql: "CASE WHEN payload IS NULL THEN CAST(DATALENGTH(payload_bin) AS VARCHAR(20)) + ' bytes' END" }[t.dialect];
    const rows = await t.query<{ k: string }>(`SELECT ${col} AS k FROM ${t.prefix}jobs WHERE id = ${t.dialect === 'sqlite' ? '?' : '$1'}`, [id]);
    expect(rows[0].k).to.equal({ sqlite: 'blob', postgres: 'bytea', mysql: bytes.toString('hex').toUpperCase(), mssql: `${bytes.length} bytes` }[t.dialect]);
  });

  it('refuses payloads JSON cannot hold, naming the job and the field', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false, maxPayloadBytes: 1000 });
    await jobs.migrate();
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    const cases: [unknown, RegExp][] = [
      [{ n: 10n }, /job "report": payload\.n is a BigInt/],
      [circular, /job "report": payload\.self is a circular reference/],
      [{ f: () => 1 }, /job "report": payload\.f is a function/],
      [{ s: 'x'.repeat(2000) }, /job "report": payload is \d+ bytes of JSON, over the limit of 1000 bytes/],
      [{ when: new Date() }, /job "report": payload\.when is a Date/],
      [{ list: [1, undefined] }, /job "report": payload\.list\[1\] is undefined/],
      [{ x: NaN }, /job "report": payload\.x must be a finite number/],
      [new Map(), /job "report": payload is a Map/],
      [Buffer.alloc(1001), /job "report": payload is 1001 bytes, over the limit/],
    ];
    for (const [payload, re] of cases) {
      let caught: unknown;
      try {
        await jobs.enqueue('report', payload as never);
      } catch (err) {
        caught = err;
      }
      expect(caught, String(re)).to.be.instanceOf(JobValidationError);
      expect((caught as Error).message).to.match(re);
    }
    const rows = await t.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`);
    expect(Number(rows[0].n)).to.equal(0);
  });

  it('refuses invalid options, naming the field and what is allowed', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const cases: [string, object, RegExp][] = [
      ['bad name!', {}, /name must be 1-200 characters/],
      ['ok', { priority: 1.5 }, /priority must be an integer/],
      ['ok', { delay: -1 }, /delay must be an integer from 0/],
      ['ok', { maxAttempts: 0 }, /maxAttempts must be an integer from 1/],
      ['ok', { runAt: 'tomorrow' }, /runAt must be a valid Date/],
      ['ok', { queue: '' }, /queue must be 1-200 characters/],
      ['ok', { colour: 'red' }, /colour is not an enqueue option; allowed: delay, runAt/],
      ['ok', { backoff: { type: 'random' } }, /backoff.type must be 'exponential', 'linear' or 'fixed'/],
      // A function cannot be stored with the job: it was stored as nothing, and the default backoff ran.
      ['ok', { backoff: () => 10 }, /^job "ok": backoff cannot be a function in enqueue \(a function cannot be stored with the job\): give it to define\(\)/],
      ['ok', { delay: 5, runAt: new Date() }, /delay and runAt cannot both be given/],
    ];
    for (const [name, opts, re] of cases) {
      let caught: unknown;
      try {
        await jobs.enqueue(name, {}, opts);
      } catch (err) {
        caught = err;
      }
      expect((caught as Error)?.message, String(re)).to.match(re);
    }
    expect(() => t.jobs({ worker: { concurrency: 0 } })).to.throw(/worker.concurrency must be a positive integer/);
    expect(() => t.jobs({ tablePrefix: 'x; DROP TABLE' })).to.throw(/tablePrefix must be/);
    expect(() => t.jobs({ worker: { speed: 1 } as never })).to.throw(/unknown worker option "speed"; allowed: concurrency/);
    await Promise.resolve()
      .then(() => jobs.get('42'))
      .then(
        () => expect.fail('get accepted a malformed id'),
        (err) => expect(err.message).to.match(/id must be a job id/),
      );
  });

  it('lists newest first with keyset pagination and filters, across live and finished jobs', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await jobs.enqueue(i % 2 ? 'odd' : 'even', { i }, { tag: i < 6 ? 'early' : 'late' })).id);
    await jobs.cancel(ids[3]);
    const page1 = await jobs.list({ limit: 5 });
    expect(page1.items.map((j) => j.id)).to.deep.equal(ids.slice(7).reverse());
    expect(page1.items[0]).to.not.have.property('payload');
    const page2 = await jobs.list({ limit: 5, cursor: page1.nextCursor! });
    expect(page2.items.map((j) => j.id)).to.deep.equal(ids.slice(2, 7).reverse());
    const page3 = await jobs.list({ limit: 5, cursor: page2.nextCursor! });
    expect(page3.items.map((j) => j.id)).to.deep.equal(ids.slice(0, 2).reverse());
    expect(page3.nextCursor).to.equal(null);
    const odd = await jobs.list({ name: 'odd', tag: 'early' });
    expect(odd.items.map((j) => j.id)).to.deep.equal([ids[5], ids[3], ids[1]]);
    const cancelled = await jobs.list({ state: 'cancelled', includePayload: true });
    expect(cancelled.items.map((j) => [j.id, j.state])).to.deep.equal([[ids[3], 'cancelled']]);
    expect(cancelled.items[0].payload).to.deep.equal({ i: 3 });
    const pending = await jobs.list({ states: ['pending'], limit: 500 });
    expect(pending.items).to.have.length(11);
    // Hostile filter text is data, never SQL.
    expect((await jobs.list({ name: "x' OR 1=1 --" })).items).to.have.length(0);
  });

  it('filters by batchId, createdBy and creation time: exactly the matching jobs, live and finished, newest first', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const made: { id: string; batch?: string; by?: string }[] = [];
    const plan = [['b1', 'alice'], ['b2', 'alice'], ['b1', 'bob'], ['b2', 'bob'], ['b1', 'alice'], [undefined, undefined]] as const;
    for (const [batch, by] of plan) {
      made.push({ id: (await jobs.enqueue('task', {}, { batchId: batch, createdBy: by })).id, batch, by });
      await sleep(20); // creation times apart (checked below, so the time filters cannot pass on a tie)
    }
    // Three finished (the history table): each table holds jobs on both sides of every filter.
    for (const i of [0, 3, 5]) await jobs.cancel(made[i].id);
    const created = await Promise.all(made.map(async (m) => (await jobs.get(m.id))!.createdAt));
    for (let i = 1; i < created.length; i++) expect(created[i].getTime(), `job ${i} created after job ${i - 1}`).to.be.greaterThan(created[i - 1].getTime());
    const expected = (keep: (m: (typeof made)[number], i: number) => boolean) => made.filter(keep).map((m) => m.id).reverse();
    const listed = async (f: Parameters<typeof jobs.list>[0]) => (await jobs.list(f)).items.map((j) => j.id);
    expect(await listed({ batchId: 'b1' })).to.deep.equal(expected((m) => m.batch === 'b1'));
    expect(await listed({ batchId: 'b2' })).to.deep.equal(expected((m) => m.batch === 'b2'));
    expect(await listed({ createdBy: 'alice' })).to.deep.equal(expected((m) => m.by === 'alice'));
    expect(await listed({ createdBy: 'bob', state: 'cancelled' })).to.deep.equal([made[3].id]);
    expect(await listed({ batchId: 'b1', createdBy: 'alice' })).to.deep.equal([made[4].id, made[0].id]);
    // createdAfter is inclusive, createdBefore exclusive: [after, before).
    expect(await listed({ createdAfter: created[2] })).to.deep.equal(expected((_m, i) => i >= 2));
    expect(await listed({ createdBefore: created[4] })).to.deep.equal(expected((_m, i) => i < 4));
    expect(await listed({ createdAfter: created[2], createdBefore: created[4] })).to.deep.equal([made[3].id, made[2].id]);
    expect(await listed({ createdAfter: created[1], createdBy: 'bob' })).to.deep.equal([made[3].id, made[2].id]);
    const page = (await jobs.list({ batchId: 'b1', includePayload: false })).items;
    expect(page.map((j) => [j.batchId, j.createdBy])).to.deep.equal([['b1', 'alice'], ['b1', 'bob'], ['b1', 'alice']]);
    expect(await listed({ batchId: 'b3' })).to.deep.equal([]);
  });

  it('enqueues inside the caller\'s transaction: committed jobs exist, rolled-back ones never do', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    if (t.dialect === 'sqlite') {
      const db = t.db as Database.Database;
      db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)');
      let kept = '';
      db.transaction(() => {
        db.prepare('INSERT INTO orders (item) VALUES (?)').run('book');
        kept = jobs.enqueueSync('receipt', { item: 'book' }).id;
      })();
      let lost = '';
      expect(() =>
        db.transaction(() => {
          db.prepare('INSERT INTO orders (item) VALUES (?)').run('pen');
          lost = jobs.enqueueSync('receipt', { item: 'pen' }).id;
          throw new Error('payment declined');
        })(),
      ).to.throw('payment declined');
      expect(await jobs.get(kept)).to.not.equal(null);
      expect(await jobs.get(lost)).to.equal(null);
      expect(db.prepare('SELECT item FROM orders').all()).to.deep.equal([{ item: 'book' }]);
      let wrongTx: unknown;
      await jobs.enqueue('receipt', {}, { tx: {} as never }).catch((e) => (wrongTx = e));
      expect((wrongTx as Error).message).to.match(/opts.tx on SQLite must be the better-sqlite3 Database.*; got Object$/);
    } else if (t.driver === 'mssql') {
      const pool = t.db as MssqlPool;
      await t.query(`CREATE TABLE ${t.prefix}orders (id INT IDENTITY PRIMARY KEY, item NVARCHAR(100))`);
      const tx = pool.transaction();
      await tx.begin();
      await t.appQuery(tx, `INSERT INTO ${t.prefix}orders (item) VALUES ($1)`, ['book']);
      const kept = (await jobs.enqueue('receipt', { item: 'book' }, { tx })).id;
      await tx.commit();
      const tx2 = pool.transaction();
      await tx2.begin();
      const lost = (await jobs.enqueue('receipt', { item: 'pen' }, { tx: tx2 })).id;
      await tx2.rollback();
      expect(await jobs.get(kept)).to.not.equal(null);
      expect(await jobs.get(lost)).to.equal(null);
      let wrongTx: unknown;
      await jobs.enqueue('receipt', {}, { tx: pool as never }).catch((e) => (wrongTx = e));
      expect((wrongTx as Error).message).to.match(/opts.tx on SQL Server must be an mssql Transaction.*; got ConnectionPool/);
    } else if (t.driver === 'slonik') {
      const pool = t.db as DatabasePool;
      await t.query(`CREATE TABLE ${t.prefix}orders (id serial PRIMARY KEY, item text)`);
      const kept = await pool.transaction(async (tx) => {
        await t.appQuery(tx, `INSERT INTO ${t.prefix}orders (item) VALUES ($1)`, ['book']);
        const id = (await jobs.enqueue('receipt', { item: 'book' }, { tx })).id;
        expect(await jobs.get(id), 'invisible before commit').to.equal(null);
        return id;
      });
      let lost = '';
      const declined = await pool
        .transaction(async (tx) => {
          lost = (await jobs.enqueue('receipt', { item: 'pen' }, { tx })).id;
          throw new Error('payment declined');
        })
        .catch((e: Error) => e.message);
      expect(declined).to.equal('payment declined');
      expect(await jobs.get(kept)).to.not.equal(null);
      expect(lost).to.match(/^[0-9a-f-]{36}$/);
      expect(await jobs.get(lost)).to.equal(null);
      let wrongTx: unknown;
      await jobs.enqueue('receipt', {}, { tx: pool }).catch((e) => (wrongTx = e));
      expect((wrongTx as Error).message).to.match(/opts.tx on slonik must be the connection a transaction handler receives.*; got the pool$/);
    } else if (t.dialect === 'mysql') {
      await t.query(`CREATE TABLE ${t.prefix}orders (id INT AUTO_INCREMENT PRIMARY KEY, item TEXT)`);
      const promisePool = t.db as mysql.Pool;
      const callbackPool = mysqlCb.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
      try {
        // Both flavours of connection the app may hold: mysql2/promise, and the callback one.
        const promiseConn = await promisePool.getConnection();
        const callbackConn = await new Promise<mysqlCb.PoolConnection>((ok, ko) => callbackPool.getConnection((e, c) => (e ? ko(e) : ok(c))));
        for (const [flavour, tx, c] of [['promise', promiseConn, promiseConn], ['callback', callbackConn, callbackConn.promise()]] as const) {
          await c.query('START TRANSACTION');
          await c.query(`INSERT INTO ${t.prefix}orders (item) VALUES ('book')`);
          const kept = (await jobs.enqueue('receipt', { item: 'book' }, { tx })).id;
          expect(await jobs.get(kept), `${flavour}: invisible before commit`).to.equal(null);
          await c.query('COMMIT');
          await c.query('START TRANSACTION');
          const lost = (await jobs.enqueue('receipt', { item: 'pen' }, { tx })).id;
          await c.query('ROLLBACK');
          expect(await jobs.get(kept), flavour).to.not.equal(null);
          expect(await jobs.get(lost), flavour).to.equal(null);
          const notInTx = await jobs.enqueue('receipt', {}, { tx }).catch((e: Error) => e);
          expect((notInTx as Error).message).to.match(/not inside a transaction/);
          c.release();
        }
        // A compile error too (mysql2 types its promise Pool as a Connection): refused at run time for JavaScript.
        const poolAsTx = await jobs.enqueue('receipt', {}, { tx: promisePool as never }).catch((e: Error) => e);
        expect((poolAsTx as Error).message).to.match(/opts.tx on MySQL\/MariaDB must be a mysql2 connection.*; got PromisePool/);
      } finally {
        await new Promise((r) => callbackPool.end(r));
      }
    } else {
      const pool = t.db as pg.Pool;
      await pool.query('CREATE TABLE IF NOT EXISTS ' + t.prefix + 'orders (id serial PRIMARY KEY, item text)');
      const c = await pool.connect();
      let kept: string;
      let lost: string;
      try {
        await c.query('BEGIN');
        await c.query(`INSERT INTO ${t.prefix}orders (item) VALUES ('book')`);
        kept = (await jobs.enqueue('receipt', { item: 'book' }, { tx: c })).id;
        const seenOutside = await jobs.get(kept);
        expect(seenOutside, 'invisible before commit').to.equal(null);
        await c.query('COMMIT');
        await c.query('BEGIN');
        lost = (await jobs.enqueue('receipt', { item: 'pen' }, { tx: c })).id;
        await c.query('ROLLBACK');
        let notInTx: unknown;
        await jobs.enqueue('receipt', {}, { tx: c }).catch((e) => (notInTx = e));
        expect((notInTx as Error).message).to.match(/not inside a transaction/);
        const poolAsTx = await jobs.enqueue('receipt', {}, { tx: pool as never }).catch((e: Error) => e);
        expect((poolAsTx as Error).message).to.match(/opts.tx on PostgreSQL must be a pg client .*; got BoundPool/);
      } finally {
        c.release();
      }
      expect(await jobs.get(kept)).to.not.equal(null);
      expect(await jobs.get(lost)).to.equal(null);
    }
  });
});
