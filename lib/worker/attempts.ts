/**
 * The attempts a worker holds (running, or not yet settled), in an array where each attempt
 * knows its slot.
 *
 * Why not a Map or Set: when one outgrows or shrinks its hash table, V8 leaves the entries in the
 * table it replaced. Once that table is in the old generation, every attempt it held stays
 * reachable from it until the next full GC, so each scavenge copies and then promotes the
 * attempt with everything it references (job, payload, context, promises). A worker's sets
 * swing between empty and hundreds of attempts, so this happened to nearly every job: on
 * SQLite ~1 KB per job was promoted (20 MB of old generation per 20,000 jobs), though no job
 * lived across two scavenges (issue 17). Here the array only grows to its high-water mark and
 * a removed attempt's slot is overwritten at once, so nothing dead is left reachable.
 */
import type { RunningAttempt } from './executor.ts';

/** Which of the attempt's slot fields a set uses: an attempt can be in one set of each kind, and two sets must never share a field. */
type SlotField = 'runningSlot' | 'unsettledSlot';

export class AttemptSet implements Iterable<RunningAttempt> {
  private readonly slots: (RunningAttempt | undefined)[] = [];
  private used = 0;

  constructor(private readonly field: SlotField) {}

  get size(): number {
    return this.used;
  }

  add(attempt: RunningAttempt): void {
    if (this.has(attempt)) return;
    attempt[this.field] = this.used;
    // Grows only past the high-water mark: below it the slot is reused, never reallocated.
    if (this.used < this.slots.length) this.slots[this.used] = attempt;
    else this.slots.push(attempt);
    this.used++;
  }

  has(attempt: RunningAttempt): boolean {
    const slot = attempt[this.field];
    return slot >= 0 && slot < this.used && this.slots[slot] === attempt;
  }

  /** Removes this attempt (not another attempt of the same job); false if it was not here. */
  delete(attempt: RunningAttempt): boolean {
    if (!this.has(attempt)) return false;
    const slot = attempt[this.field];
    const last = this.slots[--this.used]!;
    this.slots[slot] = last;
    last[this.field] = slot;
    this.slots[this.used] = undefined;
    attempt[this.field] = -1;
    return true;
  }

  /** How many members `test` accepts (no copy: for read-only counts on the worker's paths). */
  count(test: (attempt: RunningAttempt) => boolean): number {
    let n = 0;
    for (let i = 0; i < this.used; i++) if (test(this.slots[i]!)) n++;
    return n;
  }

  *[Symbol.iterator](): Iterator<RunningAttempt> {
    // A copy: callers may remove attempts while they go through them.
    const present = this.slots.slice(0, this.used) as RunningAttempt[];
    yield* present;
  }
}
