/**
 * Why a pending job is not running (lib/admin/held.ts), from its record and its queue's figures:
 * every hold the issue names, each alone and together, without a database.
 */
import { expect } from 'chai';
import { groupHolds, jobHolds, queueHolds, whyHeld, workerHolds, type QueueNow } from '../../lib/admin/held.ts';
import { waiting } from '../../lib/admin/present.ts';

const NOW = Date.UTC(2026, 11, 4, 12);
const PAST = new Date(NOW - 1000);

function job(over: Partial<Parameters<typeof whyHeld>[0]> = {}): Parameters<typeof whyHeld>[0] {
  return { name: 'send', queue: 'mail', state: 'pending', waitingFor: 0, serialKey: null, reservedUntil: null, runAt: PAST, group: null, ...over };
}

function queue(over: Partial<QueueNow> = {}): QueueNow {
  return { queue: 'mail', paused: false, settings: null, running: 0, starts: null, groups: new Map(), ...over };
}

const limits = (over: Partial<NonNullable<QueueNow['settings']>>) => ({ concurrency: null, groupConcurrency: null, rateLimit: null, ...over });
const kinds = (holds: { kind: string }[]) => holds.map((h) => h.kind);

describe('admin: why a pending job is not running', () => {
  it('nothing holds a due job in a queue without limits, nor a job that is not pending', () => {
    expect(whyHeld(job(), queue(), { now: NOW })).to.deep.equal([]);
    expect(whyHeld(job({ state: 'running' }), queue({ paused: true }), { now: NOW })).to.deep.equal([]);
    expect(whyHeld(job({ state: 'completed', waitingFor: 2 }), queue(), { now: NOW })).to.deep.equal([]);
  });

  it('no live worker claims it: none running, none with its name (a misspelt name), none on its queue; held or not yet due, it says so too', () => {
    const mail = { names: ['send', 'bounce'], queues: ['mail'] };
    expect(whyHeld(job(), queue(), { now: NOW, workers: [mail] })).to.deep.equal([]);
    expect(whyHeld(job(), queue(), { now: NOW, workers: [{ names: ['send'], queues: null }] })).to.deep.equal([]);
    expect(whyHeld(job(), queue(), { now: NOW, workers: [] })).to.deep.equal([{ kind: 'noWorker', text: 'no worker is running' }]);
    expect(whyHeld(job({ name: 'sendReceipt' }), queue(), { now: NOW, workers: [mail, { names: ['resize'], queues: null }] })).to.deep.equal([
      { kind: 'noWorker', text: 'no live worker has a handler for "sendReceipt" (they handle: bounce, resize, send)' },
    ]);
    expect(workerHolds({ name: 'send', queue: 'bulk' }, [mail])).to.deep.equal([
      { kind: 'noWorker', text: 'no live worker claims from queue bulk; those handling "send" claim from mail' },
    ]);
    expect(kinds(whyHeld(job({ runAt: new Date(NOW + 60_000) }), queue({ paused: true }), { now: NOW, workers: [] }))).to.deep.equal(['paused', 'noWorker']);
  });

  it('a paused queue holds every pending job, due or not', () => {
    expect(whyHeld(job(), queue({ paused: true }), { now: NOW })).to.deep.equal([{ kind: 'paused', text: 'queue mail is paused' }]);
    expect(kinds(whyHeld(job({ runAt: new Date(NOW + 60_000) }), queue({ paused: true }), { now: NOW }))).to.deep.equal(['paused']);
  });

  it('the queue at its concurrency', () => {
    const q = queue({ settings: limits({ concurrency: 3 }), running: 3 });
    expect(whyHeld(job(), q, { now: NOW })).to.deep.equal([{ kind: 'concurrency', text: 'queue mail is at its concurrency: 3 of 3 running' }]);
    expect(whyHeld(job(), { ...q, running: 2 }, { now: NOW })).to.deep.equal([]);
  });

  it("the job's group at its groupConcurrency; another group, or a job without one, is not held", () => {
    const q = queue({ settings: limits({ groupConcurrency: 2 }), running: 2, groups: new Map([['acme', { running: 2, starts: null }]]) });
    expect(whyHeld(job({ group: 'acme' }), q, { now: NOW })).to.deep.equal([{ kind: 'groupConcurrency', text: 'group acme is at its groupConcurrency: 2 of 2 running' }]);
    expect(whyHeld(job({ group: 'other' }), q, { now: NOW })).to.deep.equal([]);
    expect(whyHeld(job(), q, { now: NOW })).to.deep.equal([]);
  });

  it('the rate window full: for the queue, or (per group) for the job\'s group only', () => {
    const perQueue = queue({ settings: limits({ rateLimit: { limit: 10, intervalMs: 1000, per: 'queue' } }), starts: 10 });
    expect(whyHeld(job({ group: 'acme' }), perQueue, { now: NOW })).to.deep.equal([{ kind: 'rateLimit', text: 'rate window full: 10 of 10 starts in the last 1000 ms' }]);
    expect(whyHeld(job(), { ...perQueue, starts: 9 }, { now: NOW })).to.deep.equal([]);
    const perGroup = queue({
      settings: limits({ rateLimit: { limit: 5, intervalMs: 60_000, per: 'group' } }), starts: 7,
      groups: new Map([['acme', { running: 0, starts: 5 }], ['small', { running: 0, starts: 2 }]]),
    });
    expect(whyHeld(job({ group: 'acme' }), perGroup, { now: NOW })).to.deep.equal([{ kind: 'rateLimit', text: 'rate window of group acme full: 5 of 5 starts in the last 60000 ms' }]);
    expect(whyHeld(job({ group: 'small' }), perGroup, { now: NOW })).to.deep.equal([]);
    // The claim does not count jobs without a group against a rate limit per group.
    expect(whyHeld(job(), perGroup, { now: NOW })).to.deep.equal([]);
  });

  it('every limit at once, the queue\'s first', () => {
    const q = queue({
      paused: true, settings: limits({ concurrency: 1, groupConcurrency: 1, rateLimit: { limit: 1, intervalMs: 10, per: 'queue' } }), running: 1, starts: 1,
      groups: new Map([['g', { running: 1, starts: 1 }]]),
    });
    expect(kinds(whyHeld(job({ group: 'g' }), q, { now: NOW }))).to.deep.equal(['paused', 'concurrency', 'rateLimit', 'groupConcurrency']);
  });

  it('limits do not hold a job that is not due yet (it is simply scheduled)', () => {
    const q = queue({ settings: limits({ concurrency: 1 }), running: 5 });
    expect(whyHeld(job({ runAt: new Date(NOW + 1) }), q, { now: NOW })).to.deep.equal([]);
  });

  it('a reservation: "reserved" until committed, whatever the queue allows (limits only count due jobs)', () => {
    const reserved = job({ waitingFor: 1, reservedUntil: new Date(NOW + 60_000), runAt: new Date(Date.UTC(9999, 11, 31)) });
    const q = queue({ settings: limits({ concurrency: 1 }), running: 1 });
    expect(whyHeld(reserved, q, { now: NOW })).to.deep.equal([{ kind: 'reserved', text: 'reserved: it runs once committed (jobs.commitReserved)' }]);
  });

  it('its parents: "N of M" with its links, "N parents" without', () => {
    const child = job({ waitingFor: 2, runAt: new Date(Date.UTC(9999, 11, 31)) });
    expect(whyHeld(child, queue(), { now: NOW, parents: { total: 3, left: 2 } })).to.deep.equal([{ kind: 'parents', text: 'waiting for 2 of 3 parents' }]);
    expect(jobHolds(child)).to.deep.equal([{ kind: 'parents', text: 'waiting for 2 parents' }]);
    expect(waiting(child)).to.equal('waiting for 2 parents');
  });

  it('its serial key: the job before it, told from its parents by its links', () => {
    const next = job({ waitingFor: 1, serialKey: 'acct-7' });
    expect(jobHolds(next, { total: 0, left: 0 })).to.deep.equal([{ kind: 'serial', text: 'waiting for the job before it on serial key acct-7 to finish' }]);
    // Both: one parent left, and the serial predecessor.
    expect(kinds(jobHolds({ ...next, waitingFor: 2 }, { total: 1, left: 1 }))).to.deep.equal(['parents', 'serial']);
    // Without its links the record cannot tell them apart, and says so.
    expect(jobHolds(next)).to.deep.equal([{ kind: 'serial', text: 'waiting for 1 earlier job to finish (its parents, or the one before it on serial key acct-7)' }]);
  });

  it('a reserved job on a serial key behind another: both holds, in order', () => {
    const held = job({ waitingFor: 2, serialKey: 'k', reservedUntil: new Date(NOW) });
    expect(kinds(jobHolds(held, { total: 0, left: 0 }))).to.deep.equal(['reserved', 'serial']);
    expect(waiting(held)).to.equal('reserved: it runs once committed (jobs.commitReserved); waiting for 1 earlier job to finish (its parents, or the one before it on serial key k)');
  });

  it('the queue\'s and a group\'s holds alone, for the queue page', () => {
    const q = queue({ settings: limits({ concurrency: 2, groupConcurrency: 1 }), running: 2, groups: new Map([['a', { running: 1, starts: null }]]) });
    expect(kinds(queueHolds(q))).to.deep.equal(['concurrency']);
    expect(kinds(groupHolds(q, 'a'))).to.deep.equal(['groupConcurrency']);
    expect(groupHolds(q, 'b')).to.deep.equal([]);
    expect(groupHolds(q, null)).to.deep.equal([]);
    expect(groupHolds(queue(), 'a')).to.deep.equal([]);
  });
});
