/**
 * The package as an app gets it: `npm pack` of this tree, installed in a fresh app with its
 * runtime dependencies only (no devDependency of ours), then imported, type-checked against a
 * snippet of the README's shape, and its CLI run. Then the README's other ways: a git URL and
 * a clone's folder (`--install-links`, and the plain path npm links), each from a fresh clone
 * with no node_modules and no dist, so `prepare` must build with nothing installed beforehand.
 */
import { expect } from 'chai';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const TSC = path.join(ROOT, 'node_modules', '.bin', 'tsc');
/** The first line of `sqljobs --help`. */
const USAGE = /^usage: sqljobs <worker\|migrate\|status\|history\|history-partitions> <module>/;

/**
 * npm's settings for every install here. Packages come from npm's cache where it holds them (this
 * project's own install just put them there), without asking the registry whether they changed:
 * asked, each of the four installs below fetched all 1,364 packages again, 30 s a package at the
 * median with the four side by side, and the suite took 4.5 of CI's minutes. What is tested is
 * npm's handling of our package, not the registry.
 */
const NPM_ENV = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_prefer_offline: 'true' };

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: NPM_ENV });
}

describe('the packed package, installed in a fresh app', function () {
  this.timeout(240_000);
  let dir = '';
  let app = '';

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-install-'));
    const tarball = run('npm', ['pack', '--silent', '--pack-destination', dir], ROOT).trim().split('\n').pop()!;
    app = path.join(dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    run('npm', ['install', '--omit=dev', '--no-package-lock', path.join(dir, tarball)], app);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('ships the build, the migrations and the admin files, and no test, bench or source TypeScript', () => {
    const pkg = path.join(app, 'node_modules', 'sqljobs');
    for (const f of ['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/cli.js', 'migrations/postgres/001_init.sql', 'views', 'public']) {
      expect(fs.existsSync(path.join(pkg, f)), f).to.equal(true);
    }
    for (const f of ['test', 'bench', 'lib', 'examples']) expect(fs.existsSync(path.join(pkg, f)), f).to.equal(false);
    // The source maps carry their sources (lib/ is not shipped): a stack mapped by them shows code that exists.
    const map = JSON.parse(fs.readFileSync(path.join(pkg, 'dist/lib/worker/executor.js.map'), 'utf8')) as { sources: string[]; sourcesContent?: string[] };
    expect(map.sourcesContent?.[0], 'executor.js.map sourcesContent').to.match(/export class/);
    // Only runtime dependencies came with it (no devDependency such as typescript or mocha).
    expect(fs.existsSync(path.join(app, 'node_modules', 'typescript'))).to.equal(false);
    expect(fs.existsSync(path.join(app, 'node_modules', 'mocha'))).to.equal(false);
  });

  it('imports (sqljobs and sqljobs/testing), and its CLI runs', () => {
    const out = run(process.execPath, ['--input-type=module', '-e', "const m = await import('sqljobs'); console.log(typeof m.createJobs, typeof m.jobsMiddleware, typeof m.jobsAdmin)"], app);
    expect(out.trim()).to.equal('function function function');
    // sqljobs/testing, an export of its own (better-sqlite3 loaded only for its in-memory default).
    const kit = run(process.execPath, ['--input-type=module', '-e', "const t = await import('sqljobs/testing'); console.log(typeof t.createTestJobs, typeof t.drain, typeof t.runOnce, typeof t.expectEnqueued)"], app);
    expect(kit.trim()).to.equal('function function function function');
    // From CommonJS, where Node loads ES modules with require (20.19, 22.12 and later): a CommonJS
    // app compiled by TypeScript requires it (it once failed: no "exports" main for require).
    const [major, minor] = process.versions.node.split('.').map(Number);
    if (major > 22 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19)) {
      const cjs = run(process.execPath, ['--no-warnings', '-e', "const m = require('sqljobs'); const t = require('sqljobs/testing'); console.log(typeof m.createJobs, typeof t.createTestJobs)"], app);
      expect(cjs.trim()).to.equal('function function');
    }
    const help = run(process.execPath, [path.join(app, 'node_modules', '.bin', 'sqljobs'), '--help'], app);
    expect(help).to.match(USAGE);
  });

  it('type-checks an app written as the README shows: payloads typed from the job map', () => {
    fs.writeFileSync(
      path.join(app, 'app.ts'),
      `import { createJobs } from 'sqljobs';
declare const db: Parameters<typeof createJobs>[0]['db'];
const jobs = createJobs<{ 'send-receipt': { orderId: number; email: string } }>({ db, worker: { concurrency: 10 } });
jobs.define('send-receipt', async (payload, ctx) => {
  ctx.log(\`sending to \${payload.email}\`);
  return payload.orderId + 1;
});
export const ok = jobs.enqueue('send-receipt', { orderId: 42, email: 'a@example.com' }, { delay: 1000 });
// @ts-expect-error the payload's orderId is a number
export const wrong = jobs.enqueue('send-receipt', { orderId: '42', email: 'a@example.com' });
`,
    );
    fs.writeFileSync(
      path.join(app, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, skipLibCheck: true, types: [] }, files: ['app.ts'] }),
    );
    run(TSC, ['-p', 'tsconfig.json'], app);
  });

  it('type-checks a PostgreSQL app with only pg\'s types installed, sqljobs\' declarations checked too (no skipLibCheck)', () => {
    // The app has none of better-sqlite3's, mysql2's or mssql's types: the
    // declarations imported them, and such an app failed with "Cannot find module 'better-sqlite3'"
    // (or, with skipLibCheck, got opts.tx typed any).
    const pgApp = path.join(dir, 'pg-app');
    fs.cpSync(app, pgApp, { recursive: true });
    run('npm', ['install', '--no-package-lock', '@types/pg', '@types/node'], pgApp);
    // (@opentelemetry/api comes with prom-client, a dependency: test/unit/public-types.test.ts
    // checks that the declarations do not import it.)
    for (const absent of ['better-sqlite3', '@types/better-sqlite3', 'mysql2', 'mssql']) {
      expect(fs.existsSync(path.join(pgApp, 'node_modules', absent)), absent).to.equal(false);
    }
    fs.writeFileSync(
      path.join(pgApp, 'app.ts'),
      `import pg from 'pg';
import { createJobs } from 'sqljobs';
const pool = new pg.Pool();
const jobs = createJobs<{ 'send-receipt': { orderId: number } }>({ db: pool }).define('send-receipt', async (payload) => payload.orderId);
const client = await pool.connect();
export const ok = jobs.enqueue('send-receipt', { orderId: 42 }, { tx: client });
// @ts-expect-error a number is no transaction
export const notTx = jobs.enqueue('send-receipt', { orderId: 42 }, { tx: 42 });
// @ts-expect-error the pool is no transaction
export const poolTx = jobs.enqueue('send-receipt', { orderId: 42 }, { tx: pool });
`,
    );
    fs.writeFileSync(
      path.join(pgApp, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, skipLibCheck: false, types: ['node'] }, files: ['app.ts'] }),
    );
    run(TSC, ['-p', 'tsconfig.json'], pgApp);
  });
});

/** The files git would commit from this tree (also uncommitted edits), as one commit in a new repository: a fresh clone. */
function freshClone(to: string): string {
  const files = run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], ROOT).split('\0')
    // (node_modules may be a symlink here, which `node_modules/` in .gitignore does not match.)
    .filter((f) => f && f.split('/')[0] !== 'node_modules' && fs.existsSync(path.join(ROOT, f)));
  for (const f of files) fs.cpSync(path.join(ROOT, f), path.join(to, f), { recursive: true, verbatimSymlinks: true });
  run('git', ['init', '-q'], to);
  run('git', ['add', '-A'], to);
  run('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.com', 'commit', '-q', '-m', 'fresh'], to);
  expect(fs.existsSync(path.join(to, 'node_modules')), 'node_modules in the clone').to.equal(false);
  expect(fs.existsSync(path.join(to, 'dist')), 'dist in the clone').to.equal(false);
  return to;
}

function freshApp(dir: string): string {
  const app = path.join(dir, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
  return app;
}

/** The app imports sqljobs and runs its bin; it got none of our devDependencies. */
function expectWorks(app: string): void {
  const out = run(process.execPath, ['--input-type=module', '-e', "const m = await import('sqljobs'); console.log(typeof m.createJobs, typeof m.jobsMiddleware, typeof m.jobsAdmin)"], app);
  expect(out.trim()).to.equal('function function function');
  const help = run(process.execPath, [path.join(app, 'node_modules', '.bin', 'sqljobs'), '--help'], app);
  expect(help).to.match(USAGE);
  for (const dev of ['typescript', 'mocha', 'tsx']) expect(fs.existsSync(path.join(app, 'node_modules', dev)), dev).to.equal(false);
}

/** An install running beside the others (each takes a minute or two, mostly waiting on npm and the compiler). */
function runAsync(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: NPM_ENV }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

describe('installed from a fresh clone with nothing installed in it', function () {
  // npm installs a git dependency's devDependencies (better-sqlite3 builds from source when no
  // prebuilt binary can be downloaded) before its prepare: about 90 s here. The four installs
  // start together in before() (one after another they took 4.5 minutes of CI); each test waits
  // for its own and checks what it left.
  this.timeout(480_000);
  let dir = '';
  const installs: Record<'git' | 'links' | 'global' | 'folder', Promise<{ app: string; clone: string }>> = {} as never;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-clone-'));
    const start = (key: keyof typeof installs, args: (clone: string) => string[]) => {
      const base = fs.mkdtempSync(path.join(dir, `${key}-`));
      const clone = freshClone(fs.mkdtempSync(path.join(base, 'sqljobs-')));
      const app = freshApp(base);
      installs[key] = runAsync('npm', args(clone), app).then(() => ({ app, clone }));
      installs[key].catch(() => undefined); // awaited by its test
    };
    start('git', (clone) => ['install', '--no-package-lock', `git+file://${clone}`]);
    start('links', (clone) => ['install', '--no-package-lock', '--install-links', clone]);
    start('global', (clone) => ['install', '-g', '--prefix', path.join(dir, 'global'), '--install-links', clone]);
    start('folder', (clone) => ['install', '--no-package-lock', clone]);
  });
  after(async () => {
    await Promise.allSettled(Object.values(installs));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('npm install git+file://<clone>: npm prepares the git dependency and the app gets the build', async () => {
    const { app } = await installs.git;
    expect(fs.lstatSync(path.join(app, 'node_modules', 'sqljobs')).isSymbolicLink()).to.equal(false);
    expect(fs.existsSync(path.join(app, 'node_modules', 'sqljobs', 'dist', 'lib', 'index.js'))).to.equal(true);
    expectWorks(app);
  });

  it('npm install --install-links <clone folder>: prepare installs what the build needs, and the app gets a copy', async () => {
    const { app } = await installs.links;
    const pkg = path.join(app, 'node_modules', 'sqljobs');
    expect(fs.lstatSync(pkg).isSymbolicLink()).to.equal(false);
    expect(fs.existsSync(path.join(pkg, 'dist', 'lib', 'index.js'))).to.equal(true);
    expect(fs.existsSync(path.join(pkg, 'lib')), 'sources in the copy').to.equal(false);
    expectWorks(app);
  });

  it('npm install -g --install-links <clone folder>: the CLI installed globally (npm hands -g on to prepare)', async () => {
    await installs.global;
    const help = run(path.join(dir, 'global', 'bin', 'sqljobs'), ['--help'], dir);
    expect(help).to.match(USAGE);
  });

  it('npm install <clone folder>: npm links the folder and runs its prepare there', async () => {
    const { app, clone } = await installs.folder;
    expect(fs.realpathSync(path.join(app, 'node_modules', 'sqljobs'))).to.equal(fs.realpathSync(clone));
    expect(fs.existsSync(path.join(clone, 'dist', 'lib', 'index.js'))).to.equal(true);
    expectWorks(app);
  });
});
