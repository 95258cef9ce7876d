/**
 * PostgreSQL only: history partitioned by month on finished_at (migration 014). A finished job's
 * month is moved by setting its finished_at through the driver (the database clock cannot be
 * moved): PostgreSQL then moves the row into that month's partition, as a completion in that month
 * would have written it.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { DIALECTS, requireDatabase, type TestDb } from '../helpers/dialects.ts';
import { loadMigrations, splitStatements } from '../../lib/driver/migrations.ts';
import { HistoryMonths } from '../../lib/driver/postgres/months.ts';
import { monthOf, type Month } from '../../lib/driver/postgres/partitions.ts';
import { tables } from '../../lib/driver/portable/statement.ts';
import { holdPgClient, withHeld } from '../../lib/driver/held.ts';
import { expectFirstPrune, releaseReferences, seedMonths } from '../helpers/retention-months.ts';

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
    const pool = t.db as pg.Pool;
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
    expect(await t.query(`SELECT 1 FROM ${t.prefix}attempts WHERE job_id = $1`, [seeded.plain]), 'its trail').to.have.length(0);
    await expectFirstPrune(jobs, seeded);

    // Once the dependent and the batch are done, their months go too.
    await releaseReferences(jobs, seeded);
    await prune();
    expect(await partitionNames()).to.not.include.members([m[-5].name, m[-3].name]);
    expect(await partitionNames()).to.include.members([m[-2].name, m[-1].name, m[0].name, `${t.prefix}history_default`]);
    expect(await jobs.get(seeded.parent)).to.equal(null);
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

    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('after', async () => 'done');
    await jobs.migrate();
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
  });
});
