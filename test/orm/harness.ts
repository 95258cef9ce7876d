/**
 * One suite for every ORM: each case opens the ORM as an app would and runs its own transaction,
 * writing a row of the app's through the ORM and enqueuing through the same transaction object.
 * A commit keeps both and the job runs; a rollback keeps neither. Where createJobs takes the ORM's
 * own instance, the app's side of sqljobs runs on the ORM's pool: counted on the server.
 */
import { expect } from 'chai';
import type { EnqueueResult } from '../../lib/index.ts';
import { createJobs } from '../../lib/index.ts';
import { uniquePrefix, until } from '../helpers/dialects.ts';

export type OrmDialect = 'postgres' | 'mysql' | 'sqlite';

export interface OrmTransactionBody {
  /** Id of the app row to write through the ORM, inside its transaction. */
  rowId: string;
  /** Enqueue through the ORM's transaction object. */
  enqueue(tx: unknown): Promise<EnqueueResult>;
}

export interface OrmHandle {
  /** What createJobs gets: the ORM's instance where it owns the pool, else the driver handle it was built on. */
  db: unknown;
  /** Open the ORM's transaction, write body.rowId into app_rows through the ORM, enqueue; throw after both when `rollback`. */
  transaction(body: OrmTransactionBody, rollback: boolean): Promise<EnqueueResult>;
  /** Ids in app_rows, read through the ORM. */
  rows(): Promise<string[]>;
  /** Server connections the ORM's pool may hold (for the count), when db is the ORM's own instance. */
  poolMax?: number;
  close(): Promise<void>;
}

export interface OrmCase {
  orm: string;
  dialect: OrmDialect;
  /** Creates app_rows (id varchar(64) primary key) in a fresh database or schema, and opens the ORM. */
  open(): Promise<OrmHandle>;
  /** The refusal of the transaction object once its transaction has finished, when the case knows it exactly. */
  finishedRefusal?: RegExp;
  /** Why an enqueue left running past the transaction's end cannot be refused here (the test is skipped, saying so). */
  unawaitedUndetected?: string;
  /** Backends on the server opened with this case's application name (PostgreSQL: pg_stat_activity). */
  connections?(): Promise<number>;
}

class Rollback extends Error {}
export const ROLLBACK = (): never => {
  throw new Rollback('rolled back on purpose');
};

export function ormSuite(c: OrmCase): void {
  describe(`${c.orm} on ${c.dialect}`, function () {
    let orm: OrmHandle;
    let prefix: string;
    before(async () => {
      orm = await c.open();
      prefix = uniquePrefix();
    });
    after(async () => orm?.close());

    it('commit: the app row and the job both exist, and the job runs', async () => {
      const ran: string[] = [];
      const jobs = createJobs<{ 'orm.job': { rowId: string } }>({ db: orm.db as never, tablePrefix: prefix, worker: { pollInterval: 50 } });
      jobs.define('orm.job', async (p) => void ran.push(p.rowId));
      try {
        const rowId = `commit-${crypto.randomUUID()}`;
        const r = await orm.transaction({ rowId, enqueue: (tx) => jobs.enqueue('orm.job', { rowId }, { tx: tx as never }) }, false);
        expect(r.existed).to.equal(false);
        expect(await orm.rows()).to.include(rowId);
        expect((await jobs.get(r.id))?.payload).to.deep.equal({ rowId });
        await jobs.start();
        await until(() => ran.includes(rowId), `the job of ${rowId} to run`);
        await until(async () => (await jobs.get(r.id))?.state === 'completed', 'the job to complete');
      } finally {
        await jobs.close();
      }
    });

    it('rollback: neither the app row nor the job exists', async () => {
      const jobs = createJobs({ db: orm.db as never, tablePrefix: prefix, worker: false });
      try {
        const rowId = `rollback-${crypto.randomUUID()}`;
        let id: string | undefined;
        const err = await orm
          .transaction({ rowId, enqueue: async (tx) => { const r = await jobs.enqueue('orm.job', { rowId }, { tx: tx as never }); id = r.id; return r; } }, true)
          .then(() => null, (e: unknown) => e);
        expect(err, 'the transaction was rolled back').to.be.instanceOf(Error);
        expect(id, 'the enqueue inside it had succeeded').to.be.a('string');
        expect(await orm.rows()).to.not.include(rowId);
        expect(await jobs.get(id!)).to.equal(null);
      } finally {
        await jobs.close();
      }
    });

    it("a payload, tag and refId holding every driver's placeholder syntax and quotes are stored exactly", async () => {
      const jobs = createJobs({ db: orm.db as never, tablePrefix: prefix, worker: false });
      try {
        // $n (pg, slonik), ? and ?? (mysql2, Knex, Sequelize), :name (Sequelize, Knex), @p (mssql), quotes and backslashes.
        const awkward = `$1 $10 ? ?? :name :1 @p1 it's "q" \\ E'x' {a,b}`;
        const rowId = `awkward-${crypto.randomUUID()}`;
        const r = await orm.transaction({ rowId, enqueue: (tx) => jobs.enqueue('orm.job', { rowId, awkward }, { tx: tx as never, tag: awkward, refId: `${rowId} ${awkward}` }) }, false);
        const job = await jobs.get(r.id);
        expect(job?.payload).to.deep.equal({ rowId, awkward });
        expect(job?.tag).to.equal(awkward);
        expect(await orm.rows()).to.include(rowId);
        const again = await orm.transaction({ rowId: `${rowId}-again`, enqueue: (tx) => jobs.enqueue('orm.job', { rowId }, { tx: tx as never, refId: `${rowId} ${awkward}` }) }, false);
        expect(again).to.deep.equal({ id: r.id, existed: true });
      } finally {
        await jobs.close();
      }
    });

    it('refuses the ORM object outside a transaction, saying what it got and what it takes', async () => {
      const jobs = createJobs({ db: orm.db as never, tablePrefix: prefix, worker: false });
      try {
        await jobs.migrate();
        const rowId = `late-${crypto.randomUUID()}`;
        let stale: unknown;
        await orm.transaction({ rowId, enqueue: async (tx) => { stale = tx; return { id: '', existed: false }; } }, false);
        const err = await jobs.enqueue('orm.job', { rowId }, { tx: stale as never }).then(() => null, (e: unknown) => e as Error);
        expect(err, 'an enqueue on a finished transaction').to.be.instanceOf(Error);
        expect((err as Error).message).to.match(c.finishedRefusal ?? /opts\.tx|transaction/i);
      } finally {
        await jobs.close();
      }
    });

    it('an enqueue not awaited before the transaction rolls back is not written', async function () {
      if (c.unawaitedUndetected) {
        console.log(`      (${c.orm} on ${c.dialect}: ${c.unawaitedUndetected})`);
        this.skip();
      }
      const jobs = createJobs({ db: orm.db as never, tablePrefix: prefix, worker: false });
      try {
        await jobs.migrate();
        const rowId = `unawaited-${crypto.randomUUID()}`;
        let pending: Promise<unknown> = Promise.resolve();
        const enqueue = (tx: unknown) => {
          // Left running while the transaction rolls back (a forgotten await).
          pending = jobs.enqueue('orm.job', { rowId }, { tx: tx as never, tag: rowId }).catch((e: unknown) => e);
          return Promise.resolve({ id: '', existed: false });
        };
        await orm.transaction({ rowId, enqueue }, true).catch(() => undefined);
        const outcome = await pending;
        expect((await jobs.list({ tag: rowId })).items, `no job survives the rollback (the enqueue answered ${outcome instanceof Error ? outcome.message : JSON.stringify(outcome)})`).to.have.length(0);
        expect(await orm.rows()).to.not.include(rowId);
      } finally {
        await jobs.close();
      }
    });

    if (c.connections) {
      it("runs the app's side of sqljobs on the ORM's own pool (no second pool: server connections counted)", async function () {
        if (orm.poolMax === undefined) this.skip();
        const jobs = createJobs({ db: orm.db as never, tablePrefix: prefix, worker: false });
        try {
          await jobs.migrate(); // on the worker's private pool: one connection, counted below
          const before = await c.connections!();
          let peak = before;
          const sampling = setInterval(() => void c.connections!().then((n) => (peak = Math.max(peak, n)), () => undefined), 5);
          await Promise.all(Array.from({ length: 60 }, (_, i) => jobs.enqueue('orm.job', { rowId: `burst-${i}` })));
          clearInterval(sampling);
          peak = Math.max(peak, await c.connections!());
          // 60 concurrent enqueues through a second pool (pg's default max is 10) would open far more.
          expect(peak, `server connections (ORM pool max ${orm.poolMax}, +1 private)`).to.be.at.most(orm.poolMax! + 1);
        } finally {
          await jobs.close();
        }
      });
    }
  });
}
