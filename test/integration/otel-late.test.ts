/**
 * @opentelemetry/api is loaded only once the app registers something with it (issue 17: it cost
 * about 7 MB of memory in every process that never traced), and a provider registered after
 * createJobs is still used: the next enqueue and attempt make spans, and they are counted.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const FIXTURE = path.resolve(import.meta.dirname, '..', 'fixtures', 'otel-late.ts');

describe('OpenTelemetry registered after createJobs', function () {
  this.timeout(60_000);

  it('nothing loads the API before the app registers; what it registers later is traced and measured', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', FIXTURE], { encoding: 'utf8' }).split('\n');
    expect(out).to.include('before false');
    const after = JSON.parse(out.find((l) => l.startsWith('after '))!.slice('after '.length)) as { spans: string[]; metrics: string[] };
    expect(after.spans).to.deep.equal(['process default', 'send default']);
    expect(after.metrics).to.include.members(['sqljobs.jobs.enqueued', 'sqljobs.jobs.started', 'sqljobs.jobs.completed', 'sqljobs.jobs.duration']);
  });
});
