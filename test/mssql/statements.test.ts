/**
 * SQL Server without a server: the text of each statement, how every value is bound (typed,
 * never spliced into the text), prefix validation, and how a statement reaches a real mssql
 * Request (constructed, never connected). The behaviour itself runs in the conformance suite
 * when SQLJOBS_MSSQL_URL is set.
 */
import { expect } from 'chai';
import mssql from 'mssql';
import { MssqlSql, appLockPattern } from '../../lib/driver/mssql/statements.ts';
import type { Param, Stmt } from '../../lib/driver/mssql/tsql.ts';
import { played, portableStatements, sqlFor } from '../helpers/portable.ts';
import { drive, tables } from '../../lib/driver/portable/statement.ts';
import { jobsEnqueue } from '../../lib/driver/mssql/enqueue.ts';
import { jobsClaim } from '../../lib/driver/mssql/claim.ts';
import { jobsComplete } from '../../lib/driver/mssql/complete.ts';
import { jobsFail } from '../../lib/driver/mssql/fail.ts';
import { jobsRelease, jobsSaveProgress, logsAppend } from '../../lib/driver/mssql/writes.ts';
import { leaseRelease, leaseRenew } from '../../lib/driver/portable/leases.ts';
import { jobsFinishedCounts, jobsList, queuesPaused, queuesStats } from '../../lib/driver/portable/reads.ts';
import { throughputCoverage, throughputLast, throughputRead, throughputSave } from '../../lib/driver/portable/throughput.ts';
import { cancelJob, jobMakeDue, jobRetry, jobsDelete, queuePause, queueResume } from '../../lib/driver/portable/admin.ts';
import type { Outcome, Statement, Steps } from '../../lib/driver/portable/statement.ts';
import { jobSaveCheckpoint, jobsCompletedBy, jobsFailedBy, jobsNextDue, jobsStalled, workerHeartbeat, workersRemoveStale } from '../../lib/driver/portable/workers.ts';
import { scheduleSetEnabled } from '../../lib/driver/portable/schedules.ts';
import { MssqlStore, SerialQueue, bind, named, isMssqlPool, isMssqlTransaction } from '../../lib/driver/mssql/store.ts';
import { buildJobRow } from '../../lib/model.ts';
import { buildSchedule } from '../../lib/schedule/schedule.ts';
import { createJobs } from '../../lib/index.ts';
import { partitionStatements } from './partitions.test.ts';
import { validatePrefix } from '../../lib/driver/store.ts';
import { loadMigrations, splitStatements } from '../../lib/driver/migrations.ts';

const HOSTILE = "x'); DROP TABLE sqljobs_jobs; --";
const UUID = '01936f4e-8a1b-7c2d-9e3f-0a1b2c3d4e5f';
const TOKEN = '5b0e7f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b';

const sql = new MssqlSql('app_');
const T = tables('app_');
/** The portable statements (lib/driver/portable/) as this dialect builds them. */
const portable = sqlFor('mssql');

function row(over: Record<string, unknown> = {}) {
  return buildJobRow(UUID, 'send-mail', { to: HOSTILE }, { refId: HOSTILE, tag: HOSTILE, batchId: HOSTILE, createdBy: HOSTILE, meta: { note: HOSTILE }, ...over }, {
    queue: 'default',
    maxPayloadBytes: 1 << 20,
  });
}

/** Every statement the dialect sends, built with hostile text wherever a string goes in. */
function everyStatement(): [string, Stmt][] {
  const fenced = { id: UUID, token: TOKEN };
  const schedule = buildSchedule('nightly', { every: 5, unit: 'minutes' }, { note: HOSTILE }, {}, 0);
  return [
    ['enqueue', jobsEnqueue(T, [row()])],
    ['claim', jobsClaim(T, { workerId: HOSTILE, names: [HOSTILE], queues: [HOSTILE], excludeQueues: [HOSTILE], limit: 5 }, TOKEN, false)],
    ['claim (RCSI)', jobsClaim(T, { workerId: HOSTILE, names: [HOSTILE], limit: 5 }, TOKEN, true)],
    ['complete', jobsComplete(T, [{ ...fenced, resultJson: JSON.stringify(HOSTILE) }])],
    ['fail', jobsFail(T, [{ ...fenced, attempt: 1, startedAt: null, error: { message: HOSTILE }, retryDelayMs: 100 }])],
    ['release', jobsRelease(T, [{ ...fenced, delayMs: 0, refund: true }])],
    ['saveProgress', jobsSaveProgress(T, [{ ...fenced, progress: 50, message: HOSTILE }])],
    ['appendLogs', logsAppend(T, [{ ...fenced, attempt: 1, lines: [{ at: Date.now(), message: HOSTILE }] }])],
    ['acquireLease', sql.acquireLease(HOSTILE, HOSTILE, 1000)],
    ['getAppLock', sql.getAppLock(HOSTILE)],
    ['appLockMode', sql.appLockMode(HOSTILE)],
    ['releaseAppLock', sql.releaseAppLock(HOSTILE)],
    ['appLockHolder', sql.appLockHolder(HOSTILE)],
    ['appLockHolders', sql.appLockHolders(HOSTILE)],
    ['killAppLockHolder', sql.killAppLockHolder(HOSTILE, 53)],
    ['upsertSchedule', sql.upsertSchedule(schedule, 300_000, HOSTILE)],
    ['upsertSchedule (run-time edit)', sql.upsertSchedule(schedule, 300_000, null)],
    ['fireSchedule', sql.fireSchedule(HOSTILE, 300_000, row(), { message: HOSTILE })],
    // History partitioned by month (./partitions.test.ts checks their text).
    ...partitionStatements('app_').map(([name, s]): [string, Stmt] => [`partitions ${name}`, s]),
    // The statements written once for every database, as SQL Server runs them.
    ...portableStatements(sqlFor('mssql')).map(([name, s]): [string, Stmt] => [`portable ${name}`, named(s)]),
  ];
}

/**
 * T-SQL reserved keywords (learn.microsoft.com/sql/t-sql/language-elements/reserved-keywords-transact-sql):
 * as identifiers they must be delimited.
 */
const RESERVED = new Set(`ADD ALL ALTER AND ANY AS ASC AUTHORIZATION BACKUP BEGIN BETWEEN BREAK BROWSE BULK BY CASCADE CASE CHECK
CHECKPOINT CLOSE CLUSTERED COALESCE COLLATE COLUMN COMMIT COMPUTE CONSTRAINT CONTAINS CONTAINSTABLE CONTINUE CONVERT CREATE CROSS
CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER CURSOR DATABASE DBCC DEALLOCATE DECLARE DEFAULT DELETE DENY DESC
DISK DISTINCT DISTRIBUTED DOUBLE DROP DUMP ELSE END ERRLVL ESCAPE EXCEPT EXEC EXECUTE EXISTS EXIT EXTERNAL FETCH FILE FILLFACTOR FOR
FOREIGN FREETEXT FREETEXTTABLE FROM FULL FUNCTION GOTO GRANT GROUP HAVING HOLDLOCK IDENTITY IDENTITY_INSERT IDENTITYCOL IF IN INDEX
INNER INSERT INTERSECT INTO IS JOIN KEY KILL LEFT LIKE LINENO LOAD MERGE NATIONAL NOCHECK NONCLUSTERED NOT NULL NULLIF OF OFF OFFSETS
ON OPEN OPENDATASOURCE OPENQUERY OPENROWSET OPENXML OPTION OR ORDER OUTER OVER PERCENT PIVOT PLAN PRECISION PRIMARY PRINT PROC
PROCEDURE PUBLIC RAISERROR READ READTEXT RECONFIGURE REFERENCES REPLICATION RESTORE RESTRICT RETURN REVERT REVOKE RIGHT ROLLBACK
ROWCOUNT ROWGUIDCOL RULE SAVE SCHEMA SECURITYAUDIT SELECT SEMANTICKEYPHRASETABLE SEMANTICSIMILARITYDETAILSTABLE
SEMANTICSIMILARITYTABLE SESSION_USER SET SETUSER SHUTDOWN SOME STATISTICS SYSTEM_USER TABLE TABLESAMPLE TEXTSIZE THEN TO TOP TRAN
TRANSACTION TRIGGER TRUNCATE TRY_CONVERT TSEQUAL UNION UNIQUE UNPIVOT UPDATE UPDATETEXT USE USER VALUES VARYING VIEW WAITFOR WHEN
WHERE WHILE WITH WITHIN WRITETEXT`.split(/\s+/));

/** Column names of the SQL Server schema (delimited or not). */
function mssqlColumns(): string[] {
  return loadMigrations('mssql', 'app_').flatMap((m) =>
    splitStatements(m.sql)
      .filter((st) => st.startsWith('CREATE TABLE'))
      .flatMap((st) => st.split('\n').slice(1).map((l) => /^\s+\[?(\w+)\]? [A-Z]/.exec(l)?.[1]).filter((c): c is string => !!c && c !== 'PRIMARY')),
  );
}

/** Variables a statement declares itself (DECLARE @x ...), as opposed to bound parameters. */
function declared(text: string): Set<string> {
  return new Set([...text.matchAll(/DECLARE\s+@(\w+)/gi)].map((m) => m[1]).concat([...text.matchAll(/,\s*@(\w+)\s+(?:INT|BIT)\b/gi)].map((m) => m[1])));
}

describe('SQL Server statements (no server)', () => {
  it('claims through an updatable CTE with UPDLOCK, READPAST, ROWLOCK and OUTPUT inserted, in claim order', () => {
    const { text } = jobsClaim(T, { workerId: 'w', names: ['a'], limit: 3 }, TOKEN, false);
    expect(text).to.match(/^WITH next AS \(\s*SELECT TOP \(@limit\) \* FROM app_jobs WITH \(UPDLOCK, READPAST, ROWLOCK\)/);
    expect(text).to.match(/ORDER BY priority DESC, run_at, id\)\s*UPDATE next SET state = 'running'/);
    expect(text).to.include('OUTPUT inserted.id, inserted.token, inserted.name');
    expect(text).to.include('run_at <= SYSUTCDATETIME()');
    expect(text).to.not.include('READCOMMITTEDLOCK');
  });

  it('adds READCOMMITTEDLOCK when the database has read committed snapshot on (claim)', () => {
    expect(jobsClaim(T, { workerId: 'w', names: ['a'], limit: 3 }, TOKEN, true).text).to.include('WITH (UPDLOCK, READPAST, ROWLOCK, READCOMMITTEDLOCK)');
    expect(jobsClaim(T, { workerId: 'w', names: ['a'], limit: 3 }, TOKEN, false).text).to.not.include('READCOMMITTEDLOCK');
  });

  it('reads stalled jobs by the database clock and forgets silent workers (the rescuer decides and writes through fail)', () => {
    const read = named(jobsStalled(portable, { stallMs: 30_000, limit: 500 }));
    expect(read.text).to.match(/^SELECT TOP \(@p2\)/);
    expect(read.text).to.include("j.state = 'running'").and.include('SYSUTCDATETIME()');
    expect(read.params).to.deep.equal([{ name: 'p1', type: 'bigint', value: -30_000 }, { name: 'p2', type: 'int', value: 500 }]);
    expect(named(workersRemoveStale(portable, 30_000)).text).to.match(/^DELETE FROM \w+workers WHERE heartbeat_at <= /);
  });

  it('looks up completions that landed by job ids, worker and state, all bound', () => {
    const read = named(jobsCompletedBy(portable, { workerId: HOSTILE, ids: ['0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'] }));
    expect(read.text).to.equal("SELECT id, attempts FROM app_history WHERE id IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@p1)) AND worker_id = @p2 AND state = 'completed'");
    expect(read.params).to.deep.equal([
      { name: 'p1', type: 'nvarchar(max)', value: '["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]' },
      { name: 'p2', type: 'nvarchar', value: HOSTILE },
    ]);
  });

  it("looks up failures that landed by job ids and worker, not the rescuer's, all bound", () => {
    const read = named(jobsFailedBy(portable, { workerId: HOSTILE, ids: ['0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'] }));
    expect(read.text.replace(/\s+/g, ' ')).to.equal(
      "SELECT job_id AS id, attempt AS attempts FROM app_attempts WHERE job_id IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@p1)) AND worker_id = @p2 AND (COALESCE((SELECT value FROM OPENJSON(error) WHERE [key] = @p3), '') <> @p4 OR (SELECT value FROM OPENJSON(error) WHERE [key] = @p5) IS NOT NULL)",
    );
    expect(read.params).to.deep.equal([
      { name: 'p1', type: 'nvarchar(max)', value: '["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]' },
      { name: 'p2', type: 'nvarchar', value: HOSTILE },
      { name: 'p3', type: 'nvarchar', value: 'name' },
      { name: 'p4', type: 'nvarchar', value: 'WorkerLost' },
      { name: 'p5', type: 'nvarchar', value: 'stack' },
    ]);
  });

  it('fences every write of a running attempt by id, token and state', () => {
    for (const [name, stmt] of everyStatement().filter(([n]) => ['complete', 'fail', 'release', 'saveProgress', 'appendLogs', 'portable jobSaveCheckpoint'].includes(n))) {
      expect(stmt.text, name).to.match(/id = (x\.)?@?(id|p\d+)\b/);
      expect(stmt.text, name).to.match(/token = (x\.)?@?(token|p\d+)\b/);
      expect(stmt.text, name).to.include("state = 'running'");
    }
  });

  it('takes times from the database clock, never from the client', () => {
    for (const [name, stmt] of everyStatement()) {
      expect(stmt.text, name).to.not.match(/GETDATE\(\)|CURRENT_TIMESTAMP|SYSDATETIME\(\)/);
    }
    expect(jobsEnqueue(T, [row({ delay: 5000 })]).text).to.include('DATEADD(millisecond, (i.delay_ms) % 86400000, DATEADD(day, (i.delay_ms) / 86400000, SYSUTCDATETIME()))');
  });

  it('binds every value as a typed parameter: hostile text never reaches the statement text', () => {
    const types = new Set(['nvarchar', 'nvarchar(max)', 'varchar', 'bigint', 'int', 'bit', 'datetime2', 'char36', 'varbinary(max)']);
    for (const [name, stmt] of everyStatement()) {
      expect(stmt.text, name).to.not.include('DROP TABLE');
      expect(stmt.text, name).to.not.include(HOSTILE.slice(0, 4));
      const own = declared(stmt.text);
      const names = stmt.params.map((p) => p.name);
      expect(new Set(names).size, `${name}: parameter names are unique`).to.equal(names.length);
      for (const p of stmt.params) {
        expect(types.has(p.type), `${name}: @${p.name} has a declared type`).to.equal(true);
        expect(stmt.text, `${name}: @${p.name} is used`).to.match(new RegExp(`@${p.name}\\b`));
      }
      // Every @name in the text is either bound or declared by the statement itself.
      for (const m of stmt.text.matchAll(/@(\w+)/g)) {
        // @@ROWCOUNT, @@SPID, @@TRANCOUNT, and sp_getapplock's own argument names (@Resource = ...).
        if (stmt.text[m.index! - 1] === '@' || ['RESOURCE', 'LOCKMODE', 'LOCKOWNER', 'LOCKTIMEOUT'].includes(m[1].toUpperCase())) continue;
        expect(names.includes(m[1]) || own.has(m[1]), `${name}: @${m[1]} is bound or declared`).to.equal(true);
      }
    }
    const enqueue = jobsEnqueue(T, [row()]);
    const input = JSON.parse(enqueue.params[0].value as string)[0];
    expect(input.ref_id).to.equal(HOSTILE);
    expect(JSON.parse(input.payload)).to.deep.equal({ to: HOSTILE });
  });

  it('delimits every column whose name is a reserved word, in the schema and in every statement', () => {
    const columns = mssqlColumns();
    expect(columns).to.include.members(['checkpoint', 'key', 'payload_bin', 'heartbeat_at']);
    const reserved = columns.filter((c) => RESERVED.has(c.toUpperCase()));
    expect(reserved.sort()).to.deep.equal(['checkpoint', 'checkpoint', 'key', 'key']);
    const sources = [...everyStatement(), ...loadMigrations('mssql', 'app_').map((m) => [m.name, { text: m.sql, params: [] }] as [string, Stmt])];
    for (const [name, stmt] of sources) {
      const text = stmt.text.replace(/--.*$/gm, '').replace(/'[^']*'/g, "''");
      for (const word of new Set(reserved)) {
        for (const m of text.matchAll(new RegExp(`(.)\\b${word}\\b(.)`, 'gi'))) {
          // @key is a parameter, PRIMARY KEY the keyword itself.
          if (m[1] === '@' || /PRIMARY $/i.test(text.slice(0, m.index! + 1))) continue;
          expect(`${m[1]}${m[2]}`, `${name}: ${word} delimited in …${text.slice(Math.max(0, m.index! - 30), m.index! + 30)}…`).to.equal('[]');
        }
      }
    }
  });

  it('leaves no session setting behind (mssql never resets pooled connections) and rolls back every transaction it opens on error', () => {
    for (const [name, stmt] of everyStatement()) {
      expect(stmt.text, name).to.not.match(/\bSET\s+(NOCOUNT|XACT_ABORT|TRANSACTION ISOLATION|LOCK_TIMEOUT|ANSI_|QUOTED_IDENTIFIER|DATEFORMAT|LANGUAGE)/i);
      const begins = stmt.text.match(/BEGIN TRANSACTION;/g)?.length ?? 0;
      if (!begins) continue;
      expect(begins, name).to.equal(1);
      expect(stmt.text, name).to.match(/BEGIN TRY\s+BEGIN TRANSACTION;[\s\S]*COMMIT;\s+END TRY\s+BEGIN CATCH\s+IF @@TRANCOUNT > 0 ROLLBACK;\s+THROW;\s+END CATCH;/);
    }
  });

  it('tells a fenced single-row write applied from its OUTPUT rows, not from row counts', () => {
    for (const stmt of [named(jobSaveCheckpoint(portable, { id: UUID, token: TOKEN }, '{}')), named(leaseRenew(portable, { name: 'l', owner: 'o', token: 1, ttlMs: 1 })), named(leaseRelease(portable, { name: 'l', owner: 'o', token: 1 })), named(scheduleSetEnabled(portable, { key: 'k', enabled: true, nextRunAt: null })), named(jobMakeDue(portable, UUID))]) {
      expect(stmt.text).to.match(/^UPDATE app_\w+ SET [\s\S]* OUTPUT inserted\.\S+\s+WHERE /);
    }
  });

  it('hands each parameter to a real mssql Request with its explicit driver type', () => {
    const req = new mssql.Request();
    const stmt = sql.acquireLease(HOSTILE, 'owner-1', 1500);
    bind(req, stmt.params);
    expect(req.parameters.name.value).to.equal(HOSTILE);
    expect(req.parameters.name.type).to.equal(mssql.NVarChar);
    expect(req.parameters.name.length).to.equal(4000);
    expect(req.parameters.ttl.type).to.equal(mssql.BigInt);
    const typed = new mssql.Request();
    const cols: Param[] = [
      { name: 'a', type: 'nvarchar(max)', value: HOSTILE },
      { name: 'b', type: 'char36', value: UUID },
      { name: 'c', type: 'datetime2', value: new Date(0) },
      { name: 'd', type: 'bit', value: true },
      { name: 'e', type: 'int', value: 7 },
      { name: 'f', type: 'varchar', value: 'skip' },
    ];
    bind(typed, cols);
    expect(typed.parameters.a.type).to.equal(mssql.NVarChar);
    expect(typed.parameters.a.length).to.equal(mssql.MAX);
    expect(typed.parameters.b.type).to.equal(mssql.Char);
    expect(typed.parameters.b.length).to.equal(36);
    expect(typed.parameters.c.type).to.equal(mssql.DateTime2);
    expect(typed.parameters.c.scale).to.equal(3);
    expect(typed.parameters.d.type).to.equal(mssql.Bit);
    expect(typed.parameters.e.type).to.equal(mssql.Int);
    expect(typed.parameters.f.type).to.equal(mssql.VarChar);
  });

  it('pages by keyset (id < cursor, newest first), not OFFSET: each half and the page cut by TOP', () => {
    const { text, params } = named(jobsList(portable, { cursor: UUID, state: 'failed', limit: 20 }));
    expect(text).to.not.match(/OFFSET|FETCH/);
    expect(text).to.match(/^SELECT TOP \(@p1\) \* FROM \(SELECT \* FROM \(SELECT TOP \(@p2\) id, /);
    expect(text).to.match(/FROM app_history WHERE state IN \(@p3\) AND id < @p4\s+ORDER BY id DESC\) finished\) page ORDER BY id DESC$/);
    expect(text).to.include('[checkpoint]');
    // Typed like the columns they meet (CHAR(36) id, VARCHAR state), so the comparisons seek an index.
    expect(params).to.deep.equal([
      { name: 'p1', type: 'int', value: 20 },
      { name: 'p2', type: 'int', value: 20 },
      { name: 'p3', type: 'varchar', value: 'failed' },
      { name: 'p4', type: 'char36', value: UUID },
    ]);
    const both = named(jobsList(portable, { includePayload: true })).text;
    expect(both).to.include('CAST(NULL AS DATETIME2(3)) AS finished_at, CAST(NULL AS NVARCHAR(MAX)) AS result, parents_left, reserved_until FROM app_jobs');
    expect(both).to.match(/\) live\nUNION ALL\nSELECT \* FROM \(SELECT TOP \(@p3\) [^;]*, finished_at, result, 0 AS parents_left, CAST\(NULL AS DATETIME2\(3\)\) AS reserved_until FROM app_history\s+ORDER BY id DESC\) finished/);
  });

  it('filters the list by replyTo and by args keys looked up in OPENJSON, key and value bound as text', () => {
    const key = 'a."b\\ $*';
    const { text, params } = named(jobsList(portable, { replyTo: HOSTILE, args: { [key]: HOSTILE, k: '' }, state: 'pending' }));
    expect(text).to.include(
      'FROM app_jobs WHERE state IN (@p3) AND reply_to = @p4 AND (SELECT value FROM OPENJSON(args) WHERE [key] = @p5) = @p6 AND (SELECT value FROM OPENJSON(args) WHERE [key] = @p7) = @p8',
    );
    expect(text).to.not.include(HOSTILE).and.not.include(key);
    expect(params.slice(3)).to.deep.equal([
      { name: 'p4', type: 'nvarchar', value: HOSTILE },
      { name: 'p5', type: 'nvarchar', value: key },
      { name: 'p6', type: 'nvarchar', value: HOSTILE },
      { name: 'p7', type: 'nvarchar', value: 'k' },
      { name: 'p8', type: 'nvarchar', value: '' },
    ]);
  });

  it('upserts with MERGE under HOLDLOCK (leases, workers, attempts, schedules)', () => {
    for (const stmt of [sql.acquireLease('l', 'o', 1), named(workerHeartbeat(portable, { id: 'w', host: 'h', pid: 1, queues: null, names: [], concurrency: 1 })), jobsFail(T, []), sql.upsertSchedule(buildSchedule('k', { every: 1, unit: 'minutes' }, null, {}, 0), null, null)]) {
      expect(stmt.text).to.match(/MERGE app_\w+ WITH \(HOLDLOCK\) AS/);
    }
  });

  it('takes leadership with a session-owned sp_getapplock that does not wait, and checks it with APPLOCK_MODE', () => {
    expect(sql.getAppLock('app_leader').text).to.include("EXEC @r = sp_getapplock @Resource = @resource, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0");
    expect(sql.appLockMode('app_leader').text).to.include("APPLOCK_MODE('public', @resource, 'Session')");
    expect(sql.releaseAppLock('app_leader').text).to.include("sp_releaseapplock @Resource = @resource, @LockOwner = 'Session'");
    // The lock's description is "0:[<name>]:(<hash>)"; LIKE's wildcards in the name are matched literally.
    expect(sql.appLockHolder('app_leader').params[0].value).to.equal('0:\\[app\\_leader]:%');
    expect(sql.appLockHolder('app_leader').text).to.include("LIKE @pattern ESCAPE '\\'");
  });

  it('claims and probes the next due job only outside paused and managed queues', () => {
    const claim = jobsClaim(T, { workerId: 'w', names: ['a'], queues: ['q'], limit: 3 }, TOKEN, true).text;
    // Inside the claim's own WHERE, before its ORDER BY: a paused or managed queue's rows are never selected for update.
    expect(claim).to.match(/WHERE state = 'pending'[^;]*AND queue NOT IN \(SELECT queue FROM app_paused_queues\) AND queue NOT IN \(SELECT queue FROM app_queues\)\s+ORDER BY priority DESC/);
    const due = named(jobsNextDue(portable, { names: ['a'] })).text;
    expect(due).to.match(/WHERE state = 'pending'[^;]*AND queue NOT IN \(SELECT queue FROM app_paused_queues\) AND queue NOT IN \(SELECT queue FROM app_queues\)$/);
    // drain() asks with the managed queues included.
    expect(named(jobsNextDue(portable, { names: ['a'], managed: true })).text).to.not.include('app_queues');
  });

  it('replaces a schedule from code only when its stored code hash differs, keeps the hash on a run-time edit', () => {
    const def = buildSchedule('nightly', { every: 5, unit: 'minutes' }, null, {}, 0);
    const fromCode = sql.upsertSchedule(def, 300_000, 'abc123');
    expect(fromCode.text).to.include('WHEN MATCHED AND (i.code_hash IS NULL OR s.code_hash IS NULL OR s.code_hash <> i.code_hash) THEN UPDATE SET');
    expect(fromCode.text).to.include('code_hash = COALESCE(i.code_hash, s.code_hash)');
    expect(fromCode.text).to.match(/INSERT \([^)]*, next_run_at, code_hash\)\s+VALUES \([^)]*, i\.next_run_at, i\.code_hash\)/);
    // The next run moves only when the timing changed (or there was none).
    expect(fromCode.text).to.include('next_run_at = CASE WHEN (EXISTS (SELECT s.cron, s.timezone, s.every_ms, s.start_at EXCEPT SELECT i.cron, i.timezone, i.every_ms, i.start_at) OR s.next_run_at IS NULL)');
    expect(fromCode.params.find((p) => p.name === 'code_hash')).to.deep.equal({ name: 'code_hash', type: 'varchar', value: 'abc123' });
    expect(sql.upsertSchedule(def, 300_000, null).params.find((p) => p.name === 'code_hash')!.value).to.equal(null);
  });

  it('counts each finished state up to the cap on its own, in a fixed state order', () => {
    const { text, params } = named(jobsFinishedCounts(portable, { cap: 250 }));
    ['completed', 'failed', 'cancelled', 'skipped'].forEach((state, i) => {
      expect(text).to.match(new RegExp(`SELECT ${i + 1} AS ord, '${state}' AS state, COUNT\\(\\*\\) AS count FROM \\(\\s+SELECT TOP \\(@p${i + 1}\\) 1 AS one FROM app_history WHERE state = '${state}'\\) capped`));
    });
    expect(text).to.match(/\nORDER BY ord$/);
    expect(params).to.deep.equal([1, 2, 3, 4].map((n) => ({ name: `p${n}`, type: 'int', value: 250 })));
  });

  it('pauses idempotently under a key-range lock, resumes with OUTPUT, lists paused queues beside the live figures', () => {
    expect(queuePause(sqlFor('mssql'), 'mail').text).to.match(
      /^INSERT INTO app_paused_queues \(queue, paused_at\) SELECT q\.queue, SYSUTCDATETIME\(\) FROM \(SELECT @p1 AS queue\) q\s+WHERE NOT EXISTS \(SELECT 1 FROM app_paused_queues p WITH \(UPDLOCK, HOLDLOCK\) WHERE p\.queue = q\.queue\)$/,
    );
    expect(queueResume(sqlFor('mssql'), 'mail').text).to.equal('DELETE FROM app_paused_queues OUTPUT deleted.queue WHERE queue = @p1');
    // One clock reading for every figure of the live table (read from its (queue, state, run_at) index).
    const stats = named(queuesStats(portable)).text;
    expect(stats).to.include("DATEDIFF_BIG(millisecond, MIN(CASE WHEN state = 'pending' AND run_at <= clock.now THEN run_at END), MAX(clock.now)) AS oldest");
    expect(stats).to.match(/FROM app_jobs CROSS JOIN \(SELECT SYSUTCDATETIME\(\) AS now\) clock\s+GROUP BY queue$/);
    expect(named(queuesPaused(portable)).text).to.equal('SELECT queue, paused_at FROM app_paused_queues');
  });

  it('buckets throughput on the epoch: what the counters hold from them, history before and after it, the window from the database clock', () => {
    const coverage = named(throughputCoverage(portable, { windowMs: 3_600_000 }));
    expect(coverage.text).to.match(/^SELECT DATEDIFF_BIG\(millisecond, CAST\('19700101' AS DATETIME2\(3\)\), MAX\(clock\.now\)\) AS now, MIN\(c\.start_ms\) AS first, MAX\(c\.start_ms\) AS last, COUNT\(c\.start_ms\) AS n,\s+MAX\(c\.counted_to_ms\) AS counted_to/);
    expect(coverage.text).to.match(/FROM \(SELECT SYSUTCDATETIME\(\) AS now\) clock LEFT JOIN app_throughput c ON c\.start_ms >= DATEDIFF_BIG\(millisecond, CAST\('19700101' AS DATETIME2\(3\)\), clock\.now\) - @p1$/);
    const { text, params } = named(throughputRead(portable, { from: 630_000, to: null, bucketMs: 300_000, counted: { from: 660_000, to: 905_000 } }));
    const bucket = (p: number) => `(DATEDIFF_BIG(millisecond, CAST('19700101' AS DATETIME2(3)), finished_at) / @p${p}) * @p${p + 1} AS start`;
    expect(text).to.include(`${bucket(1)},`);
    expect(text).to.include("FROM app_history\n       WHERE finished_at >= @p3 AND finished_at < @p4 AND state IN ('completed', 'failed')");
    expect(text).to.include(`${bucket(5)},`);
    expect(text).to.include("FROM app_history\n       WHERE finished_at >= @p7 AND state IN ('completed', 'failed')");
    expect(text).to.match(/SELECT \(start_ms \/ @p8\) \* @p9 AS start, completed, failed FROM app_throughput\s+WHERE start_ms >= @p10 AND start_ms < @p11 AND \(completed > 0 OR failed > 0\)\) f/);
    expect(text).to.match(/GROUP BY f\.start ORDER BY f\.start$/);
    expect(params.map((p) => p.value)).to.deep.equal([300_000, 300_000, new Date(630_000), new Date(660_000), 300_000, 300_000, new Date(905_000), 300_000, 300_000, 660_000, 905_000]);
    // Without counters, one range of history: from the window's start, or a span (a leader's round).
    expect(named(throughputRead(portable, { from: 630_000, to: null, bucketMs: 60_000, counted: null })).text).to.not.include('app_throughput');
    expect(named(throughputRead(portable, { from: 630_000, to: 645_000, bucketMs: 60_000, counted: null })).text).to.include('WHERE finished_at >= @p3 AND finished_at < @p4 AND');
    expect(named(throughputLast(portable)).text).to.match(/LEFT JOIN \(\s+SELECT TOP \(@p1\) start_ms, completed, failed, counted_to_ms FROM app_throughput ORDER BY start_ms DESC\) c ON 1 = 1$/);
    const save = named(throughputSave(portable, { start: 600_000, completed: 3, failed: 1, countedTo: 645_000 }));
    expect(save.text).to.equal(`MERGE app_throughput WITH (HOLDLOCK) AS t USING (SELECT @p1 AS start_ms) AS s ON t.start_ms = s.start_ms
WHEN MATCHED THEN UPDATE SET completed = @p5, failed = @p6, counted_to_ms = @p7
WHEN NOT MATCHED THEN INSERT (start_ms, completed, failed, counted_to_ms) VALUES (@p1, @p2, @p3, @p4);`);
  });

  it('cancels, retries and deletes rows it first read under UPDLOCK, HOLDLOCK (a claim, which reads past locked rows, cannot take them meanwhile)', () => {
    const ms = sqlFor('mssql');
    expect(played(cancelJob(ms, UUID), () => ({ rows: [], changes: 0 }))[1].text).to.equal('SELECT state, worker_id FROM app_jobs WITH (UPDLOCK, HOLDLOCK) WHERE id = @p1');
    expect(jobRetry(ms, UUID)[1].text).to.equal('SELECT queue, state, flow, batch_id, serial_key, group_key, priority FROM app_history WITH (UPDLOCK, HOLDLOCK) WHERE id = @p1');
    const [live, finished] = jobsDelete(ms, [UUID]).map((s) => s.text);
    expect(live).to.equal("SELECT id, name, queue, flow, callbacks, batch_id, serial_key FROM app_jobs WITH (UPDLOCK, HOLDLOCK) WHERE id IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@p1)) AND state = 'pending'");
    expect(finished).to.equal('SELECT id FROM app_history WITH (UPDLOCK, HOLDLOCK) WHERE id IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@p1))');
  });

  it('deletes pending (never running) and finished jobs, then the logs and attempts of those gone from both tables', () => {
    const [, , live, finished, logs, attempts, deps] = jobsDelete(sqlFor('mssql'), [UUID]).map((s) => s.text);
    expect(deps).to.match(/^DELETE FROM app_deps WHERE child_id IN \(SELECT CAST\(value AS CHAR\(36\)\) FROM OPENJSON\(@p1\)\)/);
    expect(live).to.equal("DELETE FROM app_jobs WHERE id IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@p1)) AND state = 'pending'");
    expect(finished).to.equal('DELETE FROM app_history WHERE id IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@p1))');
    for (const [table, text] of [['logs', logs], ['attempts', attempts]]) {
      expect(text).to.match(new RegExp(`^DELETE FROM app_${table} WHERE job_id IN \\(SELECT CAST\\(value AS CHAR\\(36\\)\\) FROM OPENJSON\\(@p1\\)\\)\\s+`
        + `AND NOT EXISTS \\(SELECT 1 FROM app_jobs WHERE id = app_${table}\\.job_id\\)\\s+AND NOT EXISTS \\(SELECT 1 FROM app_history WHERE id = app_${table}\\.job_id\\)$`));
    }
  });

  it('ends a stale app lock holder with a KILL of a checked integer, guarded by the holder check in the same batch', () => {
    const { text, params } = sql.killAppLockHolder('app_leader', 53);
    expect(text).to.match(/IF EXISTS \(SELECT 1 FROM sys\.dm_tran_locks l WHERE l\.resource_type = 'APPLICATION'[\s\S]*AND l\.request_session_id = @spid AND l\.request_session_id <> @@SPID\)\s+BEGIN\s+KILL 53;\s+SET @killed = 1;\s+END;/);
    expect(text).to.include("l.request_owner_type = 'SESSION'");
    expect(text).to.include("l.request_status IN ('GRANT', 'GRANTED')");
    expect(params).to.deep.include({ name: 'spid', type: 'int', value: 53 });
    expect(params).to.deep.include({ name: 'pattern', type: 'nvarchar', value: '0:\\[app\\_leader]:%' });
    for (const bad of [Number.NaN, 1.5, 0, -3, 2 ** 31, Number('53; DROP TABLE x'), '53; SHUTDOWN' as unknown as number]) {
      expect(() => sql.killAppLockHolder('app_leader', bad), String(bad)).to.throw(RangeError, /session id must be a positive INT/);
    }
    expect(sql.appLockHolders('app_leader').text).to.include('AND l.request_session_id <> @@SPID');
  });

  it('identifies an app lock holder only by a name shown whole (32 characters), matched case-sensitively', () => {
    expect(appLockPattern('p_leader')).to.equal('0:\\[p\\_leader]:%');
    expect(appLockPattern('a%b[c\\d')).to.equal('0:\\[a\\%b\\[c\\\\d]:%');
    const name32 = 'x'.repeat(26) + 'leader';
    expect(() => sql.appLockHolders(name32)).to.not.throw();
    expect(() => sql.appLockHolders(`${name32}2`)).to.throw(RangeError, /longer than 32 characters/);
    expect(() => sql.killAppLockHolder(`${name32}2`, 53)).to.throw(RangeError, /longer than 32 characters/);
    expect(sql.appLockHolders(name32).text).to.include('l.resource_description COLLATE Latin1_General_BIN2 LIKE @pattern');
  });
});

describe('SQL Server store wiring (no server)', () => {
  const config = { server: '127.0.0.1', port: 1, database: 'none', user: 'u', password: 'p', options: { trustServerCertificate: true } };

  it('refuses an invalid table prefix before any statement is built', () => {
    const pool = new mssql.ConnectionPool(config);
    expect(() => createJobs({ db: pool, tablePrefix: 'x; DROP TABLE y --', worker: false })).to.throw(TypeError, /tablePrefix must be 1-31 characters/);
    expect(() => validatePrefix('Upper_')).to.throw(/tablePrefix/);
  });

  it('recognises a real ConnectionPool and Transaction by shape, and refuses anything else as opts.tx', async () => {
    const pool = new mssql.ConnectionPool(config);
    expect(isMssqlPool(pool)).to.equal(true);
    expect(isMssqlTransaction(new mssql.Transaction(pool))).to.equal(true);
    expect(isMssqlTransaction(pool)).to.equal(false);
    expect(isMssqlTransaction(new mssql.Request())).to.equal(false);
    const jobs = createJobs({ db: pool, tablePrefix: 'app_', worker: false });
    expect(jobs.dialect).to.equal('mssql');
    const store = jobs.store as MssqlStore;
    const wrong = await store.jobInsertMany({ rows: [row()], tx: pool }).catch((e: Error) => e);
    expect((wrong as Error).message).to.match(/opts.tx on SQL Server must be an mssql Transaction/);
    await jobs.close({ timeout: 100 }).catch(() => undefined);
  });

  it('builds its private pool from the app pool\'s config without touching the app pool', () => {
    const pool = new mssql.ConnectionPool(config);
    const store = new MssqlStore(pool, { prefix: 'app_', workerPoolSize: 3 });
    const own = (store as unknown as { own: { config: Record<string, unknown> } }).own;
    expect(own).to.not.equal(pool);
    expect(own.config.server).to.equal('127.0.0.1');
    expect(own.config.pool).to.deep.include({ max: 3 });
    expect(pool.config.pool).to.equal(undefined);
    // An app pool's min above workerPoolSize is cut to it: tarn refuses a min above the max when it connects.
    const large = new MssqlStore(new mssql.ConnectionPool({ ...config, pool: { min: 5, max: 20 } }), { prefix: 'app_', workerPoolSize: 4 });
    expect((large as unknown as { own: { config: { pool: object } } }).own.config.pool).to.deep.include({ min: 4, max: 4 });
  });

  it('gives the heartbeat a pool of one connection, min 0 whatever the app pool\'s min (tarn refused min above max), none after close()', async () => {
    const pool = new mssql.ConnectionPool({ ...config, pool: { min: 2, max: 10 } });
    const store = new MssqlStore(pool, { prefix: 'app_', workerPoolSize: 3 });
    void (store as unknown as { livenessRunner: unknown }).livenessRunner;
    const liveness = (store as unknown as { liveness: { config: { pool: Record<string, unknown> } } }).liveness;
    expect(liveness.config.pool).to.deep.include({ min: 0, max: 1 });
    expect(pool.config.pool).to.deep.equal({ min: 2, max: 10 });
    await store.close();
    const closedFirst = new MssqlStore(pool, { prefix: 'app_', workerPoolSize: 3 });
    await closedFirst.close();
    void (closedFirst as unknown as { livenessRunner: unknown }).livenessRunner;
    expect((closedFirst as unknown as { liveness: unknown }).liveness, 'a pool made after close()').to.equal(null);
  });

  it('does not try to evict a leader whose lock name is too long to identify (no statement is sent)', async () => {
    // Never connected: the port refuses, so any statement sent would fail this test.
    const store = new MssqlStore(new mssql.ConnectionPool(config), { prefix: 'p'.repeat(27) + '_', workerPoolSize: 1 });
    expect(await store.sessionLockEvict('leader')).to.equal(0);
    const short = new MssqlStore(new mssql.ConnectionPool(config), { prefix: 'app_', workerPoolSize: 1 });
    const err = await short.sessionLockEvict('leader').catch((e: Error) => e);
    expect((err as Error).message).to.match(/cannot end the SQL Server session holding app lock "app_leader" \(needs VIEW SERVER STATE and ALTER ANY CONNECTION/);
    await Promise.all([store.close(), short.close()]);
  });

  it('deletes only well-formed ids, in one transaction: CAST to CHAR(36) would cut a longer string down to another job\'s id', async () => {
    const store = new MssqlStore(new mssql.ConnectionPool(config), { prefix: 'app_', workerPoolSize: 1 });
    const sent: Statement[][] = [];
    const none = (): Outcome => ({ rows: [], changes: 0 });
    const within = async <T>(steps: Steps<T>) => {
      const list: Statement[] = [];
      sent.push(list);
      return drive(steps, async (st) => (list.push(st), none()));
    };
    Object.assign(store, { runner: { run: async () => none(), transaction: async (list: Statement[]) => (sent.push(list), list.map(none)), within } });
    expect(await store.jobDeleteMany([`${UUID}0`, UUID.toUpperCase(), HOSTILE])).to.deep.equal([]);
    expect(sent, 'nothing to send').to.have.length(0);
    await store.jobDeleteMany([UUID, `${UUID}0`, UUID.toUpperCase(), HOSTILE, TOKEN, UUID]);
    expect(sent).to.have.length(1);
    for (const s of sent[0]) expect(JSON.parse(named(s).params[0].value as string)).to.deep.equal([UUID, TOKEN]);
    await store.close();
  });

  it('runs statements on one transaction strictly one at a time, in order, even when one fails', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let running = 0;
    const step = (name: string, ms: number, fail = false) =>
      q.run(async () => {
        running++;
        expect(running, 'no overlap').to.equal(1);
        log.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`end ${name}`);
        running--;
        if (fail) throw new Error(name);
      });
    const results = await Promise.allSettled([step('a', 20), step('b', 1, true), step('c', 5)]);
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
    expect(log).to.deep.equal(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });
});
