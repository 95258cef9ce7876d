/**
 * A database that stops answering (a server stopped with SIGSTOP, a half-open connection after a
 * failover, a partition without a reset): the connections stay open and nothing comes back. The
 * app's shutdown must not wait for it forever, and nothing is lost: a job the worker could not give
 * back stays running under it and is rescued once the database answers again.
 */
import { expect } from 'chai';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { createPool as createSlonikPool } from 'slonik';
import { createJobs } from '../../lib/index.ts';
import { forEachDialect, until, type TestDb } from '../helpers/dialects.ts';
import { frozenProxy, throughProxy, type FrozenProxy } from '../helpers/frozen-proxy.ts';

type Held = { hold: boolean };

/** The app's handle of the test's driver, connected through the proxy; and how the app ends it. */
async function appHandle(t: TestDb, proxy: FrozenProxy): Promise<{ db: unknown; end: () => Promise<void> }> {
  const url = throughProxy(t.location, proxy);
  if (t.driver === 'slonik') {
    const pool = await createSlonikPool(url, { maximumPoolSize: 2 });
    return { db: pool, end: () => pool.end() };
  }
  if (t.driver === 'mysql2') {
    const pool = mysql.createPool({ uri: url, connectionLimit: 2 });
    return { db: pool, end: () => pool.end() };
  }
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  return { db: pool, end: () => pool.end() };
}

forEachDialect('faults: a database that stops answering', ({ fresh }) => {
  let proxy: FrozenProxy | null = null;
  afterEach(async () => {
    await proxy?.close();
    proxy = null;
  });

  it('close({ timeout }) returns within timeout + 5 s, leaves no connection open, and the job it could not give back is rescued', async function () {
    this.timeout(60_000);
    const t = await fresh();
    // The jobs are enqueued on the database directly: the app's pool through the proxy holds no
    // connection of its own, so every connection through it is one of the library's.
    const producer = t.jobs({ worker: false });
    await producer.migrate();
    proxy = await frozenProxy({ host: '127.0.0.1', port: Number(new URL(t.location).port) });
    const app = await appHandle(t, proxy);
    const errors: Error[] = [];
    const jobs = createJobs<{ held: Held }>({ db: app.db as never, tablePrefix: t.prefix, logger: false, worker: { concurrency: 2, pollInterval: 200 } });
    jobs.on('error', (err) => void errors.push(err as Error));
    let started = 0;
    // Held until the shutdown aborts it: the outcome to write is then the shutdown's release.
    jobs.define('held', (_p, ctx) => new Promise<void>((_resolve, reject) => {
      started++;
      ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
    }));
    await jobs.start();
    const { id } = await producer.enqueue('held', { hold: true });
    await until(() => started === 1, 'the job to start');

    proxy.freeze();
    const t0 = Date.now();
    await jobs.close({ timeout: 200 });
    const took = Date.now() - t0;
    expect(took, 'close() waited for a database that does not answer').to.be.below(200 + 5_000 + 1_500);
    expect(errors.map((e) => e.message).join('\n')).to.match(/did not answer/);
    await until(() => proxy!.open() === 0, 'every connection of the library through the proxy to be closed by its side', 3_000);
    await app.end();

    // Nothing lost: the job is still running under the stopped worker, and a worker of a database
    // that answers rescues it after stallTimeout and runs it.
    expect((await t.query<{ state: string }>(`SELECT state FROM ${t.prefix}jobs WHERE id = $1`, [id]))[0]?.state).to.equal('running');
    let ran = 0;
    const rescuer = t.jobs({ worker: { heartbeatInterval: 100, stallTimeout: 300, pollInterval: 100 } }).define('held', () => void ran++);
    await rescuer.start();
    await until(async () => (await rescuer.get(id))?.state === 'completed', 'the rescued job to complete', 20_000);
    expect(ran).to.equal(1);
  });
}, ['postgres', 'slonik', 'mysql']);
