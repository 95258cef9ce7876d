/**
 * A refused write blocks nothing, and user code cannot break the worker: on every dialect, the
 * database refuses an outcome (a trigger, text it cannot store, a value over the limits), or user
 * code (a backoff function, an event listener, a hostile thrown value) throws. The other jobs
 * complete, the poisoned one ends with a readable error, no slot is lost, and the process sees no
 * uncaught exception or unhandled rejection.
 */
import { expect } from 'chai';
import { forEachDialect, sleep, until, type TestDb } from '../helpers/dialects.ts';
import { trapCrashes } from '../helpers/traps.ts';
import { stopAtLostClaim } from '../helpers/lost-answers.ts';
import type { Jobs, JobRecord } from '../../lib/index.ts';

/** A trigger that refuses any history row whose result mentions "poison": the database itself says no. */
async function refusePoisonedResults(t: TestDb): Promise<void> {
  const p = t.prefix;
  const message = 'poisoned result refused';
  if (t.dialect === 'sqlite') {
    await t.query(`CREATE TRIGGER ${p}poison BEFORE INSERT ON ${p}history WHEN NEW.result LIKE '%poison%' BEGIN SELECT RAISE(ABORT, '${message}'); END`);
  } else if (t.dialect === 'postgres') {
    await t.query(`CREATE FUNCTION ${p}refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.result::text LIKE '%poison%' THEN RAISE EXCEPTION '${message}'; END IF; RETURN NEW; END $$`);
    await t.query(`CREATE TRIGGER ${p}poison BEFORE INSERT ON ${p}history FOR EACH ROW EXECUTE FUNCTION ${p}refuse()`);
  } else if (t.dialect === 'mysql') {
    await t.query(`CREATE TRIGGER ${p}poison BEFORE INSERT ON ${p}history FOR EACH ROW BEGIN IF NEW.result LIKE '%poison%' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '${message}'; END IF; END`);
  } else {
    await t.query(`CREATE TRIGGER ${p}poison ON ${p}history AFTER INSERT AS IF EXISTS (SELECT 1 FROM inserted WHERE result LIKE '%poison%') THROW 50001, '${message}', 1`);
  }
}

/** A trigger that refuses every history row of one job name: neither its outcome nor its failure can be stored. */
async function refuseAllHistory(t: TestDb, name: string): Promise<void> {
  const p = t.prefix;
  if (t.dialect === 'sqlite') {
    await t.query(`CREATE TRIGGER ${p}nohistory BEFORE INSERT ON ${p}history WHEN NEW.name = '${name}' BEGIN SELECT RAISE(ABORT, 'no history for ${name}'); END`);
  } else if (t.dialect === 'postgres') {
    await t.query(`CREATE FUNCTION ${p}nohistory() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.name = '${name}' THEN RAISE EXCEPTION 'no history for ${name}'; END IF; RETURN NEW; END $$`);
    await t.query(`CREATE TRIGGER ${p}nohistory BEFORE INSERT ON ${p}history FOR EACH ROW EXECUTE FUNCTION ${p}nohistory()`);
  } else if (t.dialect === 'mysql') {
    await t.query(`CREATE TRIGGER ${p}nohistory BEFORE INSERT ON ${p}history FOR EACH ROW BEGIN IF NEW.name = '${name}' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no history for ${name}'; END IF; END`);
  } else {
    await t.query(`CREATE TRIGGER ${p}nohistory ON ${p}history AFTER INSERT AS IF EXISTS (SELECT 1 FROM inserted WHERE name = '${name}') THROW 50002, 'no history for ${name}', 1`);
  }
}

async function liveCount(t: TestDb): Promise<number> {
  return Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n);
}

async function finished(jobs: Jobs, ids: string[]): Promise<JobRecord[]> {
  return Promise.all(ids.map(async (id) => (await jobs.get(id))!));
}

forEachDialect('faults: a refused outcome blocks nothing', ({ fresh }) => {
  const crashes = trapCrashes();

  for (const concurrency of [1, 10]) {
    it(`the database refusing one job's outcome (a trigger) leaves 30 others to complete, at concurrency ${concurrency}`, async () => {
      const t = await fresh();
      const jobs = t.jobs({ maxAttempts: 1, worker: { concurrency, pollInterval: 100 } });
      const errors: unknown[] = [];
      jobs.on('error', (e) => errors.push(e));
      jobs.define('work', async (p: { n: number; poison?: boolean }) => (p.poison ? { note: 'poison' } : { n: p.n }));
      await jobs.migrate();
      await refusePoisonedResults(t);
      const items = Array.from({ length: 33 }, (_, i) => ({ name: 'work', payload: i % 11 === 5 ? { n: i, poison: true } : { n: i } }));
      const ids = (await jobs.enqueueMany(items)).map((r) => r.id);
      await jobs.start();
      await until(async () => (await liveCount(t)) === 0, 'every job to finish', 30_000, 50);
      const records = await finished(jobs, ids);
      records.forEach((r, i) => {
        if (items[i].payload.poison) {
          expect(r.state, `poisoned job ${i}`).to.equal('failed');
          expect(r.error!.message).to.match(/^the outcome could not be stored: .*poisoned result refused/);
          expect(r.result).to.equal(null);
        } else {
          expect(r, `job ${i}`).to.include({ state: 'completed' });
          expect(r.result).to.deep.equal({ n: i });
        }
      });
      expect(errors.some((e) => String(e).includes('poisoned result refused')), 'the refusal is reported').to.equal(true);
      crashes.expectNone();
    });
  }

  /** A started worker whose job 'work' ran and was parked: history refuses its every outcome. */
  async function parkedJob(worker: { pollInterval: number; heartbeatInterval: number; stallTimeout: number }) {
    const t = await fresh();
    const jobs = t.jobs({ maxAttempts: 1, worker: { concurrency: 2, ...worker } });
    const errors: string[] = [];
    jobs.on('error', (e) => errors.push(String(e)));
    const ran = { runs: 0 };
    jobs.define('work', async () => {
      ran.runs++;
      return 'done';
    });
    jobs.define('other', async () => 'fine');
    await jobs.migrate();
    await refuseAllHistory(t, 'work');
    const { id } = await jobs.enqueue('work', {});
    await jobs.start();
    await until(() => errors.some((e) => e.includes(`(${id}) ran, but its outcome could not be stored`)), 'the job to be parked', 10_000);
    return { jobs, id, ran };
  }

  it('a job whose outcome and failure are both refused runs once and is parked (left running for the sweeper), never run again here', async () => {
    const { jobs, id, ran } = await parkedJob({ pollInterval: 50, heartbeatInterval: 200, stallTimeout: 60_000 });
    // Several heartbeats (each reconciling) later: still one run, still running under its first attempt.
    await sleep(1500);
    expect(ran.runs).to.equal(1);
    expect(await jobs.get(id)).to.include({ state: 'running', attempts: 1 });
    const { id: other } = await jobs.enqueue('other', {});
    await until(async () => (await jobs.get(other))?.state === 'completed', 'another job to run meanwhile');
    crashes.expectNone();
  });

  it('a job whose outcome could not be stored stays running through a stop() that gives back a lost claim\'s jobs', async () => {
    const { jobs, id } = await parkedJob({ pollInterval: 60_000, heartbeatInterval: 60_000, stallTimeout: 180_000 });
    // The next claim commits, then its answer is lost, and stop() comes at that moment.
    const stopped = stopAtLostClaim(jobs);
    const { id: other } = await jobs.enqueue('other', {});
    await stopped();
    expect(await jobs.get(other), 'the lost claim\'s job').to.include({ state: 'pending', attempts: 0 });
    expect(await jobs.get(id), 'the parked job').to.include({ state: 'running', attempts: 1 });
    crashes.expectNone();
  });

  it('an error message cut at 10,000 characters keeps whole characters (half of an emoji is refused by MariaDB)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ maxAttempts: 1, worker: { concurrency: 1, pollInterval: 100 } });
    // Character 9,999 (0-based) is the high half of a surrogate pair: a naive cut at 10,000 keeps it alone.
    const message = 'x'.repeat(9_999) + '😀'.repeat(20);
    jobs.define('throws', async () => {
      throw new Error(message);
    });
    jobs.define('after', async () => 'fine');
    const { id } = await jobs.enqueue('throws', {});
    const { id: after } = await jobs.enqueue('after', {});
    await jobs.start();
    await until(async () => (await liveCount(t)) === 0, 'both jobs to finish', 15_000, 50);
    const failed = (await jobs.get(id))!;
    expect(failed.state).to.equal('failed');
    expect(failed.error!.message.startsWith('x'.repeat(9_998))).to.equal(true);
    expect(failed.error!.message.length).to.be.at.most(10_000);
    expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/.test(failed.error!.message), 'no lone high surrogate').to.equal(false);
    expect(await jobs.get(after)).to.include({ state: 'completed', result: 'fine' });
    crashes.expectNone();
  });

  it('a result, checkpoint, progress message or log line over maxOutputBytes fails its attempt with an error naming it', async () => {
    const t = await fresh();
    const jobs = t.jobs({ maxAttempts: 1, maxOutputBytes: 64 * 1024, worker: { concurrency: 2, pollInterval: 100 } });
    const big = 'é'.repeat(40 * 1024); // 80 KiB of UTF-8 in 40 K characters
    jobs.define('result', async () => ({ big }));
    jobs.define('checkpoint', async (_p, ctx) => {
      await ctx.saveCheckpoint({ big });
    });
    jobs.define('progress', async (_p, ctx) => ctx.progress(50, big));
    jobs.define('log', async (_p, ctx) => ctx.log(big));
    jobs.define('fits', async (_p, ctx) => {
      ctx.log('é'.repeat(30 * 1024));
      return 'é'.repeat(30 * 1024);
    });
    const names = ['result', 'checkpoint', 'progress', 'log', 'fits'];
    const ids = await Promise.all(names.map(async (n) => (await jobs.enqueue(n, {})).id));
    await jobs.start();
    await until(async () => (await liveCount(t)) === 0, 'every job to finish', 15_000, 50);
    const records = await finished(jobs, ids);
    const fields = { result: 'result', checkpoint: 'checkpoint', progress: 'progress message', log: 'log line' } as const;
    for (const [i, n] of names.slice(0, 4).entries()) {
      expect(records[i].state, n).to.equal('failed');
      expect(records[i].error!.message).to.match(new RegExp(`^job "${n}": ${fields[n as keyof typeof fields]} is 8\\d{4} bytes( of JSON)?, over the limit of 65536 bytes \\(option maxOutputBytes\\)$`));
    }
    expect(records[4]).to.include({ state: 'completed' });
    expect((await jobs.logs(ids[4]))[0].message.length).to.equal(30 * 1024);
    crashes.expectNone();
  });

  it('snooze and backoff functions are held to the bounds of delay; a throwing or wrong backoff function falls back to the default', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 1, pollInterval: 100 } });
    jobs.define('snooze-forever', async (_p, ctx) => ctx.snooze(1e300), { maxAttempts: 1 });
    const answers: Record<string, () => number> = {
      throws: () => {
        throw new Error('backoff broke');
      },
      huge: () => 1e300,
      negative: () => -5,
      nan: () => NaN,
    };
    for (const [kind, answer] of Object.entries(answers)) {
      jobs.define(`backoff-${kind}`, async (_p, ctx) => {
        if (ctx.attempt === 1) throw new Error('first attempt fails');
        return 'second attempt';
      }, { backoff: answer, maxAttempts: 2 });
    }
    const snoozed = (await jobs.enqueue('snooze-forever', {})).id;
    const ids = await Promise.all(Object.keys(answers).map(async (k) => (await jobs.enqueue(`backoff-${k}`, {})).id));
    const logged: string[] = [];
    jobs.on('error', (e) => logged.push(String(e)));
    await jobs.start();
    await until(async () => (await jobs.get(snoozed))?.state === 'failed', 'the snoozing job to fail', 10_000, 50);
    expect((await jobs.get(snoozed))!.error!.message).to.match(/^snooze ms must be a number of milliseconds from 0 to \d+ \(ten years\); got 1e\+300/);
    // The default backoff's first delay is about a second.
    await until(async () => (await finished(jobs, ids)).every((r) => r.state === 'completed'), 'every job to run again', 15_000, 100);
    for (const id of ids) {
      const [first] = await jobs.attempts(id);
      expect(first.error!.message).to.match(/^first attempt fails \[backoff: .*; the default backoff was used\]$/);
    }
    expect(logged.filter((l) => l.includes('the default backoff was used'))).to.have.length(4);
    crashes.expectNone();
  });

  it('define refuses a backoff jitter that is not a number from 0 to 1', async () => {
    const t = await fresh();
    const jobs = t.jobs();
    for (const jitter of [NaN, Infinity, -0.1, 1.5]) {
      expect(() => jobs.define(`j${String(jitter)}`, async () => undefined, { backoff: { jitter } })).to.throw(/backoff\.jitter must be a number from 0 to 1/);
    }
  });
});

forEachDialect('faults: user code is contained', ({ fresh }) => {
  const crashes = trapCrashes();

  it('a thrown value whose message getter throws, a revoked Proxy and a hostile thenable each fail their job readably and free the slot', async () => {
    const t = await fresh();
    const jobs = t.jobs({ maxAttempts: 1, worker: { concurrency: 1, pollInterval: 100 } });
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const throwers: Record<string, () => unknown> = {
      getter: () => {
        const e = new Error('x');
        Object.defineProperty(e, 'message', { get: () => { throw new Error('no message for you'); } });
        throw e;
      },
      proxy: () => {
        throw revoked.proxy;
      },
      thenable: () => ({ get then() { throw new Error('then getter threw'); } }),
    };
    for (const [k, fn] of Object.entries(throwers)) jobs.define(k, fn);
    jobs.define('after', async () => 'ran');
    const ids: string[] = [];
    for (const k of [...Object.keys(throwers), 'after']) ids.push((await jobs.enqueue(k, {})).id);
    await jobs.start();
    await until(async () => (await liveCount(t)) === 0, 'every job to finish', 10_000, 50);
    const [getter, proxy, thenable, after] = await finished(jobs, ids);
    expect(getter.state).to.equal('failed');
    expect(getter.error!.message).to.be.a('string');
    expect(proxy.state).to.equal('failed');
    expect(proxy.error!.message).to.match(/^the handler threw a value that could not be read/);
    expect(thenable).to.include({ state: 'failed' });
    expect(thenable.error!.message).to.equal('then getter threw');
    expect(after).to.include({ state: 'completed', result: 'ran' });
    crashes.expectNone();
  });

  it('listeners that throw or reject change nothing: every slot frees, enqueue and cancel resolve, the logger hears of it', async () => {
    const t = await fresh();
    const logged: string[] = [];
    const jobs = t.jobs({ logger: { error: (m: string) => logged.push(m) }, worker: { concurrency: 2, pollInterval: 100 } });
    jobs.define('ok', async () => 'done');
    jobs.define('slow', async (_p, ctx) => {
      await new Promise((r) => ctx.signal.addEventListener('abort', r));
    });
    for (const event of ['started', 'completed', 'enqueued', 'cancelled'] as const) {
      jobs.on(event, () => {
        throw new Error(`${event} listener broke`);
      });
    }
    jobs.on('completed', async () => {
      throw new Error('async completed listener broke');
    });
    await jobs.start();
    // enqueue resolves although its 'enqueued' listener throws: the job exists, a retry would duplicate it.
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await jobs.enqueue('ok', {})).id);
    await until(async () => (await finished(jobs, ids)).every((r) => r.state === 'completed'), 'six jobs through two slots', 10_000, 50);
    const { id: slow } = await jobs.enqueue('slow', {});
    await until(async () => (await jobs.get(slow))?.state === 'running', 'the slow job to run');
    expect(await jobs.cancel(slow)).to.equal(true);
    await until(async () => (await liveCount(t)) === 0, 'the cancelled job to leave', 10_000, 50);
    for (const e of ['started', 'completed', 'enqueued', 'cancelled']) {
      expect(logged.some((l) => l.includes(`a '${e}' listener threw: ${e} listener broke`)), `${e} reported\n${logged.join('\n')}`).to.equal(true);
    }
    // One line per distinct error a minute: six throwing 'started' listeners print once.
    expect(logged.filter((l) => l.includes('started listener broke'))).to.have.length(1);
    expect(logged.some((l) => l.includes('async completed listener broke'))).to.equal(true);
    crashes.expectNone();
  });

  it("an 'error' listener that throws goes to the logger", async () => {
    const t = await fresh();
    const logged: string[] = [];
    const jobs = t.jobs({ logger: { error: (m: string) => logged.push(m) }, worker: { pollInterval: 100 } });
    jobs.on('error', () => {
      throw new Error('error listener broke');
    });
    jobs.on('started', () => {
      throw new Error('started listener broke');
    });
    jobs.define('ok', async () => 'done');
    await jobs.start();
    const { id } = await jobs.enqueue('ok', {});
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job to complete');
    await sleep(50);
    expect(logged.some((l) => l.includes("an 'error' listener threw: error listener broke"))).to.equal(true);
    crashes.expectNone();
  });
});

forEachDialect('faults: one schedule that cannot fire holds back no other', ({ fresh }) => {
  const crashes = trapCrashes();

  it('a schedule whose stored job is refused is reported each tick while the next schedule keeps firing', async function () {
    this.timeout(20_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 100 } });
    const errors: string[] = [];
    jobs.on('error', (e) => errors.push(String(e)));
    jobs.define('tick', async () => undefined);
    jobs.recurring('a-broken', '* * * * * *', {}, { name: 'tick' });
    jobs.recurring('b-fine', '* * * * * *', {}, { name: 'tick' });
    await jobs.start();
    // An edit made elsewhere (another version of the app, a hand-written UPDATE) left a job name no enqueue accepts.
    await t.query(`UPDATE ${t.prefix}schedules SET name = '..' WHERE ${t.dialect === 'mysql' ? '`key`' : t.dialect === 'mssql' ? '[key]' : 'key'} = 'a-broken'`);
    await sleep(2600);
    await jobs.stop();
    const fired = await t.query<{ k: string; n: number }>(`SELECT schedule_key AS k, COUNT(*) AS n FROM ${t.prefix}schedule_ticks GROUP BY schedule_key`);
    const fine = Number(fired.find((r) => r.k === 'b-fine')?.n ?? 0);
    expect(fine, JSON.stringify(fired)).to.be.at.least(2);
    expect(errors.some((e) => e.includes('schedule a-broken:') && e.includes('must not be "." or ".."')), errors.join('\n')).to.equal(true);
    crashes.expectNone();
  });
});

forEachDialect('faults: start and stop', ({ fresh }) => {
  it('stop() while start() is under way leaves nothing running: no worker, no scheduler', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('tick', async () => undefined);
    jobs.recurring('every-second', '* * * * * *', {}, { name: 'tick' });
    const starting = jobs.start();
    await jobs.stop();
    await starting;
    await sleep(2500);
    const ticks = await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}schedule_ticks`);
    expect(Number(ticks[0].n), 'ticks fired after stop()').to.equal(0);
    expect((await jobs.status()).workers).to.have.length(0);
  });
});

forEachDialect('faults: an outcome whose answer is lost after it committed', ({ fresh }) => {
  const crashes = trapCrashes();

  /** A worker's jobs, and the ids its attempts completed and aborted (`id:reason`); its errors are expected here. */
  function watched(t: TestDb, worker: { heartbeatInterval?: number } = {}): { jobs: Jobs; completed: string[]; aborted: string[] } {
    const jobs = t.jobs({ worker: { concurrency: 4, pollInterval: 100, ...worker } });
    const completed: string[] = [];
    const aborted: string[] = [];
    jobs.on('completed', (e) => void completed.push(e.id));
    jobs.on('aborted', (e) => void aborted.push(`${e.id}:${e.reason}`));
    jobs.on('error', () => undefined);
    return { jobs, completed, aborted };
  }

  /** The store's completion, its first batch answered by a dropped connection: after `commit` ran (or not), the answer is lost. */
  function dropFirstAnswer(jobs: Jobs, before: (ids: string[]) => Promise<void>, commit: boolean): void {
    const complete = jobs.store.jobCompleteMany.bind(jobs.store);
    let dropped = false;
    jobs.store.jobCompleteMany = async (items) => {
      if (dropped || !items.length) return complete(items);
      dropped = true;
      await before(items.map((i) => i.id));
      if (commit) await complete(items);
      throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
    };
  }

  it('written again, it finds its own completion in history: the attempt is reported completed, not lost', async () => {
    const t = await fresh();
    const { jobs, completed, aborted } = watched(t);
    jobs.define('x', (p: { n: number }) => ({ n: p.n }));
    dropFirstAnswer(jobs, async () => undefined, true);
    const ids = (await jobs.enqueueMany([1, 2, 3, 4, 5].map((n) => ({ name: 'x' as const, payload: { n } })))).map((r) => r.id);
    await jobs.start();
    await until(() => completed.length + aborted.length === 5, 'an outcome for each job');
    expect(aborted, 'no attempt reported lost').to.deep.equal([]);
    expect([...completed].sort()).to.deep.equal([...ids].sort());
    const records = await finished(jobs, ids);
    expect(records.map((r) => [r.state, r.attempts, (r.result as { n: number }).n])).to.deep.equal([1, 2, 3, 4, 5].map((n) => ['completed', 1, n]));
    await jobs.stop();
    crashes.expectNone();
  });

  it('a failure written again finds the attempt it recorded: reported retrying or failed, not lost', async () => {
    const t = await fresh();
    const { jobs, aborted } = watched(t);
    const ended: string[] = [];
    jobs.on('retrying', (e) => void ended.push(`${e.id}:retrying`));
    jobs.on('failed', (e) => void ended.push(`${e.id}:failed`));
    jobs.define('x', () => {
      throw new Error('no');
    });
    // The store's first failure batch commits, then its answer is lost.
    const fail = jobs.store.jobFailMany.bind(jobs.store);
    let dropped = false;
    jobs.store.jobFailMany = async (items) => {
      if (dropped || !items.length) return fail(items);
      dropped = true;
      await fail(items);
      throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
    };
    const backoff = { type: 'fixed' as const, baseMs: 60_000 };
    const retried = (await jobs.enqueueMany([1, 2, 3].map(() => ({ name: 'x' as const, payload: {}, maxAttempts: 2, backoff })))).map((r) => r.id);
    const failed = (await jobs.enqueueMany([1, 2].map(() => ({ name: 'x' as const, payload: {}, maxAttempts: 1 })))).map((r) => r.id);
    await jobs.start();
    await until(() => ended.length + aborted.length === 5, 'an outcome for each job');
    expect(aborted, 'no attempt reported lost').to.deep.equal([]);
    expect([...ended].sort()).to.deep.equal([...retried.map((id) => `${id}:retrying`), ...failed.map((id) => `${id}:failed`)].sort());
    const records = await finished(jobs, [...retried, ...failed]);
    expect(records.map((r) => [r.state, r.attempts])).to.deep.equal([...retried.map(() => ['pending', 1]), ...failed.map(() => ['failed', 1])]);
    await jobs.stop();
    crashes.expectNone();
  });

  it('one that did not land, for a job another worker then completed at the same attempt number, is still reported lost', async () => {
    const t = await fresh();
    const { jobs, completed, aborted } = watched(t);
    jobs.define('x', () => 'ours');
    // Before the dropped try, the job's claim changes hands (as a rescue without a new attempt
    // would) and that other claim completes it: history holds it completed, by another worker.
    const complete = jobs.store.jobCompleteMany.bind(jobs.store);
    const theirs = '00000000-0000-7000-8000-000000000000';
    dropFirstAnswer(jobs, async (taken) => {
      for (const id of taken) {
        await t.query(`UPDATE ${t.prefix}jobs SET token = '${theirs}', worker_id = 'another-worker' WHERE id = '${id}'`);
        expect(await complete([{ id, token: theirs, resultJson: '"theirs"' }])).to.deep.equal(new Set([id]));
      }
    }, false);
    const { id } = await jobs.enqueue('x', {});
    await jobs.start();
    await until(() => completed.length + aborted.length === 1, 'its outcome');
    expect(aborted).to.deep.equal([`${id}:lost`]);
    const record = (await jobs.get(id))!;
    expect([record.state, record.attempts, record.result]).to.deep.equal(['completed', 1, 'theirs']);
    await jobs.stop();
    crashes.expectNone();
  });

  it('a transactional completion whose answer is lost after it committed is reported completed, with its result', async () => {
    const t = await fresh();
    const { jobs, completed, aborted } = watched(t);
    const results: unknown[] = [];
    jobs.on('completed', (e) => void results.push(e.result));
    // Synchronous, as SQLite requires of a transactional handler (the others accept it too).
    jobs.define('tx', () => ({ charged: true }), { transactional: true });
    const complete = jobs.store.jobCompleteInTransaction.bind(jobs.store);
    let dropped = false;
    jobs.store.jobCompleteInTransaction = async (run) => {
      const out = await complete(run);
      if (dropped) return out;
      dropped = true;
      throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
    };
    const { id } = await jobs.enqueue('tx', {});
    await jobs.start();
    await until(() => completed.length + aborted.length === 1, 'its outcome');
    expect(aborted, 'not reported lost').to.deep.equal([]);
    expect(completed).to.deep.equal([id]);
    expect(results).to.deep.equal([{ charged: true }]);
    const record = (await jobs.get(id))!;
    expect([record.state, record.attempts, record.result]).to.deep.equal(['completed', 1, { charged: true }]);
    await jobs.stop();
    crashes.expectNone();
  });

  it('a transactional completion whose answer is slow is not called lost by a heartbeat that finds the job gone meanwhile', async () => {
    const t = await fresh();
    const { jobs, completed, aborted } = watched(t, { heartbeatInterval: 20 });
    jobs.define('tx', () => ({ charged: true }), { transactional: true });
    // Committed, its answer comes back only after several heartbeats read the live table.
    const complete = jobs.store.jobCompleteInTransaction.bind(jobs.store);
    jobs.store.jobCompleteInTransaction = async (run) => {
      const out = await complete(run);
      await new Promise((r) => setTimeout(r, 300));
      return out;
    };
    const { id } = await jobs.enqueue('tx', {});
    await jobs.start();
    await until(() => completed.length + aborted.length === 1, 'its outcome');
    expect(aborted, 'not reported lost').to.deep.equal([]);
    expect(completed).to.deep.equal([id]);
    await jobs.stop();
    crashes.expectNone();
  });
});

forEachDialect('faults: outcomes the database does not take for a while', ({ fresh }) => {
  const crashes = trapCrashes();

  it('hold back claims once a few batches of outcomes wait (not every job runs meanwhile); then each job completes, run once', async function () {
    this.timeout(120_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { concurrency: 10, pollInterval: 100 } });
    jobs.on('error', () => undefined);
    const runs = new Map<number, number>();
    jobs.define('x', (n: number) => void runs.set(n, (runs.get(n) ?? 0) + 1));
    const total = 12_000;
    for (let i = 0; i < total; i += 2000) await jobs.enqueueMany(Array.from({ length: 2000 }, (_, j) => ({ name: 'x' as const, payload: i + j })));
    // Completions fail as a dropped connection would (claims go through) until healed.
    const complete = jobs.store.jobCompleteMany.bind(jobs.store);
    let healed = false;
    jobs.store.jobCompleteMany = async (items) => {
      if (!healed) throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
      return complete(items);
    };
    await jobs.start();
    // Runs stop growing while no outcome is written.
    let seen = -1;
    await until(async () => {
      const now = runs.size;
      const still = now === seen && now > 0;
      seen = now;
      if (!still) await sleep(300);
      return still;
    }, 'handlers to stop starting while outcomes wait', 30_000);
    expect(runs.size, 'jobs run while their outcomes could not be written').to.be.below(total / 2);
    healed = true;
    await until(() => runs.size === total, 'every job once the outcomes are written', 90_000);
    await until(async () => (await jobs.status()).live.length === 0, 'every outcome');
    expect([...runs.values()].every((n) => n === 1), 'each handler ran once').to.equal(true);
    await jobs.stop();
    crashes.expectNone();
  });
});
