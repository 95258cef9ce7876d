/**
 * Workflows (issue 13) across separate worker processes: what only several processes finishing
 * jobs at the same moment, or a process killed between its handler and its write, can prove.
 * Each execution is a row in <prefix>wf_exec (no unique key) with its start and end read from the
 * database clock (test/fixtures/workflow-process.ts, test/helpers/exec-log.ts); every timing claim is checked on those.
 */
import { expect } from 'chai';
import { PROCESS_DIALECTS, forEachDialect, until } from '../helpers/dialects.ts';
import { openExecLog, type Exec } from '../helpers/exec-log.ts';
import type { EnqueueManyItem, EnqueueResult, JobMap } from '../../lib/index.ts';

forEachDialect('workflows across processes', ({ fresh }) => {
  it('a diamond a → {b, c} → d over 3 processes: d starts after b and c ended, and sees both results in dependsOn order', async function () {
    this.timeout(60_000);
    const lab = await openExecLog(this, fresh);
    const { t, jobs } = lab;
    // b runs only in the first process, c only in the second (their queues); a and d anywhere.
    const workers = await Promise.all(
      ['default,q-b', 'default,q-c', 'default'].map((queues) => lab.spawn({ POLL: 20, CONCURRENCY: 2, QUEUES: queues })),
    );
    await Promise.all(workers.map((w) => w.waitFor(/^ready$/, 30_000)));
    const N = 8;
    const items: EnqueueManyItem<JobMap>[] = [];
    for (let i = 0; i < N; i++) {
      const at = items.length;
      items.push(
        { name: 'a', payload: { tag: `a${i}`, sleep: [0, 10] } },
        { name: 'b', payload: { tag: `b${i}`, sleep: [20, 100] }, dependsOn: at, queue: 'q-b' },
        { name: 'c', payload: { tag: `c${i}`, sleep: [20, 100] }, dependsOn: at, queue: 'q-c' },
        // dependsOn order is c, b for odd diamonds: ctx.parents follows it, not the order of enqueue.
        { name: 'd', payload: { tag: `d${i}` }, dependsOn: i % 2 ? [at + 2, at + 1] : [at + 1, at + 2] },
      );
    }
    const ids = (await jobs.enqueueMany(items)).map((r) => r.id);
    await until(async () => (await lab.count(`SELECT COUNT(*) AS n FROM ${t.prefix}history WHERE state = 'completed'`)) === 4 * N, 'every diamond to complete', 40_000, 50);
    await lab.stop(workers);

    const log = await lab.execs();
    expect(log, 'one execution per job').to.have.length(4 * N);
    expect(new Set(log.map((e) => e.jobId))).to.deep.equal(new Set(ids));
    const byId = new Map(log.map((e) => [e.jobId, e]));
    let third = 0;
    for (let i = 0; i < N; i++) {
      const [a, b, c, d] = ids.slice(4 * i, 4 * i + 4).map((id) => byId.get(id)!);
      expect(b.start, `b${i} starts after a${i} ended`).to.be.at.least(a.end!);
      expect(c.start, `c${i} starts after a${i} ended`).to.be.at.least(a.end!);
      expect(d.start, `d${i} starts after b${i} and c${i} ended (database clock)`).to.be.at.least(Math.max(b.end!, c.end!));
      const order = i % 2 ? [c, b] : [b, c];
      expect(d.info!.parents, `d${i}'s ctx.parents`).to.deep.equal(
        order.map((p) => ({ id: p.jobId, name: p.name, state: 'completed', result: { name: p.name, tag: `${p.name}${i}`, pid: p.pid } })),
      );
      expect([b.pid, c.pid], `b${i} and c${i} ran in two processes`).to.deep.equal([workers[0].pid, workers[1].pid]);
      if (d.pid !== b.pid && d.pid !== c.pid) third++;
    }
    console.log(`      diamonds whose d ran in a third process: ${third} of ${N}`);
  });

  it('a failing parent (maxAttempts 1) cancels 3 levels of dependents over 3 processes; each names its parent, none ever ran', async function () {
    this.timeout(60_000);
    const lab = await openExecLog(this, fresh);
    const { t, jobs } = lab;
    const workers = await lab.spawnReady(3, { POLL: 20, CONCURRENCY: 2 });
    // Per tree: root → x1, x2; x1 → y1; x2 → y2; {x1, x2} → y3; {y1, y2} → z1; y3 → z2.
    const shape: (number | number[] | null)[] = [null, 0, 0, 1, 2, [1, 2], [3, 4], 5];
    const TREES = 6; // the last one's root succeeds: the control, whose dependents all run
    const items: EnqueueManyItem<JobMap>[] = [];
    for (let tree = 0; tree < TREES; tree++) {
      const at = items.length;
      const fail = tree < TREES - 1;
      for (const [k, parents] of shape.entries()) {
        if (parents === null) items.push({ name: 'root', payload: { tag: `r${tree}`, sleep: [50, 100], fail }, maxAttempts: 1 });
        else items.push({ name: 'dep', payload: { tag: `${tree}.${k}` }, dependsOn: Array.isArray(parents) ? parents.map((p) => at + p) : at + parents });
      }
    }
    const ids = (await jobs.enqueueMany(items)).map((r) => r.id);
    const n = shape.length;
    await until(async () => (await lab.count(`SELECT COUNT(*) AS n FROM ${t.prefix}history`)) === TREES * n, 'every job to finish', 40_000, 50);
    await lab.stop(workers);

    const log = await lab.execs();
    const ran = new Map<string, Exec[]>();
    for (const e of log) ran.set(e.jobId, [...(ran.get(e.jobId) ?? []), e]);
    const rootPids = new Set<number>();
    for (let tree = 0; tree < TREES; tree++) {
      const tid = ids.slice(tree * n, tree * n + n);
      const root = await jobs.get(tid[0]);
      expect(ran.get(tid[0]), `root ${tree} ran once`).to.have.length(1);
      rootPids.add(ran.get(tid[0])![0].pid);
      if (tree === TREES - 1) {
        expect(root!.state).to.equal('completed');
        for (const id of tid.slice(1)) {
          expect(ran.get(id), 'a dependent of the control tree ran once').to.have.length(1);
          expect((await jobs.get(id))!.state).to.equal('completed');
        }
        continue;
      }
      expect(root).to.deep.include({ state: 'failed', attempts: 1 });
      for (const [k, parents] of shape.entries()) {
        if (parents === null) continue;
        const id = tid[k];
        expect(ran.get(id), `dependent ${tree}.${k} never ran`).to.equal(undefined);
        const rec = await jobs.get(id);
        expect(rec!.state, `dependent ${tree}.${k}`).to.equal('cancelled');
        const mine = (Array.isArray(parents) ? parents : [parents]).map((p) => tid[p]);
        const named = mine.filter((p) => rec!.error!.message.includes(p));
        expect(named, `dependent ${tree}.${k} names one of its parents: ${rec!.error!.message}`).to.have.length(1);
        const parent = await jobs.get(named[0]);
        expect(rec!.error!.message).to.equal(`cancelled: parent job ${parent!.id} (${parent!.name}) ${parent!.state}`);
        expect(parent!.state).to.equal(k <= 2 ? 'failed' : 'cancelled');
      }
    }
    console.log(`      processes that ran a root: ${rootPids.size}`);
    expect(rootPids.size, 'the roots failed in several processes').to.be.at.least(2);
  });

  it('a worker SIGKILLed right after its handler returned: the callback is enqueued exactly once and the parent completes', async function () {
    this.timeout(60_000);
    const lab = await openExecLog(this, fresh);
    const { t, jobs } = lab;
    const timing = { HEARTBEAT: 200, STALL: 1500, POLL: 50 };
    // Victims, each alone on its queue, each killed at a different point after its handler returned:
    //  - "return":   at once on the line it prints as the handler returns (its write may be under way, or done);
    //  - "held":     the same, its completion held back in the process (killed before anything was written);
    //  - "move":     inside the completion's transaction, as it is about to move the job to history;
    //  - "callback": inside the completion's transaction, as it is about to insert the callback;
    //  - "after":    on its 'completed' event (the completion and the callback committed).
    // An implementation that enqueued the callback in a transaction of its own would leave two
    // callbacks (committed before the completion: "move") or none (after it: "callback").
    const victims = await lab.spawnVictims([
      { queue: 'v-return', env: {}, killOn: 'returning' },
      { queue: 'v-held', env: { HOLD_COMPLETE: 30_000 }, killOn: 'holding' },
      { queue: 'v-move', env: { PAUSE_AT: `INSERT INTO ${t.prefix}history \\(` }, killOn: 'paused' },
      { queue: 'v-callback', env: { PAUSE_AT: `INSERT INTO ${t.prefix}jobs \\(` }, killOn: 'paused' },
      { queue: 'v-after', env: {}, killOn: 'completed' },
    ], timing);
    const parents: EnqueueResult[] = [];
    for (const v of victims) {
      parents.push(
        await jobs.enqueue('parent', { tag: v.queue, announce: true }, {
          queue: v.queue,
          onSuccess: { name: 'note', queue: 'cb', payload: { tag: v.queue } },
          onFailure: { name: 'note', queue: 'cb', payload: { tag: `${v.queue} failed` } },
        }),
      );
    }
    await Promise.all(victims.map((v) => v.killed));
    await Promise.all(victims.map((v) => v.proc.exited));
    for (const v of victims) expect(v.proc.lines.some((l) => l.startsWith('returning ')), `${v.queue}: its handler returned`).to.equal(true);

    // Two other processes rescue whatever was left running and run the callbacks.
    const rescuers = await lab.spawnReady(2, { ...timing, QUEUES: [...victims.map((v) => v.queue), 'cb'].join(',') });
    await until(async () => (await lab.rowsNamed('note')).filter((r) => r.state === 'completed').length >= victims.length, 'every callback to complete', 20_000, 50);
    await lab.stop(rescuers);

    const notes = await lab.rowsNamed('note');
    const log = await lab.execs();
    for (const [i, v] of victims.entries()) {
      const parent = await jobs.get(parents[i].id);
      expect(parent!.state, `${v.queue}: the parent completed`).to.equal('completed');
      const edges = await lab.query<{ child_id: string }>(`SELECT child_id FROM ${t.prefix}deps WHERE parent_id = $1`, [parents[i].id]);
      const mine = notes.filter((n) => edges.some((e) => String(e.child_id) === n.id));
      expect(mine.map((n) => [n.table, n.state]), `${v.queue}: exactly one callback, completed`).to.deep.equal([['history', 'completed']]);
      const runs = log.filter((e) => e.jobId === parents[i].id).sort((x, y) => x.attempt - y.attempt);
      expect(runs[0]).to.include({ attempt: 1, pid: v.proc.pid });
      if (v.queue === 'v-after') {
        expect(parent!.attempts, `${v.queue}: completed by the killed process`).to.equal(1);
        expect(runs).to.have.length(1);
      } else if (v.queue !== 'v-return') {
        // The kill landed before a commit: the job was rescued and ran again in another process.
        expect(parent!.attempts, `${v.queue}: rescued`).to.equal(2);
        expect(runs.map((r) => r.attempt)).to.deep.equal([1, 2]);
        expect(rescuers.map((r) => r.pid)).to.include(runs[1].pid);
      }
      const cb = log.filter((e) => e.jobId === mine[0].id);
      expect(cb, `${v.queue}: the callback ran once`).to.have.length(1);
      expect(cb[0].info!.parents).to.deep.equal([{ id: parents[i].id, name: 'parent', state: 'completed', result: { name: 'parent', tag: v.queue, pid: runs.at(-1)!.pid } }]);
      console.log(`      ${v.queue}: parent completed on attempt ${parent!.attempts}`);
    }
    expect(notes, 'no other callback anywhere').to.have.length(victims.length);
  });

  it('a 1,000-job batch over 3 processes: exactly one onComplete, which sees the batch totals; every process took its share', async function () {
    this.timeout(90_000);
    const lab = await openExecLog(this, fresh);
    const { t, jobs } = lab;
    const workers = await lab.spawnReady(3, { POLL: 20, CONCURRENCY: 10 });
    const N = 1000;
    // One job waits at the gate until every other one finished: it is the batch's last to finish
    // however the jobs were claimed. Until it does, no onComplete may exist.
    const { batchId, ids } = await jobs.batch(
      Array.from({ length: N }, (_, i) => ({ name: 'item', payload: i === N - 1 ? { tag: i, gate: true } : { tag: i, sleep: [0, 5] } })),
      { onComplete: { name: 'batch-done', payload: { tag: 'done' } } },
    );
    const last = ids[N - 1];
    await until(() => workers.some((w) => w.lines.includes(`waiting ${last}`)), 'the last job to wait at the gate', 60_000, 20);
    await until(async () => (await lab.count(`SELECT COUNT(*) AS n FROM ${t.prefix}history WHERE batch_id = $1`, [batchId])) === N - 1, 'every other job to finish', 80_000, 100);
    expect(await lab.rowsNamed('batch-done'), 'no onComplete while a job of the batch runs').to.deep.equal([]);
    expect(await jobs.batchStatus(batchId)).to.deep.include({ running: 1, completed: N - 1, finished: false });
    for (const w of workers) w.kill('SIGUSR2');
    await until(async () => (await lab.rowsNamed('batch-done')).some((r) => r.state === 'completed'), 'the onComplete callback to complete', 20_000, 50);
    await lab.stop(workers);

    const done = await lab.rowsNamed('batch-done');
    expect(done.map((r) => [r.table, r.state, r.callback_batch]), 'exactly one onComplete job, in both tables').to.deep.equal([['history', 'completed', batchId]]);
    expect(await jobs.batchStatus(batchId)).to.deep.include({ batchId, total: N, pending: 0, running: 0, completed: N, failed: 0, cancelled: 0, finished: true });
    const log = await lab.execs();
    const items = log.filter((e) => e.name === 'item');
    expect(items, 'one execution per job').to.have.length(N);
    expect(new Set(items.map((e) => e.jobId))).to.deep.equal(new Set(ids));
    const cb = log.filter((e) => e.name === 'batch-done');
    expect(cb, 'the onComplete ran once').to.have.length(1);
    expect(cb[0].info!.batch).to.deep.equal({ total: N, pending: 0, running: 0, completed: N, failed: 0, cancelled: 0, finished: true });
    expect(cb[0].start, 'the onComplete started after the last job ended').to.be.at.least(Math.max(...items.map((e) => e.end!)));
    const perPid = new Map<number, number>();
    for (const e of items) perPid.set(e.pid, (perPid.get(e.pid) ?? 0) + 1);
    console.log(`      jobs per process: ${[...perPid.values()].join(', ')}`);
    expect([...perPid.keys()].sort()).to.deep.equal(workers.map((w) => w.pid).sort());
    // SQLite has one writer for the file: a process's share depends on who wins the write lock
    // (under load one process ran 21 of 1,000), so there every process running some is the claim.
    if (t.dialect !== 'sqlite') for (const [pid, n] of perPid) expect(n, `jobs run by ${pid}`).to.be.at.least(N * 0.15);
  });

  it('two processes finish the last two jobs of a batch (or the two parents of a dependent) at the same moment, 10 times each: one onComplete, one release', async function () {
    this.timeout(60_000);
    const lab = await openExecLog(this, fresh);
    const { t, jobs } = lab;
    // One slot each and nothing claimed ahead: while one process holds a job at the gate, the other
    // job can only run in the other process.
    const workers = await lab.spawnReady(2, { POLL: 20, CONCURRENCY: 1, PREFETCH: 0 });
    /** Both jobs wait at the gate, one in each process; then both are let go in the same instant. */
    const race = async (ids: string[]) => {
      await Promise.all(workers.map((w) => w.waitFor(new RegExp(`^waiting (${ids.join('|')})$`), 15_000))).catch(async (err: Error) => {
        // A worker that claimed both (one started, one held unstarted) would show here as two running jobs under one worker id.
        const rows = await lab.query(`SELECT id, state, worker_id FROM ${t.prefix}jobs WHERE id = $1 OR id = $2`, ids);
        throw new Error(`${err.message}; the two jobs: ${JSON.stringify(rows)}`);
      });
      for (const w of workers) w.kill('SIGUSR2');
    };
    // Each race on its own: a batch whose jobs also had a dependent would have its finishing
    // transactions take turns on that dependent's row lock before they reach the batch's.
    const ROUNDS = 10;
    const batches: { batchId: string; ids: string[] }[] = [];
    const diamonds: { ids: string[]; d: string }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const b = await jobs.batch(
        [0, 1].map((k) => ({ name: 'racer', payload: { tag: `${round}.${k}`, gate: true } })),
        { onComplete: { name: 'race-done', payload: { tag: round } } },
      );
      batches.push(b);
      await race(b.ids);
      await until(async () => (await lab.rowsNamed('race-done')).some((r) => r.callback_batch === b.batchId && r.state === 'completed'), `round ${round}'s onComplete`, 15_000, 20);

      const [x, y, d] = (
        await jobs.enqueueMany([
          { name: 'racer', payload: { tag: `p${round}.0`, gate: true } },
          { name: 'racer', payload: { tag: `p${round}.1`, gate: true } },
          { name: 'd', payload: { tag: `d${round}` }, dependsOn: [0, 1] },
        ])
      ).map((r) => r.id);
      diamonds.push({ ids: [x, y], d });
      await race([x, y]);
      await until(async () => (await jobs.get(d))?.state === 'completed', `round ${round}'s dependent`, 15_000, 20);
    }
    await lab.stop(workers);

    const done = await lab.rowsNamed('race-done');
    const log = await lab.execs();
    const spreads: number[] = [];
    /** The two racers' executions: once each, in two processes. */
    const racers = (round: number, ids: string[]) => {
      const runs = ids.map((id) => log.filter((e) => e.jobId === id));
      expect(runs.map((x) => x.length), `round ${round}: each job ran once`).to.deep.equal([1, 1]);
      const [x, y] = runs.map((x) => x[0]);
      expect(x.pid, `round ${round}: in two processes`).to.not.equal(y.pid);
      spreads.push(Math.abs(x.end! - y.end!));
      return [x, y];
    };
    for (const [round, b] of batches.entries()) {
      expect(done.filter((x) => x.callback_batch === b.batchId).map((x) => x.state), `round ${round}: exactly one onComplete`).to.deep.equal(['completed']);
      racers(round, b.ids);
      expect(await jobs.batchStatus(b.batchId)).to.deep.include({ total: 2, completed: 2, finished: true });
    }
    expect(done, 'no other onComplete').to.have.length(ROUNDS);
    expect(log.filter((e) => e.name === 'race-done'), 'each onComplete ran once').to.have.length(ROUNDS);
    for (const [round, r] of diamonds.entries()) {
      const [x, y] = racers(round, r.ids);
      const d = log.filter((e) => e.jobId === r.d);
      expect(d, `round ${round}: the dependent ran once`).to.have.length(1);
      expect(d[0].start, `round ${round}: the dependent started after both parents ended`).to.be.at.least(Math.max(x.end!, y.end!));
      expect(d[0].info!.parents.map((p) => [p.id, p.state, p.result?.tag])).to.deep.equal([[x.jobId, 'completed', `p${round}.0`], [y.jobId, 'completed', `p${round}.1`]]);
    }
    console.log(`      gap between the two handlers' ends (database clock, ms): ${spreads.join(', ')}`);
  });
}, PROCESS_DIALECTS);
