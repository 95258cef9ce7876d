/**
 * The worker's sets of attempts (lib/worker/attempts.ts): membership by the attempt itself, not
 * its job id, each set with its own slot field, removal while iterating. Why they are arrays and
 * not a Map/Set is a memory figure (bench/measure.ts prints the old generation's growth).
 */
import { expect } from 'chai';
import { AttemptSet } from '../../lib/worker/attempts.ts';
import type { RunningAttempt } from '../../lib/worker/executor.ts';

/** What the sets read of an attempt: its job id and their slot fields. */
function attempt(id: string): RunningAttempt {
  return { id, runningSlot: -1, unsettledSlot: -1 } as unknown as RunningAttempt;
}

describe('worker: AttemptSet', () => {
  it('adds, finds and removes attempts by identity; a removed attempt is gone from iteration', () => {
    const set = new AttemptSet('runningSlot');
    const [a, b, c] = [attempt('a'), attempt('b'), attempt('c')];
    for (const x of [a, b, c]) set.add(x);
    set.add(b);
    expect(set.size).to.equal(3);
    expect(set.delete(b)).to.equal(true);
    expect(set.delete(b)).to.equal(false);
    expect(set.has(b)).to.equal(false);
    expect([...set].map((x) => x.id).sort()).to.deep.equal(['a', 'c']);
    set.add(b);
    expect([...set].map((x) => x.id).sort()).to.deep.equal(['a', 'b', 'c']);
  });

  it('two attempts of one job are two members: removing one leaves the other', () => {
    const set = new AttemptSet('runningSlot');
    const [first, second] = [attempt('job'), attempt('job')];
    set.add(first);
    set.add(second);
    expect(set.size).to.equal(2);
    expect(set.count((x) => x.id === 'job')).to.equal(2);
    expect(set.delete(first)).to.equal(true);
    expect(set.has(second)).to.equal(true);
    expect([...set]).to.deep.equal([second]);
    expect(set.count((x) => x.id === 'job')).to.equal(1);
  });

  it('an attempt is in a running set and an unsettled set at once, each keeping its own slot', () => {
    const running = new AttemptSet('runningSlot');
    const unsettled = new AttemptSet('unsettledSlot');
    const [a, b] = [attempt('a'), attempt('b')];
    running.add(a);
    unsettled.add(b);
    unsettled.add(a);
    running.delete(a);
    expect(unsettled.has(a)).to.equal(true);
    expect(running.has(a)).to.equal(false);
    expect(unsettled.delete(b)).to.equal(true);
    expect([...unsettled]).to.deep.equal([a]);
  });

  it('members removed while iterating: each is visited once and all are gone', () => {
    const set = new AttemptSet('unsettledSlot');
    const all = Array.from({ length: 50 }, (_, i) => attempt(`j${i}`));
    for (const x of all) set.add(x);
    const seen: string[] = [];
    for (const x of set) {
      seen.push(x.id);
      set.delete(x);
    }
    expect(seen.sort()).to.deep.equal(all.map((x) => x.id).sort());
    expect(set.size).to.equal(0);
    expect([...set]).to.deep.equal([]);
  });

  it('a slot freed below the high-water mark is reused, and a removed attempt is no longer a member after its slot moved', () => {
    const set = new AttemptSet('runningSlot');
    const all = Array.from({ length: 10 }, (_, i) => attempt(`j${i}`));
    for (const x of all) set.add(x);
    for (const x of all.slice(0, 9)) set.delete(x);
    const later = attempt('later');
    set.add(later);
    expect(later.runningSlot).to.equal(1);
    expect(all[9].runningSlot).to.equal(0);
    for (const x of all.slice(0, 9)) expect(set.has(x), x.id).to.equal(false);
    expect([...set].map((x) => x.id)).to.deep.equal(['j9', 'later']);
  });
});
