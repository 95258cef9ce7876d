/**
 * Store-level conformance: a batch of fenced writes along the way (logs, progress, release) is
 * all or nothing. The writer answers a refused batch by writing it again item by item to find
 * the refused item (../../lib/worker/writer.ts), so a batch that left some items written would
 * write them twice: log lines duplicated, a release applied and then reported not applied.
 */
import { expect } from 'chai';
import type { ClaimedJob, Store } from '../../lib/driver/store.ts';
import { forEachDialect, type TestDb } from '../helpers/dialects.ts';
import { fenced, snapshot, storeOf } from './helpers.ts';

/** One attempt's write in a batch, with the values it carries. */
interface Item {
  job: ClaimedJob;
  attempt: number;
  delayMs: number;
  progress: number;
}

type Batch = (store: Store, items: Item[]) => Promise<Set<string>>;

/** Values each database refuses: numbers past the column's range, or (SQLite, which stores any number) a value it cannot bind. */
function refused(t: TestDb, job: ClaimedJob): Item {
  const unbindable = {} as unknown as number;
  if (t.dialect === 'sqlite') return { job, attempt: unbindable, delayMs: unbindable, progress: unbindable };
  // An INT attempt, an interval past the calendar, a progress past REAL (PostgreSQL, SQL Server) or a NaN (MariaDB's DOUBLE).
  return { job, attempt: 2 ** 40, delayMs: 2 ** 62, progress: t.dialect === 'mysql' ? Number.NaN : 1e300 };
}

function acceptable(job: ClaimedJob): Item {
  return { job, attempt: job.attempts, delayMs: 0, progress: 50 };
}

const BATCHES: Record<string, Batch> = {
  logAppendMany: (store, items) =>
    store.logAppendMany(items.map((i) => ({ ...fenced(i.job), attempt: i.attempt, lines: [{ at: Date.now(), message: `line of ${i.job.id}` }] }))),
  jobProgressMany: (store, items) => store.jobProgressMany(items.map((i) => ({ ...fenced(i.job), progress: i.progress, message: 'halfway' }))),
  jobReleaseMany: (store, items) => store.jobReleaseMany(items.map((i) => ({ ...fenced(i.job), delayMs: i.delayMs, refund: true }))),
};

forEachDialect('store: a refused batch writes none of its items', ({ fresh }) => {
  for (const [name, write] of Object.entries(BATCHES)) {
    it(`${name}: the database refuses one item, and the other item is not written either`, async () => {
      const t = await fresh();
      const { jobs, store } = await storeOf(t);
      await jobs.enqueueMany([{ name: 'batch', payload: { n: 1 } }, { name: 'batch', payload: { n: 2 } }]);
      const [good, bad] = await store.jobClaim({ workerId: 'worker-a', names: ['batch'], limit: 2 });
      const before = [await snapshot(t, good.id), await snapshot(t, bad.id)];
      let error: unknown = null;
      await write(store, [acceptable(good), refused(t, bad)]).catch((err: unknown) => (error = err));
      expect(error, `${name} with a refused item throws`).to.be.instanceOf(Error);
      expect([await snapshot(t, good.id), await snapshot(t, bad.id)], 'both jobs as they were').to.deep.equal(before);
      // The good item alone, as the writer then sends it, applies once.
      expect([...(await write(store, [acceptable(good)]))]).to.deep.equal([good.id]);
      const after = await snapshot(t, good.id);
      expect(after, 'written once').to.not.deep.equal(before[0]);
      expect(after.logs.length, 'no line twice').to.be.at.most(1);
    });
  }
});
