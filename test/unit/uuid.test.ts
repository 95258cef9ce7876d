/** Job ids: UUIDv7 text whose order is creation order (list() and the keyset cursors rely on it). */
import { expect } from 'chai';
import { uuidv7 } from '../../lib/uuid.ts';

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix milliseconds in an id's first 48 bits. */
function millisOf(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

// The generator keeps the last millisecond for the whole process (ids never go back in time), and
// every test file runs in one process: these tests pass times at most a moment ahead of the clock.
describe('uuidv7', () => {
  it('is version 7, variant 10, lower-case hex with dashes, and carries the time it was made', () => {
    const at = Date.now() + 20;
    const id = uuidv7(at);
    expect(id).to.match(FORMAT);
    expect(millisOf(id)).to.equal(at);
  });

  it('ids made one after another sort in that order, also past 4,096 in one millisecond and with a clock that steps back', () => {
    const base = Date.now() + 40;
    const ids: string[] = [];
    for (let i = 0; i < 10_000; i++) ids.push(uuidv7(base)); // borrows the next milliseconds
    for (let i = 0; i < 100; i++) ids.push(uuidv7(base - 5_000)); // the clock stepped back
    for (let i = 0; i < 100; i++) ids.push(uuidv7(base + 60));
    for (const id of ids) expect(id).to.match(FORMAT);
    expect([...ids].sort()).to.deep.equal(ids);
    expect(new Set(ids).size).to.equal(ids.length);
    expect(millisOf(ids[0])).to.equal(base);
    expect(millisOf(ids[9_999]), '10,000 ids borrow three milliseconds').to.equal(base + 2);
    expect(millisOf(ids.at(-1)!)).to.equal(base + 60);
  });

  it('the random part differs between ids of one millisecond', () => {
    const at = Date.now() + 100;
    const tails = new Set(Array.from({ length: 1000 }, () => uuidv7(at).slice(20)));
    expect(tails.size).to.equal(1000);
  });
});
