/**
 * The hot operations each dialect writes itself (lib/driver/<dialect>/{enqueue,claim,…}.ts),
 * checked without a database server: SQLite's run on an in-memory database holding the real
 * schema (inside a transaction rolled back), PostgreSQL's parsed by PostgreSQL's own parser
 * (libpg-query), and for every dialect: one placeholder per value, values never in the text,
 * every write of a running attempt fenced by its token, claims skipping locked rows and paused
 * queues. SQL Server's are in test/mssql/statements.test.ts. What they do runs against the
 * databases in test/store/ and the conformance suite.
 */
import { expect } from 'chai';
import { expectPostgresParses, expectSqliteRuns } from '../helpers/offline-sql.ts';
import { buildJobRow } from '../../lib/model.ts';
import { tables } from '../../lib/driver/portable/statement.ts';
import type { ClaimRequest, FailItem } from '../../lib/driver/store.ts';
import * as pgEnqueue from '../../lib/driver/postgres/enqueue.ts';
import * as pgClaim from '../../lib/driver/postgres/claim.ts';
import * as pgComplete from '../../lib/driver/postgres/complete.ts';
import * as pgFail from '../../lib/driver/postgres/fail.ts';
import * as pgRelease from '../../lib/driver/postgres/release.ts';
import * as pgProgress from '../../lib/driver/postgres/progress.ts';
import * as pgLogs from '../../lib/driver/postgres/logs.ts';
import * as myEnqueue from '../../lib/driver/mysql/enqueue.ts';
import * as myClaim from '../../lib/driver/mysql/claim.ts';
import * as myMove from '../../lib/driver/mysql/move.ts';
import * as myFail from '../../lib/driver/mysql/fail.ts';
import * as myWrites from '../../lib/driver/mysql/writes.ts';
import * as liteEnqueue from '../../lib/driver/sqlite/enqueue.ts';
import * as liteClaim from '../../lib/driver/sqlite/claim.ts';
import * as liteMove from '../../lib/driver/sqlite/move.ts';
import * as liteFail from '../../lib/driver/sqlite/fail.ts';
import * as liteWrites from '../../lib/driver/sqlite/writes.ts';
import { HOSTILE, TOKEN, UUID } from '../helpers/portable.ts';

type Built = { text: string; values: unknown[] };

const pg = { ...pgEnqueue, ...pgClaim, ...pgComplete, ...pgFail, ...pgRelease, ...pgProgress, ...pgLogs };
const my = { ...myEnqueue, ...myClaim, ...myMove, ...myFail, ...myWrites };
const lite = { ...liteEnqueue, ...liteClaim, ...liteMove, ...liteFail, ...liteWrites };
const t = tables('app_');
const row = buildJobRow(UUID, 'send-mail', { to: HOSTILE }, { maxAttempts: 3, refId: HOSTILE, tag: HOSTILE, batchId: HOSTILE, createdBy: HOSTILE, meta: { note: HOSTILE } }, {
  queue: 'default',
  maxPayloadBytes: 1 << 20,
});
const fenced = { id: UUID, token: TOKEN };
const request: ClaimRequest = { workerId: HOSTILE, names: [HOSTILE], queues: [HOSTILE], excludeQueues: [HOSTILE], limit: 5 };
const failed: FailItem[] = [
  { ...fenced, attempt: 1, startedAt: null, error: { message: HOSTILE }, retryDelayMs: 100 },
  { ...fenced, attempt: 2, startedAt: new Date(0), error: { message: HOSTILE }, retryDelayMs: null },
];

/** Every hot statement of a dialect, named, with hostile text wherever a string goes in. */
const HOT: Record<'sqlite' | 'postgres' | 'mysql', [string, Built][]> = {
  postgres: [
    ['enqueue', pg.jobsEnqueue(t)([row], HOSTILE)],
    ['claim', pg.jobsClaim(t)(request, TOKEN)],
    ['complete', pg.jobsComplete(t)([{ ...fenced, resultJson: JSON.stringify(HOSTILE) }])],
    ['fail', pg.jobsFail(t)(failed, HOSTILE)],
    ['release', pg.jobsRelease(t)([{ ...fenced, delayMs: 0, refund: true }], HOSTILE)],
    ['progress', pg.jobsSaveProgress(t)([{ ...fenced, progress: 50, message: HOSTILE }])],
    ['logs', pg.logsAppend(t)([{ ...fenced, attempt: 1, lines: [{ at: 1, message: HOSTILE }] }])],
  ],
  mysql: [
    ['enqueue', my.jobsInsert(t, [row])],
    ['enqueue: live jobs by refId', my.jobsByRef(t, [HOSTILE])],
    ['claim: pick', my.jobsClaimPick(t, request)],
    ['claim: take', my.jobsClaimTake(t, [UUID], TOKEN, HOSTILE, new Date(0))],
    ['lock running', my.jobsLockRunning(t, [UUID], ', worker_id, started_at')],
    ['move to history', my.jobsMoveToHistory(t, 'failed', 'error', [{ ...fenced, value: JSON.stringify(HOSTILE) }])],
    ['retry later', my.jobRetryLater(t, failed[0], 100)],
    ['attempts', my.attemptsRecord(t, [[UUID, 1, HOSTILE, null, JSON.stringify(HOSTILE)]])],
    ['release', my.jobRelease(t, { ...fenced, delayMs: 0, refund: true })],
    ['progress', my.jobSaveProgress(t, { ...fenced, progress: 50, message: HOSTILE })],
    ['logs', my.logsAppendOwned(t, { ...fenced, attempt: 1, lines: [{ at: 1, message: HOSTILE }, { at: 2, message: HOSTILE }] })],
  ],
  sqlite: [
    ['enqueue', { text: lite.jobInsert(t).text, values: lite.jobInsert(t).values(row) }],
    ['enqueue: rows without refId', { text: lite.jobInsert(t).rowsText, values: liteRows(t, { ...row, refId: null }) }],
    ['enqueue: live job by refId', lite.jobByRef(t)(HOSTILE)],
    ['claim', lite.jobsClaim(t)(request, TOKEN)],
    ['claim (no queue lists)', lite.jobsClaim(t)({ workerId: HOSTILE, names: [HOSTILE], limit: 5 }, TOKEN)],
    ['move to history: copy', lite.jobMoveToHistory(t)(fenced, 'completed', null, JSON.stringify(HOSTILE)).copy],
    ['move to history by rowid: copy', lite.jobMoveToHistory(t)({ ...fenced, rowid: 7 }, 'failed', HOSTILE, null).copy],
    ['move to history: delete', lite.jobMoveToHistory(t)(fenced, 'completed', null, null).remove],
    ['retry later', lite.jobRetryLater(t)(UUID, TOKEN, 100, JSON.stringify(HOSTILE))],
    ['attempt', lite.attemptRecord(t)(UUID, 1, HOSTILE, null, JSON.stringify(HOSTILE))],
    ['release', lite.jobRelease(t)({ ...fenced, delayMs: 0, refund: true })],
    ['progress', lite.jobSaveProgress(t)({ ...fenced, progress: 50, message: HOSTILE })],
    ['owned', lite.jobOwned(t)(fenced)],
    ['log', lite.logInsert(t)(UUID, 1, 1, HOSTILE)],
  ],
};

/** The multi-row insert's values: ROWS_PER_INSERT copies of `r`, each with an id of its own. */
function liteRows(tables: typeof t, r: typeof row): unknown[] {
  const values: unknown[] = [];
  const insert = lite.jobInsert(tables);
  for (let i = 0; i < lite.ROWS_PER_INSERT; i++) insert.pushValues(values, { ...r, id: UUID.slice(0, -4) + String(i).padStart(4, '0') }, 0);
  return values;
}

/**
 * Statements that write on behalf of a running attempt, fenced in their own text by the claim
 * token and the running state. The others run in the same transaction after a fenced check
 * (MySQL's retry and attempt rows follow a locking read of the owned rows; SQLite's
 * log lines follow the `owned` probe), or do not touch a running job.
 */
const FENCED: Record<keyof typeof HOT, string[]> = {
  postgres: ['complete', 'fail', 'release', 'progress', 'logs'],
  mysql: ['move to history', 'release', 'progress', 'logs'],
  sqlite: ['move to history: copy', 'move to history by rowid: copy', 'retry later', 'release', 'progress', 'owned'],
};

function placeholders(dialect: keyof typeof HOT, text: string): number {
  if (dialect === 'postgres') return Math.max(0, ...(text.match(/\$\d+/g) ?? []).map((p) => Number(p.slice(1))));
  return (text.match(/\?/g) ?? []).length;
}

describe('hot statements, each dialect its own, without a server', () => {
  for (const dialect of ['sqlite', 'postgres', 'mysql'] as const) {
    describe(dialect, () => {
      it('binds one value per placeholder and never puts a value in the text', () => {
        for (const [name, s] of HOT[dialect]) {
          expect(placeholders(dialect, s.text), name).to.equal(s.values.length);
          expect(s.text, name).to.not.include('DROP TABLE');
        }
      });

      it('fences every write of a running attempt by its token and the running state', () => {
        const byName = new Map(HOT[dialect]);
        for (const name of FENCED[dialect]) {
          const s = byName.get(name)!;
          expect(s, name).to.exist;
          // PostgreSQL's batch writes say `<> 'pending'`, the same rows, so that the planner cannot read them through the partial index on running rows (lib/driver/postgres/owned.ts).
          expect(s.text, name).to.match(dialect === 'postgres' ? /\bstate <> 'pending'/ : /\bstate = 'running'/);
          expect(s.text, name).to.match(/\btoken = (\?|x\.token|j\.token)/);
        }
      });

      if (dialect === 'mysql') it('locks the rows a list of ids names by the primary key, never by a scan that would wait for rows another transaction holds', () => {
        const lock = new Map(HOT.mysql).get('lock running')!;
        expect(lock.text).to.match(/ FORCE INDEX \(PRIMARY\) WHERE id IN \(\?\) AND state = 'running' FOR UPDATE$/);
      });

      it('claims due jobs by priority then run time, skipping paused queues and rows another claimer holds', () => {
        const claims = HOT[dialect].filter(([name]) => name.startsWith('claim') && !name.includes('take'));
        expect(claims).to.not.be.empty;
        for (const [name, s] of claims) {
          expect(s.text, name).to.match(/ORDER BY priority DESC, run_at/);
          expect(s.text, name).to.include(`queue NOT IN (SELECT queue FROM ${t.paused})`);
          // SQLite serialises writers on the database lock: no row to skip.
          if (dialect !== 'sqlite') expect(s.text, name).to.include('FOR UPDATE SKIP LOCKED');
        }
      });
    });
  }

  it("PostgreSQL: every statement parses with PostgreSQL's own parser", () => expectPostgresParses(HOT.postgres));

  it('SQLite: every statement runs on the real schema with its values (rolled back)', () => expectSqliteRuns(HOT.sqlite));
});
