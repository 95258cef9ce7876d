/**
 * The published declarations (built as `npm run build` builds them) expose the public API only:
 * the store and the facade's plumbing for the middleware are stripped, and an app written against
 * the declarations under strict mode cannot reach them.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TSC = path.join(ROOT, 'node_modules/.bin/tsc');
const INTERNALS = ['store', 'prepareRow', 'writeRows', 'beginTransaction', 'notifyCommitted'];

describe('public declarations', function () {
  this.timeout(120_000);
  let out: string;
  before(() => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-dts-'));
    execFileSync(TSC, ['-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', path.join(out, 'dist'), '--emitDeclarationOnly'], { stdio: 'pipe' });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(out, 'node_modules'));
  });
  after(() => fs.rmSync(out, { recursive: true, force: true }));

  it('Jobs declares none of the library internals', () => {
    const jobs = fs.readFileSync(path.join(out, 'dist/lib/jobs.d.ts'), 'utf8');
    const klass = jobs.slice(jobs.indexOf('export declare class Jobs'));
    for (const name of INTERNALS) expect(klass, name).to.not.match(new RegExp(`^\\s+(readonly )?${name}[(:<]`, 'm'));
    expect(klass).to.match(/^\s+enqueue</m); // the public verbs are there
  });

  it('an app compiled against the declarations under strict mode sees the public API and not the internals', () => {
    const app = [
      "import Database from 'better-sqlite3';",
      "import { createJobs } from './dist/lib/index.js';",
      "const jobs = createJobs<{ mail: { to: string } }>({ db: new Database(':memory:') });",
      "void jobs.enqueue('mail', { to: 'a@example.com' });",
      ...INTERNALS.map((name) => `// @ts-expect-error ${name} is internal\nvoid jobs.${name};`),
      '',
    ].join('\n');
    fs.writeFileSync(path.join(out, 'app.ts'), app);
    fs.writeFileSync(path.join(out, 'package.json'), '{ "type": "module" }');
    const args = ['--noEmit', '--strict', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--types', 'node', '--skipLibCheck', path.join(out, 'app.ts')];
    try {
      execFileSync(TSC, args, { cwd: out, stdio: 'pipe' });
    } catch (err) {
      throw new Error(`the app does not compile against the declarations:\n${(err as { stdout?: Buffer }).stdout?.toString()}`);
    }
  });
});
