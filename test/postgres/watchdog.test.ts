/**
 * The watchdog of our PostgreSQL statements (lib/driver/postgres/watchdog.ts) at the driver level:
 * the statement each connection of ours runs first to name its backend, and how an answer is heard.
 * (What it does when a backend never answers: test/faults/unanswered.test.ts.)
 */
import { expect } from 'chai';
import net from 'node:net';
import pg from 'pg';
import { PostgresStore } from '../../lib/driver/postgres/store.ts';
import { continueStopped, stopProcess } from '../helpers/frozen-proxy.ts';
import { DIALECTS, PG_URL, requireDatabase, sleep, uniquePrefix, until } from '../helpers/dialects.ts';

const CHECK_MS = 100;

/** A store on `pool`, its pool's sessions kept (so its connections are watched), looking every CHECK_MS. */
function storeOn(pool: pg.Pool): { store: PostgresStore; own: pg.Pool } {
  const store = new PostgresStore(pool, { prefix: uniquePrefix(), pooler: 'session', workerPoolSize: 2 } as never);
  store.watchdog.checkMs = CHECK_MS;
  return { store, own: (store as unknown as { own: pg.Pool }).own };
}

type Pass = (chunk: Buffer, client: net.Socket, upstream: net.Socket) => void;

/** A proxy to PostgreSQL whose bytes each way go through `up` and `down` (both pass them on by default). */
async function pgProxy(up: Pass = (d, _c, u) => void u.write(d), down: Pass = (d, c) => void c.write(d)): Promise<{ url: string; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(new URL(PG_URL).port || 5432), new URL(PG_URL).hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => up(d, client, upstream));
    upstream.on('data', (d) => down(d, client, upstream));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(PG_URL);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return { url: url.toString(), close: () => (sockets.forEach((s) => s.destroy()), server.close()) };
}

/** Cuts a connection as soon as the client sends bytes containing `marker`. */
function cuttingProxy(marker: string): ReturnType<typeof pgProxy> {
  return pgProxy((d, client, upstream) => (d.includes(marker) ? (client.destroy(), upstream.destroy()) : upstream.write(d)));
}

/**
 * Gives its first connection, in the same read as the server's first ready message, the FATAL
 * error the server sends a backend it ends (pg_terminate_backend), then its end.
 */
function endingProxy(): ReturnType<typeof pgProxy> {
  const READY = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]); // ReadyForQuery, idle
  const fields = ['SFATAL', 'VFATAL', 'C57P01', 'Mterminating connection due to administrator command'].map((f) => Buffer.from(`${f}\0`));
  const body = Buffer.concat([...fields, Buffer.from([0])]);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length + 4);
  const fatal = Buffer.concat([Buffer.from('E'), len, body]);
  let ended = false;
  return pgProxy(undefined, (d, client, upstream) => {
    if (ended || !d.includes(READY)) return void client.write(d);
    ended = true;
    client.end(Buffer.concat([d, fatal]));
    upstream.destroy();
  });
}

describe('PostgreSQL: our statements watched until they answer [postgres]', function () {
  before(requireDatabase(DIALECTS.find((d) => d.name === 'postgres')!));
  // A test that timed out never reaches its finally: its stopped backend is continued here.
  afterEach(() => continueStopped());

  it('a connection dropped while it names its backend fails that connect (the caller sees a dropped connection), not the process', async () => {
    // pg-pool listens for a client's errors only once its connect is done: an error then heard by nobody would end the process.
    const proxy = await cuttingProxy('pg_backend_pid() AS pid');
    const app = new pg.Pool({ connectionString: proxy.url, max: 2 });
    app.on('error', () => undefined);
    const { store, own } = storeOn(app);
    try {
      const err = await own.query('SELECT 1').then(() => null, (e: Error) => e);
      expect(err?.message).to.match(/Connection terminated|ECONNRESET/);
    } finally {
      await store.close().catch(() => undefined);
      await app.end();
      proxy.close();
    }
  });

  it("a backend ended by the server in the same read as its ready message fails that connect, not the process (pg-pool's listener comes on later)", async () => {
    const proxy = await endingProxy();
    const app = new pg.Pool({ connectionString: proxy.url, max: 2 });
    app.on('error', () => undefined);
    const { store, own } = storeOn(app);
    try {
      const err = await own.query('SELECT 1').then(() => null, (e: Error) => e);
      expect(err?.message).to.match(/terminating connection due to administrator command|Connection terminated/);
      expect((await own.query('SELECT 1 AS one')).rows[0].one, 'the next connection').to.equal(1);
    } finally {
      await store.close().catch(() => undefined);
      await app.end();
      proxy.close();
    }
  });

  for (const size of ['short', 'of 8 MB (more than the socket takes: most of it stays in our buffer)'] as const) it(`a statement ${size} sent to a backend stopped while idle is given up, and that backend ended before it reads it: its row never lands`, async function () {
    this.timeout(20_000);
    const table = `${uniquePrefix()}landed`;
    const text = size === 'short' ? '' : 'x'.repeat(8_000_000);
    const app = new pg.Pool({ connectionString: PG_URL, max: 2 });
    app.on('error', () => undefined);
    const side = new pg.Client({ connectionString: PG_URL });
    await side.connect();
    await side.query(`CREATE TABLE ${table} (n int, t text)`);
    const { store, own } = storeOn(app);
    try {
      const c = await own.connect();
      c.on('error', () => undefined); // as the library's own holders listen (lib/driver/held.ts)
      const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      stopProcess(pid);
      const err = await c.query(`INSERT INTO ${table} VALUES (1, $1)`, [text]).then(() => null, (e: Error) => e);
      c.release(err ?? undefined);
      expect(err?.message).to.match(/dropped this connection: the database did not answer/);
      continueStopped(pid);
      // Dropping our socket alone would not do: continued, the backend would first run what it had received.
      await until(async () => (await side.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0, 'the backend to end');
      expect((await side.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n).to.equal(0);
    } finally {
      continueStopped();
      await side.query(`DROP TABLE IF EXISTS ${table}`);
      await side.end();
      await store.close();
      await app.end();
    }
  });

  for (const form of ['a config callback', "the app's Promise library"] as const) {
    it(`an answer heard through ${form}: nothing is left watched, and the idle connection is left alone`, async () => {
      // A thenable that is no native Promise (as bluebird's): pg builds its promises with the pool's Promise option.
      class OtherPromise<T> {
        constructor(private readonly p: Promise<T>) {}
        static make<T>(ex: (resolve: (v: T) => void, reject: (e: unknown) => void) => void): OtherPromise<T> {
          return new OtherPromise(new Promise(ex));
        }
        then<A, B>(a?: (v: T) => A, b?: (e: unknown) => B): OtherPromise<A | B> {
          return new OtherPromise(this.p.then(a, b));
        }
        catch<B>(b: (e: unknown) => B): OtherPromise<T | B> {
          return new OtherPromise(this.p.catch(b));
        }
      }
      const PromiseOption = function <T>(ex: (resolve: (v: T) => void, reject: (e: unknown) => void) => void) {
        return OtherPromise.make(ex);
      };
      const app = new pg.Pool({ connectionString: PG_URL, max: 2, ...(form === "the app's Promise library" ? { Promise: PromiseOption as never } : {}) });
      app.on('error', () => undefined);
      const { store, own } = storeOn(app);
      const side = new pg.Client({ connectionString: PG_URL });
      await side.connect();
      try {
        const watched = () => (store.watchdog as unknown as { watches: Map<unknown, unknown> }).watches.size;
        const c = await own.connect();
        const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
        // Watched while it runs (an answer that could not be heard would leave it unwatched), not once answered.
        const sleeping = form === 'a config callback'
          ? new Promise((resolve) => c.query({ text: 'SELECT pg_sleep(0.3)', callback: resolve } as never))
          : c.query('SELECT pg_sleep(0.3)');
        expect(watched(), 'the statement running').to.equal(1);
        await sleeping;
        expect(watched(), 'statements still watched').to.equal(0);
        c.release();
        await sleep(12 * CHECK_MS); // past the idle spell the watchdog ends (6 looks)
        const { rows } = await side.query('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid]);
        expect(rows[0]?.state, 'the pooled backend').to.equal('idle');
      } finally {
        await side.end();
        await store.close();
        await app.end();
      }
    });
  }
});
