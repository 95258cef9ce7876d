/**
 * Summarise a V8 .cpuprofile (node --cpu-prof) over a time window: self time by area (sqljobs
 * files, drivers, node internals, GC) and the top functions by self and by inclusive time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_DIR } from './config.ts';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  areas: { area: string; ms: number; pct: number }[];
  selfTop: { fn: string; ms: number; pct: number }[];
  inclusiveTop: { fn: string; ms: number; pct: number }[];
}

/** Repo-relative path; the run's snapshot of lib/ (see run.ts) reads as lib/. */
function relPath(url: string): string {
  if (!url.startsWith('file://')) return url;
  return path.relative(REPO_DIR, new URL(url).pathname).replace(/^\.tmp\/bench-sqljobs-snapshot\//, '');
}

function area(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native / V8 builtins)';
  const rel = relPath(url);
  if (rel.startsWith('lib/')) return `sqljobs ${rel}`;
  if (rel.startsWith('bench/')) return 'bench harness';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(rel);
  if (m) return `node_modules/${m[1]}`;
  if (rel.startsWith('node:')) return 'node internals';
  return rel;
}

function label(cf: CallFrame): string {
  const url = relPath(cf.url);
  // tsx compiles .ts files on the fly, so their line numbers are of the generated code: omit them.
  const where = !url ? '' : url.endsWith('.ts') ? url : `${url}:${cf.lineNumber + 1}`;
  return `${cf.functionName || '(anonymous)'} ${where}`.trim();
}

/** Summarise samples whose time falls inside [fromUs, toUs] (monotonic µs, as the child reported). */
export function summarizeProfile(file: string, window?: [number, number], top = 15): ProfileSummary {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let t = prof.startTime;
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i];
    if (window && (t < window[0] || t > window[1])) continue;
    const dt = prof.timeDeltas[i + 1] ?? 0; // the sample's duration is the gap to the next sample
    self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
    total += dt;
  }
  const areas = new Map<string, number>();
  const selfFn = new Map<string, number>();
  const inclFn = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const a = area(n.callFrame.url, n.callFrame.functionName);
    areas.set(a, (areas.get(a) ?? 0) + us);
    const key = label(n.callFrame);
    selfFn.set(key, (selfFn.get(key) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = label(byId.get(cur)!.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclFn.set(k, (inclFn.get(k) ?? 0) + us);
    }
  }
  const list = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, us]) => ({ k, ms: us / 1000, pct: total ? (100 * us) / total : 0 }));
  const skip = /^\((root|program|idle)\)|^processTicksAndRejections|^runMicrotasks|^listOnTimeout|^processTimers|^(anonymous)/;
  return {
    totalMs: total / 1000,
    areas: list(areas).map(({ k, ms, pct }) => ({ area: k, ms, pct })),
    selfTop: list(selfFn).slice(0, top).map(({ k, ms, pct }) => ({ fn: k, ms, pct })),
    inclusiveTop: list(inclFn).filter(({ k }) => !skip.test(k)).slice(0, top).map(({ k, ms, pct }) => ({ fn: k, ms, pct })),
  };
}

export function profileMarkdown(title: string, s: ProfileSummary): string {
  const lines = [`#### ${title}`, '', `${s.totalMs.toFixed(0)} ms of samples in the measured window.`, ''];
  lines.push('| area (self time) | ms | % |', '|---|---:|---:|');
  for (const a of s.areas.slice(0, 12)) lines.push(`| ${a.area} | ${a.ms.toFixed(1)} | ${a.pct.toFixed(1)} |`);
  lines.push('', '| top functions by self time | ms | % |', '|---|---:|---:|');
  for (const f of s.selfTop) lines.push(`| \`${f.fn}\` | ${f.ms.toFixed(1)} | ${f.pct.toFixed(1)} |`);
  lines.push('', '| top functions by inclusive time | ms | % |', '|---|---:|---:|');
  for (const f of s.inclusiveTop) lines.push(`| \`${f.fn}\` | ${f.ms.toFixed(1)} | ${f.pct.toFixed(1)} |`);
  lines.push('');
  return lines.join('\n');
}
