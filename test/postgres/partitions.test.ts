/**
 * PostgreSQL only: history partitioned by month on finished_at (migration 014). A finished job's
 * month is moved by setting its finished_at through the driver (the database clock cannot be
 * moved): PostgreSQL then moves the row into that month's partition, as a completion in that month
 * would have written it.
 */
import { expect } from 'chai';
import type pg from 'pg';
import pgModule from 'pg';
import { DIALECTS, PG_URL, requireDatabase, type TestDb } from '../helpers/dialects.ts';
import { loadMigrations, splitStatements } from '../../lib/driver/migrations.ts';
import { DDL_IDLE_MS, HistoryMonths } from '../../lib/driver/postgres/months.ts';
import { monthCreate, monthOf, uuidFloor, type Month } from '../../lib/driver/postgres/partitions.ts';
import { utcMonth } from '../../lib/driver/month.ts';

/** A partition's month as historyMonths names it. */
const utcKey = (m: Month) => utcMonth(m.from).key;
import { tables } from '../../lib/driver/portable/statement.ts';
import { holdPgClient, withHeld } from '../../lib/driver/held.ts';
import { expectFirstPrune, releaseReferences, seedMonths } from '../helpers/retention-months.ts';
import { countStatements } from '../helpers/statements.ts';

const DAY = 86_400_000;

describe('history partitioned by month [postgres]', function () {
  this.timeout(30_000);
  const factory = DIALECTS.find((d) => d.name === 'postgres')!;
  before(requireDatabase(factory));
  let t: TestDb;
  beforeEach(async () => {
    t = await factory.create();
  });
  afterEach(async () => {
    await t.cleanup();
  });

  function months(): HistoryMonths {
    return monthsOn(t.db as pg.Pool);
  }

  /** The upkeep on `pool`, running its own transactions as the store does. */
  function monthsOn(pool: pg.Pool): HistoryMonths {
    return new HistoryMonths(
      {
        query: (text, values) => pool.query(text, values),
        // As the store runs its own transactions.
        transaction: async (fn) =>
          withHeld(await holdPgClient(pool), (c) => c.query('ROLLBACK'), async (c) => {
            await c.query('BEGIN');
            const out = await fn((text, values) => c.query(text, values));
            await c.query('COMMIT');
            return out;
          }),
      },
      tables(t.prefix),
      t.prefix,
    );
  }

  async function dbNow(): Promise<Date> {
    return (await t.query<{ now: Date }>('SELECT now() AS now'))[0].now;
  }

  /** The partition that holds a finished job's row. */
  async function partitionOf(id: string): Promise<string | null> {
    const rows = await t.query<{ p: string }>(`SELECT tableoid::regclass::text AS p FROM ${t.prefix}history WHERE id = $1`, [id]);
    expect(rows.length, `history rows of ${id}`).to.be.at.most(1);
    return rows[0]?.p ?? null;
  }

  async function finishAt(id: string, at: Date): Promise<void> {
    const moved = await t.query(`UPDATE ${t.prefix}history SET finished_at = $2 WHERE id = $1 RETURNING id`, [id, at]);
    expect(moved, `history row of ${id}`).to.have.length(1);
  }

  /**
   * A fresh schema's legacy partition (empty) holds the past and up to the end of next month: gone,
   * months of their own can be made there, as they will be once a migrated schema's legacy expires.
   */
  async function withoutLegacy(): Promise<void> {
    await t.query(`ALTER TABLE ${t.prefix}history DETACH PARTITION ${t.prefix}history_legacy`);
    await t.query(`DROP TABLE ${t.prefix}history_legacy`);
  }

  async function partitionNames(): Promise<string[]> {
    return (await months().list()).map((p) => p.name).sort();
  }

  it('a fresh schema: history partitioned on (id, finished_at), legacy to the end of next month, a default: no DDL at start', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const key = await t.query<{ cols: string }>(
      `SELECT string_agg(a.attname, ',' ORDER BY k.n) AS cols FROM pg_constraint c
       CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, n) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
       WHERE c.conrelid = $1::regclass AND c.contype = 'p'`, [`${t.prefix}history`]);
    expect(key[0].cols).to.equal('id,finished_at');
    const afterNext = monthOf(t.prefix, await dbNow(), 2);
    const before = await months().list();
    const legacy = before.find((p) => p.name === `${t.prefix}history_legacy`)!;
    expect(legacy.from).to.equal(null);
    expect(legacy.to!.toISOString()).to.equal(afterNext.from.toISOString());
    expect(before.some((p) => p.isDefault && p.name === `${t.prefix}history_default`)).to.equal(true);
    await jobs.store.historyUpkeep!();
    expect(await partitionNames(), 'the current and next month are in legacy').to.deep.equal([`${t.prefix}history_default`, `${t.prefix}history_legacy`]);
  });

  it('a started instance makes next month\'s partition at start, leader or not', async () => {
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    await jobs.migrate();
    await withoutLegacy();
    await jobs.start();
    const next = monthOf(t.prefix, await dbNow(), 1);
    const deadline = Date.now() + 5000;
    while (!(await partitionNames()).includes(next.name) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await partitionNames()).to.include(next.name);
    await jobs.stop();
  });

  it('completions across a month boundary: a job finished in next month\'s partition is read, listed, retried and finished again', async () => {
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('work', async (n: number) => n * 2);
    await jobs.migrate();
    await withoutLegacy();
    await jobs.store.historyUpkeep!();
    await jobs.store.historyUpkeep!(); // again: nothing to do
    const [current, next] = [monthOf(t.prefix, await dbNow(), 0), monthOf(t.prefix, await dbNow(), 1)];
    expect(await partitionNames()).to.deep.equal([`${t.prefix}history_default`, current.name, next.name].sort());
    const a = await jobs.enqueue('work', 1);
    const b = await jobs.enqueue('work', 2);
    await jobs.drain();
    expect(await partitionOf(a.id)).to.equal(current.name);
    await finishAt(b.id, new Date(next.from.getTime() + 2 * DAY));
    expect(await partitionOf(b.id)).to.equal(next.name);

    const got = await jobs.get(b.id);
    expect(got).to.deep.include({ state: 'completed', result: 4 });
    expect(got!.finishedAt!.toISOString()).to.equal(new Date(next.from.getTime() + 2 * DAY).toISOString());
    const listed = await jobs.list({ states: ['completed'] });
    expect(listed.items.map((i) => i.id)).to.deep.equal([b.id, a.id]);

    await jobs.retry(b.id);
    expect(await partitionOf(b.id), 'retried: out of history').to.equal(null);
    expect((await jobs.get(b.id))!.state).to.equal('pending');
    await jobs.drain();
    expect(await partitionOf(b.id), 'finished again, this month').to.equal(current.name);
    expect((await jobs.get(b.id))!.state).to.equal('completed');
    await jobs.delete(b.id);
    expect(await jobs.get(b.id)).to.equal(null);
  });

  it('a month with no partition: the completion goes to the default partition, and the upkeep makes that month and moves it there', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const later = monthOf(t.prefix, await dbNow(), 3);
    const { id } = await jobs.enqueue('x', {});
    await jobs.cancel(id);
    await finishAt(id, new Date(later.from.getTime() + DAY));
    expect(await partitionOf(id)).to.equal(`${t.prefix}history_default`);
    // The leader's upkeep makes the months the default partition holds rows of, besides the next one.
    await jobs.store.historyUpkeep!();
    expect(await partitionOf(id)).to.equal(later.name);
    expect(await months().create(later), 'made already').to.equal(false);
    expect(await t.query(`SELECT 1 FROM ${t.prefix}history_default`)).to.have.length(0);
    expect((await jobs.get(id))!.state).to.equal('cancelled');
  });

  it('retention drops whole months past it, never one a waiting dependent or an unfinished batch still reads, and prunes the straddling month by row', async () => {
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('parent', async () => 'from the parent');
    await jobs.migrate();
    await withoutLegacy();
    const now = await dbNow();
    const m: Record<number, Month> = {};
    for (const k of [-5, -4, -3, -2, -1, 0]) {
      m[k] = monthOf(t.prefix, now, k);
      expect(await months().create(m[k])).to.equal(true);
    }
    const seeded = await seedMonths(jobs, {
      finishAt,
      monthStart: (k) => m[k].from,
      addTrail: async (id) => void (await t.query(`INSERT INTO ${t.prefix}attempts (job_id, attempt, finished_at) VALUES ($1, 1, now())`, [id])),
    }, now.getTime());

    const prune = () => jobs.store.historyPrune({ olderThanMs: seeded.olderThanMs, limit: 1000 });
    expect(await prune(), 'rows pruned one by one').to.equal(1);
    expect(await partitionNames()).to.not.include(m[-4].name);
    expect(await partitionNames()).to.include.members([m[-5].name, m[-3].name, m[-2].name, m[-1].name, m[0].name]);
    // PostgreSQL partitions the trail by the month its job was made (migration 015): it stays until that month goes.
    expect(await t.query(`SELECT 1 FROM ${t.prefix}attempts WHERE job_id = $1`, [seeded.plain]), 'its trail goes with the month its job was made (this one)').to.have.length(1);
    await expectFirstPrune(jobs, seeded);

    // Once the dependent and the batch are done, their months go too.
    await releaseReferences(jobs, seeded);
    await prune();
    expect(await partitionNames()).to.not.include.members([m[-5].name, m[-3].name]);
    expect(await partitionNames()).to.include.members([m[-2].name, m[-1].name, m[0].name, `${t.prefix}history_default`]);
    expect(await jobs.get(seeded.parent)).to.equal(null);
  });

  it('a drop whose session goes silent while it holds history (a leader stopped in it) is ended by the server: history reads and completions wait for it 0.5 s, not as long as it is stopped', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await withoutLegacy();
    const old = monthOf(t.prefix, await dbNow(), -3);
    expect(await months().create(old)).to.equal(true);
    const part = (await months().list()).find((p) => p.name === old.name)!;
    DDL_IDLE_MS.ms = 500;
    let wake!: () => void;
    const stopped = new Promise<void>((r) => (wake = r));
    let held!: () => void;
    const holding = new Promise<void>((r) => (held = r));
    try {
      // The drop detaches the month (ACCESS EXCLUSIVE on history), then its client sends nothing until woken.
      const history = (months() as unknown as { history: { drop(p: typeof part, stillRead: () => Promise<boolean>): Promise<boolean> } }).history;
      const drop = history.drop(part, async () => {
        held();
        await stopped;
        return false;
      }).catch((err: Error) => err);
      await holding;
      const t0 = performance.now();
      await t.query(`SELECT COUNT(*) FROM ${t.prefix}history`);
      const waited = performance.now() - t0;
      wake();
      expect(waited, 'ms a history read waited behind the silent drop').to.be.below(3000);
      expect(String(await drop), 'the server ended the drop\'s session').to.match(/terminat|idle|Connection/i);
      expect(await partitionNames(), 'the month is still there: the drop was rolled back').to.include(old.name);
    } finally {
      DDL_IDLE_MS.ms = 5000;
      wake();
    }
  });

  it('migrates an installation with rows: the table becomes the legacy partition, rows and indexes kept, nothing rebuilt twice', async () => {
    const pool = t.db as pg.Pool;
    // The schema as version 13 left it.
    await pool.query(`CREATE TABLE ${t.prefix}migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    for (const mig of loadMigrations('postgres', t.prefix).filter((x) => x.version <= 13)) {
      for (const stmt of splitStatements(mig.sql)) await pool.query(stmt);
      await pool.query(`INSERT INTO ${t.prefix}migrations (version, name) VALUES ($1, $2)`, [mig.version, mig.name]);
    }
    await pool.query(`INSERT INTO ${t.prefix}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at, tag)
      SELECT gen_random_uuid(), 'n' || (g % 7), 'default', 'completed', '{"n":1}', 0, 1, 25, f, f, f, CASE WHEN g % 10 = 0 THEN 'ten' END
      FROM generate_series(1, 20000) g, LATERAL (SELECT now() - g * interval '5 minutes' AS f) x`);
    const sample = (await t.query<{ id: string }>(`SELECT id::text AS id FROM ${t.prefix}history WHERE tag = 'ten' LIMIT 1`))[0].id;
    // Its trail, as version 13 wrote it: the lines' seq from the table's own sequence.
    for (const message of ['one', 'two']) await pool.query(`INSERT INTO ${t.prefix}logs (job_id, attempt, at, message) VALUES ($1, 1, now(), $2)`, [sample, message]);
    await pool.query(`INSERT INTO ${t.prefix}attempts (job_id, attempt, finished_at, error) VALUES ($1, 1, now(), '{"message":"once"}')`, [sample]);

    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('after', async (_: unknown, ctx) => ctx.log('after migrating'));
    await jobs.migrate();
    expect((await jobs.logs(sample)).map((l) => [l.seq, l.message])).to.deep.equal([[1, 'one'], [2, 'two']]);
    expect((await jobs.attempts(sample))[0].error?.message).to.equal('once');
    for (const table of ['logs', 'attempts']) {
      const parts = await t.query<{ p: string }>(`SELECT c.relname AS p FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`, [`${t.prefix}${table}`]);
      expect(parts.map((r) => r.p)).to.deep.equal([`${t.prefix}${table}_default`, `${t.prefix}${table}_legacy`]);
    }
    expect((await t.query<{ n: string }>(`SELECT count(*) AS n FROM ${t.prefix}history`))[0].n).to.equal('20000');
    expect(await partitionOf(sample)).to.equal(`${t.prefix}history_legacy`);
    expect((await jobs.get(sample))!.tag).to.equal('ten');
    expect((await jobs.list({ tag: 'ten', limit: 5 })).items).to.have.length(5);
    const indexes = await t.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE tablename = $1`, [`${t.prefix}history_legacy`]);
    expect(indexes.map((i) => i.indexname).sort()).to.deep.equal(
      ['batch', 'finished', 'name', 'pkey', 'queue', 'ref', 'state', 'tag', 'unique', 'user'].map((s) => `${t.prefix}history_legacy_${s}`).sort());
    const { id } = await jobs.enqueue('after', {});
    await jobs.drain();
    expect((await jobs.get(id))!.state).to.equal('completed');
    expect(await partitionOf(id)).to.equal(`${t.prefix}history_legacy`);
    // The sequence went with the new table: the next line follows the old ones, and dropping legacy keeps it.
    expect((await jobs.logs(id)).map((l) => [l.seq, l.message])).to.deep.equal([[3, 'after migrating']]);
    await t.query(`ALTER TABLE ${t.prefix}logs DETACH PARTITION ${t.prefix}logs_legacy`);
    await t.query(`DROP TABLE ${t.prefix}logs_legacy`);
    expect(await t.query(`SELECT to_regclass($1) IS NOT NULL AS kept`, [`${t.prefix}logs_seq_seq`])).to.deep.equal([{ kept: true }]);
  });

  it('historyMonths: each month\'s own partition with its size, made-ahead months with no row, a large month estimated from ANALYZE', async () => {
    const jobs = t.jobs({ retentionDays: 30, worker: { pollInterval: 60_000 } });
    await jobs.migrate();
    await withoutLegacy();
    await months().ensureAhead();
    jobs.define('ok', async () => null);
    await jobs.enqueueMany(Array.from({ length: 30 }, () => ({ name: 'ok', payload: 1 })));
    await jobs.drain();
    const [m0, m1] = [monthOf(t.prefix, await dbNow()), monthOf(t.prefix, await dbNow(), 1)];
    await t.query(`ANALYZE ${m0.name}`);
    const overview = await jobs.historyMonths({ cap: 5 });
    const [next, current] = overview.months;
    expect(next).to.deep.include({ month: utcKey(m1), storedIn: m1.name, counts: {}, estimated: false });
    expect(current).to.deep.include({ month: utcKey(m0), storedIn: m0.name, estimated: true });
    expect(current.counts, 'rows × the share of each state, as ANALYZE saw them').to.deep.equal({ completed: 30 });
    expect(current.bytes).to.be.greaterThan(8192);
    expect(overview.nextDrop).to.deep.equal({ storedIn: m0.name, at: new Date(m0.to.getTime() + 30 * DAY) });
    // Within the cap, counted rather than estimated.
    expect((await jobs.historyMonths({ cap: 100 })).months[1]).to.deep.include({ counts: { completed: 30 }, estimated: false });
    // Counted only when ANALYZE's rows are under twice the cap: a count past it would be thrown away for the estimate.
    const counts = countStatements(/SELECT m\.state, COUNT\(\*\) AS n FROM/);
    try {
      expect((await jobs.historyMonths({ cap: 15 })).months[1]).to.deep.include({ counts: { completed: 30 }, estimated: true });
      expect(counts.count, 'a month of 30 rows, cap 15: estimated, not counted').to.equal(0);
      expect((await jobs.historyMonths({ cap: 16 })).months[1]).to.deep.include({ counts: { completed: 30 }, estimated: true });
      expect(counts.count, 'cap 16: counted (16 rows), then estimated').to.equal(1);
    } finally {
      counts.stop();
    }
  });

  it('logs and attempts: partitioned by the month their job was made (its UUIDv7), made ahead, dropped once none of that month\'s jobs is left', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    for (const table of ['logs', 'attempts']) {
      await t.query(`ALTER TABLE ${t.prefix}${table} DETACH PARTITION ${t.prefix}${table}_legacy`);
      await t.query(`DROP TABLE ${t.prefix}${table}_legacy`);
    }
    const now = await dbNow();
    const made = (back: number) => uuidFloor(new Date(monthOf(t.prefix, now, -back).from.getTime() + 3 * DAY)).replace(/-0000-0000-0+$/, '-7000-8000-000000000001');
    const [gone, kept] = [made(3), made(2)];
    // A job made three months ago whose history is gone, and one made two months ago still in history (finished now).
    await t.query(`INSERT INTO ${t.prefix}history (id, name, queue, state, payload, priority, attempts, max_attempts, run_at, created_at, finished_at)
      VALUES ($1, 'x', 'default', 'completed', '1', 0, 1, 1, now(), now(), now())`, [kept]);
    for (const id of [gone, kept]) {
      await t.query(`INSERT INTO ${t.prefix}logs (job_id, attempt, at, message) VALUES ($1, 1, now(), 'a line')`, [id]);
      await t.query(`INSERT INTO ${t.prefix}attempts (job_id, attempt, finished_at) VALUES ($1, 1, now())`, [id]);
    }
    const where = async (table: string, id: string) =>
      (await t.query<{ p: string }>(`SELECT tableoid::regclass::text AS p FROM ${t.prefix}${table} WHERE job_id = $1`, [id]))[0]?.p ?? null;
    expect(await where('logs', gone), 'no month made yet').to.equal(`${t.prefix}logs_default`);
    await jobs.store.historyUpkeep!();
    const monthName = (table: string, back: number) => `${t.prefix}${table}_${monthOf(t.prefix, now, -back).name.slice(-7)}`;
    for (const table of ['logs', 'attempts']) {
      expect(await where(table, gone), `${table}: moved out of the default`).to.equal(monthName(table, 3));
      expect(await where(table, kept)).to.equal(monthName(table, 2));
      const parts = (await t.query<{ p: string }>(`SELECT c.relname AS p FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass`, [`${t.prefix}${table}`])).map((r) => r.p);
      expect(parts, `${table}: this and next month made ahead`).to.include.members([monthName(table, 0), monthName(table, -1)]);
    }
    expect((await jobs.logs(kept)).map((l) => l.message)).to.deep.equal(['a line']);

    const prune = () => jobs.store.historyPrune({ olderThanMs: 10 * DAY, limit: 1000 });
    await prune();
    for (const table of ['logs', 'attempts']) {
      expect(await where(table, gone), `${table}: no job of that month is left`).to.equal(null);
      expect(await where(table, kept), `${table}: its job is still in history`).to.equal(monthName(table, 2));
    }
    expect(await jobs.delete(kept)).to.equal(true);
    await prune();
    for (const table of ['logs', 'attempts']) {
      expect(await t.query(`SELECT to_regclass($1) IS NULL AS gone`, [monthName(table, 2)])).to.deep.equal([{ gone: true }]);
      expect(await t.query(`SELECT to_regclass($1) IS NULL AS gone`, [monthName(table, 0)]), 'this month stays').to.deep.equal([{ gone: false }]);
    }
  });

  it('a completion waiting while its month is made from the default partition is written once that month exists, not failed', async () => {
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('held', async () => (await gate, 'done'));
    await jobs.migrate();
    await withoutLegacy();
    const current = monthOf(t.prefix, await dbNow());
    const { id } = await jobs.enqueue('held', {});
    await jobs.start();
    const pool = t.db as pg.Pool;
    await withHeld(await holdPgClient(pool), (c) => c.query('ROLLBACK'), async (c) => {
      await c.query('BEGIN');
      // The leader making this month, late: the default partition is locked until this commits.
      for (const s of monthCreate({ name: `${t.prefix}history`, column: 'finished_at' }, current)) await c.query(s.text, s.values);
      release();
      // The completion routes its row to the default partition and waits for its lock.
      const waiting = async () => (await t.query<{ n: string }>(`SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = to_regclass($1)`, [`${t.prefix}history_default`]))[0].n !== '0';
      const deadline = Date.now() + 10_000;
      while (!(await waiting()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(await waiting(), 'the completion waits for the default partition').to.equal(true);
      await c.query('COMMIT');
    });
    const deadline = Date.now() + 15_000;
    while ((await jobs.get(id))?.state !== 'completed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await jobs.get(id)).to.deep.include({ state: 'completed', attempts: 1, result: 'done' });
    expect(await partitionOf(id)).to.equal(current.name);
    await jobs.stop();
  });

  it('two pruners at once: one drops a month, the other finds it gone and carries on', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await withoutLegacy();
    const old = monthOf(t.prefix, await dbNow(), -3);
    expect(await months().create(old)).to.equal(true);
    const { id } = await jobs.enqueue('x', {}, { delay: 3_600_000 });
    await jobs.cancel(id);
    await finishAt(id, new Date(old.from.getTime() + DAY));
    const other = t.jobs({ worker: false });
    const prune = (j: typeof jobs) => j.store.historyPrune({ olderThanMs: 30 * DAY, limit: 1000 });
    const outcomes = await Promise.allSettled([prune(jobs), prune(other), prune(jobs)]);
    expect(outcomes.map((o) => (o.status === 'rejected' ? String(o.reason) : o.status))).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(await partitionNames()).not.to.include(old.name);
    expect(await jobs.get(id)).to.equal(null);
  });

  it('makes months ahead and drops expired ones on a pool whose timestamps come back as text (an ORM\'s type parsers: MikroORM\'s)', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await withoutLegacy();
    const asText = (oid: number) => oid === 1184 || oid === 1114;
    const textual = new pgModule.Pool({
      connectionString: PG_URL,
      types: { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (asText(oid) ? (v: string) => v : pgModule.types.getTypeParser(oid, format))) as typeof pgModule.types.getTypeParser },
    });
    try {
      expect(typeof (await textual.query('SELECT now() AS now')).rows[0].now, 'the pool reads a timestamp as').to.equal('string');
      const upkeep = monthsOn(textual);
      const made = await upkeep.ensureAhead();
      const [current, next] = [monthOf(t.prefix, await dbNow(), 0), monthOf(t.prefix, await dbNow(), 1)];
      expect(made).to.include.members([current.name, next.name]);
      expect(await partitionNames()).to.include.members([current.name, next.name]);
      // A month wholly past the cutoff goes: with a cutoff of "now + 62 days" this month does too.
      const { dropped } = await upkeep.dropExpired(-62 * DAY);
      expect(dropped).to.include(current.name);
    } finally {
      await textual.end();
    }
  });

  it('reads partition bounds exactly whatever the session\'s DateStyle and TimeZone', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await withoutLegacy();
    const next = monthOf(t.prefix, await dbNow(), 1);
    expect(await months().create(next)).to.equal(true);
    const pool = t.db as pg.Pool;
    for (const [style, zone] of [['SQL, DMY', 'Asia/Kolkata'], ['Postgres', 'America/St_Johns'], ['German', 'Pacific/Chatham']]) {
      await pool.query(`ALTER ROLE CURRENT_USER SET DateStyle = '${style}'`);
      await pool.query(`ALTER ROLE CURRENT_USER SET TimeZone = '${zone}'`);
      try {
        const fresh = t.jobs({ worker: false });
        const held = monthsOn(pool);
        const part = (await held.list()).find((p) => p.name === next.name)!;
        expect([part.from?.toISOString(), part.to?.toISOString()], `${style} ${zone}`).to.deep.equal([next.from.toISOString(), next.to.toISOString()]);
        expect(await held.create(next), 'covered already').to.equal(false);
        await fresh.close();
      } finally {
        await pool.query('ALTER ROLE CURRENT_USER RESET DateStyle');
        await pool.query('ALTER ROLE CURRENT_USER RESET TimeZone');
      }
    }
  });
});
