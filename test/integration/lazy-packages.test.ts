/**
 * Packages a process does not use are not loaded (issue 17: @opentelemetry/api cost about 7 MB of
 * memory in every process that never traced, cronstrue about 5 MB in every one whose admin never
 * showed a schedule), and an OpenTelemetry provider registered after createJobs is still used: the
 * next enqueue and attempt make spans, and they are counted.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const FIXTURE = path.resolve(import.meta.dirname, '..', 'fixtures', 'lazy-packages.ts');

describe('optional packages, loaded when used', function () {
  this.timeout(60_000);

  it('nothing loads the OpenTelemetry API, cronstrue or prom-client before they are needed; a provider registered later is traced and measured', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', FIXTURE], { encoding: 'utf8' }).split('\n');
    expect(out).to.include('before {"@opentelemetry/api":false,"cronstrue":false,"prom-client":false}');
    const after = JSON.parse(out.find((l) => l.startsWith('after '))!.slice('after '.length)) as { spans: string[]; metrics: string[] };
    expect(after.spans).to.deep.equal(['process default', 'send default']);
    expect(after.metrics).to.include.members(['sqljobs.jobs.enqueued', 'sqljobs.jobs.started', 'sqljobs.jobs.completed', 'sqljobs.jobs.duration']);
  });
});
