/**
 * Workflows (issue 13) through the public API, on every dialect: dependsOn (a job waits for its
 * parents, sees their results, is cancelled when one fails), onSuccess / onFailure callbacks
 * enqueued by the finishing transaction, and batches with their callbacks and status.
 */
import { expect } from 'chai';
import type Database from 'better-sqlite3';
import { JobValidationError, type BatchStatus, type JobContext, type JobParent } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

const done = (state: string | undefined) => state === 'completed' || state === 'failed' || state === 'cancelled';

forEachDialect('workflows', ({ fresh }) => {
  it('a dependent stays pending and unclaimed until every parent completed, then sees their results in dependsOn order', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, concurrency: 4 } });
    const ran: string[] = [];
    let parentsSeen: readonly JobParent[] = [];
    let releaseB!: () => void;
    const bGate = new Promise<void>((r) => (releaseB = r));
    jobs.define('a', async () => (ran.push('a'), { from: 'a' }));
    jobs.define('b', async () => (await bGate, ran.push('b'), { from: 'b' }));
    jobs.define('d', async (_p: unknown, ctx: JobContext) => {
      parentsSeen = ctx.parents;
      ran.push('d');
      return 'd';
    });
    const a = await jobs.enqueue('a', {});
    const b = await jobs.enqueue('b', {});
    const d = await jobs.enqueue('d', {}, { dependsOn: [b.id, a.id] });
    expect(await jobs.get(d.id)).to.deep.include({ state: 'pending', waitingFor: 2 });
    await jobs.start();
    await until(async () => (await jobs.get(a.id))?.state === 'completed', 'a to complete');
    await until(async () => (await jobs.get(d.id))?.waitingFor === 1, 'd to wait for b only');
    expect(ran).to.not.include('d');
    expect((await jobs.get(d.id))?.state).to.equal('pending');
    releaseB();
    await until(async () => (await jobs.get(d.id))?.state === 'completed', 'd to complete');
    expect(ran.indexOf('d')).to.be.greaterThan(ran.indexOf('b'));
    expect(parentsSeen.map((p) => ({ id: p.id, name: p.name, result: p.result }))).to.deep.equal([
      { id: b.id, name: 'b', result: { from: 'b' } },
      { id: a.id, name: 'a', result: { from: 'a' } },
    ]);
    const links = await jobs.links(a.id);
    // A finished dependent's outcome, as a parent's (it was always null).
    expect(links.dependents.map((l) => ({ id: l.id, state: l.state, result: l.result, error: l.error }))).to.deep.equal([{ id: d.id, state: 'completed', result: 'd', error: null }]);
    await jobs.stop();
  });

  it('a parent that already completed counts as done: the dependent runs at once', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('p', async () => 41);
    jobs.define('c', async (_p: unknown, ctx: JobContext) => Number(ctx.parents[0].result) + 1);
    await jobs.start();
    const p = await jobs.enqueue('p', {});
    await until(async () => (await jobs.get(p.id))?.state === 'completed', 'the parent to complete');
    const c = await jobs.enqueue('c', {}, { dependsOn: p.id });
    expect((await jobs.get(c.id))?.waitingFor).to.equal(0);
    await until(async () => (await jobs.get(c.id))?.state === 'completed', 'the child to complete');
    expect((await jobs.get(c.id))?.result).to.equal(42);
    await jobs.stop();
  });

  it('a failing parent cancels its dependents three levels down, each naming the parent that ended it; retry re-evaluates', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    let fail = true;
    jobs.define('root', async () => {
      if (fail) throw new Error('root broke');
      return 'ok';
    });
    jobs.define('step', async () => 'step');
    const root = await jobs.enqueue('root', {}, { maxAttempts: 1 });
    const [l1, l2, l3] = await jobs.enqueueMany([
      { name: 'step', payload: 1, dependsOn: root.id },
      { name: 'step', payload: 2, dependsOn: 0 },
      { name: 'step', payload: 3, dependsOn: 1 },
    ]);
    await jobs.start();
    await until(async () => (await jobs.get(l3.id))?.state === 'cancelled', 'the third level to be cancelled');
    expect((await jobs.get(root.id))?.state).to.equal('failed');
    for (const [job, parent] of [[l1, root], [l2, l1], [l3, l2]] as const) {
      const rec = await jobs.get(job.id);
      expect(rec?.state).to.equal('cancelled');
      expect(rec?.error?.message).to.include(parent.id);
    }
    // Retrying the dependent first is refused: its parent failed.
    await jobs.retry(l1.id).then(
      () => expect.fail('retry of a dependent whose parent failed should be refused'),
      (err: Error) => expect(err.message).to.match(/parent .* failed; retry the parent first/),
    );
    fail = false;
    await jobs.stop();
    expect(await jobs.retry(root.id)).to.equal(true);
    expect(await jobs.retry(l1.id)).to.equal(true);
    expect(await jobs.get(l1.id)).to.deep.include({ state: 'pending', waitingFor: 1 });
    await jobs.start();
    await until(async () => (await jobs.get(l1.id))?.state === 'completed', 'the retried dependent to complete after its parent');
    await jobs.stop();
  });

  it('a cancelled parent ends a wide and deep graph at once: each dependent once, naming a parent it waited for, its onFailure enqueued', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const root = await jobs.enqueue('root', {});
    // 600 dependents of the root (more than one statement's worth), a diamond under the first two, a chain of 30 under the diamond.
    const wide = await jobs.enqueueMany(Array.from({ length: 600 }, (_, i) => ({
      name: 'wide', payload: i, dependsOn: root.id, ...(i % 100 === 0 ? { onFailure: { name: 'alert', payload: i } } : {}),
    })));
    const [diamond] = await jobs.enqueueMany([{ name: 'diamond', payload: 0, dependsOn: [wide[0].id, wide[1].id], onFailure: 'alert' }]);
    const chain = await jobs.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ name: 'chain', payload: i, dependsOn: i === 0 ? diamond.id : i - 1 })));
    // A finished job beside them is not touched.
    const other = await jobs.enqueue('other', {});
    expect(await jobs.cancel(root.id)).to.equal(true);
    const parentOf = new Map<string, string[]>([
      ...wide.map((w) => [w.id, [root.id]] as [string, string[]]),
      [diamond.id, [wide[0].id, wide[1].id]],
      ...chain.map((c, i) => [c.id, [i === 0 ? diamond.id : chain[i - 1].id]] as [string, string[]]),
    ]);
    for (const [id, parents] of parentOf) {
      const rec = await jobs.get(id);
      expect(rec?.state, id).to.equal('cancelled');
      expect(rec?.error?.name).to.equal('ParentEnded');
      const parentId = (rec?.error as { parentId?: string } | null)?.parentId;
      expect(parents).to.include(parentId);
      expect(rec?.error?.message).to.include(`cancelled: parent job ${parentId}`);
    }
    expect((await jobs.get(other.id))?.state).to.equal('pending');
    const alerts = (await jobs.list({ name: 'alert', limit: 100 })).items;
    const payloads = await Promise.all(alerts.map(async (a) => (await jobs.get(a.id))?.payload));
    expect(payloads.map(String).sort()).to.deep.equal(['0', '100', '200', '300', '400', '500', 'undefined'].sort());
    const left = await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs WHERE name <> 'alert'`);
    expect(Number(left[0].n), 'only the unrelated job left').to.equal(1);
  });

  it('refuses an unknown parent, a cycle and a self-dependency with the field named; dependsOn with a delay', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const unknown = '01936f4e-8a1b-7c2d-9e3f-0a1b2c3d4e5f';
    await jobs.enqueue('x', {}, { dependsOn: unknown }).then(
      () => expect.fail('an unknown parent should be refused'),
      (err) => {
        expect(err).to.be.instanceOf(JobValidationError);
        expect(err.field).to.equal('dependsOn');
        expect(err.message).to.include(unknown);
      },
    );
    await jobs.enqueueMany([{ name: 'x', payload: 0, dependsOn: 1 }, { name: 'x', payload: 1, dependsOn: 0 }]).then(
      () => expect.fail('a cycle should be refused'),
      (err) => expect(err.message).to.match(/cycle: items\[0\] \(x\) → items\[1\] \(x\) → items\[0\]/),
    );
    await jobs.enqueueMany([{ name: 'x', payload: 0, dependsOn: 0 }]).then(
      () => expect.fail('a self-dependency should be refused'),
      (err) => expect(err.message).to.include('depends on itself'),
    );
    await jobs.enqueue('x', {}, { dependsOn: 'not-an-id' }).then(
      () => expect.fail('a malformed id should be refused'),
      (err) => expect(err.message).to.include('dependsOn must be job ids'),
    );
    expect(Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}jobs`))[0].n), 'nothing written').to.equal(0);
    // A later item may be the parent of an earlier one: the call is written parents first.
    const [child, parent] = await jobs.enqueueMany([{ name: 'x', payload: 'child', dependsOn: 1 }, { name: 'x', payload: 'parent' }]);
    expect((await jobs.links(child.id)).parents.map((p) => p.id)).to.deep.equal([parent.id]);
  });

  it('a dependent enqueued after its parent failed is cancelled at once', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('bad', async () => {
      throw new Error('no');
    });
    await jobs.start();
    const p = await jobs.enqueue('bad', {}, { maxAttempts: 1 });
    await until(async () => (await jobs.get(p.id))?.state === 'failed', 'the parent to fail');
    const c = await jobs.enqueue('bad', {}, { dependsOn: p.id });
    expect(await jobs.get(c.id)).to.deep.include({ state: 'cancelled' });
    await jobs.stop();
  });

  it('onSuccess and onFailure are enqueued when the job finishes, once, with the job as ctx.parents', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    const calls: { name: string; payload: unknown; parents: readonly JobParent[] }[] = [];
    jobs.define('work', async (p: { ok: boolean }) => {
      if (!p.ok) throw new Error('work failed');
      return { total: 3 };
    });
    for (const name of ['notify', 'alert']) {
      jobs.define(name, async (payload: unknown, ctx: JobContext) => {
        calls.push({ name, payload, parents: ctx.parents });
      });
    }
    await jobs.start();
    const ok = await jobs.enqueue('work', { ok: true }, { onSuccess: { name: 'notify', payload: { to: 'ops' }, userId: 'u1' }, onFailure: 'alert' });
    const bad = await jobs.enqueue('work', { ok: false }, { maxAttempts: 2, backoff: { type: 'fixed', baseMs: 10 }, onSuccess: 'notify', onFailure: 'alert' });
    await until(async () => calls.length >= 2, 'both callbacks to run');
    await new Promise((r) => setTimeout(r, 300));
    expect(calls).to.have.length(2);
    const notify = calls.find((c) => c.name === 'notify')!;
    expect(notify.payload).to.deep.equal({ to: 'ops' });
    expect(notify.parents.map((p) => ({ id: p.id, state: p.state, result: p.result }))).to.deep.equal([{ id: ok.id, state: 'completed', result: { total: 3 } }]);
    const alert = calls.find((c) => c.name === 'alert')!;
    expect(alert.parents.map((p) => ({ id: p.id, state: p.state }))).to.deep.equal([{ id: bad.id, state: 'failed' }]);
    expect(alert.parents[0].error?.message).to.equal('work failed');
    const callbacks = await jobs.list({ name: 'notify', states: ['completed'] });
    expect(callbacks.items[0]).to.deep.include({ userId: 'u1' });
    await jobs.stop();
  });

  it('a callback\'s own callbacks and dead letter run in turn, a batch callback\'s too (they were stored but never enqueued)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, queues: ['default'] } }); // the dead letter waits in its queue
    const ran: string[] = [];
    jobs.define('step', async (p: { note: string; fail?: boolean }) => {
      ran.push(p.note);
      if (p.fail) throw new Error(`${p.note} failed`);
    }, { maxAttempts: 1 });
    await jobs.start();
    await jobs.enqueue('step', { note: 'root' }, {
      onSuccess: { name: 'step', payload: { note: 'cb' }, onSuccess: { name: 'step', payload: { note: 'cb of cb' } } },
    });
    await jobs.enqueue('step', { note: 'root 2' }, {
      onSuccess: { name: 'step', payload: { note: 'failing cb', fail: true }, onFailure: { name: 'step', payload: { note: 'its onFailure' } }, deadLetter: 'dead' },
    });
    await jobs.batch([{ name: 'step', payload: { note: 'in batch' } }], {
      onComplete: { name: 'step', payload: { note: 'batch done' }, onSuccess: { name: 'step', payload: { note: 'after batch done' } } },
    });
    const expected = ['root', 'cb', 'cb of cb', 'root 2', 'failing cb', 'its onFailure', 'in batch', 'batch done', 'after batch done'];
    await until(() => expected.every((n) => ran.includes(n)), `all of ${expected.join(', ')} to run (ran: ${ran.join(', ')})`, 8_000);
    await jobs.stop();
    expect([...ran].sort()).to.deep.equal([...expected].sort());
    const dead = await jobs.list({ queue: 'dead', includePayload: true });
    expect(dead.items.map((j) => j.payload), 'the failing callback\'s dead-letter copy').to.deep.equal([{ note: 'failing cb', fail: true }]);
  });

  it('onFailure runs for a cancelled job (pending or running), and for its cancelled dependents', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const p = await jobs.enqueue('slow', {}, { delay: 3_600_000, onFailure: { name: 'cleanup', payload: 'parent' } });
    const c = await jobs.enqueue('slow', {}, { dependsOn: p.id, onFailure: { name: 'cleanup', payload: 'child' } });
    expect(await jobs.cancel(p.id)).to.equal(true);
    expect((await jobs.get(c.id))?.state).to.equal('cancelled');
    const cleanups = await jobs.list({ name: 'cleanup', includePayload: true });
    expect(cleanups.items.map((j) => j.payload).sort()).to.deep.equal(['child', 'parent']);
  });

  it('deleting a pending parent cancels its dependents and counts in its batch; retention prunes edges and finished batches', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false, retentionDays: 1 } as never);
    const { batchId, ids } = await jobs.batch([{ name: 'p', payload: 1, delay: 3_600_000 }, { name: 'c', payload: 2, dependsOn: 0 }], { onComplete: 'after' });
    expect(await jobs.delete(ids[0])).to.equal(true);
    const child = await jobs.get(ids[1]);
    expect(child?.state).to.equal('cancelled');
    expect(child?.error?.message).to.include(ids[0]);
    expect(await jobs.batchStatus(batchId)).to.deep.include({ total: 1, cancelled: 1, finished: true });
    expect((await jobs.list({ name: 'after' })).items, 'the batch callback').to.have.length(1);
    // Finished long ago: the prune takes the jobs, their edges and the batch.
    await t.query(`UPDATE ${t.prefix}history SET finished_at = created_at - ${t.dialect === 'sqlite' ? 3 * 86_400_000 : t.dialect === 'postgres' ? "interval '3 days'" : 'INTERVAL 3 DAY'}`);
    await t.query(`UPDATE ${t.prefix}batches SET finished_at = created_at - ${t.dialect === 'sqlite' ? 3 * 86_400_000 : t.dialect === 'postgres' ? "interval '3 days'" : 'INTERVAL 3 DAY'}`);
    const { store } = jobs;
    expect(await store.historyPrune({ olderThanMs: 86_400_000, limit: 100 })).to.equal(1);
    await store.retentionLeftoversPrune(86_400_000); // the round's end
    for (const table of ['deps', 'batches']) {
      expect(Number((await t.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.prefix}${table}`))[0].n), table).to.equal(0);
    }
  });

  it('retention keeps a finished job a live job still reads (a dependent not run yet, a batch not finished) and prunes it once none does', async () => {
    const t = await fresh();
    const jobs = t.jobs({ retentionDays: 1, worker: { pollInterval: 60_000 } });
    jobs.define('p', async () => ({ made: 'by p' }));
    const parent = (await jobs.enqueue('p', 1)).id;
    const plain = (await jobs.enqueue('p', 2)).id;
    const { batchId, ids: [ranInBatch, waitsInBatch] } = await jobs.batch([{ name: 'p', payload: 3 }, { name: 'p', payload: 4, delay: 3_600_000 }]);
    await jobs.drain();
    // Its parent completed: the dependent is pending, and reads the parent's result when it runs.
    const dependent = (await jobs.enqueue('c', 5, { dependsOn: [parent] })).id;
    const back = t.dialect === 'sqlite' ? 3 * 86_400_000 : t.dialect === 'postgres' ? "interval '3 days'" : 'INTERVAL 3 DAY';
    await t.query(`UPDATE ${t.prefix}history SET finished_at = finished_at - ${back}`);
    const { store } = jobs;
    expect(await store.historyPrune({ olderThanMs: 86_400_000, limit: 100 }), 'only the job nothing reads').to.equal(1);
    expect(await jobs.get(plain)).to.equal(null);
    expect((await jobs.get(parent))?.state).to.equal('completed');
    expect((await jobs.get(ranInBatch))?.state).to.equal('completed');
    expect(await jobs.batchStatus(batchId)).to.deep.include({ total: 2, completed: 1, finished: false });
    // Once the dependent is gone and the batch finished, both go.
    expect(await jobs.delete(dependent)).to.equal(true);
    expect(await jobs.cancel(waitsInBatch)).to.equal(true);
    expect(await store.historyPrune({ olderThanMs: 86_400_000, limit: 100 })).to.equal(2);
    await store.retentionLeftoversPrune(86_400_000); // the round's end
    expect(await jobs.get(parent)).to.equal(null);
    expect(await jobs.get(ranInBatch)).to.equal(null);
    expect((await jobs.get(waitsInBatch))?.state, 'finished just now: within the retention').to.equal('cancelled');
  });

  it('refuses a callback that is not a job name or spec, or that sets tx, dependsOn, serial or refId, or an unknown option (naming the ones it takes)', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    for (const [opts, field] of [
      [{ onSuccess: 42 }, 'onSuccess'],
      [{ onFailure: { payload: 1 } }, 'onFailure.name'],
      [{ onSuccess: { name: 'n', dependsOn: [] } }, 'onSuccess.dependsOn'],
      [{ onSuccess: { name: 'n', bogus: 1 } }, 'onSuccess.bogus'],
      [{ onFailure: { name: 'n', refId: 'r1' } }, 'onFailure.refId'],
      [{ onSuccess: { name: 'n', serial: 'k' } }, 'onSuccess.serial'],
    ] as const) {
      await jobs.enqueue('x', {}, opts as never).then(
        () => expect.fail(`${JSON.stringify(opts)} should be refused`),
        (err) => {
          expect(err, JSON.stringify(opts)).to.be.instanceOf(JobValidationError);
          expect(err.field).to.equal(field);
          // The options a callback takes, not the enqueue's (tx and dependsOn were listed as allowed).
          if (field === 'onSuccess.bogus') expect(err.message).to.match(/allowed: .*priority/).and.not.match(/\btx\b|dependsOn|refId/);
        },
      );
    }
  });

  it('a batch enqueues exactly one callback per option when its last job finishes; batchStatus counts its jobs', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, concurrency: 5 } });
    const seen: { name: string; batch: unknown; id: string }[] = [];
    jobs.define('item', async (n: number) => {
      if (n === 3) throw new Error('three');
      return n * 2;
    });
    for (const name of ['all-done', 'all-ok', 'some-failed']) {
      jobs.define(name, async (_p: unknown, ctx: JobContext) => {
        seen.push({ name, batch: ctx.batch, id: ctx.id });
      });
    }
    const items = Array.from({ length: 8 }, (_, n) => ({ name: 'item', payload: n, maxAttempts: 1 }));
    const { batchId, ids } = await jobs.batch(items, { onComplete: 'all-done', onSuccess: 'all-ok', onFailure: { name: 'some-failed', payload: { why: 'x' } } });
    expect(ids).to.have.length(8);
    expect(await jobs.batchStatus(batchId)).to.deep.include({ batchId, total: 8, pending: 8, finished: false });
    await jobs.start();
    await until(async () => seen.length >= 2, 'the batch callbacks');
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.map((s) => s.name).sort()).to.deep.equal(['all-done', 'some-failed']);
    const status = await jobs.batchStatus(batchId);
    expect(status).to.deep.include({ total: 8, pending: 0, running: 0, completed: 7, failed: 1, cancelled: 0, finished: true });
    expect(seen[0].batch).to.deep.include({ batchId, total: 8, completed: 7, failed: 1, finished: true });
    // The job each callback enqueued, by option (none for onSuccess, whose condition did not hold).
    const ran = Object.fromEntries(seen.map((s) => [s.name, s.id]));
    expect(status!.callbackJobs).to.deep.equal({ onComplete: ran['all-done'], onFailure: ran['some-failed'] });
    expect(await jobs.batchStatus('no-such-batch')).to.equal(null);
    await jobs.stop();
  });

  it('batchSync: on SQLite the batch joins the app\'s db.transaction() (rolled back with it, or its callback fires once); elsewhere it is refused', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20 } });
    const callbacks: (BatchStatus | null)[] = [];
    jobs.define('item', async (n: number) => n);
    jobs.define('all-ok', async (_p: unknown, ctx: JobContext) => void callbacks.push(ctx.batch));
    const items = [{ name: 'item', payload: 1 }, { name: 'item', payload: 2, dependsOn: 0 }];
    if (t.dialect !== 'sqlite') {
      expect(() => jobs.batchSync(items, { onSuccess: 'all-ok' })).to.throw(/batchSync needs a better-sqlite3 database.*await jobs\.batch/);
      return;
    }
    const db = t.db as Database.Database;
    let lost = '';
    expect(() => db.transaction(() => {
      lost = jobs.batchSync(items, { onSuccess: 'all-ok' }).batchId;
      throw new Error('order declined');
    })()).to.throw('order declined');
    expect(await jobs.batchStatus(lost), 'the rolled-back batch').to.equal(null);
    const kept = db.transaction(() => {
      const first = jobs.enqueueSync('item', 0).id; // a parent enqueued earlier in the same transaction
      return jobs.batchSync([{ name: 'item', payload: 1, dependsOn: first }, ...items], { onSuccess: 'all-ok' });
    })();
    expect(kept.ids).to.have.length(3);
    await jobs.start();
    await until(async () => callbacks.length === 1, 'the batch callback');
    await new Promise((r) => setTimeout(r, 200));
    expect(callbacks).to.have.length(1);
    expect(callbacks[0]).to.deep.include({ batchId: kept.batchId, total: 3, completed: 3, finished: true });
    await jobs.stop();
  });

  it('a failed job of a finished batch, retried and completed, fires onSuccess once; onComplete and onFailure never again', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20 } });
    const seen: string[] = [];
    let failing = true;
    // The retried run waits until the batch has been read unfinished (else it may finish first).
    let release!: () => void;
    const readUnfinished = new Promise<void>((r) => (release = r));
    jobs.define('item', async (n: number) => {
      if (n === 2 && failing) throw new Error('two');
      if (n === 2) await readUnfinished;
      return n;
    });
    const idOf: Record<string, string> = {};
    for (const name of ['done', 'ok', 'bad']) {
      jobs.define(name, async (_p: unknown, ctx: JobContext) => {
        idOf[name] = ctx.id;
        seen.push(name);
      });
    }
    const { batchId, ids } = await jobs.batch([1, 2, 3].map((n) => ({ name: 'item', payload: n, maxAttempts: 1 })), { onComplete: 'done', onSuccess: 'ok', onFailure: 'bad' });
    await jobs.start();
    await until(async () => seen.length === 2, 'the first round of callbacks');
    expect(seen.sort()).to.deep.equal(['bad', 'done']);
    failing = false;
    expect(await jobs.retry(ids[1])).to.equal(true);
    expect(await jobs.batchStatus(batchId)).to.deep.include({ finished: false });
    release();
    await until(async () => seen.length === 3, 'onSuccess after the retry');
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.sort()).to.deep.equal(['bad', 'done', 'ok']);
    // The second firing adds its job beside the first firing's.
    expect(await jobs.batchStatus(batchId)).to.deep.include({ completed: 3, failed: 0, finished: true, callbackJobs: { onComplete: idOf.done, onFailure: idOf.bad, onSuccess: idOf.ok } });
    await jobs.stop();
  });

  it('a batch whose jobs all complete enqueues onSuccess and onComplete, not onFailure; inside a dependent chain too', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, concurrency: 3 } });
    const seen: string[] = [];
    jobs.define('item', async (n: number) => n);
    for (const name of ['all-done', 'all-ok', 'some-failed']) jobs.define(name, async () => void seen.push(name));
    const { batchId } = await jobs.batch(
      [{ name: 'item', payload: 1 }, { name: 'item', payload: 2, dependsOn: 0 }, { name: 'item', payload: 3, dependsOn: [0, 1] }],
      { onComplete: 'all-done', onSuccess: 'all-ok', onFailure: 'some-failed' },
    );
    await jobs.start();
    await until(async () => seen.length >= 2, 'the batch callbacks');
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.sort()).to.deep.equal(['all-done', 'all-ok']);
    expect(await jobs.batchStatus(batchId)).to.deep.include({ completed: 3, finished: true });
    await jobs.stop();
  });

  it('a job that completes while a dependent is enqueued for it still releases the dependent', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20, concurrency: 8 } });
    jobs.define('quick', async () => 'q');
    jobs.define('after', async (_p: unknown, ctx: JobContext) => ctx.parents.length);
    await jobs.start();
    const children: string[] = [];
    for (let i = 0; i < 30; i++) {
      const p = await jobs.enqueue('quick', {});
      children.push((await jobs.enqueue('after', {}, { dependsOn: p.id })).id);
    }
    await until(async () => {
      for (const id of children) if (!done((await jobs.get(id))?.state)) return false;
      return true;
    }, 'every dependent to finish', 20_000);
    for (const id of children) expect((await jobs.get(id))?.state).to.equal('completed');
    await jobs.stop();
  });
});
