/** Schedule arithmetic without a database: DST in two timezones, intervals, missed-tick policies. */
import { expect } from 'chai';
import { buildSchedule, nextFireAfter, ticksToFire } from '../../lib/schedule/schedule.ts';
import { JobValidationError } from '../../lib/model.ts';

const at = (iso: string) => new Date(iso).getTime();
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

describe('schedule arithmetic', () => {
  it('handles the spring gap and the autumn overlap in Europe/Berlin and America/New_York', () => {
    const berlin = buildSchedule('b', '30 2 * * *', undefined, { timezone: 'Europe/Berlin' }, 0);
    // 2026-03-29 02:30 does not exist in Berlin: it runs at 03:00 local (01:00Z), once.
    expect(iso(nextFireAfter(berlin, at('2026-03-28T12:00:00Z')))).to.equal('2026-03-29T01:00:00.000Z');
    expect(iso(nextFireAfter(berlin, at('2026-03-29T01:00:00Z')))).to.equal('2026-03-30T00:30:00.000Z');
    // 2026-10-25 02:30 happens twice in Berlin: it runs once, on the first.
    expect(iso(nextFireAfter(berlin, at('2026-10-24T12:00:00Z')))).to.equal('2026-10-25T00:30:00.000Z');
    expect(iso(nextFireAfter(berlin, at('2026-10-25T00:30:00Z')))).to.equal('2026-10-26T01:30:00.000Z');
    const ny = buildSchedule('n', '30 2 * * *', undefined, { timezone: 'America/New_York' }, 0);
    expect(iso(nextFireAfter(ny, at('2026-03-07T12:00:00Z')))).to.equal('2026-03-08T07:00:00.000Z'); // 03:00 EDT
    expect(iso(nextFireAfter(ny, at('2026-10-31T12:00:00Z')))).to.equal('2026-11-01T07:30:00.000Z'); // 02:30 EST
    // 01:30 happens twice in New York on 2026-11-01 (EDT, then EST): it runs once, on the first.
    const ny130 = buildSchedule('n2', '30 1 * * *', undefined, { timezone: 'America/New_York' }, 0);
    expect(iso(nextFireAfter(ny130, at('2026-10-31T12:00:00Z')))).to.equal('2026-11-01T05:30:00.000Z');
    expect(iso(nextFireAfter(ny130, at('2026-11-01T05:30:00Z')))).to.equal('2026-11-02T06:30:00.000Z');
    // Hourly keeps real UTC spacing across the autumn change: 24 + 1 runs that day.
    const hourly = buildSchedule('h', '0 * * * *', undefined, { timezone: 'Europe/Berlin' }, 0);
    let t = at('2026-10-24T22:00:00Z');
    let n = 0;
    while (t < at('2026-10-25T23:00:00Z')) {
      t = nextFireAfter(hourly, t)!;
      n++;
    }
    expect(n).to.equal(25);
  });

  it('anchors intervals at their start and stops at their end', () => {
    const s = buildSchedule('i', { every: 15, unit: 'minutes', startAt: new Date('2026-01-01T00:05:00Z'), endAt: new Date('2026-01-01T01:00:00Z') }, null, {}, 0);
    expect(iso(nextFireAfter(s, at('2025-12-31T00:00:00Z')))).to.equal('2026-01-01T00:05:00.000Z');
    expect(iso(nextFireAfter(s, at('2026-01-01T00:05:00Z')))).to.equal('2026-01-01T00:20:00.000Z');
    expect(iso(nextFireAfter(s, at('2026-01-01T00:50:00Z')))).to.equal(null);
  });

  it('fires the latest, all, or none of the missed ticks', () => {
    const every = (missed: 'latest' | 'all' | 'none') => buildSchedule('m', '*/1 * * * *', null, { missed }, 0);
    const due = at('2026-01-01T00:00:00Z');
    const now = at('2026-01-01T00:10:02Z');
    expect(ticksToFire(every('latest'), due, now, 0).fire.map(iso)).to.deep.equal(['2026-01-01T00:10:00.000Z']);
    expect(ticksToFire(every('all'), due, now, 0).fire).to.have.length(11);
    expect(ticksToFire(every('none'), due, now, 0).fire.map(iso)).to.deep.equal(['2026-01-01T00:10:00.000Z']); // on time: 2 s ago
    expect(ticksToFire(every('none'), due, at('2026-01-01T00:10:30Z'), 0).fire).to.deep.equal([]);
    expect(iso(ticksToFire(every('all'), due, now, 0).next)).to.equal('2026-01-01T00:11:00.000Z');
  });

  it('after downtime longer than 1,000 intervals: latest fires the last tick once, all the last 100, none only an on-time one; the next tick is in the future', () => {
    for (const [expr, step] of [['* * * * *', 60_000], ['* * * * * *', 1_000]] as const) {
      const every = (missed: 'latest' | 'all' | 'none') => buildSchedule('d', expr, null, { missed }, 0);
      const stopped = at('2026-01-01T00:00:00Z');
      const now = at('2026-01-04T00:00:00.500Z'); // three days later
      const last = at('2026-01-04T00:00:00Z');
      const latest = ticksToFire(every('latest'), stopped, now, 0);
      expect(latest.fire.map(iso), `${expr} latest`).to.deep.equal([iso(last)]);
      expect(latest.next, `${expr} latest: next`).to.equal(last + step);
      const all = ticksToFire(every('all'), stopped, now, 0);
      expect(all.fire, `${expr} all`).to.have.length(100);
      expect(all.fire.at(-1)).to.equal(last);
      expect(all.fire[0]).to.equal(last - 99 * step);
      expect(all.next).to.equal(last + step);
      const none = ticksToFire(every('none'), stopped, now, 0);
      expect(none.fire.map(iso), `${expr} none: the on-time tick`).to.deep.equal([iso(last)]);
      expect(none.next).to.equal(last + step);
    }
  });

  it('an interval after long downtime: the last ticks by arithmetic, also when its end fell during the downtime', () => {
    const start = at('2026-01-01T00:00:00Z');
    const now = at('2026-01-04T00:00:00.500Z');
    const perSecond = (missed: 'latest' | 'all', endAt?: number) =>
      buildSchedule('i', { every: 1, unit: 'seconds', startAt: new Date(start), ...(endAt ? { endAt: new Date(endAt) } : {}) }, null, { missed }, start);
    const latest = ticksToFire(perSecond('latest'), start, now, 0);
    expect(latest.fire).to.deep.equal([at('2026-01-04T00:00:00Z')]);
    expect(latest.next).to.equal(at('2026-01-04T00:00:01Z'));
    const endAt = at('2026-01-02T12:00:00.250Z');
    const all = ticksToFire(perSecond('all', endAt), start, now, 0);
    expect(all.fire).to.have.length(100);
    expect(all.fire.at(-1)).to.equal(at('2026-01-02T12:00:00Z'));
    expect(all.next, 'ended').to.equal(null);
  });

  it('overlap queue: one run at a time, and ticks that waited collapse into one queued run', () => {
    const queued = (missed: 'latest' | 'all' | 'none') => buildSchedule('q', '*/1 * * * *', null, { missed, overlap: 'queue' }, 0);
    const due = at('2026-01-01T00:00:00Z');
    const now = at('2026-01-01T00:10:30Z');
    // Catching up after downtime with 'all': the oldest first, the rest stay due.
    const all = ticksToFire(queued('all'), due, now, 0);
    expect(all.fire.map(iso)).to.deep.equal(['2026-01-01T00:00:00.000Z']);
    expect(iso(all.next)).to.equal('2026-01-01T00:01:00.000Z');
    // A tick that waited for the previous run fires even though it is no longer "on time".
    expect(ticksToFire(queued('none'), due, now, 0).fire).to.deep.equal([]);
    expect(ticksToFire(queued('none'), due, now, 0, true).fire.map(iso)).to.deep.equal(['2026-01-01T00:10:00.000Z']);
    expect(ticksToFire(queued('latest'), due, now, 0, true).fire.map(iso)).to.deep.equal(['2026-01-01T00:10:00.000Z']);
    expect(ticksToFire(queued('all'), due, now, 0, true).fire.map(iso)).to.deep.equal(['2026-01-01T00:00:00.000Z']);
    expect(() => buildSchedule('q', '* * * * *', null, { overlap: 'wait' as 'queue' }, 0)).to.throw(/overlap must be 'allow', 'skip' or 'queue'/);
  });

  it('refuses invalid expressions, timezones and options, naming the field', () => {
    expect(() => buildSchedule('x', '61 * * * *', null, {}, 0)).to.throw(/schedule "x": schedule is not a valid cron expression/);
    expect(() => buildSchedule('x', '* * * * *', null, { timezone: 'Mars/Base' }, 0)).to.throw(/schedule "x": timezone must be an IANA timezone/);
    expect(() => buildSchedule('x', '* * * * *', null, { overlap: 'queue-up' as never }, 0)).to.throw(/overlap must be 'allow', 'skip' or 'queue'/);
    expect(() => buildSchedule('x', { every: 0, unit: 'minutes' }, null, {}, 0)).to.throw(/schedule.every must be a positive integer/);
    expect(() => buildSchedule('x', { every: 1, unit: 'weeks' as never }, null, {}, 0)).to.throw(/schedule.unit must be/);
    // Found by an attacker: inherited names taken as units, intervals past any date, schedules that never fire.
    for (const unit of ['toString', 'constructor', '__proto__']) {
      expect(() => buildSchedule('x', { every: 1, unit: unit as never }, null, {}, 0), unit).to.throw(JobValidationError, /schedule "x": schedule.unit must be/);
    }
    expect(() => buildSchedule('x', { every: 1e9, unit: 'days' }, null, {}, 0)).to.throw(/schedule "x": schedule.every must be at most 36500 days \(100 years\); got 1000000000/);
    expect(() => buildSchedule('x', { every: 1, unit: 'hours', startAt: new Date(at('2026-02-01T00:00:00Z')), endAt: new Date(at('2026-01-01T00:00:00Z')) }, null, {}, 0))
      .to.throw(/schedule "x": schedule.endAt must be after startAt/);
    const now = at('2026-12-07T00:00:00Z');
    expect(() => buildSchedule('x', '0 0 30 2 *', null, {}, now)).to.throw(/schedule "x": schedule never fires/);
    // Ended ones are not refused: defined in code, that would refuse every start after the date. They never fire.
    const pastYear = buildSchedule('x', '0 0 0 1 1 * 2020', null, {}, now);
    expect(nextFireAfter(pastYear, now)).to.equal(null);
    const ended = buildSchedule('x', { every: 1, unit: 'hours', endAt: new Date(at('2026-01-01T00:00:00Z')) }, null, {}, now);
    expect(nextFireAfter(ended, now - 1)).to.equal(null);
    expect(buildSchedule('x', '@daily', null, {}, now).cron).to.equal('@daily');
  });

  it('refuses a payload JSON would change (a Buffer, a Date, a BigInt), as an enqueue does: it was stored as something else', () => {
    expect(() => buildSchedule('x', '* * * * *', Buffer.from('ab'), {}, 0)).to.throw(/payload is a Buffer, which JSON would silently change/);
    expect(() => buildSchedule('x', '* * * * *', new Date(0), {}, 0)).to.throw(/payload is a Date/);
    expect(() => buildSchedule('x', '* * * * *', { a: 1n }, {}, 0)).to.throw(/payload\.a is a BigInt/);
    // Named by the schedule's key, the name recurring() was given, not by its job's.
    expect(() => buildSchedule('nightly', '* * * * *', { a: [1n] }, { name: 'report' }, 0)).to.throw(JobValidationError, /^schedule "nightly": payload\.a\[0\] is a BigInt/)
      .with.property('field', 'payload.a[0]');
    expect(buildSchedule('x', '* * * * *', null, {}, 0).payloadJson).to.equal('null');
    expect(buildSchedule('x', '* * * * *', undefined, {}, 0).payloadJson).to.equal(null);
  });
});
