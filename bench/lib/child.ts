/** Run one measurement in a child process and read its BENCH_RESULT line. */
import { spawn } from 'node:child_process';
import { REPO_DIR } from './config.ts';

export interface ChildResult {
  system: string;
  measure: string;
  jobs: number;
  ok: boolean;
  error?: string;
  peakRssMB: number;
  rate?: number;
  ms?: number;
  handlersMs?: number;
  cpuMs?: number;
  eldP99?: number | null;
  maxTimerGap?: number;
  p50?: number;
  p95?: number;
  p99?: number;
  windowUs?: [number, number];
  durability?: Record<string, string>;
  [k: string]: unknown;
}

export function runChild(args: string[], nodeFlags: string[] = [], timeoutMs = 20 * 60_000): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', 'bench/measure.ts', ...args], {
      cwd: REPO_DIR,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      const base = { system: args[args.indexOf('--system') + 1], measure: args[args.indexOf('--measure') + 1], jobs: 0, peakRssMB: NaN };
      if (!line) {
        resolve({ ...base, ok: false, error: `exit ${code ?? signal}, no result line\n${(stderr + stdout).slice(-2000)}` });
        return;
      }
      const res = JSON.parse(line.slice('BENCH_RESULT '.length)) as ChildResult;
      if (!res.ok && stderr) res.error = `${res.error}\n${stderr.slice(-1000)}`;
      resolve(res);
    });
  });
}

/** Run another bench script and return what it printed (used for the round-trip diagnosis). */
export function runScript(script: string, args: string[], timeoutMs = 10 * 60_000): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: REPO_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out.trim());
    });
  });
}
