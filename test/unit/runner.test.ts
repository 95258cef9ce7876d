/**
 * The test runner (test/run.mjs) run as `npm test` runs it, on fixture files: its last line, its
 * exit code, and what fails the run beside a failing test.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { isCI } from '../helpers/ci.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const fixture = (name: string) => `test/fixtures/runner/${name}.ts`;

/** Run the runner; CI is off unless given (the suite itself may run under CI). */
function run(args: string[], ci = 'false'): Promise<{ code: number; last: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['test/run.mjs', ...args], { cwd: ROOT, env: { ...process.env, CI: ci } }, (err, stdout, stderr) => {
      const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
      resolve({ code, last: stdout.trimEnd().split('\n').at(-1) ?? '', stderr });
    });
  });
}

describe('test runner', function () {
  this.timeout(60_000);

  it('ends with "N passed, N failed, N skipped" and exits 0 when all pass', async () => {
    const r = await run([fixture('plain')]);
    expect(r.last).to.equal('2 passed, 0 failed, 1 skipped');
    expect(r.code).to.equal(0);
  });

  it('counts an unhandled rejection during the run as a failure, once', async () => {
    const r = await run([fixture('stray-rejection')]);
    expect(r.last).to.equal('2 passed, 1 failed, 0 skipped');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('stray rejection');
  });

  it('fails on `.only` under CI (any CI value but empty or "false"); runs it alone otherwise', async () => {
    for (const ci of ['true', '1', 'github']) {
      const r = await run([fixture('only')], ci);
      expect(r.last, ci).to.equal('0 passed, 1 failed, 0 skipped');
      expect(r.code, ci).to.equal(1);
      expect(r.stderr, ci).to.include('.only');
    }
    for (const ci of ['false', '']) {
      const r = await run([fixture('only')], ci);
      expect(r.last, JSON.stringify(ci)).to.equal('1 passed, 0 failed, 0 skipped');
      expect(r.code, JSON.stringify(ci)).to.equal(0);
    }
  });

  it('fails when -g matches no test; runs the matching ones otherwise', async () => {
    const none = await run([fixture('plain'), '-g', 'no such test']);
    expect(none.last).to.equal('0 passed, 1 failed, 0 skipped');
    expect(none.code).to.equal(1);
    expect(none.stderr).to.include('matches no test');
    const one = await run([fixture('plain'), '-g', 'second']);
    expect(one.last).to.equal('1 passed, 0 failed, 0 skipped');
    expect(one.code).to.equal(0);
  });

  it('isCI: any value but empty or "false"', () => {
    for (const v of ['true', '1', '0', 'yes', 'github-actions', 'TRUE']) expect(isCI({ CI: v }), v).to.equal(true);
    for (const v of [undefined, '', ' ', 'false', 'FALSE']) expect(isCI({ CI: v }), String(v)).to.equal(false);
  });
});
