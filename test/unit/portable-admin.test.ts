/**
 * The operators' actions and the retention prune (lib/driver/portable/admin.ts) as each dialect
 * renders them, without a server: the job rules they carry and the locks they take. What they do
 * runs against the databases in test/admin/, test/conformance/ and test/store/.
 */
import { expect } from 'chai';
import type { Dialect } from '../../lib/driver/store.ts';
import { cancelJob, historyPrune, historyPrunePick, jobRetry, jobsDelete } from '../../lib/driver/portable/admin.ts';
import { queueGroupCounts, queueStartsInWindow } from '../../lib/driver/portable/reads.ts';
import { played } from '../helpers/portable.ts';
import { UUID, sqlFor } from '../helpers/portable.ts';

const DIALECTS: Dialect[] = ['sqlite', 'postgres', 'mysql', 'mssql'];

/** How each dialect keeps the rows a read found locked until commit (SQLite: its write transaction holds the database). */
const LOCKED: Record<Dialect, RegExp> = {
  sqlite: /^(?![\s\S]*(FOR UPDATE|UPDLOCK))/,
  postgres: / FOR UPDATE$/,
  mysql: / FOR UPDATE$/,
  mssql: / WITH \(UPDLOCK, HOLDLOCK\) WHERE /,
};

describe('operators\' actions and the retention prune, rendered for every dialect', () => {
  for (const dialect of DIALECTS) {
    describe(dialect, () => {
      const sql = sqlFor(dialect);

      it('reads the rows cancel, retry and delete move under a lock first, in the same transaction', () => {
        // (First, unlocked, the job's serial key: its key's row and the job before it are locked before the job.)
        const [keyRead, cancelled] = played(cancelJob(sql, UUID), () => ({ rows: [], changes: 0 }));
        expect(keyRead.text).to.match(/^SELECT id, serial_key FROM app_jobs/);
        const [, finished] = jobRetry(sql, UUID);
        const [pending, deleted] = jobsDelete(sql, [UUID]);
        for (const s of [cancelled, finished, pending, deleted]) {
          expect(s.text).to.match(/^SELECT /).and.match(LOCKED[dialect]);
          expect(s.returnsRows).to.equal(true);
        }
      });

      it('retries with at least one attempt left, by one CASE every database has (no MAX, GREATEST)', () => {
        const back = jobRetry(sql, UUID)[2].text;
        expect(back.match(/CASE WHEN max_attempts > attempts THEN max_attempts ELSE attempts \+ 1 END/g)).to.have.length(1);
        expect(back).to.not.match(/\bMAX\(|GREATEST/);
        expect(back).to.match(/NOT EXISTS \(SELECT 1 FROM app_jobs j WHERE j\.ref_id = h\.ref_id\)$/);
      });

      it('deletes pending jobs only (never a running one)', () => {
        const [pending, , live] = jobsDelete(sql, [UUID]);
        for (const s of [pending, live]) expect(s.text).to.include("AND state = 'pending'");
      });

      it('deletes the same trail (logs, attempts, dependency edges, side index rows of jobs gone from both tables) when deleting and when pruning', () => {
        const TRAIL = /^DELETE FROM app_(logs|attempts|deps|unique_jobs|reservations) /;
        const trail = (list: { text: string }[]) => list.map((s) => s.text.replace(/\s+/g, ' ')).filter((t) => TRAIL.test(t));
        const deleting = trail(jobsDelete(sql, [UUID]));
        expect(deleting).to.deep.equal(trail(historyPrune(sql, { olderThanMs: 1000, ids: [UUID] })));
        const side = dialect === 'mysql' ? ['unique_jobs job_id', 'reservations job_id'] : [];
        expect(deleting.map((t) => t.replace(/^DELETE FROM app_(\w+) WHERE (\w+) .*/, '$1 $2'))).to.deep.equal(['logs job_id', 'attempts job_id', 'deps child_id', ...side]);
        for (const text of deleting) expect(text).to.include('NOT EXISTS (SELECT 1 FROM app_jobs').and.include('NOT EXISTS (SELECT 1 FROM app_history');
      });

      it('picks at most `limit` jobs older than the retention by the database clock', () => {
        const pick = historyPrunePick(sql, { olderThanMs: 86_400_000, limit: 100 });
        expect(pick.values).to.deep.equal([-86_400_000, 100]);
        expect(pick.text).to.match(dialect === 'mssql' ? /^SELECT TOP \(@p2\) id FROM app_history WHERE finished_at < / : / LIMIT (\?|\$2)$/);
      });

      it("counts a queue's groups on one clock reading, starts within the rate window only, and only the groups asked for", () => {
        const plain = queueGroupCounts(sql, { queue: 'q', windowMs: null, limit: 100 });
        expect(plain.text).to.not.include('app_starts').and.not.include('group_key IN').and.not.match(/ANY\(/);
        expect(plain.text.split(sql.d.now).length - 1, 'the clock read once').to.equal(1);
        const some = queueGroupCounts(sql, { queue: 'q', windowMs: 60_000, groups: ['a', 'b'], limit: 100 });
        // Each part filters by the groups (one bound list each), the starts part by the window;
        // where pending and running jobs are indexed apart (PostgreSQL), each state is a part.
        const list = JSON.stringify(sql.d.listValue(['a', 'b']));
        expect(some.values.filter((v) => JSON.stringify(v) === list)).to.have.length(sql.d.queueIndexHoldsRunning ? 2 : 3);
        expect(some.values).to.include(-60_000);
        expect(some.text).to.match(/FROM app_starts\s+WHERE queue = \S+ AND started_at > /);
        expect(queueStartsInWindow(sql, { queue: 'q', windowMs: 5000 }).text).to.match(/^SELECT COUNT\(\*\) AS n FROM app_starts WHERE queue = \S+ AND started_at > /);
      });
    });
  }
});
