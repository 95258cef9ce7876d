/**
 * Claims that only separate processes can prove: exactly-once execution across workers, rescue
 * after SIGKILL, fenced completion after SIGSTOP/SIGCONT, checkpoint resume in another process,
 * concurrent migrations.
 */
import { expect } from 'chai';
import path from 'node:path';
import { PROCESS_DIALECTS, forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { spawnWorker, type WorkerProc } from '../helpers/processes.ts';
import { liveRow } from '../store/helpers.ts';
import { loadMigrations } from '../../lib/driver/migrations.ts';

function workerEnv(t: TestDb, extra: Record<string, string | number> = {}): Record<string, string | number> {
  // PGAPPNAME names this test's PostgreSQL sessions, so checks on pg_stat_activity see only them.
  return { DIALECT: t.dialect, DRIVER: t.driver, LOCATION: t.location, PREFIX: t.prefix, PGAPPNAME: t.prefix, ...extra };
}

forEachDialect('separate processes', ({ fresh }) => {
  it('executes 2,000 jobs across 3 worker processes exactly once', async function () {
    this.timeout(120_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await t.query(`CREATE TABLE ${t.prefix}exec_log (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, started_at BIGINT NOT NULL, ended_at BIGINT NOT NULL)`);
    const workers = [1, 2, 3].map(() => spawnWorker(workerEnv(t, { POLL: 20, CONCURRENCY: 10 })));
    await Promise.all(workers.map((w) => w.waitFor(/^ready$/)));
    const N = 2000;
    const ids = (await jobs.enqueueMany(Array.from({ length: N }, () => ({ name: 'exec', payload: {} })))).map((r) => r.id);
    await until(async () => Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}history`))[0].n) === N, 'all jobs to finish', 90_000, 100);
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));

    const rows = await t.query<{ job_id: string; pid: number; started_at: number | string; ended_at: number | string }>(`SELECT * FROM ${t.prefix}exec_log`);
    expect(rows).to.have.length(N);
    expect(new Set(rows.map((r) => r.job_id)).size).to.equal(N);
    expect(new Set(rows.map((r) => r.job_id))).to.deep.equal(new Set(ids));
    const perPid = new Map<number, number>();
    for (const r of rows) perPid.set(r.pid, (perPid.get(r.pid) ?? 0) + 1);
    expect([...perPid.keys()].sort()).to.deep.equal(workers.map((w) => w.pid).sort());
    for (const [pid, n] of perPid) expect(n, `jobs run by ${pid}: ${[...perPid.values()]}`).to.be.at.least(N * 0.15);
    // Jobs really ran at the same time in different processes.
    const events = rows.flatMap((r) => [
      { at: Number(r.started_at), d: 1, pid: r.pid },
      { at: Number(r.ended_at), d: -1, pid: r.pid },
    ]).sort((a, b) => a.at - b.at || a.d - b.d);
    let inFlight = 0;
    let peak = 0;
    const running = new Map<number, number>();
    let peakPids = 0;
    for (const e of events) {
      inFlight += e.d;
      running.set(e.pid, (running.get(e.pid) ?? 0) + e.d);
      if (inFlight > peak) peak = inFlight;
      peakPids = Math.max(peakPids, [...running.values()].filter((n) => n > 0).length);
    }
    expect(peak).to.be.at.least(3);
    expect(peakPids).to.be.at.least(2);
    expect(Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n)).to.equal(0);
  });

  it('rescues the job of a SIGKILLed worker after the stall threshold, never a live one, and resumes its checkpoint', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const timing = { HEARTBEAT: 200, STALL: 1500, POLL: 100 };
    const a = spawnWorker(workerEnv(t, { ...timing, QUEUES: 'a' }));
    await a.waitFor(/^ready$/);
    const x = await jobs.enqueue('work', { ms: 60_000, checkpoint: true }, { queue: 'a' });
    await a.waitFor(new RegExp(`^checkpointed ${x.id}$`));
    const b = spawnWorker(workerEnv(t, { ...timing, QUEUES: 'a,b' }));
    await b.waitFor(/^ready$/);
    const y = await jobs.enqueue('work', { ms: 4000 }, { queue: 'b' });
    await b.waitFor(new RegExp(`^started ${y.id} 1$`));

    a.kill('SIGKILL');
    const killedAt = Date.now();
    await a.exited;
    // Not rescued before the stall threshold.
    await sleep(700);
    expect(await jobs.get(x.id)).to.include({ state: 'running', attempts: 1 });
    const line = await b.waitFor(new RegExp(`^started ${x.id} 2$`), 10_000);
    expect(line).to.be.a('string');
    expect(Date.now() - killedAt).to.be.at.least(1500);
    await until(async () => (await jobs.get(x.id))?.state === 'completed', 'x to complete on B', 10_000);
    const done = await jobs.get(x.id);
    expect(done!.attempts).to.equal(2);
    expect(done!.result).to.deep.equal({ pid: b.pid, resumedFrom: { step: 1, by: a.pid } });
    const attempts = await jobs.attempts(x.id);
    expect(attempts[0].outcome).to.equal('failed');
    expect(attempts[0].error!.message).to.match(/^worker lost/);
    expect(attempts[1].outcome).to.equal('completed');

    // B's own long job kept heartbeating: never rescued, one attempt.
    await until(async () => (await jobs.get(y.id))?.state === 'completed', 'y to complete', 10_000);
    expect((await jobs.get(y.id))!.attempts).to.equal(1);
    expect(await jobs.attempts(y.id)).to.have.length(1);
    b.kill('SIGTERM');
    await b.exited;
  });

  it('fences a stale worker: stopped past the threshold, resumed while the job runs again elsewhere, it writes nothing', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    // A's heartbeat interval is long: after SIGCONT no heartbeat answer can tell A it lost the job
    // before it writes; only the database's fence on each write can refuse it.
    const a = spawnWorker(workerEnv(t, { HEARTBEAT: 60_000, STALL: 180_000, POLL: 100, QUEUES: 'a' }));
    await a.waitFor(/^ready$/);
    const x = await jobs.enqueue('work', { ms: 1500, hold: true }, { queue: 'a' });
    await a.waitFor(new RegExp(`^started ${x.id} 1$`));
    a.kill('SIGSTOP');
    const b = spawnWorker(workerEnv(t, { HEARTBEAT: 200, STALL: 1000, POLL: 100, QUEUES: 'a' }));
    await b.waitFor(new RegExp(`^started ${x.id} 2$`), 15_000);
    const bPid = `pid ${b.pid}`;
    await until(async () => (await jobs.get(x.id))?.progressMessage === `${bPid} started`, "B's first progress");
    const underB = await liveRow(t, x.id);
    expect(underB).to.include({ state: 'running', attempts: 2 });

    // A wakes while B still runs the job (B holds it until SIGUSR2): A logs, reports progress and completes.
    a.kill('SIGCONT');
    await a.waitFor(new RegExp(`^outcome-discarded ${x.id} lost$`), 10_000);
    expect(a.lines, "A's completion was refused").to.not.include(`completed ${x.id}`);
    const during = await liveRow(t, x.id);
    expect(during, 'still running under B, unchanged by A').to.deep.equal(underB);
    expect(await jobs.get(x.id)).to.include({ state: 'running', progress: 10, progressMessage: `${bPid} started` });
    expect((await jobs.logs(x.id)).map((l) => l.message)).to.deep.equal([]);
    expect(b.lines).to.not.include(`completed ${x.id}`);

    b.kill('SIGUSR2');
    await b.waitFor(new RegExp(`^completed ${x.id}$`), 10_000);
    const done = await jobs.get(x.id);
    expect(done).to.include({ state: 'completed', attempts: 2, progress: 90, progressMessage: `${bPid} finishing` });
    expect(done!.result).to.deep.equal({ pid: b.pid, resumedFrom: null });
    expect((await jobs.logs(x.id)).map((l) => l.message)).to.deep.equal([`${bPid} finished sleeping`]);
    for (const w of [a, b]) w.kill('SIGTERM');
    await Promise.all([a.exited, b.exited]);
  });

  it('transactional completion: a worker stopped after its write rolls back when it resumes; exactly one row', async function () {
    this.timeout(60_000);
    const t = await fresh();
    // better-sqlite3 runs a transactional handler synchronously under the write lock: a stopped
    // process would hold that lock, so this case is for databases with row locks.
    if (t.dialect === 'sqlite') this.skip();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await t.query(`CREATE TABLE ${t.prefix}ledger (job_id text NOT NULL, pid integer NOT NULL)`);
    const timing = { HEARTBEAT: 200, STALL: 1000, POLL: 100 };
    const a = spawnWorker(workerEnv(t, { ...timing, QUEUES: 'a' }));
    await a.waitFor(/^ready$/);
    const x = await jobs.enqueue('tx-work', { ms: 2000 }, { queue: 'a' });
    await a.waitFor(new RegExp(`^wrote ${x.id} 1$`));
    a.kill('SIGSTOP');
    const b = spawnWorker(workerEnv(t, { ...timing, QUEUES: 'a' }));
    await b.waitFor(/^ready$/);
    await until(async () => (await jobs.get(x.id))?.state === 'completed', 'B to complete the job', 15_000);
    a.kill('SIGCONT');
    await a.waitFor(new RegExp(`^outcome-discarded ${x.id} lost$`), 10_000);
    // A's handler wakes and tries to complete in its transaction, open since its write: refused,
    // rolled back. Polled rather than slept for: under load the wake-up took more than 2.5 s once.
    await sleep(500);
    await until(() => aReleasedTheLedger(t), 'A to roll its transaction back', 15_000);
    const rows = await t.query<{ pid: number }>(`SELECT pid FROM ${t.prefix}ledger`);
    expect(rows.map((r) => r.pid)).to.deep.equal([b.pid]);
    expect((await jobs.get(x.id))!.result).to.deep.equal({ pid: b.pid });
    for (const w of [a, b]) w.kill('SIGTERM');
    await Promise.all([a.exited, b.exited]);
  });

  /**
   * No transaction of another session still holds a row it wrote to the ledger. MySQL: a locking
   * read that does not wait fails on a row inserted by a transaction still open (not
   * information_schema.INNODB_TRX: InnoDB refreshes that snapshot only when nobody read it for
   * 0.1 s, so a probe every 10 ms kept reading one taken before A rolled back). PostgreSQL and
   * SQL Server: the test's sessions still inside a transaction, which their views show as it is.
   */
  async function aReleasedTheLedger(t: TestDb): Promise<boolean> {
    if (t.dialect === 'mysql') {
      try {
        await t.query(`SELECT COUNT(*) AS n FROM ${t.prefix}ledger FOR UPDATE NOWAIT`);
        return true;
      } catch (err) {
        if ((err as { errno?: number }).errno === 1205) return false;
        throw err;
      }
    }
    const open = await t.query(
      t.dialect === 'mssql'
        ? `SELECT 1 FROM sys.dm_exec_sessions WHERE open_transaction_count > 0 AND database_id = DB_ID() AND session_id <> @@SPID`
        : `SELECT 1 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND datname = current_database() AND application_name = $1`,
      t.dialect === 'postgres' ? [t.prefix] : [],
    );
    return open.length === 0;
  }

  /** Run an every-second schedule in 3 processes for `ms`, then disable it and wait until every fired job has run. */
  async function runSchedule(t: TestDb, env: Record<string, string | number>[], during: (procs: WorkerProc[]) => Promise<void>) {
    const producer = t.jobs({ mode: 'producer' });
    await producer.migrate();
    await t.query(`CREATE TABLE ${t.prefix}exec_log (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, started_at BIGINT NOT NULL, ended_at BIGINT NOT NULL)`);
    const procs = env.map((e) => spawnWorker(workerEnv(t, { SCHEDULE: '* * * * * *', POLL: 100, ...e })));
    await Promise.all(procs.map((p) => p.waitFor(/^ready$/)));
    await during(procs);
    const endedAt = Date.now();
    await producer.schedules.toggle('every-second', false);
    await sleep(1200); // a scheduler round already under way finishes
    await until(async () => Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n) === 0, 'every fired job to run', 10_000, 100);
    for (const p of procs) if (p.child.exitCode === null) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));
    const ticks = (await t.query<{ fire_at: unknown; job_id: string }>(`SELECT fire_at, job_id FROM ${t.prefix}schedule_ticks WHERE schedule_key = 'every-second' ORDER BY fire_at`))
      .map((r) => ({ at: r.fire_at instanceof Date ? r.fire_at.getTime() : Number(r.fire_at), jobId: r.job_id }));
    const execs = await t.query<{ job_id: string; pid: number }>(`SELECT job_id, pid FROM ${t.prefix}exec_log`);
    // Each tick's job ran exactly once, and nothing else ran.
    expect(execs.map((e) => e.job_id).sort()).to.deep.equal(ticks.map((tk) => tk.jobId).sort());
    const times = ticks.map((tk) => tk.at);
    times.slice(1).forEach((x, i) => expect(x - times[i], `tick ${i + 1} one second after tick ${i}: none missing, none doubled`).to.equal(1000));
    // No tick fired early by a process's own clock: each job was created (database clock) at or after its slot.
    const fired = await t.query<{ run_at: unknown; created_at: unknown }>(`SELECT run_at, created_at FROM ${t.prefix}history WHERE created_by = 'schedule:every-second'`);
    expect(fired).to.have.length(ticks.length);
    const msOf = (v: unknown) => (v instanceof Date ? v.getTime() : Number(v));
    for (const f of fired) expect(msOf(f.created_at), 'fired at or after its slot').to.be.at.least(msOf(f.run_at));
    // The series ran to the end of the window.
    expect(endedAt - times.at(-1)!, 'last tick within the last 2 s of the window').to.be.below(2000);
    return { times, execs, procs };
  }

  it('fires an every-second schedule exactly once per tick over 10 s in 3 processes, one clock 700 ms ahead', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const { times } = await runSchedule(t, [{}, { SKEW_MS: 700 }, { SKEW_MS: -300 }], () => sleep(10_000));
    expect(times.length, 'ticks in 10 s: at most one boundary tick missing').to.be.within(9, 12);
  });

  it('a SIGKILLed leader: the successor continues the schedule without a duplicate or missing tick', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const { times, procs } = await runSchedule(t, [{ LEADER: 1000 }, { LEADER: 1000 }, { LEADER: 1000 }], async (procs) => {
      await until(() => procs.find((p) => p.lines.includes('leader true')), 'a leader', 5000);
      await sleep(3000);
      const leader = procs.find((p) => p.lines.includes('leader true'))!;
      leader.kill('SIGKILL');
      await until(() => procs.find((p) => p !== leader && p.lines.includes('leader true')), 'a new leader', 3000);
      await sleep(3000);
    });
    expect(procs.filter((p) => p.lines.includes('leader true'))).to.have.length(2);
    // Ticks due while nobody led were fired by the successor (missed: 'all'): the series has no gap
    // (checked in runSchedule) and spans the failover.
    expect(times.length).to.be.at.least(6);
  });

  it('a SIGKILLed leader is replaced within the lease time', async function () {
    this.timeout(60_000);
    const t = await fresh();
    await t.jobs({ worker: false }).migrate();
    const leaseMs = 1000;
    const a = spawnWorker(workerEnv(t, { LEADER: leaseMs }));
    await a.waitFor(/^leader true$/);
    const b = spawnWorker(workerEnv(t, { LEADER: leaseMs }));
    await b.waitFor(/^ready$/);
    await sleep(500);
    expect(b.lines).to.not.include('leader true');
    a.kill('SIGKILL');
    const killedAt = Date.now();
    await b.waitFor(/^leader true$/, 10_000);
    // The successor waits for the dead leader's lease to expire (fencing), then leads.
    expect(Date.now() - killedAt).to.be.below(leaseMs + leaseMs / 3 + 500);
    b.kill('SIGTERM');
    await b.exited;
  });

  it('a leader stopped past its lease is replaced, and performs no duty after SIGCONT', async function () {
    this.timeout(60_000);
    const t = await fresh();
    await t.jobs({ worker: false }).migrate();
    const env = { LEADER: 600, HEARTBEAT: 100, STALL: 300 };
    const a = spawnWorker(workerEnv(t, env));
    await a.waitFor(/^leader true$/);
    await a.waitFor(/^duty sweep$/, 5000);
    const b = spawnWorker(workerEnv(t, env));
    await b.waitFor(/^ready$/);
    a.kill('SIGSTOP');
    await sleep(2000);
    // A's lease expired: B leads (on PostgreSQL after ending A's session, which still held the advisory lock).
    await b.waitFor(/^leader true$/, 3000);
    const before = a.lines.length;
    a.kill('SIGCONT');
    // A, resumed, must not act on its stale leadership.
    await a.waitFor(/^leader false$/, 3000);
    await sleep(1500);
    expect(a.lines.slice(before)).to.not.include('duty sweep');
    expect(b.lines).to.include('duty sweep');
    for (const w of [a, b]) w.kill('SIGTERM');
    await Promise.all([a.exited, b.exited]);
  });

  it("mode 'consumer': SIGTERM lets the running job finish, then the process exits 0", async function () {
    this.timeout(30_000);
    const t = await fresh();
    const producer = t.jobs({ mode: 'producer' });
    await producer.migrate();
    const w = spawnWorker(workerEnv(t, { JOBS_MODE: 'consumer', SHUTDOWN: 5000, POLL: 50 }));
    await w.waitFor(/^ready$/);
    const { id } = await producer.enqueue('work', { ms: 1500 });
    await w.waitFor(new RegExp(`^started ${id}`));
    w.kill('SIGTERM');
    expect(await w.exited).to.equal(0);
    expect(w.lines).to.include(`completed ${id}`);
    expect((await producer.get(id))!.state).to.equal('completed');
  });

  it("two 'consumer' instances in one process: SIGTERM lets both running jobs finish before the exit", async function () {
    this.timeout(30_000);
    const t = await fresh();
    if (t.driver !== 'better-sqlite3' && t.driver !== 'pg') this.skip(); // the fixture opens SQLite or a pg pool
    const one = t.jobs({ mode: 'producer' });
    const two = t.jobs({ mode: 'producer', tablePrefix: `${t.prefix}b_` });
    await one.migrate();
    await two.migrate();
    const w = spawnWorker(workerEnv(t), path.resolve('test/fixtures/two-consumers.ts'));
    await w.waitFor(/^ready$/);
    const a = await one.enqueue('work', { ms: 1500 });
    const b = await two.enqueue('work', { ms: 1500 });
    await sleep(400); // both running
    w.kill('SIGTERM');
    expect(await w.exited).to.equal(0);
    expect(w.lines).to.include.members([`completed ${a.id}`, `completed ${b.id}`]);
    expect((await one.get(a.id))!.state).to.equal('completed');
    expect((await two.get(b.id))!.state).to.equal('completed');
  });

  it('applies migrations once when 8 processes start at the same moment on an empty database', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const barrier = Date.now() + 2500;
    const procs = Array.from({ length: 8 }, () => spawnWorker(workerEnv(t, { MODE: 'migrate', BARRIER: barrier })));
    const codes = await Promise.all(procs.map((p) => p.exited));
    expect(codes).to.deep.equal(Array(8).fill(0));
    // The migrations table's key would hide a second application: each process reports, counted at
    // its driver, whether it created the jobs table and how many version rows it wrote.
    const reports = procs.map((p) => p.lines.find((l) => l.startsWith('migrated '))!.split(' ').slice(1).map(Number));
    const known = loadMigrations(t.dialect, t.prefix).map((m) => m.version);
    expect(reports.filter(([ddl]) => ddl > 0), 'processes that created the jobs table').to.deep.equal([[1, known.length]]);
    expect(reports.filter(([, versions]) => versions > 0), 'processes that applied any version').to.have.length(1);
    const rows = await t.query<{ version: number }>(`SELECT version FROM ${t.prefix}migrations ORDER BY version`);
    expect(rows.map((r) => Number(r.version))).to.deep.equal(known);
  });
}, PROCESS_DIALECTS);
