/** Turning per-run results into the medians table, the per-run table and the target ratios. */
import type { ChildResult } from './child.ts';
import { fmt, median } from './stats.ts';
import { SYSTEMS } from '../systems/index.ts';
import { BACKEND_LABEL } from '../systems/types.ts';

export const MEASURES = ['enqueue-single', 'enqueue-bulk', 'process', 'latency'] as const;
export type Measure = (typeof MEASURES)[number];

export interface RunResult extends ChildResult {
  round: number;
}

export class Results {
  constructor(readonly runs: RunResult[]) {}

  of(system: string, measure: Measure): RunResult[] {
    return this.runs.filter((r) => r.system === system && r.measure === measure && r.ok).sort((a, b) => a.round - b.round);
  }

  values(system: string, measure: Measure, key: string): number[] {
    return this.of(system, measure).map((r) => Number(r[key])).filter((v) => Number.isFinite(v));
  }

  med(system: string, measure: Measure, key: string): number {
    return median(this.values(system, measure, key));
  }

  /** "median (min–max)" */
  cell(system: string, measure: Measure, key: string, digits?: number): string {
    const v = this.values(system, measure, key);
    if (!v.length) return this.failed(system, measure) ? 'failed' : '–';
    const m = fmt(median(v), digits);
    return v.length > 1 ? `${m} (${fmt(Math.min(...v), digits)}–${fmt(Math.max(...v), digits)})` : m;
  }

  failed(system: string, measure: Measure): boolean {
    return this.runs.some((r) => r.system === system && r.measure === measure && !r.ok);
  }
}

export function mediansTable(res: Results, systems: string[], versions: Record<string, string>): string {
  const head = [
    'system', 'backend', 'enqueue one by one (jobs/s)', 'bulk enqueue ×1000 (jobs/s)', 'processing, concurrency 10 (jobs/s)',
    'latency p50 / p95 / p99 (ms)', 'event-loop lag p99 / longest timer delay during processing (ms)', 'peak RSS MB (one / bulk / process / latency)',
  ];
  const rows = systems.map((name) => {
    const s = SYSTEMS.find((x) => x.name === name)!;
    const lat = ['p50', 'p95', 'p99'].map((k) => fmt(res.med(name, 'latency', k))).join(' / ');
    const latRange = res.values(name, 'latency', 'p50');
    const lag = `${fmt(res.med(name, 'process', 'eldP99'))} / ${fmt(res.med(name, 'process', 'maxTimerGap'))}`;
    const rss = MEASURES.map((m) => fmt(res.med(name, m, 'peakRssMB'), 0)).join(' / ');
    return [
      `${s.label}${versions[name] ? ` ${versions[name]}` : ''}`,
      BACKEND_LABEL[s.backend],
      res.cell(name, 'enqueue-single', 'rate'),
      res.cell(name, 'enqueue-bulk', 'rate'),
      res.cell(name, 'process', 'rate'),
      latRange.length ? `${lat} (p50 ${fmt(Math.min(...latRange))}–${fmt(Math.max(...latRange))})` : res.failed(name, 'latency') ? 'failed' : '–',
      lag,
      rss,
    ];
  });
  return markdownTable(head, rows);
}

export function perRunTable(res: Results, systems: string[], rounds: number): string {
  const head = ['system', 'backend', 'measure', ...Array.from({ length: rounds }, (_, i) => `run ${i + 1}`), 'median'];
  const rows: string[][] = [];
  for (const name of systems) {
    const s = SYSTEMS.find((x) => x.name === name)!;
    for (const m of MEASURES) {
      const runs = res.runs.filter((r) => r.system === name && r.measure === m);
      const cells = Array.from({ length: rounds }, (_, i) => {
        const r = runs.find((x) => x.round === i + 1);
        if (!r) return '–';
        if (!r.ok) return 'failed';
        if (m === 'latency') return `${fmt(r.p50)} / ${fmt(r.p95)} / ${fmt(r.p99)} ms`;
        const extra = m === 'process' ? ` (lag p99 ${fmt(r.eldP99 ?? NaN)} ms)` : '';
        return `${fmt(r.rate)}${extra}`;
      });
      const medCell = m === 'latency'
        ? `${fmt(res.med(name, m, 'p50'))} / ${fmt(res.med(name, m, 'p95'))} / ${fmt(res.med(name, m, 'p99'))} ms`
        : fmt(res.med(name, m, 'rate'));
      rows.push([s.label, BACKEND_LABEL[s.backend], m === 'latency' ? 'latency p50/p95/p99' : `${m} (jobs/s)`, ...cells, medCell]);
    }
  }
  return markdownTable(head, rows);
}

export interface Target {
  name: string;
  /** The figures the ratio comes from, for the reader. */
  detail: string;
  value: number;
  op: '>=' | '<=';
  threshold: number;
  unit: '×' | 'ms' | '%';
  /** Which sqljobs measurement to profile when the target is missed (null: not a CPU question). */
  profile: { system: string; measure: Measure } | null;
}

export function computeTargets(res: Results, memoryGrowth: number | null): { targets: Target[]; info: string[] } {
  const m = (s: string, me: Measure, k = 'rate') => res.med(s, me, k);
  const ratio = (a: number, b: number) => a / b;
  const t: Target[] = [];
  const add = (name: string, detail: string, value: number, op: Target['op'], threshold: number, unit: Target['unit'], profile: Target['profile']) =>
    t.push({ name, detail, value, op, threshold, unit, profile });
  const pgProc = { system: 'sqljobs-pg', measure: 'process' as const };
  const slProc = { system: 'sqljobs-sqlite', measure: 'process' as const };
  add('PG processing / tuned graphile-worker', `${fmt(m('sqljobs-pg', 'process'))} vs ${fmt(m('graphile-worker', 'process'))} jobs/s`,
    ratio(m('sqljobs-pg', 'process'), m('graphile-worker', 'process')), '>=', 1.0, '×', pgProc);
  add('PG processing / pg-boss', `${fmt(m('sqljobs-pg', 'process'))} vs ${fmt(m('pg-boss', 'process'))} jobs/s`,
    ratio(m('sqljobs-pg', 'process'), m('pg-boss', 'process')), '>=', 1.5, '×', pgProc);
  add('PG latency p50 / graphile-worker p50', `${fmt(m('sqljobs-pg', 'latency', 'p50'))} vs ${fmt(m('graphile-worker', 'latency', 'p50'))} ms`,
    ratio(m('sqljobs-pg', 'latency', 'p50'), m('graphile-worker', 'latency', 'p50')), '<=', 1.0, '×', { system: 'sqljobs-pg', measure: 'latency' });
  add('PG single enqueue / graphile addJob', `${fmt(m('sqljobs-pg', 'enqueue-single'))} vs ${fmt(m('graphile-worker', 'enqueue-single'))} jobs/s`,
    ratio(m('sqljobs-pg', 'enqueue-single'), m('graphile-worker', 'enqueue-single')), '>=', 2.0, '×', { system: 'sqljobs-pg', measure: 'enqueue-single' });
  add('PG bulk enqueue / graphile addJobs', `${fmt(m('sqljobs-pg', 'enqueue-bulk'))} vs ${fmt(m('graphile-worker', 'enqueue-bulk'))} jobs/s`,
    ratio(m('sqljobs-pg', 'enqueue-bulk'), m('graphile-worker', 'enqueue-bulk')), '>=', 1.0, '×', { system: 'sqljobs-pg', measure: 'enqueue-bulk' });
  add('SQLite processing / plainjob', `${fmt(m('sqljobs-sqlite', 'process'))} vs ${fmt(m('plainjob', 'process'))} jobs/s`,
    ratio(m('sqljobs-sqlite', 'process'), m('plainjob', 'process')), '>=', 5.0, '×', slProc);
  add('SQLite processing / raw floor', `${fmt(m('sqljobs-sqlite', 'process'))} vs ${fmt(m('floor-sqlite', 'process'))} jobs/s`,
    ratio(m('sqljobs-sqlite', 'process'), m('floor-sqlite', 'process')), '>=', 0.25, '×', slProc);
  add('SQLite latency p50', `${fmt(m('sqljobs-sqlite', 'latency', 'p50'))} ms`,
    m('sqljobs-sqlite', 'latency', 'p50'), '<=', 1.0, 'ms', { system: 'sqljobs-sqlite', measure: 'latency' });
  add('SQLite bulk enqueue / plainjob addMany', `${fmt(m('sqljobs-sqlite', 'enqueue-bulk'))} vs ${fmt(m('plainjob', 'enqueue-bulk'))} jobs/s`,
    ratio(m('sqljobs-sqlite', 'enqueue-bulk'), m('plainjob', 'enqueue-bulk')), '>=', 1.0, '×', { system: 'sqljobs-sqlite', measure: 'enqueue-bulk' });
  const rssRatios = MEASURES.map((me) => ({ me, r: ratio(m('sqljobs-sqlite', me, 'peakRssMB'), m('plainjob', me, 'peakRssMB')) }));
  const worst = rssRatios.reduce((a, b) => (b.r > a.r ? b : a));
  add('SQLite peak RSS / plainjob (worst measurement)',
    rssRatios.map(({ me, r }) => `${me} ${fmt(m('sqljobs-sqlite', me, 'peakRssMB'), 0)}/${fmt(m('plainjob', me, 'peakRssMB'), 0)} MB (${fmt(r)}×)`).join('; ') +
      `; RSS once the library is loaded, before any work: ${fmt(m('sqljobs-sqlite', 'process', 'rssLoaded'), 0)}/${fmt(m('plainjob', 'process', 'rssLoaded'), 0)} MB (both include tsx, ~${fmt(m('sqljobs-sqlite', 'process', 'rssAtImport'), 0)} MB before the library loads)` +
      `; peak once the jobs are enqueued, before the worker starts: ${fmt(m('sqljobs-sqlite', 'process', 'rssEnqueuedMB'), 0)}/${fmt(m('plainjob', 'process', 'rssEnqueuedMB'), 0)} MB` +
      `; young generation at most ${fmt(m('sqljobs-sqlite', 'process', 'newSpaceMaxMB'), 0)}/${fmt(m('plainjob', 'process', 'newSpaceMaxMB'), 0)} MB while processing`,
    worst.r, '<=', 1.2, '×', null);
  if (memoryGrowth !== null) add('200k-job RSS growth (after 10k → end)', `${fmt(memoryGrowth * 100, 1)} %`, memoryGrowth * 100, '<=', 20, '%', null);
  const info = [
    `PG processing / raw floor: ${fmt(ratio(m('sqljobs-pg', 'process'), m('floor-pg', 'process')))}×; / archiving floor: ${fmt(ratio(m('sqljobs-pg', 'process'), m('floor-pg-archive', 'process')))}×`,
    `tuned graphile-worker / PG floor: ${fmt(ratio(m('graphile-worker', 'process'), m('floor-pg', 'process')))}×; pg-boss / PG floor: ${fmt(ratio(m('pg-boss', 'process'), m('floor-pg', 'process')))}×`,
    `SQLite processing / archiving floor: ${fmt(ratio(m('sqljobs-sqlite', 'process'), m('floor-sqlite-archive', 'process')))}×`,
    `SQLite single enqueue / plainjob add: ${fmt(ratio(m('sqljobs-sqlite', 'enqueue-single'), m('plainjob', 'enqueue-single')))}×; / floor: ${fmt(ratio(m('sqljobs-sqlite', 'enqueue-single'), m('floor-sqlite', 'enqueue-single')))}×`,
    `PG single enqueue / pg-boss send: ${fmt(ratio(m('sqljobs-pg', 'enqueue-single'), m('pg-boss', 'enqueue-single')))}×; PG bulk / pg-boss insert: ${fmt(ratio(m('sqljobs-pg', 'enqueue-bulk'), m('pg-boss', 'enqueue-bulk')))}×`,
    `PG latency p50 / pg-boss p50: ${fmt(ratio(m('sqljobs-pg', 'latency', 'p50'), m('pg-boss', 'latency', 'p50')))}×; / floor p50: ${fmt(ratio(m('sqljobs-pg', 'latency', 'p50'), m('floor-pg', 'latency', 'p50')))}×`,
  ];
  return { targets: t, info };
}

export function passes(t: Target): boolean {
  return Number.isFinite(t.value) && (t.op === '>=' ? t.value >= t.threshold : t.value <= t.threshold);
}

export function targetsTable(targets: Target[]): string {
  return markdownTable(
    ['target', 'measured', 'figures (medians)', 'result'],
    targets.map((t) => [
      `${t.name} ${t.op === '>=' ? '≥' : '≤'} ${t.threshold}${t.unit === '×' ? '×' : ` ${t.unit}`}`,
      `${fmt(t.value)}${t.unit === '×' ? '×' : ` ${t.unit}`}`,
      t.detail,
      passes(t) ? 'met' : '**MISSED**',
    ]),
  );
}

export function markdownTable(head: string[], rows: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [`| ${head.map(esc).join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}
