/**
 * The overview's throughput chart (issue 16): every minute of the hour in its place, a round scale
 * with its labels, and the time as minutes before now.
 */
import { expect } from 'chai';
import { throughputChart } from '../../lib/admin/present.ts';

describe('throughput chart', () => {
  const now = Date.UTC(2026, 11, 5, 10, 30, 20);
  const minute = (ago: number) => Math.floor(now / 60_000) * 60_000 - ago * 60_000;

  it('places each minute at its time (the oldest on the left), stacks failed on completed, and scales to a round top', () => {
    const chart = throughputChart({ now, buckets: [{ start: minute(0), completed: 5, failed: 2 }, { start: minute(30), completed: 3, failed: 0 }] });
    expect(chart.max).to.equal(7);
    expect(chart.yTicks.map((t) => t.label)).to.deep.equal(['0', '5', '10']);
    expect(chart.yTicks.map((t) => t.at)).to.deep.equal([chart.base, chart.base - chart.plotHeight / 2, chart.base - chart.plotHeight]);
    expect(chart.base - chart.plotHeight, 'room above the top label').to.be.greaterThan(0);
    const [completedThen, completedNow, failedNow] = chart.bars;
    expect(completedNow).to.deep.include({ cls: 'completed', label: 'this minute: 5 completed' });
    expect(completedNow.x).to.be.closeTo(chart.left + 59 * chart.barWidth, 1e-9);
    expect(completedNow.height).to.be.closeTo(chart.plotHeight / 2, 1e-9);
    expect(failedNow).to.deep.include({ cls: 'failed', label: 'this minute: 2 failed' });
    expect(failedNow.y + failedNow.height).to.be.closeTo(completedNow.y, 1e-9);
    expect(completedThen.label).to.equal('30 min ago: 3 completed');
    expect(completedThen.x).to.be.closeTo(chart.left + 29 * chart.barWidth, 1e-9);
    expect(chart.xTicks.map((t) => t.label)).to.deep.equal(['now', '−10 min', '−20 min', '−30 min', '−40 min', '−50 min', '−60 min']);
    expect(chart.xTicks[0].at).to.equal(chart.width);
    expect(chart.xTicks.at(-1)!.at).to.equal(chart.left);
    expect([chart.totalCompleted, chart.totalFailed]).to.deep.equal([8, 2]);
  });

  it('an empty hour: no bar, a scale of 0 to 1', () => {
    const chart = throughputChart({ now, buckets: [] });
    expect(chart.bars).to.deep.equal([]);
    expect(chart.yTicks.map((t) => t.label)).to.deep.equal(['0', '1']);
  });
});
