/**
 * MySQL/MariaDB only: GET_LOCK names, the leader's lock connection killed from outside, the claim's
 * isolation (it must not block enqueues), times under any connection time zone, and migrations.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import mysql from 'mysql2/promise';
import type { PoolConnection } from 'mysql2/promise';
import { MYSQL_URL, mysqlDialect as factory, requireDatabase, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { lockName } from '../../lib/driver/mysql/store.ts';
import { leadershipKey } from '../../lib/maintenance/leader.ts';
import { countStatements } from '../helpers/statements.ts';
import { innodbTransactions } from '../helpers/innodb.ts';
import { loadMigrations } from '../../lib/driver/migrations.ts';
import { createJobs, type Jobs } from '../../lib/index.ts';
import { QueryWatchdog, UnansweredQueryError, recordIdentity } from '../../lib/driver/mysql/watchdog.ts';
import { classifyError } from '../../lib/driver/errors.ts';

/** The server's packet limit in bytes: a statement longer than this is refused. */
async function maxAllowedPacket(t: TestDb): Promise<number> {
  const [{ max }] = await t.query<{ max: number }>('SELECT @@max_allowed_packet AS max');
  return Number(max);
}

describe('MySQL/MariaDB specifics [mysql]', function () {
  let opened: TestDb[] = [];
  const fresh = async () => {
    const t = await factory.create();
    opened.push(t);
    return t;
  };
  before(requireDatabase(factory));
  afterEach(async () => {
    for (const t of opened.reverse()) await t.cleanup().catch(() => undefined);
    opened = [];
  });

  it('normalises GET_LOCK names: at most 64 characters, and names differing only in case never share a lock', async () => {
    const long = `tenant-${'x'.repeat(100)}:leader`;
    expect(lockName('sqljobs_leader')).to.equal('sqljobs_leader');
    expect(lockName(long)).to.have.length.at.most(64);
    expect(lockName(long)).to.equal(lockName(long));
    expect(lockName(long)).to.not.equal(lockName(long.replace('leader', 'leadeR')));
    expect(lockName('Leader')).to.not.equal(lockName('leader'));
    expect(lockName('Leader')).to.equal(lockName('Leader').toLowerCase());

    const t = await fresh();
    const a = t.jobs({ worker: false });
    const b = (await t.another()).jobs({ worker: false });
    for (const name of [long, 'Leader', 'leader']) {
      const held = await a.store.sessionLockTry!(name);
      expect(held, name).to.not.equal(null);
      expect(await held!.stillHeld()).to.equal(true);
      expect(await b.store.sessionLockTry!(name), `${name} is taken`).to.equal(null);
      const [row] = await t.query<{ holder: number | null }>('SELECT IS_USED_LOCK(?) AS holder', [lockName(`${t.prefix}${name}`)]);
      expect(Number(row.holder)).to.equal(held!.pid);
      await held!.release();
      expect(await held!.stillHeld()).to.equal(false);
      const again = await b.store.sessionLockTry!(name);
      expect(again, `${name} is free after release`).to.not.equal(null);
      await again!.release();
    }
    // 'Leader' and 'leader' are two locks: both can be held at once, by different owners.
    const upper = await a.store.sessionLockTry!('Leader');
    const lower = await b.store.sessionLockTry!('leader');
    expect(upper).to.not.equal(null);
    expect(lower).to.not.equal(null);
    await upper!.release();
    await lower!.release();
  });

  it('KILL CONNECTION of the leader\'s lock connection: it steps down at once and another instance takes over', async () => {
    const t = await fresh();
    const all: Jobs[] = [];
    for (const handle of [t, await t.another(), await t.another()]) {
      const jobs = handle.jobs({ leader: { leaseMs: 300 }, worker: { pollInterval: 1000 } });
      jobs.define('noop', async () => undefined);
      all.push(jobs);
    }
    for (const jobs of all) await jobs.start();
    await until(() => all.filter((j) => j.isLeader()).length === 1, 'one leader', 3000);
    const holder = async () => (await t.query<{ holder: number | null }>('SELECT IS_USED_LOCK(?) AS holder', [lockName(`${t.prefix}${leadershipKey('leader')}`)]))[0].holder;
    const first = all.find((j) => j.isLeader())!;
    const info = await first.store.leaderDescribe(leadershipKey('leader'));
    expect(info).to.match(new RegExp(`^MySQL connection ${await holder()} .*\\(GET_LOCK\\)$`));
    // Any instance may win the next election, the one that lost its connection included: kill the
    // lock's connection until another instance has taken over (each round must fail over cleanly).
    let leader = first;
    for (let round = 1; leader === first; round++) {
      expect(round, 'another instance took over within 10 rounds').to.be.at.most(10);
      const killed = Number(await holder());
      let steppedDown = false;
      const onChange = (e: { leader: boolean }) => (steppedDown ||= !e.leader);
      leader.on('leader', onChange);
      await t.query(`KILL CONNECTION ${killed}`);
      await until(() => steppedDown, 'the leader to step down', 1000);
      leader.off('leader', onChange);
      await until(() => all.some((j) => j.isLeader()), 'a new leader', 2000);
      const now = await holder();
      expect(now).to.not.equal(null);
      expect(Number(now)).to.not.equal(killed);
      expect(all.filter((j) => j.isLeader())).to.have.length(1);
      leader = all.find((j) => j.isLeader())!;
    }
  });

  it('a lock connection ended while the process was not running: stillHeld answers false instead of hanging', async () => {
    const t = await fresh();
    const lock = (await t.jobs({ worker: false }).store.sessionLockTry!('leader'))!;
    // Ended by another process while this one is blocked, as under SIGSTOP: the close reaches this
    // process only after it has sent its next statement on that connection.
    const killer = `import mysql from 'mysql2/promise';
      const c = await mysql.createConnection(process.env.URL);
      await c.query('KILL CONNECTION ${lock.pid}');
      while ((await c.query('SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ${lock.pid}'))[0].length) await new Promise((r) => setTimeout(r, 10));
      await c.end();`;
    execFileSync(process.execPath, ['--input-type=module', '-e', killer], { env: { ...process.env, URL: MYSQL_URL } });
    const answer = await Promise.race([lock.stillHeld(), sleep(5000).then(() => 'no answer within 5 s')]);
    expect(answer).to.equal(false);
  });

  it('a claim holding its rows does not block a concurrent enqueue (READ COMMITTED: no gap locks)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.enqueueMany(Array.from({ length: 5 }, () => ({ name: 'a', payload: {} })));
    // Hold the claim's transaction open right after its SELECT ... FOR UPDATE SKIP LOCKED.
    const { atPick, proceed } = holdClaimsAfterPick(jobs);
    const claiming = jobs.store.jobClaim({ workerId: 'w1', names: ['a'], limit: 10 });
    await atPick;
    // Another app connection that would give up after 1 s of lock wait.
    const app = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1 });
    app.pool.on('connection', (c) => c.query('SET SESSION innodb_lock_wait_timeout = 1'));
    try {
      const producer = createFor(t, app);
      const late = await producer.enqueue('a', { late: true });
      expect((await producer.get(late.id))!.state).to.equal('pending');
    } finally {
      proceed();
      await app.end();
    }
    expect(await claiming).to.have.length(5);
  });

  it('fenced writes of running jobs do not wait for another process\'s claim stopped between its pick and its COMMIT', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const store = jobs.store;
    await jobs.enqueue('later', {}, { queue: 'elsewhere' });
    // Another process's claim of a queue with nothing due, frozen right after its SELECT ... FOR
    // UPDATE SKIP LOCKED: MariaDB keeps the pending rows that pick scanned locked until its COMMIT.
    const frozen = (await t.another()).jobs({ worker: false });
    await frozen.migrate();
    const { atPick, proceed } = holdClaimsAfterPick(frozen);
    const claiming = frozen.store.jobClaim({ workerId: 'frozen', names: ['later', 'run'], queues: ['frozen'], limit: 10 });
    await atPick;
    const locks = (await innodbTransactions((text) => t.query(text))).map((trx) => trx.rowLocks);
    expect(Math.max(0, ...locks), 'the frozen claim holds row locks').to.be.greaterThan(0);

    /** Six jobs running here; a write of all of them at once (such a list of ids, most of a small table, is what the planner reads by a scan). */
    const running = async (opts: { deadLetter?: string } = {}) => {
      await jobs.enqueueMany(Array.from({ length: 6 }, (_, n) => ({ name: 'run', payload: n, ...opts })));
      const claimed = await store.jobClaim({ workerId: 'here', names: ['run'], limit: 6 });
      expect(claimed).to.have.length(6);
      return { claimed, fenced: claimed.map((j) => ({ id: j.id, token: j.token, flow: j.flow })), ids: new Set(claimed.map((j) => j.id)) };
    };
    /** A write that must not wait for the frozen claim (the server's lock wait is 50 s). */
    const promptly = <T>(what: string, write: Promise<T>): Promise<T> =>
      Promise.race([write, sleep(5000).then((): never => { throw new Error(`${what} waited for the row the frozen claim holds locked`); })]);
    const lines = [{ at: Date.now(), message: 'one' }, { at: Date.now(), message: 'two' }];
    const error = { name: 'Error', message: 'failed here' };
    try {
      const completed = await running();
      expect(await promptly('logs', store.logAppendMany(completed.fenced.map((f) => ({ ...f, attempt: 1, lines }))))).to.deep.equal(completed.ids);
      expect(await promptly('progress', store.jobProgressMany(completed.fenced.map((f) => ({ ...f, progress: 50, message: null }))))).to.deep.equal(completed.ids);
      expect(await promptly('completions', store.jobCompleteMany(completed.fenced.map((f) => ({ ...f, resultJson: '1' }))))).to.deep.equal(completed.ids);
      const failed = await running();
      expect(await promptly('failures', store.jobFailMany(failed.fenced.map((f) => ({ ...f, attempt: 1, startedAt: null, error, retryDelayMs: null }))))).to.deep.equal(failed.ids);
      const flow = await running({ deadLetter: 'dlq' });
      expect(flow.claimed.every((j) => j.flow > 0), 'finished through the flow transaction').to.equal(true);
      expect(await promptly('completions with workflow', store.jobCompleteMany(flow.fenced.map((f) => ({ ...f, resultJson: '1' }))))).to.deep.equal(flow.ids);
      for (const id of completed.ids) expect((await jobs.logs(id)).map((l) => l.message), 'the lines, in order').to.deep.equal(['one', 'two']);
      for (const id of failed.ids) expect((await jobs.get(id))!.state).to.equal('failed');
    } finally {
      proceed();
    }
    expect(await claiming).to.deep.equal([]);
  });

  it('a completion does not wait for another process\'s completion that has moved its jobs to history but not committed', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await jobs.enqueueMany(Array.from({ length: 6 }, (_, n) => ({ name: 'run', payload: n })));
    const claimed = await jobs.store.jobClaim({ workerId: 'here', names: ['run'], limit: 6 });
    expect(claimed).to.have.length(6);
    // The other completion, stopped before its COMMIT: a row in history no other transaction may read locking yet.
    const other = await mysql.createConnection({ uri: MYSQL_URL });
    other.on('error', () => undefined);
    try {
      await other.query('START TRANSACTION');
      await other.query(
        `INSERT INTO ${t.prefix}history (id, name, queue, state, priority, attempts, max_attempts, run_at, created_at, finished_at)
         VALUES ('ffffffff-ffff-7fff-bfff-ffffffffffff', 'run', 'default', 'completed', 0, 1, 1, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))`,
      );
      // The server would wait 50 s for the lock before giving up.
      const done = jobs.store.jobCompleteMany(claimed.map((j) => ({ id: j.id, token: j.token, flow: j.flow, resultJson: null })));
      const applied = await Promise.race([done, sleep(5000).then((): never => { throw new Error('the completion waited for the other one\'s uncommitted history row'); })]);
      expect(applied).to.deep.equal(new Set(claimed.map((j) => j.id)));
    } finally {
      await other.query('ROLLBACK').catch(() => undefined);
      await other.end();
    }
  });

  it('short jobs are claimed ahead even while their outcomes take long to write (a claim costs round trips and a commit here)', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 2, pollInterval: 60_000 } });
    await jobs.migrate();
    jobs.define('quick', () => undefined);
    await jobs.enqueueMany(Array.from({ length: 300 }, (_, n) => ({ name: 'quick', payload: n })));
    const store = jobs.store;
    const claim = store.jobClaim.bind(store);
    const limits: number[] = [];
    store.jobClaim = (req) => (limits.push(req.limit), claim(req));
    // Each outcome is written 80 ms after its handler returned: the slot was free all that time.
    const complete = store.jobCompleteMany.bind(store);
    store.jobCompleteMany = async (items) => (await sleep(80), complete(items));
    await jobs.start();
    await until(async () => (await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n == 0, 'every job to finish', 25_000);
    await jobs.stop();
    expect(Math.max(...limits), 'the largest claim').to.be.greaterThan(50);
  });

  it("a progress write that times out on another session's row lock is written again once the lock is gone", async function () {
    this.timeout(30_000);
    const t = await fresh();
    // The library's connections open after this, with a lock wait of 1 s instead of 50.
    const [{ was }] = await t.query<{ was: number }>('SELECT @@GLOBAL.innodb_lock_wait_timeout AS was');
    await t.query('SET GLOBAL innodb_lock_wait_timeout = 1');
    const other = await mysql.createConnection({ uri: MYSQL_URL });
    try {
      const jobs = t.jobs({ worker: { pollInterval: 60_000, logFlushInterval: 20 } });
      const lockWaits: unknown[] = [];
      jobs.on('error', (err) => void ((err as { errno?: number }).errno === 1205 && lockWaits.push(err)));
      let report!: () => void;
      const mayReport = new Promise<void>((r) => (report = r));
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      jobs.define('slow', async (_p, ctx) => {
        await mayReport;
        ctx.progress(60, 'most of it');
        await gate;
      });
      await jobs.start();
      const { id } = await jobs.enqueue('slow', {});
      await until(async () => (await jobs.get(id))?.state === 'running', 'the job to run');
      await other.query('START TRANSACTION');
      await other.query(`SELECT id FROM ${t.prefix}jobs WHERE id = ? FOR UPDATE`, [id]);
      report();
      await until(() => lockWaits.length > 0, 'the progress write to time out on the lock', 10_000);
      await other.query('ROLLBACK');
      await until(async () => (await jobs.get(id))?.progress === 60, 'the progress, written again', 10_000);
      release();
      await until(async () => (await jobs.get(id))?.state === 'completed', 'completion');
      expect((await jobs.get(id))!.progressMessage).to.equal('most of it');
    } finally {
      await other.end();
      await t.query(`SET GLOBAL innodb_lock_wait_timeout = ${Number(was)}`);
    }
  });

  it('the watchdog ends a query whose answer never comes (its thread idle): the transaction and its row locks are gone, and the query fails as a dropped connection', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await jobs.enqueue('x', {});
    const pool = mysql.createPool({ uri: MYSQL_URL, multipleStatements: true });
    pool.pool.on('connection', recordIdentity); // as the library's own pools do
    try {
      const watchdog = new QueryWatchdog(pool);
      watchdog.checkMs = 300;
      const c = await pool.getConnection();
      await c.query('SELECT 1'); // answered after the identity the pool asked for when it connected
      // The server answers, but nothing reads it: our end waits as it does for a thread MariaDB left "Killed".
      (c.connection as unknown as { stream: { pause(): void } }).stream.pause();
      const err = await watchdog.query(c, `START TRANSACTION; SELECT id FROM ${t.prefix}jobs FOR UPDATE`, []).then(() => null, (e: unknown) => e);
      expect(err).to.be.instanceOf(UnansweredQueryError);
      expect((err as Error).message).to.match(/its thread: Sleep/);
      expect(classifyError(err), 'retried like a dropped connection').to.equal('transient');
      // Its row lock went with its transaction: a read that does not wait gets the row.
      await until(async () => (await t.query(`SELECT id FROM ${t.prefix}jobs FOR UPDATE NOWAIT`).then(() => true, () => false)), 'the row lock to be released');
      expect(await t.query('SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?', [(err as UnansweredQueryError).threadId])).to.deep.equal([]);
    } finally {
      await pool.end();
    }
  });

  it('a completion left unanswered past the watchdog\'s limit is ended on the server (its transaction and lock wait with it) and written again', async function () {
    this.timeout(30_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 60_000 } });
    // The limit is the server's lock wait timeout + 30 s; a completion waiting for a row lock past 1.5 s stands in for one MariaDB never answers.
    Object.assign((jobs.store as unknown as { watchdog: object }).watchdog, { limitMs: 1500, checkMs: 500 });
    const unanswered: { threadId: number }[] = [];
    const others: unknown[] = [];
    jobs.on('error', (err) => void ((err as Error).name === 'UnansweredQueryError' ? unanswered.push(err as { threadId: number }) : others.push(err)));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('held', async () => {
      await gate;
      return 'done';
    });
    await jobs.start();
    const { id } = await jobs.enqueue('held', {});
    await until(async () => (await jobs.get(id))?.state === 'running', 'the job to run');
    const other = await mysql.createConnection({ uri: MYSQL_URL });
    try {
      await other.query('START TRANSACTION');
      await other.query(`SELECT id FROM ${t.prefix}jobs WHERE id = ? FOR UPDATE`, [id]);
      release();
      await until(() => unanswered.length > 0, 'the watchdog to end the waiting completion', 10_000);
      const ended = unanswered[0].threadId;
      await until(async () => (await t.query('SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?', [ended])).length === 0, 'its connection to be gone on the server');
      await other.query('ROLLBACK');
    } finally {
      await other.end();
    }
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the completion, written again');
    expect(await jobs.get(id)).to.include({ state: 'completed', result: 'done', attempts: 1 });
    expect(await t.query(`SELECT id FROM ${t.prefix}history WHERE id = ?`, [id])).to.have.length(1);
    expect(others, 'no other error').to.deep.equal([]);
  });

  it('one flush of more short log lines than a packet carries is written whole', async function () {
    this.timeout(120_000);
    const t = await fresh();
    const max = await maxAllowedPacket(t);
    // Each line adds ~50 bytes of statement beside its message: this many make one statement past the packet.
    const count = Math.ceil(max / 40);
    const jobs = t.jobs({ worker: { pollInterval: 60_000, logFlushInterval: 60_000 } });
    let errors = 0;
    jobs.on('error', () => errors++);
    jobs.define('chatty', (_p, ctx) => {
      for (let i = 0; i < count; i++) ctx.log(`l${i}`);
    });
    await jobs.start();
    const { id } = await jobs.enqueue('chatty', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'completion', 90_000);
    const [row] = await t.query<{ n: number; distinct: number }>(`SELECT COUNT(*) AS n, COUNT(DISTINCT message) AS \`distinct\` FROM ${t.prefix}logs WHERE job_id = ?`, [id]);
    expect([Number(row.n), Number(row.distinct)], 'lines stored, each once').to.deep.equal([count, count]);
    expect(errors, 'error events').to.equal(0);
    await jobs.stop();
  });

  it('completions whose results together exceed the server\'s packet limit are written in one call', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const max = await maxAllowedPacket(t);
    // Results of 1 MiB (maxOutputBytes' default) each: more of them than one packet may carry.
    const count = Math.ceil(max / (1024 * 1024)) + 4;
    await jobs.enqueueMany(Array.from({ length: count }, (_, n) => ({ name: 'big', payload: n })));
    const claimed = await jobs.store.jobClaim({ workerId: 'here', names: ['big'], limit: count });
    expect(claimed).to.have.length(count);
    const resultJson = JSON.stringify('x'.repeat(1024 * 1024 - 2));
    const applied = await jobs.store.jobCompleteMany(claimed.map((j) => ({ id: j.id, token: j.token, flow: j.flow, resultJson })));
    expect(applied).to.deep.equal(new Set(claimed.map((j) => j.id)));
    const [{ n }] = await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}history WHERE state = 'completed' AND LENGTH(result) = ${resultJson.length}`);
    expect(Number(n)).to.equal(count);
  });

  it('stores and reads exact UTC milliseconds whatever the app connection\'s time zone', async () => {
    const t = await fresh();
    const app = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2, timezone: '-05:00' });
    app.pool.on('connection', (c) => c.query("SET time_zone = '+09:00'"));
    try {
      const jobs = createFor(t, app);
      const runAt = new Date(Date.UTC(2031, 0, 2, 3, 4, 5, 678));
      const { id } = await jobs.enqueue('x', { v: 'é ✓' }, { runAt });
      const job = (await jobs.get(id))!;
      expect(job.runAt.toISOString()).to.equal(runAt.toISOString());
      expect(Math.abs(job.createdAt.getTime() - Date.now())).to.be.below(5000);
      expect(job.payload).to.deep.equal({ v: 'é ✓' });
      expect(Math.abs((await jobs.store.clockNow()) - Date.now())).to.be.below(5000);
      const [row] = await t.query<{ run_at: string }>(`SELECT CAST(run_at AS CHAR) AS run_at FROM ${t.prefix}jobs WHERE id = ?`, [id]);
      expect(row.run_at).to.equal('2031-01-02 03:04:05.678');
    } finally {
      await app.end();
    }
  });

  /** Indexed columns of the jobs and history tables, as `table.column`. */
  const indexedColumns = async (t: TestDb) =>
    (await t.query<{ t: string; c: string }>(
      `SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?)`,
      [`${t.prefix}jobs`, `${t.prefix}history`],
    )).map((r) => `${r.t.slice(t.prefix.length)}.${r.c}`);
  const sideRows = async (t: TestDb) => ({
    unique: (await t.query(`SELECT unique_key, job_id FROM ${t.prefix}unique_jobs`)).length,
    reserved: (await t.query(`SELECT job_id FROM ${t.prefix}reservations`)).length,
  });

  it('keys only some jobs have take no index entry for the others: unique keys and reservations live in side tables', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false, reserveTimeout: 300 } as never);
    jobs.define('j', async () => undefined);
    await jobs.migrate();
    const indexed = await indexedColumns(t);
    for (const c of ['jobs.unique_key', 'history.unique_key', 'jobs.reserved_until']) expect(indexed, c).to.not.include(c);

    await jobs.enqueueMany([{ name: 'j', payload: {} }, { name: 'j', payload: {} }]);
    expect(await sideRows(t), 'plain jobs').to.deep.equal({ unique: 0, reserved: 0 });

    const first = await jobs.enqueue('j', {}, { unique: { key: 'u' } });
    expect(await jobs.enqueue('j', {}, { unique: { key: 'u' } })).to.deep.equal({ id: first.id, existed: true });
    const d = await jobs.enqueue('j', { v: 1 }, { debounce: { key: 'd', ms: 60_000 } });
    expect(await jobs.enqueue('j', { v: 2 }, { debounce: { key: 'd', ms: 60_000 } })).to.deep.equal({ id: d.id, existed: true, replaced: true });
    expect(await sideRows(t)).to.deep.equal({ unique: 2, reserved: 0 });

    // Finished jobs are found through the same rows (unique.states reaching history).
    await jobs.cancel(first.id);
    expect(await jobs.enqueue('j', {}, { unique: { key: 'u', states: ['cancelled'] } })).to.deep.equal({ id: first.id, existed: true });

    const kept = await jobs.enqueue('j', {}, { reserve: true });
    const dropped = await jobs.enqueue('j', {}, { reserve: true });
    const lapsing = await jobs.enqueue('j', {}, { reserve: true });
    expect((await jobs.list({ reserved: true })).items.map((j) => j.id).sort()).to.deep.equal([kept.id, dropped.id, lapsing.id].sort());
    expect(await jobs.commitReserved(kept.id)).to.deep.equal([kept.id]);
    expect((await sideRows(t)).reserved, 'a commit removes its row').to.equal(2);
    await jobs.cancel(dropped.id);
    expect((await jobs.list({ reserved: true })).items.map((j) => j.id)).to.deep.equal([lapsing.id]);

    // The leader's sweep: the lapsed reservation is cancelled, the cancelled one's row pruned.
    await sleep(400);
    expect(await jobs.store.jobCancelExpiredReservations(10)).to.equal(1);
    expect((await jobs.get(lapsing.id))!.state).to.equal('cancelled');
    expect(await jobs.store.jobCancelExpiredReservations(10)).to.equal(0);
    expect(await sideRows(t)).to.deep.equal({ unique: 2, reserved: 0 });

    // Deleting a job deletes its side row.
    await jobs.delete(d.id);
    expect((await sideRows(t)).unique).to.equal(1);
  });

  it('migration 013 moves the unique keys and reservations of an existing installation into the side tables', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false } as never);
    jobs.define('j', async () => undefined);
    const live = await jobs.enqueue('j', {}, { unique: { key: 'live' } });
    const done = await jobs.enqueue('j', {}, { unique: { key: 'done' } });
    await jobs.cancel(done.id);
    const reserved = await jobs.enqueue('j', {}, { reserve: true });
    // Back to version 12, as an installation made before 013 has it.
    const p = t.prefix;
    for (const q of [
      `DROP TABLE ${p}unique_jobs`, `DROP TABLE ${p}reservations`, `DROP TABLE ${p}throughput`, `DELETE FROM ${p}migrations WHERE version >= 13`,
      // And what the later versions added (016: the trace context; 017: throughput, above; 018 is empty here;
      // 021: the batches' callback jobs; 022: the ticks' index).
      `ALTER TABLE ${p}jobs DROP COLUMN trace_context`, `ALTER TABLE ${p}history DROP COLUMN trace_context`,
      `ALTER TABLE ${p}batches DROP COLUMN callback_jobs`, `DROP INDEX ${p}schedule_ticks_fired ON ${p}schedule_ticks`,
      `CREATE INDEX ${p}jobs_unique ON ${p}jobs (unique_key)`, `CREATE INDEX ${p}history_unique ON ${p}history (unique_key, created_at)`,
      `CREATE INDEX ${p}jobs_reserved ON ${p}jobs (reserved_until)`,
    ]) await t.query(q);

    const upgraded = t.jobs({ worker: false } as never);
    upgraded.define('j', async () => undefined);
    await upgraded.migrate();
    expect(await upgraded.enqueue('j', {}, { unique: { key: 'live' } })).to.deep.equal({ id: live.id, existed: true });
    expect(await upgraded.enqueue('j', {}, { unique: { key: 'done', states: ['cancelled'] } })).to.deep.equal({ id: done.id, existed: true });
    expect((await upgraded.list({ reserved: true })).items.map((j) => j.id)).to.deep.equal([reserved.id]);
    expect(await upgraded.commitReserved(reserved.id)).to.deep.equal([reserved.id]);
    expect(await indexedColumns(t)).to.not.include.members(['jobs.unique_key', 'history.unique_key', 'jobs.reserved_until']);
  });

  it('migrations: once under GET_LOCK; a schema newer than the code is refused', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    // Counted at the driver: the migrations table's key would hide a second application.
    const ddl = countStatements(new RegExp(`CREATE TABLE ${t.prefix}jobs\\b`), { perStatement: true });
    const recorded = countStatements(new RegExp(`INSERT INTO ${t.prefix}migrations\\b`), { perStatement: true });
    await Promise.all([jobs.migrate(), t.jobs({ worker: false }).migrate(), (await t.another()).jobs({ worker: false }).migrate()]);
    const known = loadMigrations('mysql', t.prefix).map((m) => m.version);
    expect(ddl.count, 'the jobs table created once').to.equal(1);
    expect(recorded.count, 'each version recorded once').to.equal(known.length);
    const versions = await t.query<{ version: number }>(`SELECT version FROM ${t.prefix}migrations ORDER BY version`);
    expect(versions.map((v) => Number(v.version))).to.deep.equal(known);
    await t.query(`INSERT INTO ${t.prefix}migrations (version, name, applied_at) VALUES (999, 'from_the_future', UTC_TIMESTAMP(3))`);
    const err = await t.jobs({ worker: false }).migrate().catch((e: Error) => e);
    expect((err as Error).message).to.match(/schema is at version 999, newer than this code knows/);
  });
});

/** A producer on another app pool, with the test's table prefix; closed after the test. */
/**
 * Hold each claim of `jobs` open right after its SELECT ... FOR UPDATE SKIP LOCKED (its rows
 * locked, its UPDATE and COMMIT not sent) until `proceed`; `atPick` resolves when one gets there.
 */
function holdClaimsAfterPick(jobs: Jobs): { atPick: Promise<void>; proceed: () => void } {
  const own = (jobs.store as unknown as { own: mysql.Pool }).own;
  const getConnection = own.getConnection.bind(own);
  let reached!: () => void;
  const atPick = new Promise<void>((r) => (reached = r));
  let proceed!: () => void;
  const gate = new Promise<void>((r) => (proceed = r));
  own.getConnection = async () => {
    const c = await getConnection();
    const query = c.query.bind(c) as (...a: unknown[]) => Promise<unknown>;
    (c as unknown as { query: unknown }).query = async (...args: unknown[]) => {
      const out = await query(...args);
      if (String(args[0]).includes('SKIP LOCKED')) {
        reached();
        await gate;
      }
      return out;
    };
    return c as PoolConnection;
  };
  return { atPick, proceed };
}

function createFor(t: TestDb, pool: mysql.Pool): Jobs {
  const jobs = createJobs({ db: pool, tablePrefix: t.prefix, worker: false });
  afterEachClose.push(jobs);
  return jobs;
}
const afterEachClose: Jobs[] = [];
afterEach(async () => {
  for (const j of afterEachClose.splice(0)) await j.close().catch(() => undefined);
});
