/**
 * SQLite, history: 'monthly-files'. The database clock cannot be moved, so a finished job's month
 * is moved by setting its finished_at through the driver, as a completion in that month would
 * have written it; the leader's upkeep (historyUpkeep) and retention (historyPrune) are then
 * called as the maintenance service calls them.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { expect } from 'chai';
import { createJobs, type Jobs } from '../../lib/index.ts';
import { DIALECTS, requireDatabase, type TestDb } from '../helpers/dialects.ts';
import { MonthFileNames } from '../../lib/driver/sqlite/month-files.ts';
import { utcMonth, type UtcMonth } from '../../lib/driver/month.ts';

const DAY = 86_400_000;

describe('history in monthly files [sqlite]', function () {
  this.timeout(30_000);
  const factory = DIALECTS.find((d) => d.name === 'sqlite')!;
  before(requireDatabase(factory));
  let t: TestDb;
  let jobs: Jobs;
  let names: MonthFileNames;
  /** This month, and the three before it (UTC, by the clock SQLite reads). */
  let now: UtcMonth;
  let prev: UtcMonth;
  let twoBack: UtcMonth;
  let threeBack: UtcMonth;

  beforeEach(async () => {
    t = await factory.create();
    jobs = t.jobs({ history: 'monthly-files', worker: { pollInterval: 50 } });
    jobs.define('work', async (payload: { n: number }, ctx) => {
      ctx.log(`working on ${payload.n}`);
      return { doubled: payload.n * 2 };
    });
    names = new MonthFileNames(t.location, t.prefix);
    const at = new Date();
    [now, prev, twoBack, threeBack] = [0, -1, -2, -3].map((plus) => utcMonth(at, plus));
  });
  afterEach(async () => {
    await t.cleanup();
  });

  async function finished(n: number): Promise<string> {
    const { id } = await jobs.enqueue('work', { n });
    return id;
  }

  /** Set a finished job's finish time (as if it had completed then). */
  async function finishAt(id: string, at: Date): Promise<void> {
    await t.query(`UPDATE ${t.prefix}history SET finished_at = ? WHERE id = ?`, [at.getTime(), id]);
  }

  function fileOf(m: UtcMonth): string {
    return names.of(m.from).file;
  }

  /** The ids in a month's file, read with a handle of the test's own. */
  function idsInFile(m: UtcMonth): string[] {
    const db = new Database(fileOf(m), { readonly: true, fileMustExist: true });
    try {
      return (db.prepare(`SELECT id FROM ${t.prefix}history ORDER BY id`).all() as { id: string }[]).map((r) => r.id);
    } finally {
      db.close();
    }
  }

  async function idsInMain(): Promise<string[]> {
    return (await t.query<{ id: string }>(`SELECT id FROM ${t.prefix}history ORDER BY id`)).map((r) => r.id);
  }

  it('names the files beside the main file: its name without the extension, the prefix unless the default, the UTC month', () => {
    const dec = new Date(Date.UTC(2026, 11, 31, 23, 59, 59, 999));
    expect(new MonthFileNames('/data/app.db', 'sqljobs_').of(dec).file).to.equal('/data/app.history-2026-12.db');
    expect(new MonthFileNames('/data/jobs', 'sqljobs_').of(dec).file).to.equal('/data/jobs.history-2026-12.db');
    expect(new MonthFileNames('/data/app.sqlite3', 'billing_').of(dec).file).to.equal('/data/app.billing_history-2026-12.db');
    const parsed = new MonthFileNames('/data/app.db', 'sqljobs_');
    expect(parsed.parse('app.history-2027-01.db')?.month.key).to.equal('2027-01');
    expect(parsed.parse('app.history-2027-13.db')).to.equal(null);
    expect(parsed.parse('app.billing_history-2027-01.db')).to.equal(null);
    expect(parsed.parse('other.history-2027-01.db')).to.equal(null);
  });

  it('moves each closed month to its own file; get, list pages, counts and the History view read across them', async () => {
    const ids = [];
    for (let n = 1; n <= 6; n++) ids.push(await finished(n));
    await jobs.drain();
    const [a1, a2, b1, b2, c1, c2] = ids;
    await finishAt(a1, new Date(twoBack.from.getTime() + DAY));
    await finishAt(a2, new Date(twoBack.to.getTime() - 1)); // the month's last millisecond
    await finishAt(b1, prev.from); // the next month's first
    await finishAt(b2, new Date(prev.from.getTime() + 3 * DAY));

    await jobs.store.historyUpkeep!();

    expect(idsInFile(twoBack)).to.deep.equal([a1, a2].sort());
    expect(idsInFile(prev)).to.deep.equal([b1, b2].sort());
    expect(fs.existsSync(fileOf(now)), 'no file for the open month').to.equal(false);
    expect(await idsInMain()).to.deep.equal([c1, c2].sort());

    const a = await jobs.get(a1);
    expect(a).to.include({ id: a1, state: 'completed' });
    expect(a!.result).to.deep.equal({ doubled: 2 });
    expect(a!.finishedAt!.getTime()).to.equal(twoBack.from.getTime() + DAY);
    expect(await jobs.logs(a1)).to.have.length(1);

    // Newest first (ids are time-ordered), two at a time: the pages cross from main into the files.
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 4; page++) {
      const got = await jobs.list({ limit: 2, cursor });
      seen.push(...got.items.map((j) => j.id));
      if (!got.nextCursor) break;
      cursor = got.nextCursor;
    }
    expect(seen).to.deep.equal([...ids].reverse());
    expect((await jobs.list({ states: ['completed'], name: 'work', limit: 50 })).items.map((j) => j.id)).to.deep.equal([...ids].reverse());

    const counts = await jobs.store.jobCountByState(1000);
    expect(counts.finished).to.deep.include({ state: 'completed', count: 6, capped: false });
    // Capped across files: 2 in main, then 2 from the newest file, then 1 of the next reaches the cap.
    expect((await jobs.store.jobCountByState(5)).finished).to.deep.include({ state: 'completed', count: 5, capped: true });

    const { buckets } = await jobs.throughput({ windowMs: 100 * DAY, bucketMs: DAY });
    expect(buckets.reduce((sum, b) => sum + b.completed, 0), 'completions in the last 100 days').to.equal(6);

    const months = await jobs.store.historyMonths({ cap: 1000 });
    expect(months.map((m) => [m.month, m.storedIn, m.counts.completed])).to.deep.equal([
      [now.key, path.basename(t.location), 2],
      [prev.key, path.basename(fileOf(prev)), 2],
      [twoBack.key, path.basename(fileOf(twoBack)), 2],
    ]);
    expect(months[1].bytes).to.equal(fs.statSync(fileOf(prev)).size);

    // A closed month's file is complete on its own: no WAL or journal beside it to copy too.
    for (const suffix of ['-wal', '-journal']) expect(fs.existsSync(fileOf(prev) + suffix), suffix).to.equal(false);
  });

  it('a started worker moves closed months at start (the maintenance service runs the upkeep); the default layout has no upkeep and no files', async () => {
    const id = await finished(1);
    await jobs.drain();
    await finishAt(id, new Date(prev.from.getTime() + DAY));
    await jobs.start();
    try {
      for (let i = 0; i < 100 && !fs.existsSync(fileOf(prev)); i++) await new Promise((r) => setTimeout(r, 50));
      expect(idsInFile(prev)).to.deep.equal([id]);
    } finally {
      await jobs.stop({ timeout: 1000 });
    }
    const plain = t.jobs({ history: 'table', tablePrefix: `${t.prefix}p_` });
    expect(plain.store.historyUpkeep).to.equal(undefined);
  });

  /**
   * A job of last month in its file and in main alike: as a move whose removal from main did not
   * commit leaves it, or a copy back whose removal from the file did not.
   */
  async function leftInBoth(n: number): Promise<string> {
    const id = await finished(n);
    await jobs.drain();
    await finishAt(id, new Date(prev.from.getTime() + DAY));
    const [row] = await t.query<Record<string, unknown>>(`SELECT * FROM ${t.prefix}history WHERE id = ?`, [id]);
    await jobs.store.historyUpkeep!();
    const columns = Object.keys(row);
    await t.query(`INSERT INTO ${t.prefix}history (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`, Object.values(row));
    return id;
  }

  it('a job left in both places (a move cut short between its two commits) is listed once, and the next upkeep leaves it in its file only', async () => {
    const id = await leftInBoth(1);
    expect(idsInFile(prev)).to.deep.equal([id]);
    expect((await jobs.list({})).items.map((j) => j.id)).to.deep.equal([id]);

    await jobs.store.historyUpkeep!();
    expect(await idsInMain()).to.deep.equal([]);
    expect(idsInFile(prev)).to.deep.equal([id]);
  });

  it('a copy back cut short between its two commits (the job in both places): a retry takes it out of the file and runs it once', async () => {
    const id = await leftInBoth(5);
    expect(await jobs.retry(id)).to.equal(true);
    expect(idsInFile(prev), 'the stale copy left the file').to.deep.equal([]);
    await jobs.drain();
    expect(await jobs.get(id)).to.include({ state: 'completed', attempts: 2 });
    expect((await jobs.list({})).items.filter((j) => j.id === id)).to.have.length(1);
  });

  it('get never answers null for a job while its month moves to its file', async () => {
    const ids = [];
    for (let n = 0; n < 300; n++) ids.push(await finished(n));
    await jobs.drain();
    await t.query(`UPDATE ${t.prefix}history SET finished_at = ?`, [prev.from.getTime() + DAY]);
    let moving = true;
    const moved = jobs.store.historyUpkeep!().finally(() => (moving = false));
    let reads = 0;
    while (moving) {
      const id = ids[reads++ % ids.length];
      expect(await jobs.get(id), `get(${id}) during the move`).to.not.equal(null);
      // As requests arrive: from the event loop (the move runs between them).
      await new Promise((r) => setImmediate(r));
    }
    await moved;
    expect(reads).to.be.greaterThan(1);
    expect(idsInFile(prev)).to.have.length(300);
    expect(await idsInMain()).to.deep.equal([]);
  });

  it('get and list find a job coming back from its file between their read of main and of the files (a retry\'s copy back: get answered null)', async () => {
    const id = await finished(1);
    await jobs.drain();
    await finishAt(id, new Date(prev.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    expect(idsInFile(prev)).to.deep.equal([id]);
    type Months = { restore(ids: string[]): void; findJob(...a: unknown[]): unknown; fromEach(...a: unknown[]): Promise<unknown> };
    const months = (jobs.store as unknown as { months: Months }).months;
    const [findJob, fromEach] = [months.findJob.bind(months), months.fromEach.bind(months)];
    // The copy back to main and the delete from the file both land just before the files are read.
    months.findJob = (...a) => (months.restore([id]), findJob(...a));
    expect(await jobs.get(id), 'get during the copy back').to.not.equal(null);
    months.findJob = findJob;
    await jobs.store.historyUpkeep!(); // back to its file
    expect(idsInFile(prev)).to.deep.equal([id]);
    months.fromEach = (...a) => (months.restore([id]), fromEach(...a));
    expect((await jobs.list({})).items.map((j) => j.id), 'list during the copy back').to.include(id);
    months.fromEach = fromEach;
  });

  it('keeps in main a finished job a waiting dependent or an unfinished batch still reads, and moves it once none does', async () => {
    jobs.define('gate', async () => 'open');
    jobs.define('child', async (_p, ctx) => ctx.parents.map((p) => p.result));
    const parent = await finished(1);
    const loner = await finished(2);
    await jobs.drain();
    const gate = await jobs.enqueue('gate', {}, { delay: 3_600_000 });
    const child = await jobs.enqueue('child', {}, { dependsOn: [parent, gate.id] });
    const { batchId, ids: [batchDone, batchWaiting] } = await jobs.batch([{ name: 'work', payload: { n: 3 } }, { name: 'work', payload: { n: 4 }, delay: 3_600_000 }]);
    await jobs.drain();
    for (const id of [parent, loner, batchDone]) await finishAt(id, new Date(prev.from.getTime() + DAY));

    await jobs.store.historyUpkeep!();
    expect(idsInFile(prev)).to.deep.equal([loner]);
    expect(await idsInMain()).to.deep.equal([parent, batchDone].sort());

    // Nothing reads them any more: the dependent ran (seeing its parent), the batch finished.
    await jobs.store.jobRetry(gate.id); // run now
    await jobs.store.jobRetry(batchWaiting);
    await jobs.drain();
    expect(await jobs.get(child.id)).to.deep.include({ state: 'completed', result: [{ doubled: 2 }, 'open'] });
    await jobs.store.historyUpkeep!();
    expect(idsInFile(prev)).to.deep.equal([parent, loner, batchDone].sort());
    // Its finished jobs counted from the file.
    expect(await jobs.batchStatus(batchId)).to.include({ total: 2, completed: 2, finished: true });
    // The dependent's page still names its parent, now in the file.
    expect((await jobs.links(child.id)).parents.map((p) => [p.id, p.name, p.state])).to.deep.equal([[parent, 'work', 'completed'], [gate.id, 'gate', 'completed']]);
  });

  it('redrive reaches a dead-letter copy and its original kept in a month\'s file', async () => {
    jobs.define('boom', async () => {
      throw new Error('no');
    }, { deadLetter: 'dlq', maxAttempts: 1 });
    const { id: original } = await jobs.enqueue('boom', {});
    await jobs.drain(); // the original fails for good; its copy runs once and fails too
    const [{ id: copy }] = (await jobs.list({ queue: 'dlq' })).items;
    for (const id of [original, copy]) await finishAt(id, new Date(prev.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    expect(idsInFile(prev)).to.deep.equal([original, copy].sort());

    const result = await jobs.redriveDeadLetters([copy]);
    expect(result).to.include({ redriven: 1 });
    expect(result.originals).to.deep.equal([original]);
    expect(await jobs.get(original)).to.include({ state: 'pending' });
  });

  it('a new job may depend on a job kept in a month\'s file: the parent comes back to main, and the dependent sees it', async () => {
    jobs.define('child', async (_p, ctx) => ctx.parents.map((p) => p.result));
    const parent = await finished(21);
    await jobs.drain();
    await finishAt(parent, new Date(prev.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    expect(idsInFile(prev)).to.deep.equal([parent]);

    const child = await jobs.enqueue('child', {}, { dependsOn: parent });
    expect(await idsInMain()).to.deep.equal([parent]);
    expect(idsInFile(prev)).to.deep.equal([]);
    await jobs.drain();
    expect(await jobs.get(child.id)).to.deep.include({ state: 'completed', result: [{ doubled: 42 }] });
  });

  it('a unique key taken by a finished job kept in a month\'s file still holds for its states', async () => {
    const unique = { key: 'report-2026', states: ['pending', 'running', 'completed'] as const };
    const first = await jobs.enqueue('work', { n: 1 }, { unique: { ...unique, states: [...unique.states] } });
    await jobs.drain();
    await finishAt(first.id, new Date(prev.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    expect(idsInFile(prev)).to.deep.equal([first.id]);

    const again = await jobs.enqueue('work', { n: 2 }, { unique: { ...unique, states: [...unique.states] } });
    expect(again).to.include({ id: first.id, existed: true });
    const other = await jobs.enqueue('work', { n: 3 }, { unique: { key: 'report-2026', states: ['failed'] } });
    expect(other.existed).to.equal(false);
  });

  it('retry and delete reach a finished job kept in a month\'s file', async () => {
    const [again, gone] = [await finished(1), await finished(2)];
    await jobs.drain();
    for (const id of [again, gone]) await finishAt(id, new Date(prev.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    expect(idsInFile(prev)).to.deep.equal([again, gone].sort());

    expect(await jobs.retry(again)).to.equal(true);
    expect(await jobs.delete(gone)).to.equal(true);
    expect(idsInFile(prev)).to.deep.equal([]);
    expect(await jobs.get(gone)).to.equal(null);
    await jobs.drain();
    expect(await jobs.get(again)).to.include({ state: 'completed', attempts: 2 });
  });

  it('a file made before a migration added a history column: retry and delete reach its jobs, and the file gains the column', async () => {
    const [again, gone] = [await finished(3), await finished(4)];
    await jobs.drain();
    for (const id of [again, gone]) await finishAt(id, new Date(prev.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    // As a file written before migration 016 (trace_context) looks.
    const old = new Database(fileOf(prev));
    old.exec(`ALTER TABLE ${t.prefix}history DROP COLUMN trace_context`);
    old.close();

    expect(await jobs.retry(again)).to.equal(true);
    expect(await jobs.delete(gone)).to.equal(true);
    expect(idsInFile(prev)).to.deep.equal([]);
    const file = new Database(fileOf(prev), { readonly: true });
    const columns = (file.prepare(`SELECT name FROM pragma_table_info('${t.prefix}history')`).all() as { name: string }[]).map((c) => c.name);
    file.close();
    expect(columns).to.include('trace_context');
    await jobs.drain();
    expect(await jobs.get(again)).to.include({ state: 'completed', attempts: 2 });
  });

  it('retention deletes the files of months past it with their jobs\' logs, and prunes row by row only the month straddling the cutoff', async () => {
    const ids = [];
    for (let n = 1; n <= 5; n++) ids.push(await finished(n));
    await jobs.drain();
    const [old, early, late, recent, current] = ids;
    const cutoff = twoBack.from.getTime() + 10 * DAY;
    await finishAt(old, new Date(threeBack.from.getTime() + DAY));
    await finishAt(early, new Date(cutoff - DAY));
    await finishAt(late, new Date(cutoff + DAY));
    await finishAt(recent, new Date(prev.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    expect([threeBack, twoBack, prev].map((m) => fs.existsSync(fileOf(m)))).to.deep.equal([true, true, true]);

    const olderThanMs = Date.now() - cutoff;
    const pruned = await jobs.store.historyPrune({ olderThanMs, limit: 100 });

    expect(pruned, 'rows pruned one by one').to.equal(1);
    expect(fs.existsSync(fileOf(threeBack)), 'the month past the cutoff').to.equal(false);
    expect(idsInFile(twoBack)).to.deep.equal([late]);
    expect(idsInFile(prev)).to.deep.equal([recent]);
    expect(await idsInMain()).to.deep.equal([current]);
    for (const gone of [old, early]) {
      expect(await jobs.get(gone)).to.equal(null);
      expect(await t.query(`SELECT 1 FROM ${t.prefix}logs WHERE job_id = ?`, [gone]), `logs of ${gone}`).to.deep.equal([]);
    }
    expect(await jobs.logs(late)).to.have.length(1);
  });

  it('a corrupt month file: reads and retention name it; retention still prunes the month straddling its cutoff (it stopped at the corrupt file, in SQLite\'s words alone)', async () => {
    const ids = [];
    for (let n = 1; n <= 3; n++) ids.push(await finished(n));
    await jobs.drain();
    const [old, early, late] = ids;
    const cutoff = twoBack.from.getTime() + 10 * DAY;
    await finishAt(old, new Date(threeBack.from.getTime() + DAY));
    await finishAt(early, new Date(cutoff - DAY));
    await finishAt(late, new Date(cutoff + DAY));
    await jobs.store.historyUpkeep!();
    // An operator's disk: the expired month's file overwritten past its header.
    const fd = fs.openSync(fileOf(threeBack), 'r+');
    fs.writeSync(fd, Buffer.alloc(3000, 0xa5), 0, 3000, 100);
    fs.closeSync(fd);
    const named = new RegExp(`history file ${path.basename(fileOf(threeBack)).replace(/\./g, '\\.')} cannot be used`);
    const read = await jobs.get('0190a4f2-1b2c-7d3e-8f40-123456789abc').catch((err: Error) => err);
    expect(String(read)).to.match(named);
    const round = await jobs.store.historyPrune({ olderThanMs: Date.now() - cutoff, limit: 100 }).catch((err: Error) => err);
    expect(String(round)).to.match(named);
    expect(idsInFile(twoBack), 'the straddling month pruned all the same').to.deep.equal([late]);
  });

  it('retention keeps a file while a live job reads one of its rows (an edge made after the move)', async () => {
    jobs.define('child', async () => null);
    const moved = await finished(1);
    await jobs.drain();
    await finishAt(moved, new Date(threeBack.from.getTime() + DAY));
    await jobs.store.historyUpkeep!();
    expect(idsInFile(threeBack)).to.deep.equal([moved]);
    // A dependent whose edge reached the moved row (an enqueue that raced the move).
    const waiting = await jobs.enqueue('child', {}, { delay: 3_600_000 });
    await t.query(`INSERT INTO ${t.prefix}deps (child_id, parent_id, position) VALUES (?, ?, 0)`, [waiting.id, moved]);

    await jobs.store.historyPrune({ olderThanMs: Date.now() - prev.from.getTime(), limit: 100 });
    expect(fs.existsSync(fileOf(threeBack)), 'kept while referenced').to.equal(true);

    await jobs.cancel(waiting.id);
    await jobs.store.historyPrune({ olderThanMs: Date.now() - prev.from.getTime(), limit: 100 });
    expect(fs.existsSync(fileOf(threeBack)), 'deleted once no live job reads it').to.equal(false);
  });

  it('a separate jobs database keeps its month files beside itself, apart from the app\'s', async () => {
    const dir = path.dirname(t.location);
    const app = new Database(path.join(dir, 'app.db'));
    const own = createJobs({ db: t.db as Database.Database, tablePrefix: t.prefix, history: 'monthly-files' });
    try {
      app.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY)');
      own.define('work', async () => 'ok');
      const { id } = await own.enqueue('work', {});
      await own.drain();
      await finishAt(id, new Date(prev.from.getTime() + DAY));
      await own.store.historyUpkeep!();
      expect(fs.readdirSync(dir).filter((f) => f.includes('history')).sort()).to.deep.equal([path.basename(fileOf(prev))]);
      expect(await own.get(id)).to.include({ state: 'completed' });
    } finally {
      await own.close();
      app.close();
    }
  });

  it('refuses the option where it cannot work, naming it', () => {
    expect(() => createJobs({ db: new Database(':memory:'), history: 'monthly-files' })).to.throw(TypeError, /history: 'monthly-files' needs a database file.*in-memory/);
    const pool = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' });
    expect(() => createJobs({ db: pool, history: 'monthly-files' })).to.throw(TypeError, /history: 'monthly-files' applies to SQLite.*pg-pool/);
    expect(() => createJobs({ db: new Database(':memory:'), history: 'monthly' as 'table' })).to.throw(TypeError, /history must be 'table' or 'monthly-files'; got "monthly"/);
  });
});
