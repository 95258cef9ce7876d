/**
 * PostgreSQL only: a client whose backend the server ends in the very read that made it ready.
 * pg parses that read in one go: the connection's readiness hands the client over (pg-pool takes
 * its own 'error' listener off), then the server's error is emitted on the client at once, before
 * a caller resumed from a promise could listen. Unheard, that 'error' ends the host process.
 */
import { expect } from 'chai';
import pg from 'pg';
import { createJobs } from '../../lib/index.ts';
import { PG_URL, requireDatabase, DIALECTS, uniquePrefix, until } from '../helpers/dialects.ts';
import { trapCrashes } from '../helpers/traps.ts';

type ConnectCallback = (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void;

/**
 * A pg Pool class whose next `hand.left` hand-overs by a pool of one connection (the worker's claim
 * connection, made from the app pool's class; it holds its client across awaits) are followed at
 * once by the server ending the backend. Not pool.query()'s: pg-pool listens there itself.
 */
function poolEndingBackendsAtHandover(hand: { left: number }): new (cfg: pg.PoolConfig) => pg.Pool {
  const Ending = class extends pg.Pool {
    // @ts-expect-error pg's overloads: the callback and the promise form, as pg-pool has them
    override connect(cb?: ConnectCallback): Promise<pg.PoolClient> | void {
      if (!cb) return new Promise((resolve, reject) => this.connect((err, client) => (err || !client ? reject(err) : resolve(client))));
      super.connect((err, client, done) => {
        cb(err, client, done);
        if (client && this.options.max === 1 && hand.left-- > 0) client.emit('error', new Error('terminating connection due to administrator command'));
      });
    }
  };
  return Ending as unknown as new (cfg: pg.PoolConfig) => pg.Pool;
}

describe('faults: a backend ended as its client is handed over [postgres]', function () {
  const factory = DIALECTS.find((d) => d.name === 'postgres');
  if (!factory) return;
  before(requireDatabase(factory));
  const crashes = trapCrashes();

  it('is heard by the library (no uncaught error), and jobs go on', async () => {
    const prefix = uniquePrefix();
    const hand = { left: 0 };
    const Pool = poolEndingBackendsAtHandover(hand);
    const db = new Pool({ connectionString: PG_URL, max: 4 });
    db.on('error', () => undefined);
    const jobs = createJobs({ db, tablePrefix: prefix, worker: { pollInterval: 50 } });
    jobs.on('error', () => undefined);
    try {
      await jobs.migrate();
      let ran = 0;
      jobs.define('x', async () => void ran++);
      await jobs.start();
      // The next 6 claims each get a client whose backend ends as it is handed over.
      hand.left = 6;
      await jobs.enqueueMany(Array.from({ length: 20 }, () => ({ name: 'x', payload: {} })));
      await until(() => ran === 20 && hand.left <= 0, 'every job, after the ended hand-overs');
      await until(async () => (await jobs.status()).live.length === 0, 'their outcomes');
      expect(hand.left).to.be.at.most(0);
      crashes.expectNone();
    } finally {
      await jobs.close();
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      const tables = await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1`, [`${prefix.replaceAll('_', '\\_')}%`]);
      for (const t of tables.rows) await c.query(`DROP TABLE IF EXISTS "${t.tablename}" CASCADE`);
      await c.end();
      await db.end();
    }
  });
});
