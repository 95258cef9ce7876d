/**
 * SQL Server (2019+, Azure SQL): the statements only this database needs beyond the hot
 * operations (one file each: enqueue.ts, claim.ts, complete.ts, fail.ts, writes.ts) and the
 * portable ones (../portable/): the lease upsert, the app lock, the schedule upsert and firing.
 * Pure functions of their input, with typed parameters (./tsql.ts), so the text and the binding
 * can be checked without a server; the store (./store.ts) only runs them. The notes below hold
 * for every SQL Server statement, wherever it is written.
 *
 * NOT YET EXERCISED AGAINST A LIVE SQL SERVER. Checked against the vendor documentation
 * (learn.microsoft.com, T-SQL reference):
 * - OUTPUT clause: `OUTPUT inserted.*` / `deleted.*`, columns of a FROM table in DELETE/UPDATE,
 *   one `OUTPUT ... INTO` plus one plain `OUTPUT` per statement; an OUTPUT INTO target may not
 *   have triggers, CHECK constraints or foreign keys (history has none).
 *   https://learn.microsoft.com/sql/t-sql/queries/output-clause-transact-sql
 * - Table hints UPDLOCK, READPAST, ROWLOCK, HOLDLOCK, READCOMMITTEDLOCK (READPAST needs READ
 *   COMMITTED or REPEATABLE READ; with READ_COMMITTED_SNAPSHOT on, READCOMMITTEDLOCK asks for
 *   locking reads): https://learn.microsoft.com/sql/t-sql/queries/hints-transact-sql-table
 * - sp_getapplock return codes (0/1 granted, -1 timeout, -2 cancelled, -3 deadlock, -999 error),
 *   @LockOwner = 'Session', @LockTimeout = 0; APPLOCK_MODE returns 'NoLock' when not held:
 *   https://learn.microsoft.com/sql/relational-databases/system-stored-procedures/sp-getapplock-transact-sql
 *   https://learn.microsoft.com/sql/t-sql/functions/applock-mode-transact-sql
 * - MERGE ... WITH (HOLDLOCK) for upserts (race-free insert-or-update), terminated by ';':
 *   https://learn.microsoft.com/sql/t-sql/statements/merge-transact-sql
 * - OPENJSON ... WITH (needs database compatibility level 130+; 2019 defaults to 150):
 *   https://learn.microsoft.com/sql/t-sql/functions/openjson-transact-sql
 * - No statement changes session settings (SET NOCOUNT / XACT_ABORT would outlive it: mssql never
 *   resets a pooled connection); multi-statement writes use BEGIN TRY / TRANSACTION / CATCH
 *   ROLLBACK; THROW. Whether a fenced write applied is read from its OUTPUT rows, not row counts.
 * - TOP (@n) with ORDER BY in an updatable CTE, and in derived tables (the keyset pages and capped
 *   counts of ../portable/reads.ts: id < @cursor ORDER BY id DESC rather than OFFSET/FETCH, which
 *   rereads skipped rows); DATEDIFF_BIG for epoch milliseconds (DATEDIFF's INT overflows after
 *   24 days of ms):
 *   https://learn.microsoft.com/sql/t-sql/queries/from-transact-sql
 *   https://learn.microsoft.com/sql/t-sql/functions/datediff-big-transact-sql
 * - Filtered indexes and ALTER TABLE ... ADD (no COLUMN keyword), DROP INDEX name ON table:
 *   https://learn.microsoft.com/sql/t-sql/statements/alter-table-transact-sql
 *   https://learn.microsoft.com/sql/t-sql/statements/drop-index-transact-sql
 * - Who holds an app lock: sys.dm_tran_locks, resource_type 'APPLICATION', resource_description
 *   "<DbPrincipalId>:[<first 32 characters>]:(<hash>)" (0 = public, sp_getapplock's default),
 *   request_owner_type 'SESSION'. Needs VIEW SERVER STATE (Azure SQL Database: VIEW DATABASE
 *   STATE). The page lists request_status GRANTED; servers report GRANT: both are accepted.
 *   https://learn.microsoft.com/sql/relational-databases/system-dynamic-management-views/sys-dm-tran-locks-transact-sql
 * - KILL takes a literal session id (no variable; never @@SPID itself); needs ALTER ANY
 *   CONNECTION (Azure SQL Database: KILL DATABASE CONNECTION). A session id is reused once its
 *   connection ends, so the holder is checked again in the KILL's own batch:
 *   https://learn.microsoft.com/sql/t-sql/language-elements/kill-transact-sql
 */
import { NOW, atomic, addMs, type Stmt } from './tsql.ts';
import { jobsEnqueue } from './enqueue.ts';
import { tables } from '../portable/statement.ts';
import type { JobError, NewJobRow } from '../../model.ts';
import type { ScheduleDef } from '../../schedule/schedule.ts';

/** The app lock's name as sys.dm_tran_locks shows it: its first 32 characters. */
export const APP_LOCK_SHOWN = 32;
/** A session-owned app lock granted in this database whose description matches @pattern (binary: names are case-sensitive). */
const APP_LOCK_HELD = `l.resource_type = 'APPLICATION' AND l.resource_database_id = DB_ID() AND l.request_owner_type = 'SESSION'
  AND l.request_status IN ('GRANT', 'GRANTED') AND l.resource_description COLLATE Latin1_General_BIN2 LIKE @pattern ESCAPE '\\'`;

/**
 * The LIKE pattern for a lock description "0:[<name, first 32 characters>]:(<hash>)": principal 0
 * (public, sp_getapplock's default), the name with LIKE's wildcards ([ _ %) and \ escaped by \.
 */
export function appLockPattern(resource: string): string {
  const shown = resource.slice(0, APP_LOCK_SHOWN).replace(/[\\[_%]/g, (c) => `\\${c}`);
  return `0:\\[${shown}]:%`;
}



export class MssqlSql {
  constructor(readonly prefix: string) {}

  t(name: string): string {
    return this.prefix + name;
  }

  /** Claims skip paused queues (a row in paused_queues means paused). */
  notPaused(): string {
    return `queue NOT IN (SELECT queue FROM ${this.t('paused_queues')})`;
  }

  // ------------------------------------------------------------ leases

  /** Take or renew: a MERGE under HOLDLOCK, so two first takers cannot both insert. */
  acquireLease(name: string, owner: string, ttlMs: number): Stmt {
    return {
      text: `MERGE ${this.t('leases')} WITH (HOLDLOCK) AS l USING (SELECT @name AS name) AS s ON l.name = s.name
WHEN MATCHED AND (l.owner = @owner OR l.expires_at <= ${NOW}) THEN UPDATE SET
  token = CASE WHEN l.owner = @owner AND l.expires_at > ${NOW} THEN l.token ELSE l.token + 1 END,
  owner = @owner, expires_at = ${addMs(NOW, '@ttl')}
WHEN NOT MATCHED THEN INSERT (name, owner, token, expires_at) VALUES (@name, @owner, 1, ${addMs(NOW, '@ttl')})
OUTPUT inserted.token;`,
      params: [
        { name: 'name', type: 'nvarchar', value: name },
        { name: 'owner', type: 'nvarchar', value: owner },
        { name: 'ttl', type: 'bigint', value: ttlMs },
      ],
    };
  }



  /** Session-owned app lock, no waiting: the return code says whether it was granted (>= 0). */
  getAppLock(resource: string): Stmt {
    return {
      text: `DECLARE @r INT;
EXEC @r = sp_getapplock @Resource = @resource, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0;
SELECT @r AS r, @@SPID AS spid;`,
      params: [{ name: 'resource', type: 'nvarchar', value: resource }],
    };
  }

  appLockMode(resource: string): Stmt {
    return { text: `SELECT APPLOCK_MODE('public', @resource, 'Session') AS mode;`, params: [{ name: 'resource', type: 'nvarchar', value: resource }] };
  }

  releaseAppLock(resource: string): Stmt {
    return { text: `EXEC sp_releaseapplock @Resource = @resource, @LockOwner = 'Session';`, params: [{ name: 'resource', type: 'nvarchar', value: resource }] };
  }

  /** Which session holds the app lock (needs VIEW SERVER STATE / VIEW DATABASE STATE; the caller falls back). */
  appLockHolder(resource: string): Stmt {
    return {
      text: `SELECT TOP (1) l.request_session_id AS spid, s.host_name AS host, s.program_name AS program
FROM sys.dm_tran_locks l LEFT JOIN sys.dm_exec_sessions s ON s.session_id = l.request_session_id
WHERE ${APP_LOCK_HELD};`,
      params: [{ name: 'pattern', type: 'nvarchar', value: appLockPattern(resource) }],
    };
  }

  /**
   * Other sessions holding the app lock, for eviction. Only a name of 32 characters or fewer is
   * shown whole in the lock's description; a longer one could match another prefix's lock, so
   * the store refuses to evict for it rather than build this.
   */
  appLockHolders(resource: string): Stmt {
    if (resource.length > APP_LOCK_SHOWN) throw new RangeError(`app lock name longer than ${APP_LOCK_SHOWN} characters cannot identify its holder: ${resource.length}`);
    return {
      text: `SELECT l.request_session_id AS spid FROM sys.dm_tran_locks l WHERE ${APP_LOCK_HELD} AND l.request_session_id <> @@SPID;`,
      params: [{ name: 'pattern', type: 'nvarchar', value: appLockPattern(resource) }],
    };
  }

  /**
   * End session `spid` if it still holds the app lock. KILL takes a literal, so the id is checked
   * to be a session id before it is written into the text; the holder is checked again in this
   * batch because a session id is reused once its connection ends. Answers killed = 1 or 0.
   */
  killAppLockHolder(resource: string, spid: number): Stmt {
    if (!Number.isSafeInteger(spid) || spid < 1 || spid > 2_147_483_647) throw new RangeError(`session id must be a positive INT; got ${String(spid)}`);
    const holder = this.appLockHolders(resource);
    return {
      text: `DECLARE @killed INT = 0;
IF EXISTS (SELECT 1 FROM sys.dm_tran_locks l WHERE ${APP_LOCK_HELD} AND l.request_session_id = @spid AND l.request_session_id <> @@SPID)
BEGIN
  KILL ${spid};
  SET @killed = 1;
END;
SELECT @killed AS killed;`,
      params: [...holder.params, { name: 'spid', type: 'int', value: spid }],
    };
  }

  // ------------------------------------------------------------ reads and admin verbs

  // ------------------------------------------------------------ admin verbs

  /**
    };
  }

  // ------------------------------------------------------------ schedules

  /**
   * From code (@code_hash set) an existing row is replaced only when its stored hash differs, so
   * a run-time edit survives restarts until the code changes; a run-time edit (@code_hash NULL)
   * always replaces and keeps the stored hash. The next run moves only when the timing changed.
   */
  upsertSchedule(d: ScheduleDef, nextRunAt: number | null, codeHash: string | null): Stmt {
    const changed = `(EXISTS (SELECT s.cron, s.timezone, s.every_ms, s.start_at EXCEPT SELECT i.cron, i.timezone, i.every_ms, i.start_at) OR s.next_run_at IS NULL)`;
    return {
      text: `MERGE ${this.t('schedules')} WITH (HOLDLOCK) AS s
USING (SELECT @key AS [key], @name AS name, @cron AS cron, @timezone AS timezone, @every_ms AS every_ms, @start_at AS start_at, @end_at AS end_at,
  @max_runs AS max_runs, @payload AS payload, @options AS options, @overlap AS overlap, @missed AS missed, @next_run_at AS next_run_at,
  @code_hash AS code_hash) AS i
ON s.[key] = i.[key]
WHEN MATCHED AND (i.code_hash IS NULL OR s.code_hash IS NULL OR s.code_hash <> i.code_hash) THEN UPDATE SET
  name = i.name, cron = i.cron, timezone = i.timezone, every_ms = i.every_ms, start_at = i.start_at, end_at = i.end_at,
  max_runs = i.max_runs, payload = i.payload, options = i.options, overlap = i.overlap, missed = i.missed,
  next_run_at = CASE WHEN ${changed} THEN i.next_run_at ELSE s.next_run_at END,
  code_hash = COALESCE(i.code_hash, s.code_hash), updated_at = ${NOW}
WHEN NOT MATCHED THEN INSERT ([key], name, cron, timezone, every_ms, start_at, end_at, max_runs, payload, options, overlap, missed, next_run_at, code_hash)
  VALUES (i.[key], i.name, i.cron, i.timezone, i.every_ms, i.start_at, i.end_at, i.max_runs, i.payload, i.options, i.overlap, i.missed, i.next_run_at, i.code_hash);`,
      params: [
        { name: 'key', type: 'nvarchar', value: d.key },
        { name: 'name', type: 'nvarchar', value: d.name },
        { name: 'cron', type: 'nvarchar', value: d.cron },
        { name: 'timezone', type: 'nvarchar', value: d.timezone },
        { name: 'every_ms', type: 'bigint', value: d.everyMs },
        { name: 'start_at', type: 'datetime2', value: at(d.startAt) },
        { name: 'end_at', type: 'datetime2', value: at(d.endAt) },
        { name: 'max_runs', type: 'int', value: d.maxRuns },
        { name: 'payload', type: 'nvarchar(max)', value: d.payloadJson },
        { name: 'options', type: 'nvarchar(max)', value: d.optionsJson },
        { name: 'overlap', type: 'varchar', value: d.overlap },
        { name: 'missed', type: 'varchar', value: d.missed },
        { name: 'next_run_at', type: 'datetime2', value: at(nextRunAt) },
        { name: 'code_hash', type: 'varchar', value: codeHash },
      ],
    };
  }

  /**
   * Fire one tick: its row under the tick's primary key (a second firing inserts nothing), then
   * the job (or a skipped record when the previous run is live), in one transaction.
   */
  fireSchedule(key: string, fireAt: number, row: NewJobRow, skipIfLive: JobError | null): Stmt {
    const enqueue = jobsEnqueue(tables(this.prefix), [row]);
    const skippedError = skipIfLive === null ? null : JSON.stringify(skipIfLive);
    return {
      text: `DECLARE @fired INT = 0, @live BIT = 0;
${atomic(`INSERT INTO ${this.t('schedule_ticks')} (schedule_key, fire_at, job_id)
  SELECT @key, @fire_at, @job_id WHERE NOT EXISTS (
    SELECT 1 FROM ${this.t('schedule_ticks')} WITH (UPDLOCK, HOLDLOCK) WHERE schedule_key = @key AND fire_at = @fire_at);
SET @fired = @@ROWCOUNT;
IF @fired = 1
BEGIN
  IF @skip_if_live = 1 AND @ref_id IS NOT NULL AND EXISTS (SELECT 1 FROM ${this.t('jobs')} WHERE ref_id = @ref_id) SET @live = 1;
  IF @live = 1
    INSERT INTO ${this.t('history')} (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at, tag, batch_id, created_by, meta, error, user_id, reply_to, args)
    VALUES (@job_id, @name, @queue, 'skipped', @payload, @priority, 0, @max_attempts, @fire_at, ${NOW}, ${NOW}, @tag, @batch_id, @created_by, @meta, @skipped_error, @user_id, @reply_to, @args);
  ELSE
  BEGIN
    ${enqueue.text.replace(/SELECT id, CAST\(NULL[\s\S]*$/, '')}
  END;
  UPDATE ${this.t('schedules')} SET last_run_at = @fire_at, last_job_id = @job_id, runs = runs + 1 WHERE [key] = @key;
END;`)}
SELECT @fired AS fired, @live AS live;`,
      params: [
        ...enqueue.params,
        { name: 'key', type: 'nvarchar', value: key },
        { name: 'fire_at', type: 'datetime2', value: new Date(fireAt) },
        { name: 'job_id', type: 'char36', value: row.id },
        { name: 'skip_if_live', type: 'bit', value: skipIfLive !== null },
        { name: 'ref_id', type: 'nvarchar', value: row.refId },
        { name: 'name', type: 'nvarchar', value: row.name },
        { name: 'queue', type: 'nvarchar', value: row.queue },
        { name: 'payload', type: 'nvarchar(max)', value: row.payloadJson },
        { name: 'priority', type: 'int', value: row.priority },
        { name: 'max_attempts', type: 'int', value: row.maxAttempts },
        { name: 'tag', type: 'nvarchar', value: row.tag },
        { name: 'batch_id', type: 'nvarchar', value: row.batchId },
        { name: 'created_by', type: 'nvarchar', value: row.createdBy },
        { name: 'meta', type: 'nvarchar(max)', value: row.metaJson },
        { name: 'skipped_error', type: 'nvarchar(max)', value: skippedError },
        { name: 'user_id', type: 'nvarchar', value: row.userId },
        { name: 'reply_to', type: 'nvarchar', value: row.replyTo },
        { name: 'args', type: 'nvarchar(max)', value: row.argsJson },
      ],
    };
  }
}

function at(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

