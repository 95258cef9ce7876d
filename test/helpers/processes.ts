/** Spawning worker processes for the crash tests and reading what they report. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { until } from './dialects.ts';

export interface WorkerProc {
  child: ChildProcess;
  pid: number;
  lines: string[];
  /** Wait until a line matching re was printed; returns it. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  kill(signal: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

const FIXTURE = path.resolve('test/fixtures/worker-process.ts');
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});
afterEach(() => {
  for (const c of live) c.kill('SIGKILL');
  live.clear();
});

export function spawnWorker(env: Record<string, string | number>, fixture = FIXTURE): WorkerProc {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
    env: { ...process.env, ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const lines: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      live.delete(child);
      if (code && code !== 0) console.error(`worker ${child.pid} exited ${code}: ${stderr.slice(-2000)}`);
      r(code);
    }),
  );
  return {
    child,
    pid: child.pid!,
    lines,
    waitFor: (re, timeoutMs = 20_000) => until<string | undefined>(() => lines.find((l) => re.test(l)), `worker ${child.pid} to print ${re} (printed: ${lines.slice(-5).join(' | ')}; stderr: ${stderr.slice(-500)})`, timeoutMs, 5) as Promise<string>,
    kill: (signal) => child.kill(signal),
    exited,
  };
}
