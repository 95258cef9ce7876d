import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import type pg from 'pg';
import type { DatabasePool, DatabaseTransactionConnection } from 'slonik';
import type mysql from 'mysql2/promise';
import { createJobs, jobsMiddleware, type Jobs, type TransactionHandle } from '../../lib/index.ts';
import { createRequire } from 'node:module';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { caughtFailure, failingCommitRoute, failingWork, loseConnection, ownHandle, poolSettled, setupShop as setup, visible, writeOrder } from '../helpers/http.ts';

/** Express 4, installed beside 5 as the npm alias express4: the same gate must hold on both. */
const express4 = createRequire(import.meta.url)('express4') as typeof express;


function shop(t: TestDb, jobs: Jobs, framework: typeof express = express) {
  const app = framework();
  app.use(framework.json());
  app.use(jobsMiddleware(jobs));
  const order = async (req: express.Request, item: string, code?: string) => {
    await writeOrder(t, req.jobs, item, code);
    return req.jobs.enqueue('receipt', { item }, { tag: item });
  };
  app.post('/ok', async (req, res) => {
    const { id, deferred } = await order(req, req.body.item);
    res.status(201).json({ id, deferred: !!deferred });
  });
  app.post('/throw', async (req) => {
    await order(req, req.body.item);
    throw new Error('payment declined');
  });
  app.post('/next-err', async (req, _res, next) => {
    await order(req, req.body.item);
    next(new Error('stock check failed'));
  });
  app.post('/4xx', async (req, res) => {
    await order(req, req.body.item);
    res.status(422).json({ error: 'bad address' });
  });
  app.post('/redirect', async (req, res) => {
    await order(req, req.body.item);
    res.redirect('/done');
  });
  app.post('/stream', async (req, res) => {
    await order(req, req.body.item);
    res.write('part 1;');
    await sleep(5);
    res.write('part 2;');
    res.end('end');
  });
  app.post('/caught', async (req, res) => {
    const { id } = await order(req, req.body.item);
    res.status(201).json({ id, caught: await caughtFailure(t, req.jobs) });
  });
  app.post('/dup', async (req, res) => {
    // Two rows with the same code: the deferred constraint fails only at COMMIT.
    await order(req, `${req.body.item}-a`, req.body.item);
    await order(req, `${req.body.item}-b`, req.body.item);
    res.json({ ok: true });
  });
  app.post('/lost', async (req, res) => {
    await order(req, req.body.item);
    await loseConnection(t, req.jobs);
    res.json({ ok: true });
  });
  // Work that fails at COMMIT, then each way a handler answers: the gate holds every one of them.
  app.post('/fail/:how', async (req, res) => {
    await failingWork(t, req.jobs, req.body.item);
    if (req.params.how === 'redirect') return res.redirect('/done');
    if (req.params.how === 'end') return void res.end('done');
    if (req.params.how === 'json') return void res.json({ done: true });
    res.write('part 1;');
    await sleep(5);
    res.write('part 2;');
    res.end('end');
  });
  app.post('/late', (req, res) => {
    res.json({ ok: true });
    setImmediate(() =>
      req.jobs.enqueue('receipt', {}).then(
        () => (late = 'accepted'),
        (err: Error) => (late = err.message),
      ),
    );
  });
  app.get('/plain', (_req, res) => {
    res.json({ ok: true });
  });
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: err.message });
  });
  return app;
}
let late = '';

/** A POST's response exactly as it went out on the wire (raw socket; the server closes after it). */
async function onTheWire(app: express.Express, path: string, json: unknown): Promise<string> {
  const server = http.createServer(app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const body = JSON.stringify(json);
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    // write, not end: a client that half-closes is one that went away (the request would roll back).
    socket.write(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    const chunks: Buffer[] = [];
    for await (const c of socket) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('latin1');
  } finally {
    server.close();
  }
}



forEachDialect('Express middleware', ({ fresh }) => {
  it('commits the job and the row on 2xx, and neither on throw, next(err), 4xx or 5xx', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = shop(t, jobs);
    const ok = await request(app).post('/ok').send({ item: 'book' }).expect(201);
    expect(ok.body.deferred).to.equal(t.dialect === 'sqlite');
    expect(await visible(t, jobs, 'book')).to.deep.equal({ job: true, row: true });
    expect((await jobs.get(ok.body.id))!.payload).to.deep.equal({ item: 'book' });
    await request(app).post('/throw').send({ item: 'pen' }).expect(500, { error: 'payment declined' });
    await request(app).post('/next-err').send({ item: 'ink' }).expect(500, { error: 'stock check failed' });
    await request(app).post('/4xx').send({ item: 'cup' }).expect(422);
    for (const item of ['pen', 'ink', 'cup']) expect(await visible(t, jobs, item), item).to.deep.equal({ job: false, row: false });
    await request(app).post('/redirect').send({ item: 'mug' }).expect(302);
    expect(await visible(t, jobs, 'mug')).to.deep.equal({ job: true, row: true });
    const streamed = await request(app).post('/stream').send({ item: 'hat' }).expect(200);
    expect(streamed.text).to.equal('part 1;part 2;end');
    expect(await visible(t, jobs, 'hat')).to.deep.equal({ job: true, row: true });
    await poolSettled(t);
  });

  it('PostgreSQL: a statement of the app\'s that failed, caught, aborted the transaction: 500, nothing committed (COMMIT answered ROLLBACK)', async function () {
    const t = await fresh();
    if (t.dialect !== 'postgres') return this.skip();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = shop(t, jobs);
    const res = await request(app).post('/caught').send({ item: 'ink' });
    expect(res.status).to.equal(500);
    expect(await visible(t, jobs, 'ink')).to.deep.equal({ job: false, row: false });
    await request(app).post('/ok').send({ item: 'pad' }).expect(201);
    expect(await visible(t, jobs, 'pad')).to.deep.equal({ job: true, row: true });
    await poolSettled(t);
  });

  it('MariaDB: a deadlock the app caught rolled the whole transaction back: 500, nothing committed (COMMIT would commit nothing, silently)', async function () {
    const t = await fresh();
    if (t.dialect !== 'mysql') return this.skip();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const pool = t.db as unknown as mysql.Pool;
    await t.query(`CREATE TABLE ${t.prefix}acct (id INT PRIMARY KEY, n INT) ENGINE=InnoDB`);
    await t.query(`INSERT INTO ${t.prefix}acct VALUES (1, 0), (2, 0)`);
    await t.query(`CREATE TABLE ${t.prefix}big (id INT PRIMARY KEY, n INT) ENGINE=InnoDB`);
    await t.query(`INSERT INTO ${t.prefix}big SELECT seq, 0 FROM seq_1_to_2000`);
    const other = await pool.getConnection();
    const app = express();
    app.use(jobsMiddleware(jobs));
    app.post('/', async (req, res) => {
      await req.jobs.enqueue('receipt', {}, { tag: 'deadlocked' });
      const tx = await req.jobs.transaction<mysql.PoolConnection>();
      await tx.query(`UPDATE ${t.prefix}acct SET n = n + 1 WHERE id = 1`);
      // Another session, the heavier transaction (not the victim), then wants row 1.
      await other.query('START TRANSACTION');
      await other.query(`UPDATE ${t.prefix}big SET n = n + 1`);
      await other.query(`UPDATE ${t.prefix}acct SET n = n + 1 WHERE id = 2`);
      const waiting = other.query(`UPDATE ${t.prefix}acct SET n = n + 1 WHERE id = 1`);
      await sleep(200);
      let caught = 'none';
      try {
        await tx.query(`UPDATE ${t.prefix}acct SET n = n + 1 WHERE id = 2`);
      } catch (err) {
        caught = (err as { code?: string }).code ?? 'error';
      }
      await waiting;
      await other.query('COMMIT');
      res.status(201).json({ caught });
    });
    try {
      const res = await request(app).post('/');
      expect(res.status, JSON.stringify(res.body)).to.equal(500);
      expect((await jobs.list({ tag: 'deadlocked' })).items).to.have.length(0);
    } finally {
      other.release();
    }
    await poolSettled(t);
  });

  it('behaves the same on Express 4', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = shop(t, jobs, express4);
    await request(app).post('/ok').send({ item: 'book4' }).expect(201);
    // (Express 4 does not catch a rejected async handler: the app must call next(err) itself.)
    await request(app).post('/next-err').send({ item: 'ink4' }).expect(500);
    await request(app).post('/4xx').send({ item: 'cup4' }).expect(422);
    await request(app).post('/redirect').send({ item: 'mug4' }).expect(302);
    expect((await request(app).post('/stream').send({ item: 'hat4' }).expect(200)).text).to.equal('part 1;part 2;end');
    for (const item of ['book4', 'mug4', 'hat4']) expect(await visible(t, jobs, item), item).to.deep.equal({ job: true, row: true });
    for (const item of ['ink4', 'cup4']) expect(await visible(t, jobs, item), item).to.deep.equal({ job: false, row: false });
    await poolSettled(t);
  });

  it('a handler that outlives a timeout response is rolled back and cannot use the connection afterwards', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = express();
    app.use(jobsMiddleware(jobs));
    app.use((_req, res, next) => {
      // A request timeout middleware: answers 503 while the handler still runs.
      const timer = setTimeout(() => res.status(503).json({ error: 'timeout' }), 100);
      res.on('finish', () => clearTimeout(timer));
      next();
    });
    let afterwards = '';
    app.post('/hang', async (req, res) => {
      await req.jobs.enqueue('receipt', {}, { tag: 'hung' });
      const db = t.dialect !== 'sqlite' ? await req.jobs.transaction() : null;
      await sleep(300);
      try {
        if (db) await t.appQuery(db, 'SELECT 1');
        await req.jobs.enqueue('receipt', {}, { tag: 'hung-late' });
        afterwards = 'used';
      } catch (err) {
        afterwards = (err as Error).message;
      }
      if (!res.headersSent) res.json({ ok: true });
    });
    await request(app).post('/hang').expect(503);
    await until(() => afterwards, 'the handler to finish');
    expect(afterwards).to.match(/unit of work is already rolled back/);
    expect((await jobs.list({ tag: 'hung' })).items).to.have.length(0);
    expect((await jobs.list({ tag: 'hung-late' })).items).to.have.length(0);
    await poolSettled(t);
  });

  it('pg callback-style queries on the request\'s handle (as Knex sends them) run in turn before COMMIT, and after the response get the refusal in their callback; an enqueue after the response says the unit of work is already committed', async function () {
    const t = await fresh();
    if (t.driver !== 'pg') this.skip(); // the callback form is pg's client API
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = express();
    app.use(jobsMiddleware(jobs));
    const seen: { during?: unknown; after?: Error; afterInConfig?: Error; lateEnqueue?: string } = {};
    app.post('/callbacks', async (req, res) => {
      await req.jobs.enqueue('receipt', {}, { tag: 'cb' });
      const c = await req.jobs.transaction<pg.PoolClient>();
      // Sent and not awaited, as Knex does: it must still run inside the request's transaction.
      c.query(`INSERT INTO ${t.prefix}orders (item) SELECT 'cb' FROM pg_sleep(0.2)`, (err: Error | null) => void (seen.during = err));
      res.json({ ok: true });
      req.jobs.enqueue('receipt', {}, { tag: 'cb-late' }).catch((err: Error) => void (seen.lateEnqueue = err.message));
      await sleep(300);
      c.query('SELECT 1', (err: Error | null) => void (seen.after = err ?? undefined));
      // The callback in the config ({ text, callback }), as pg also takes it.
      (c.query as unknown as (config: object) => void)({ text: 'SELECT 1', callback: (err: Error | null) => void (seen.afterInConfig = err ?? undefined) });
    });
    await request(app).post('/callbacks').expect(200);
    await until(() => seen.after, 'the refused query\'s callback', 5_000);
    expect(seen.after!.message).to.match(/^the request's unit of work is already committed/);
    await until(() => seen.afterInConfig, 'the refused query\'s callback (in its config)', 5_000);
    expect(seen.afterInConfig!.message).to.match(/^the request's unit of work is already committed/);
    expect(seen.during, 'the query sent during the request').to.equal(null);
    expect(seen.lateEnqueue).to.match(/^the request's unit of work is already committed; use jobs.enqueue/);
    expect(await visible(t, jobs, 'cb')).to.deep.equal({ job: true, row: true });
    expect((await jobs.list({ tag: 'cb-late' })).items).to.have.length(0);
    await poolSettled(t);
  });

  it('the request\'s handle refuses BEGIN, COMMIT and ROLLBACK (an ORM\'s .transaction() on it would commit the request\'s writes whatever the response), and takes savepoints', async function () {
    const t = await fresh();
    if (t.dialect === 'sqlite') this.skip(); // no connection handle: better-sqlite3 runs db.transaction() itself
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = express();
    app.use(jobsMiddleware(jobs));
    const refused: string[] = [];
    app.post('/own-commit', async (req, res) => {
      await req.jobs.enqueue('receipt', {}, { tag: 'own-commit' });
      const db = await req.jobs.transaction();
      await writeOrder(t, req.jobs, 'own-commit');
      for (const statement of ['COMMIT', 'BEGIN', ' /* orm */ ROLLBACK', t.dialect === 'mysql' ? 'START TRANSACTION' : 'END']) {
        try {
          await t.appQuery(db, statement);
        } catch (err) {
          refused.push((err as Error).message);
        }
      }
      // A savepoint is the request's own business.
      const savepoint = t.dialect === 'mssql' ? ['SAVE TRANSACTION sp', 'ROLLBACK TRANSACTION sp'] : ['SAVEPOINT sp', 'ROLLBACK TO SAVEPOINT sp'];
      await t.appQuery(db, savepoint[0]);
      await t.appQuery(db, savepoint[1]);
      res.status(500).json({ error: 'payment declined' });
    });
    await request(app).post('/own-commit').expect(500);
    expect(refused).to.have.length(4);
    for (const message of refused) expect(message).to.match(/^do not begin, commit or roll back the request's transaction yourself/);
    // The 500 rolled everything back: no COMMIT got through.
    expect(await visible(t, jobs, 'own-commit')).to.deep.equal({ job: false, row: false });
    await poolSettled(t);
  });

  it('answers 500, never the 2xx, when the commit fails; nothing is visible', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs); // on SQLite the buffered write is the commit: a trigger makes it fail for 'zip'
    const app = shop(t, jobs);
    const res = await request(app).post(`/${failingCommitRoute(t)}`).send({ item: 'zip' });
    expect(res.status).to.equal(500);
    expect(res.body).to.deep.equal({ error: 'the request could not be committed' });
    expect(await visible(t, jobs, 'zip')).to.deep.equal({ job: false, row: false });
    await poolSettled(t);
  });

  for (const [label, framework] of [['Express 5', express], ['Express 4', express4]] as const) {
    it(`${label}: a commit that fails answers 500 and sends no 2xx byte, whether the handler streams (res.write), redirects, ends or sends json`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ worker: false });
      await setup(t, jobs);
      const app = shop(t, jobs, framework);
      const SHAPES = ['stream', 'redirect', 'end', 'json'];
      const seen: Record<string, unknown> = {};
      for (const how of SHAPES) {
        const item = `zip-${how}`;
        const wire = await onTheWire(app, `/fail/${how}`, { item });
        seen[how] = {
          statusLine: wire.split('\r\n')[0],
          errorBody: wire.includes('{"error":"the request could not be committed"}'),
          handlerBytes: /part 1|location:|done/i.test(wire),
          ...(await visible(t, jobs, item)),
        };
      }
      const refused = { statusLine: 'HTTP/1.1 500 Internal Server Error', errorBody: true, handlerBytes: false, job: false, row: false };
      expect(seen).to.deep.equal(Object.fromEntries(SHAPES.map((how) => [how, refused])));
      await poolSettled(t);
    });
  }

  it('200 concurrent requests, half failing at random points: exactly the successful ones commit, every connection returns', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = shop(t, jobs);
    const server = http.createServer(app).listen(0);
    try {
      const agent = request(server);
      const failing = ['/throw', '/next-err', '/4xx'];
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => {
          const route = i % 2 ? failing[i % 3] : i % 4 ? '/ok' : '/redirect';
          return agent.post(route).send({ item: `item${i}` }).then((r) => ({ i, route, status: r.status }));
        }),
      );
      const committed = new Set(results.filter((r) => r.status < 400).map((r) => `item${r.i}`));
      expect(committed.size).to.equal(100);
      const jobTags = new Set((await jobs.list({ limit: 500 })).items.map((j) => j.tag));
      expect(jobTags).to.deep.equal(committed);
      if (t.dialect !== 'sqlite') {
        const rows = await t.query<{ item: string }>(`SELECT item FROM ${t.prefix}orders`);
        expect(new Set(rows.map((r) => r.item))).to.deep.equal(committed);
      }
      await poolSettled(t);
    } finally {
      server.close();
    }
  });

  it('rolls back and releases the connection when the client disconnects mid-request', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = express();
    let reached = false;
    app.use(jobsMiddleware(jobs));
    app.post('/slow', async (req, res) => {
      await req.jobs.enqueue('receipt', {}, { tag: 'gone' });
      reached = true;
      await sleep(300);
      res.json({ ok: true });
    });
    let lateEnqueue: Promise<unknown> | null = null;
    app.post('/late', async (req, res) => {
      await sleep(300);
      lateEnqueue = req.jobs.enqueue('receipt', {}, { tag: 'early' }).catch((err: Error) => err.message);
      await lateEnqueue;
      res.json({ ok: true });
    });
    const server = http.createServer(app).listen(0);
    try {
      const port = (server.address() as { port: number }).port;
      const r = http.request({ port, method: 'POST', path: '/slow' });
      r.on('error', () => undefined);
      r.end();
      await until(() => reached, 'the handler to enqueue');
      r.destroy();
      // Gone before the first enqueue (the route enqueues 300 ms in): nothing is committed either.
      const early = http.request({ port, method: 'POST', path: '/late' });
      early.on('error', () => undefined);
      early.end();
      await sleep(100);
      early.destroy();
      await until(() => lateEnqueue !== null, 'the late route to enqueue');
      await lateEnqueue;
      await sleep(300);
      expect((await jobs.list({ tag: 'gone' })).items).to.have.length(0);
      expect((await jobs.list({ tag: 'early' })).items).to.have.length(0);
      await poolSettled(t);
    } finally {
      server.close();
    }
  });

  it('costs nothing for a request that never touches req.jobs, and refuses an enqueue after the commit point', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = shop(t, jobs);
    let checkouts = 0;
    if (t.driver === 'pg') (t.db as pg.Pool).on('acquire', () => checkouts++);
    if (t.driver === 'mysql2') (t.db as mysql.Pool).pool.on('acquire', () => checkouts++);
    await request(app).get('/plain').expect(200);
    if (t.driver === 'slonik') {
      // slonik opens connections lazily: none was ever opened on the app's pool.
      const s = (t.db as DatabasePool).state();
      checkouts = s.acquiredConnections + s.idleConnections;
    }
    expect(checkouts).to.equal(0);
    await request(app).post('/late').send({}).expect(200);
    await until(() => late, 'the late enqueue to settle');
    expect(late).to.match(/unit of work is already|use jobs.enqueue/);
  });

  it('joins the app\'s own per-request transaction when given one (bring your own)', async function () {
    const t = await fresh();
    if (t.driver !== 'pg' && t.driver !== 'mysql2') this.skip(); // the bring-your-own middleware below is written with pg's and mysql2's API
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    // The app's own per-request transaction: a pg PoolClient, or a mysql2 promise connection.
    type Trx = { query(sql: string): Promise<unknown>; release(): void };
    const connect = async (): Promise<Trx> => (t.dialect === 'postgres' ? (t.db as pg.Pool).connect() : (t.db as mysql.Pool).getConnection());
    const app = express();
    app.use(async (req: express.Request & { trx?: Trx }, res, next) => {
      const c = await connect();
      await c.query(t.dialect === 'postgres' ? 'BEGIN' : 'START TRANSACTION');
      req.trx = c;
      res.on('finish', async () => {
        await c.query(res.statusCode < 400 ? 'COMMIT' : 'ROLLBACK');
        c.release();
      });
      next();
    });
    app.use(jobsMiddleware(jobs, { transaction: (req) => (req as { trx?: Trx }).trx as TransactionHandle | undefined }));
    app.post('/byo/:status', async (req, res) => {
      await req.jobs.enqueue('receipt', {}, { tag: `byo-${req.params.status}` });
      res.sendStatus(Number(req.params.status));
    });
    await request(app).post('/byo/200').expect(200);
    await request(app).post('/byo/409').expect(409);
    // The app commits on 'finish', after the response was sent: wait for that commit, not a fixed time.
    await until(async () => (await jobs.list({ tag: 'byo-200' })).items.length === 1, 'the app\'s commit', 5_000);
    await sleep(50);
    expect((await jobs.list({ tag: 'byo-409' })).items).to.have.length(0);
  });

  it('joins the app\'s own slonik transaction when given one (bring your own)', async function () {
    const t = await fresh();
    if (t.driver !== 'slonik') this.skip();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const pool = t.db as DatabasePool;
    type WithTrx = express.Request & { trx?: DatabaseTransactionConnection };
    const app = express();
    app.use((req: WithTrx, res, next) => {
      // The app's own per-request slonik transaction: committed on a 2xx/3xx, rolled back otherwise.
      void pool
        .transaction(async (trx) => {
          req.trx = trx;
          const finished = new Promise((resolve) => res.on('finish', resolve));
          next();
          await finished;
          if (res.statusCode >= 400) throw new Error('rolled back by the app');
        }, 0)
        .catch(() => undefined);
    });
    app.use(jobsMiddleware(jobs, { transaction: (req) => (req as WithTrx).trx }));
    app.post('/byo/:status', async (req, res) => {
      await t.appQuery(await req.jobs.transaction(), `INSERT INTO ${t.prefix}orders (item) VALUES ($1)`, [`byo-${req.params.status}`]);
      await req.jobs.enqueue('receipt', {}, { tag: `byo-${req.params.status}` });
      res.sendStatus(Number(req.params.status));
    });
    await request(app).post('/byo/200').expect(200);
    await request(app).post('/byo/409').expect(409);
    await until(async () => (await jobs.list({ tag: 'byo-200' })).items.length === 1, 'the committed job');
    await sleep(50);
    expect((await jobs.list({ tag: 'byo-409' })).items).to.have.length(0);
    expect(await visible(t, jobs, 'byo-200')).to.deep.equal({ job: true, row: true });
    expect(await visible(t, jobs, 'byo-409')).to.deep.equal({ job: false, row: false });
    await poolSettled(t);
  });

  it('the request\'s handle refuses release, commit, rollback and a nested begin (the middleware owns them)', async function () {
    const t = await fresh();
    if (t.dialect === 'sqlite') this.skip();
    const jobs = t.jobs({ worker: false });
    await setup(t, jobs);
    const app = express();
    app.use(jobsMiddleware(jobs));
    app.post('/x', async (req, res) => {
      const c = await req.jobs.transaction<Record<string, unknown>>();
      // pg: release; mysql2: release, commit, rollback, beginTransaction (a second START TRANSACTION would commit).
      const tried = ['release', 'commit', 'rollback', 'beginTransaction'].filter((m) => typeof c[m] === 'function').map((m) => {
        try {
          (c[m] as () => unknown)();
          return `${m}: allowed`;
        } catch (err) {
          return `${m}: ${(err as Error).message}`;
        }
      });
      await req.jobs.enqueue('receipt', {}, { tag: 'still-open' });
      res.json(tried);
    });
    const res = await request(app).post('/x').expect(200);
    expect(res.body).to.have.length(t.dialect === 'mysql' ? 4 : 1);
    for (const line of res.body as string[]) expect(line).to.match(/^\w+: do not \w+ the request's connection yourself/);
    expect((await jobs.list({ tag: 'still-open' })).items).to.have.length(1);
    await poolSettled(t);
  });

  it('jobsMiddleware(pool): given the app\'s own database handle, it enqueues in the request\'s transaction under the default prefix', async function () {
    const t = await fresh();
    if (t.dialect === 'mssql') this.skip(); // ownHandle has no SQL Server database of its own to give
    const own = await ownHandle(t);
    const worker = createJobs({ db: own.db, worker: { pollInterval: 50 } });
    try {
      let ran = '';
      worker.define('hello', async (p: { who: string }) => {
        ran = p.who;
      });
      await worker.migrate();
      const app = express();
      app.use(jobsMiddleware(own.db));
      app.post('/hello/:status', async (req, res) => {
        await req.jobs.enqueue('hello', { who: req.params.status });
        res.sendStatus(Number(req.params.status));
      });
      await request(app).post('/hello/409').expect(409);
      // Committed before the answer went out, or not at all: nothing is there.
      expect((await own.count('sqljobs_jobs')) + (await own.count('sqljobs_history'))).to.equal(0);
      await request(app).post('/hello/204').expect(204);
      expect(await own.count('sqljobs_jobs')).to.equal(1);
      await worker.start();
      await until(() => ran, 'the worker to run the job');
      expect(ran).to.equal('204');
      await until(async () => (await own.count('sqljobs_history')) === 1, 'the job in history');
    } finally {
      await worker.close();
      await own.close();
    }
  });

  it('works as a producer-only web tier given a producer instance (worker: false)', async () => {
    const t = await fresh();
    const worker = t.jobs({ worker: { pollInterval: 50 } });
    let ran = '';
    worker.define('hello', async (p: { who: string }) => {
      ran = p.who;
    });
    await worker.start();
    const app = express();
    // (jobsMiddleware given a bare handle is the test above.)
    app.use(jobsMiddleware(t.jobs({ worker: false })));
    app.post('/hello', async (req, res) => {
      await req.jobs.enqueue('hello', { who: 'web' });
      res.sendStatus(204);
    });
    await request(app).post('/hello').expect(204);
    await until(() => ran, 'the worker to run the job');
    expect(ran).to.equal('web');
  });
});
