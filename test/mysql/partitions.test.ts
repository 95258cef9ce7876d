/**
 * MySQL/MariaDB only: history partitioned by month with `sqljobs history-partitions` (README,
 * "Partitioned history (MySQL/MariaDB, SQL Server)"). A finished job's month is moved by setting
 * its finished_at through the driver (the database clock cannot be moved): the server moves the row
 * into that month's partition, as a completion in that month would have written it.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { MYSQL_URL, mysqlDialect as factory, mysqlPool, requireDatabase, until, type TestDb } from '../helpers/dialects.ts';
import { createJobs } from '../../lib/index.ts';
import { lockName } from '../../lib/driver/mysql/store.ts';
import { DDL_IDLE_S } from '../../lib/driver/mysql/months.ts';
import { monthPartition, type MonthPartition } from '../../lib/driver/monthly.ts';
import type { MysqlStore } from '../../lib/driver/mysql/store.ts';
import type { Jobs } from '../../lib/index.ts';
import { expectFirstPrune, releaseReferences, seedMonths } from '../helpers/retention-months.ts';

const DAY = 86_400_000;

describe('history partitioned by month [mysql]', function () {
  this.timeout(60_000);
  before(requireDatabase(factory));
  let t: TestDb;
  beforeEach(async () => {
    t = await factory.create();
  });
  afterEach(async () => {
    await t.cleanup();
  });

  const store = (jobs: Jobs) => jobs.store as MysqlStore;

  async function dbNow(): Promise<Date> {
    const [row] = await t.query<{ ms: string }>(`SELECT CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(3)) DIV 1000 AS CHAR) AS ms`);
    return new Date(Number(row.ms));
  }

  async function partitionNames(): Promise<string[]> {
    const rows = await t.query<{ name: string }>(
      `SELECT PARTITION_NAME AS name FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL ORDER BY PARTITION_ORDINAL_POSITION`,
      [`${t.prefix}history`]);
    return rows.map((r) => r.name);
  }

  /** The partition holding a finished job's row (null: not in history). */
  async function partitionOf(id: string): Promise<string | null> {
    const found: string[] = [];
    for (const p of await partitionNames()) {
      if ((await t.query(`SELECT 1 FROM ${t.prefix}history PARTITION (${p}) WHERE id = ?`, [id])).length) found.push(p);
    }
    expect(found.length, `partitions holding ${id}`).to.be.at.most(1);
    return found[0] ?? null;
  }

  async function finishAt(id: string, at: Date): Promise<void> {
    await t.query(`UPDATE ${t.prefix}history SET finished_at = ? WHERE id = ?`, [at.toISOString().slice(0, 23).replace('T', ' '), id]);
    const [row] = await t.query<{ at: Date }>(`SELECT finished_at AS at FROM ${t.prefix}history WHERE id = ?`, [id]);
    expect(row?.at.toISOString(), `history row of ${id}`).to.equal(at.toISOString());
  }

  function cli(args: string[]) {
    return spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli.ts', ...args], {
      env: { ...process.env, DIALECT: t.dialect, DRIVER: t.driver, LOCATION: t.location, PREFIX: t.prefix },
      encoding: 'utf8',
      timeout: 30_000,
    });
  }

  it('the script on a history with rows: printed, then applied (rows kept, each month in its partition), then nothing to do', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const now = await dbNow();
    const ids: Record<number, string> = {};
    for (const k of [-3, -1, 0]) {
      const { id } = await jobs.enqueue('x', { k }, { tag: `month${k}` });
      await jobs.cancel(id);
      await finishAt(id, new Date(monthPartition(now, k).from.getTime() + 3 * DAY));
      ids[k] = id;
    }
    const printed = cli(['history-partitions', 'test/fixtures/cli-jobs.ts']);
    expect(printed.status, printed.stderr).to.equal(0);
    expect(printed.stdout).to.match(/ALTER TABLE \S+history DROP PRIMARY KEY, ADD PRIMARY KEY \(id, finished_at\), ALGORITHM = COPY, LOCK = SHARED\s+PARTITION BY RANGE COLUMNS\(finished_at\)/);
    expect(printed.stdout).to.include('not applied');
    expect(await partitionNames(), 'printed only').to.deep.equal([]);

    const applied = cli(['history-partitions', 'test/fixtures/cli-jobs.ts', '--apply']);
    expect(applied.status, applied.stderr).to.equal(0);
    const expected = [-3, -2, -1, 0, 1].map((k) => monthPartition(now, k).name);
    expect(await partitionNames()).to.deep.equal([...expected, 'pfuture']);
    for (const k of [-3, -1, 0]) expect(await partitionOf(ids[k]), `month ${k}`).to.equal(monthPartition(now, k).name);
    expect((await jobs.get(ids[-3]))!.tag).to.equal('month-3');
    expect((await jobs.list({ states: ['cancelled'] })).items.map((j) => j.id)).to.deep.equal([ids[0], ids[-1], ids[-3]]);

    const again = cli(['history-partitions', 'test/fixtures/cli-jobs.ts', '--apply']);
    expect(again.status, again.stderr).to.equal(0);
    expect(again.stdout).to.include('nothing to do');
  });

  it('the script applied while another instance changes the partitions: refused, saying so, nothing changed', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const other = await (t.db as import('mysql2/promise').Pool).getConnection();
    try {
      await other.query('SELECT GET_LOCK(?, 0)', [lockName(`${t.prefix}history_partitions`)]);
      const refused = await jobs.historyPartitions({ apply: true }).then(() => 'applied', (err: Error) => err.message);
      expect(refused).to.match(/history-partitions: nothing was changed: another instance is changing \S+history's partitions/);
      expect(await partitionNames()).to.deep.equal([]);
    } finally {
      await other.query('DO RELEASE_LOCK(?)', [lockName(`${t.prefix}history_partitions`)]);
      other.release();
    }
    expect(await jobs.historyPartitions({ apply: true })).to.have.length(1);
    expect(await partitionNames()).to.have.length(3);
  });

  it('completions across a month boundary: next month\'s partition holds the job, which is read, listed, retried, finished again and deleted', async () => {
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('work', async (n: number) => n * 2);
    await jobs.migrate();
    await jobs.historyPartitions({ apply: true });
    const now = await dbNow();
    const [current, next] = [monthPartition(now, 0), monthPartition(now, 1)];
    const a = await jobs.enqueue('work', 1);
    const b = await jobs.enqueue('work', 2);
    await jobs.drain();
    expect(await partitionOf(a.id)).to.equal(current.name);
    const later = new Date(next.from.getTime() + 2 * DAY);
    await finishAt(b.id, later);
    expect(await partitionOf(b.id)).to.equal(next.name);

    const got = await jobs.get(b.id);
    expect(got).to.deep.include({ state: 'completed', result: 4 });
    expect(got!.finishedAt!.toISOString()).to.equal(later.toISOString());
    expect((await jobs.list({ states: ['completed'] })).items.map((i) => i.id)).to.deep.equal([b.id, a.id]);

    await jobs.retry(b.id);
    expect(await partitionOf(b.id), 'retried: out of history').to.equal(null);
    await jobs.drain();
    expect(await partitionOf(b.id), 'finished again, this month').to.equal(current.name);
    expect(await jobs.delete(b.id)).to.equal(true);
    expect(await jobs.get(b.id)).to.equal(null);
  });

  it('the leader\'s upkeep splits a missing next month off pfuture, moving the rows it already holds there', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await jobs.historyPartitions({ apply: true });
    const next = monthPartition(await dbNow(), 1);
    // As if next month had not been made: merged back into pfuture, holding a job finished then.
    await t.query(`ALTER TABLE ${t.prefix}history REORGANIZE PARTITION ${next.name}, pfuture INTO (PARTITION pfuture VALUES LESS THAN (MAXVALUE))`);
    const { id } = await jobs.enqueue('x', {});
    await jobs.cancel(id);
    await finishAt(id, new Date(next.from.getTime() + DAY));
    expect(await partitionOf(id)).to.equal('pfuture');
    expect(await jobs.historyPartitions(), 'the split, printed').to.have.length(1);

    await jobs.store.historyUpkeep!();
    expect((await partitionNames()).slice(-2)).to.deep.equal([next.name, 'pfuture']);
    expect(await partitionOf(id)).to.equal(next.name);
    await jobs.store.historyUpkeep!(); // again: nothing to do
    expect((await partitionNames()).slice(-2)).to.deep.equal([next.name, 'pfuture']);
  });

  it('retention drops whole months past it, never one a waiting dependent or an unfinished batch still reads, and prunes the straddling month by row', async () => {
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('parent', async () => 'from the parent');
    await jobs.migrate();
    const now = await dbNow();
    const m: Record<number, MonthPartition> = Object.fromEntries([-5, -4, -3, -2, -1, 0].map((k) => [k, monthPartition(now, k)]));
    const seeded = await seedMonths(jobs, {
      finishAt,
      monthStart: (k) => m[k].from,
      addTrail: async (id) => {
        await t.query(`INSERT INTO ${t.prefix}attempts (job_id, attempt, finished_at) VALUES (?, 1, UTC_TIMESTAMP(3))`, [id]);
        await t.query(`INSERT INTO ${t.prefix}logs (job_id, attempt, at, message) VALUES (?, 1, UTC_TIMESTAMP(3), 'line')`, [id]);
      },
    }, now.getTime());
    await jobs.historyPartitions({ apply: true });
    expect(await partitionNames()).to.include.members([m[-5].name, m[-4].name, m[-3].name, m[-2].name]);

    const prune = () => jobs.store.historyPrune({ olderThanMs: seeded.olderThanMs, limit: 1000 });
    expect(await prune(), 'rows pruned one by one').to.equal(1);
    expect(await partitionNames()).to.not.include(m[-4].name);
    expect(await partitionNames()).to.include.members([m[-5].name, m[-3].name, m[-2].name, m[-1].name, m[0].name, 'pfuture']);
    expect(await t.query(`SELECT 1 FROM ${t.prefix}attempts WHERE job_id = ?`, [seeded.plain]), 'its attempts').to.have.length(0);
    expect(await t.query(`SELECT 1 FROM ${t.prefix}logs WHERE job_id = ?`, [seeded.plain]), 'its logs').to.have.length(0);
    await expectFirstPrune(jobs, seeded);

    // Once the dependent and the batch are done, their months go too.
    await releaseReferences(jobs, seeded);
    await prune();
    expect(await partitionNames()).to.not.include.members([m[-5].name, m[-3].name]);
    expect(await partitionNames()).to.include.members([m[-2].name, m[-1].name, m[0].name, 'pfuture']);
    expect(await jobs.get(seeded.parent)).to.equal(null);
  });

  it('retention never drops a month whose row an enqueue locked as a parent while the drop waited: it checks again once it holds history', async () => {
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('parent', async () => 'from the parent');
    await jobs.migrate();
    const now = await dbNow();
    const old = monthPartition(now, -3);
    const parent = await jobs.enqueue('parent', {});
    await jobs.drain();
    await finishAt(parent.id, new Date(old.from.getTime() + 3 * DAY));
    await jobs.historyPartitions({ apply: true });

    // An app's transaction enqueues a dependent of that parent (reading its history row under a lock) and stays open.
    const conn = await (t.db as import('mysql2/promise').Pool).getConnection();
    try {
      await conn.beginTransaction();
      const child = await jobs.enqueue('x', {}, { dependsOn: [parent.id], tx: conn });
      const prune = jobs.store.historyPrune({ olderThanMs: now.getTime() - monthPartition(now, -1).from.getTime(), limit: 100 });
      // The drop found no edge yet (uncommitted) and now waits for history behind the app's transaction.
      await until(async () => (await t.query(`SELECT 1 FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for table metadata lock' AND INFO LIKE 'LOCK TABLES%'`)).length > 0, 'the drop to wait for history', 5000, 10);
      await conn.commit();
      await prune;
      expect(await partitionNames()).to.include(old.name);
      expect((await jobs.get(parent.id))!.state).to.equal('completed');
      expect((await jobs.links(child.id)).parents.map((p) => p.id)).to.deep.equal([parent.id]);
    } finally {
      conn.release();
    }
  });

  it('a drop whose connection goes silent while it holds LOCK TABLES on history (a leader stopped in it) is closed by the server: reads wait about a second, not as long as it is stopped (wait_timeout: 8 hours)', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const now = await dbNow();
    const old = monthPartition(now, -3);
    const { id } = await jobs.enqueue('x', {});
    await jobs.cancel(id);
    await finishAt(id, new Date(old.from.getTime() + 3 * DAY));
    await jobs.historyPartitions({ apply: true });
    const months = (store(jobs) as unknown as { months: { referenced(q: unknown, p: string): Promise<boolean> } }).months;
    const referenced = months.referenced.bind(months);
    let wake!: () => void;
    const stopped = new Promise<void>((r) => (wake = r));
    let held!: () => void;
    const holding = new Promise<void>((r) => (held = r));
    let calls = 0;
    // Its second look is under LOCK TABLES: there the connection sends nothing until woken.
    months.referenced = async (q, p) => {
      if (++calls === 2) {
        held();
        await stopped;
      }
      return referenced(q, p);
    };
    DDL_IDLE_S.s = 1;
    try {
      const prune = jobs.store.historyPrune({ olderThanMs: now.getTime() - monthPartition(now, -1).from.getTime(), limit: 100 }).catch((err: Error) => err);
      await holding;
      const t0 = performance.now();
      await t.query(`SELECT COUNT(*) FROM ${t.prefix}history`);
      const waited = performance.now() - t0;
      wake();
      expect(waited, 'ms a history read waited behind the silent drop').to.be.below(5000);
      await prune;
      expect(await partitionNames(), 'nothing was dropped').to.include(old.name);
    } finally {
      DDL_IDLE_S.s = 5;
      months.referenced = referenced;
      wake();
    }
  });

  it('historyMonths: each month with the partition that keeps it and its size; counts exact below the cap, the engine\'s estimate above it', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const now = await dbNow();
    const prev = monthPartition(now, -1);
    for (let i = 0; i < 3; i++) {
      const { id } = await jobs.enqueue('x', { i });
      await jobs.cancel(id);
      await finishAt(id, new Date(prev.from.getTime() + (i + 1) * DAY));
    }
    await jobs.historyPartitions({ apply: true });
    await t.query(`ANALYZE TABLE ${t.prefix}history`);
    const [month] = await jobs.store.historyMonths({ cap: 100 });
    expect(month).to.deep.include({ month: prev.name.slice(1).replace('_', '-'), storedIn: prev.name, estimated: false, storedUntil: prev.to });
    expect(month.bytes).to.be.a('number').and.above(0);
    expect(month.counts).to.deep.equal({ cancelled: 3 });
    const capped = await jobs.store.historyMonths({ cap: 2 });
    expect(capped[0].estimated).to.equal(true);
    expect(capped[0].counts.cancelled, 'at least the cap').to.be.at.least(2);
    expect(await store(jobs).historyPartitioned()).to.equal(true);
  });

  it('a jobs database apart from the app\'s: partitioned, kept ahead and pruned there', async () => {
    const apart = 'sqljobs_apart';
    await t.query(`CREATE DATABASE IF NOT EXISTS ${apart}`);
    const url = new URL(MYSQL_URL);
    url.pathname = `/${apart}`;
    const pool = mysqlPool(url.toString(), 3);
    const jobs = createJobs({ db: pool, tablePrefix: t.prefix, worker: false });
    try {
      await jobs.migrate();
      const ddl = await jobs.historyPartitions({ apply: true });
      expect(ddl[0]).to.include('PARTITION BY RANGE COLUMNS(finished_at)');
      const { id } = await jobs.enqueue('x', {});
      await jobs.cancel(id);
      const [where] = await pool.query(`SELECT TABLE_SCHEMA AS db, COUNT(*) AS n FROM information_schema.PARTITIONS WHERE TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL GROUP BY TABLE_SCHEMA`, [`${t.prefix}history`]);
      expect(where).to.deep.equal([{ db: apart, n: 3 }]);
      expect(await jobs.historyPartitions(), 'kept ahead: nothing to do').to.deep.equal([]);
      expect((await jobs.store.historyMonths({ cap: 10 }))[0].storedIn).to.equal(monthPartition(await dbNow()).name);
      expect(await jobs.store.historyPrune({ olderThanMs: 0, limit: 10 })).to.equal(1);
    } finally {
      await jobs.close();
      await pool.query(`DROP DATABASE ${apart}`);
      await pool.end();
    }
  });
});
