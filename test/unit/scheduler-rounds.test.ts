/** The scheduler's rounds fall just past each whole second, where ticks are due, whenever it was started. */
import { expect } from 'chai';
import { Scheduler } from '../../lib/schedule/scheduler.ts';
import type { ScheduleStore } from '../../lib/driver/store.ts';

describe('scheduler rounds', () => {
  it('started half way through a second, its later rounds look within 15–150 ms past each whole second (12: a timer fires early by a millisecond or two)', async function () {
    this.timeout(10_000);
    const phases: number[] = [];
    const store = {
      scheduleListDue: async () => {
        phases.push(Date.now() % 1000);
        return { now: Date.now(), due: [] };
      },
    } as unknown as ScheduleStore;
    const scheduler = new Scheduler(store, {
      row: () => { throw new Error('no tick is due'); },
      previousRunLive: async () => false,
      previousRunEndedAt: async () => null,
      leads: () => true,
      fired: () => undefined,
      error: (err) => { throw err; },
    });
    while (Date.now() % 1000 < 400 || Date.now() % 1000 > 600) await new Promise((r) => setTimeout(r, 5));
    scheduler.start();
    await new Promise((r) => setTimeout(r, 3_200));
    await scheduler.stop();
    expect(phases.length, 'rounds: at start, then one per second').to.be.within(4, 5);
    // Armed for 15 ms past the second; Node's timers may fire a millisecond or two early by Date.now() (14 seen under load).
    for (const phase of phases.slice(1)) expect(phase, 'ms past the whole second').to.be.within(12, 150);
  });
});
