/**
 * MariaDB only: batches that lock several job rows lock them in one order. A completion too large
 * for one packet locks its rows chunk by chunk, in several round trips of one transaction; a batch
 * of progress values (or releases) locks its rows in one transaction too. A completion locking B,
 * then A, beside a progress batch locking A, then B, deadlocked (1213), and the progress batch was
 * dropped.
 */
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { forEachDialect, MYSQL_URL, sleep } from '../helpers/dialects.ts';
import { fenced, storeOf } from '../store/helpers.ts';

forEachDialect('batches lock rows in id order', ({ fresh }) => {
  it('a completion in two chunks and a progress batch over the same jobs do not deadlock', async () => {
    const t = await fresh();
    const { jobs, store } = await storeOf(t);
    await jobs.enqueueMany([0, 1, 2].map((n) => ({ name: 'locks', payload: { n } })));
    const claimed = await store.jobClaim({ workerId: 'worker-a', names: ['locks'], limit: 3 });
    const [a, b, x] = [...claimed].sort((p, q) => (p.id < q.id ? -1 : 1));
    const result = (chars: number) => JSON.stringify('r'.repeat(chars));
    // Another transaction holds X, so that the completion stops there with the rows before it locked.
    const blocker = await mysql.createConnection(MYSQL_URL);
    try {
      await blocker.query('START TRANSACTION');
      await blocker.query(`SELECT id FROM ${t.prefix}jobs WHERE id = ? FOR UPDATE`, [x.id]);
      // Two results of ~2 MB each: the completion goes in two round trips. Given as B, X, A.
      const completion = store
        .jobCompleteMany([
          { ...fenced(b), resultJson: result(2_090_000) },
          { ...fenced(x), resultJson: result(2_090_000) },
          { ...fenced(a), resultJson: result(14_000) },
        ])
        .then((ids) => [...ids].sort(), (err: Error) => err);
      await sleep(300);
      const progress = store.jobProgressMany([a, b].map((j) => ({ ...fenced(j), progress: 10, message: 'halfway' }))).then((ids) => [...ids], (err: Error) => err);
      await sleep(300);
      await blocker.query('COMMIT');
      const [completed, saved] = await Promise.all([completion, progress]);
      expect(completed, 'the completion').to.deep.equal([a.id, b.id, x.id].sort());
      expect(saved, 'the progress batch ran, after the completion: nothing of it applied').to.deep.equal([]);
    } finally {
      await blocker.end();
    }
  });
}, ['mysql']);
