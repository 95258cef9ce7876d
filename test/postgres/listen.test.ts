/** PostgreSQL only (pg and slonik): wake-ups from other processes through LISTEN/NOTIFY, and the listener's reconnect. */
import { expect } from 'chai';
import { DIALECTS, requireDatabase, sleep, until } from '../helpers/dialects.ts';
import { median } from '../../bench/lib/stats.ts';

// pg, and slonik (whose listener and worker connections are plain pg clients built from its URI).
for (const name of ['postgres', 'slonik'] as const) describe(`LISTEN/NOTIFY wake-ups [${name}]`, function () {
  const factory = DIALECTS.find((d) => d.name === name)!;
  let cleanups: (() => Promise<void>)[] = [];
  before(requireDatabase(factory));
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups = [];
  });

  it('starts a job enqueued by another process in milliseconds (its NOTIFY, not the poll), and again after its listener is killed', async () => {
    const t = await factory.create();
    cleanups.push(() => t.cleanup());
    const worker = t.jobs({ worker: { pollInterval: 60_000 } });
    const started = new Map<string, number>();
    worker.define('ping', async (_p, ctx) => {
      started.set(ctx.id, performance.now());
    });
    await worker.start();
    const other = await t.another();
    const producer = other.jobs({ worker: false });
    await producer.migrate();

    const latency = async () => {
      const t0 = performance.now();
      const { id } = await producer.enqueue('ping', {});
      await until(() => started.has(id), 'the job to start', 5000, 1);
      return started.get(id)! - t0;
    };
    // The poll comes every 60 s: each start within a second can only be the NOTIFY's, and the
    // typical one takes milliseconds. Not every one: on a loaded machine one start in ten took
    // 55 ms (the benchmark measures the figures: `bench/measure.ts --measure latency`).
    const byNotify = (latencies: number[]) => {
      expect(Math.max(...latencies), `latencies ${latencies}`).to.be.below(1000);
      expect(median(latencies), `latencies ${latencies}`).to.be.below(50);
    };
    const before = [];
    for (let i = 0; i < 10; i++) before.push(await latency());
    byNotify(before);

    // Kill the LISTEN connection: the worker reconnects and polls once to catch up.
    const listeners = await t.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()`,
      [`LISTEN "${t.prefix}cancel"`],
    );
    expect(listeners).to.have.length(1);
    await t.query('SELECT pg_terminate_backend($1)', [listeners[0].pid]);
    const { id: missed } = await producer.enqueue('ping', {});
    await until(() => started.has(missed), 'the job enqueued while the listener was down', 2000, 5);
    await until(
      async () => (await t.query(`SELECT 1 FROM pg_stat_activity WHERE query = $1`, [`LISTEN "${t.prefix}cancel"`])).length === 1,
      'the listener to reconnect',
      5000,
    );
    await sleep(50);
    const after = [];
    for (let i = 0; i < 10; i++) after.push(await latency());
    byNotify(after);
  });

  it('close() while the listener reconnects leaves no LISTEN connection behind', async () => {
    const t = await factory.create();
    cleanups.push(() => t.cleanup());
    const listening = async () => t.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE query = $1`, [`LISTEN "${t.prefix}cancel"`]);
    // The reconnect starts 50 ms after the drop and takes a few ms: close at steps across that window.
    for (let i = 0; i < 10; i++) {
      const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
      jobs.define('x', async () => undefined);
      await jobs.start();
      const [{ pid }] = await listening();
      await t.query('SELECT pg_terminate_backend($1)', [pid]);
      await sleep(46 + i);
      await jobs.close();
      await sleep(100); // a client left connecting would be listening by now
      expect(await listening(), `closed ${46 + i} ms after the drop`).to.deep.equal([]);
    }
  });

  // pg's own Client (slonik's listener is one too, from the same module, but its pool is not).
  if (name === 'postgres') it("a LISTEN that fails while the worker starts: start() tries again on a new connection, and the failed one is closed", async () => {
    const t = await factory.create();
    cleanups.push(() => t.cleanup());
    const pg = (await import('pg')).default;
    const query = pg.Client.prototype.query;
    let failed: InstanceType<typeof pg.Client> | null = null;
    pg.Client.prototype.query = function (this: InstanceType<typeof pg.Client>, ...args: unknown[]) {
      if (!failed && typeof args[0] === 'string' && args[0].startsWith('LISTEN ')) {
        failed = this;
        return Promise.reject(Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' }));
      }
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
    cleanups.push(async () => void (pg.Client.prototype.query = query));
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    jobs.on('error', () => undefined);
    jobs.define('x', async () => undefined);
    await jobs.start();
    pg.Client.prototype.query = query;
    const pid = (failed as unknown as { processID: number } | null)?.processID;
    expect(pid, 'a LISTEN failed').to.be.a('number');
    await until(async () => (await t.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, [pid])).length === 0, 'the failed LISTEN connection to close', 3000);
    expect(await t.query(`SELECT 1 FROM pg_stat_activity WHERE query = $1`, [`LISTEN "${t.prefix}cancel"`]), 'the worker listens').to.have.length(1);
    await jobs.close();
  });

  if (name === 'postgres') it('stop() while start() opens its LISTEN connection to a host that never answers: stop() returns at once, start() resolves, nothing is left', async () => {
    const t = await factory.create();
    cleanups.push(() => t.cleanup());
    // directUrl (the LISTEN connection's address) points at a server that accepts and never answers.
    const net = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    let closedByClient = 0;
    const silent = net.createServer((s) => {
      sockets.push(s);
      s.on('close', () => closedByClient++).resume();
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    });
    const port = (silent.address() as import('node:net').AddressInfo).port;
    const jobs = t.jobs({ pooler: 'session', directUrl: `postgres://nobody@127.0.0.1:${port}/test`, worker: { pollInterval: 60_000 } });
    jobs.on('error', () => undefined);
    jobs.define('x', async () => undefined);
    await jobs.migrate();
    const starting = jobs.start();
    await until(() => sockets.length > 0, 'the LISTEN connection to be opened');
    const t0 = performance.now();
    await jobs.stop({ timeout: 100 });
    expect(performance.now() - t0, 'stop() waited for the LISTEN connection').to.be.below(1000);
    await starting;
    expect((await jobs.status()).workers, 'no worker registered').to.have.length(0);
    await until(() => closedByClient === sockets.length, 'the LISTEN connection to be given up', 2000);
  });

  if (name === 'postgres') it('stop() while the claim connection made ready at start never answers (a claim queued behind it): that connect is dropped, the claim gets its own, stop() and start() settle', async () => {
    const t = await factory.create();
    cleanups.push(() => t.cleanup());
    // directUrl (the claim and LISTEN connections' address) through a proxy that holds its first
    // connection silent, the claim connection's (made ready first: store.prepareClaims), and
    // passes the others: the LISTEN connection and the first claim's, queued behind the first.
    const net = await import('node:net');
    const target = new URL(t.location);
    const held: import('node:net').Socket[] = [];
    const passed: import('node:net').Socket[] = [];
    const proxy = net.createServer((client) => {
      client.on('error', () => undefined);
      if (held.length === 0) {
        held.push(client.resume());
        return;
      }
      const upstream = net.connect(Number(target.port || 5432), target.hostname).on('error', () => undefined);
      passed.push(client, upstream);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const s of [...held, ...passed]) s.destroy();
      await new Promise((r) => proxy.close(r));
    });
    const direct = new URL(t.location);
    direct.hostname = '127.0.0.1';
    direct.port = String((proxy.address() as import('node:net').AddressInfo).port);
    const jobs = t.jobs({ pooler: 'session', directUrl: direct.toString(), worker: { pollInterval: 60_000 } });
    const errors: string[] = [];
    jobs.on('error', (err) => errors.push(err instanceof Error ? err.message : String(err)));
    jobs.define('x', async () => undefined);
    await jobs.migrate();
    let settled = false;
    const starting = jobs.start().finally(() => (settled = true));
    await until(() => passed.length >= 2, 'the LISTEN connection');
    await sleep(200); // the first claim waits behind the held connect
    const t0 = performance.now();
    await jobs.stop({ timeout: 100 });
    expect(performance.now() - t0, 'stop() waited for the held connect').to.be.below(2000);
    await until(() => settled, 'start() to settle', 2000);
    await starting;
    expect(errors.filter((m) => /did not answer/.test(m)), 'stop() gave up').to.deep.equal([]);
    await until(() => held[0]!.destroyed || held[0]!.readableEnded, 'the held connection to be given up', 2000);
    await jobs.close();
  });

  it('sends one NOTIFY per statement and queue, none for jobs not yet due, and none for a rolled-back enqueue', async () => {
    const t = await factory.create();
    cleanups.push(() => t.cleanup());
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const pg = (await import('pg')).default;
    const listener = new pg.Client({ connectionString: t.location });
    await listener.connect();
    cleanups.push(() => listener.end());
    const heard: string[] = [];
    listener.on('notification', (m) => heard.push(m.payload ?? ''));
    await listener.query(`LISTEN "${t.prefix}jobs"`);
    await jobs.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ name: 'x', payload: i, queue: i % 2 ? 'a' : 'b' })));
    await jobs.enqueue('x', {}, { delay: 60_000, queue: 'c' });
    if (t.driver === 'slonik') {
      const rolledBack = await (t.db as import('slonik').DatabasePool)
        .transaction(async (tx) => {
          await jobs.enqueue('x', {}, { tx, queue: 'd' });
          throw new Error('rolled back');
        })
        .catch((e: Error) => e.message);
      expect(rolledBack).to.equal('rolled back');
    } else {
      const client = await (t.db as import('pg').Pool).connect();
      await client.query('BEGIN');
      await jobs.enqueue('x', {}, { tx: client, queue: 'd' });
      await client.query('ROLLBACK');
      client.release();
    }
    await sleep(200);
    expect(heard.sort()).to.deep.equal(['a', 'b']);
  });
});
