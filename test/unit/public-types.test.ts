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
const INTERNALS = ['store', 'prepareRow', 'writeRows', 'beginTransaction', 'notifyCommitted', 'reportError'];

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
    compiles(out, 'app.ts', app);
  });

  it('the declarations an app reaches import no driver package nor OpenTelemetry\'s API: an app on one database compiles without the others\' types', () => {
    const imported = new Set<string>();
    const seen = new Set<string>();
    const walk = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const [, spec] of fs.readFileSync(file, 'utf8').matchAll(/(?:from\s+|import\()['"]([^'"]+)['"]/g)) {
        if (spec.startsWith('.')) walk(path.join(path.dirname(file), spec.replace(/\.(js|ts)$/, '.d.ts')));
        else imported.add(spec);
      }
    };
    for (const entry of ['index', 'testing']) walk(path.join(out, 'dist/lib', `${entry}.d.ts`));
    expect(seen.size, 'declaration files reached').to.be.greaterThan(10);
    // prom-client is a dependency (installed with sqljobs); node: modules come with @types/node.
    expect([...imported].filter((spec) => spec !== 'prom-client' && !spec.startsWith('node:')), 'packages the public declarations import').to.deep.equal([]);
  });

  it('opts.tx is typed for the database db is, also after define(); a handler typed for another payload than the job map\'s does not compile', () => {
    const app = [
      "import Database from 'better-sqlite3';",
      "import pg from 'pg';",
      "import mysql from 'mysql2/promise';",
      "import { createJobs } from './dist/lib/index.js';",
      'type Jobs = { mail: { to: string } };',
      'const pool = new pg.Pool();',
      "const onPg = createJobs<Jobs>({ db: pool }).define('mail', async (p) => void p.to.toUpperCase()).define('other', (p: { n: number }) => p.n);",
      'const client = await pool.connect();',
      "void onPg.enqueue('mail', { to: 'a' }, { tx: client });",
      "void onPg.enqueue('other', { n: 1 }, { tx: client });",
      '// @ts-expect-error a number is no transaction',
      "void onPg.enqueue('mail', { to: 'a' }, { tx: 42 });",
      '// @ts-expect-error the pool is not a transaction',
      "void onPg.enqueue('mail', { to: 'a' }, { tx: pool });",
      "const sqlite = new Database(':memory:');",
      'const onSqlite = createJobs<Jobs>({ db: sqlite });',
      "void onSqlite.enqueue('mail', { to: 'a' }, { tx: sqlite });",
      '// @ts-expect-error a pg client is no SQLite transaction',
      "void onSqlite.enqueue('mail', { to: 'a' }, { tx: client });",
      'const mysqlPool = mysql.createPool({});',
      'const onMysql = createJobs<Jobs>({ db: mysqlPool });',
      "void onMysql.enqueue('mail', { to: 'a' }, { tx: await mysqlPool.getConnection() });",
      '// @ts-expect-error the pool is not a transaction',
      "void onMysql.enqueue('mail', { to: 'a' }, { tx: mysqlPool });",
      '// @ts-expect-error the job map says mail\'s payload is { to: string }',
      "createJobs<Jobs>({ db: sqlite }).define('mail', async (p: { to: number }) => p.to.toFixed());",
      "createJobs<Jobs>({ db: sqlite }).define('mail', async (p: { to: string | number }) => String(p.to)); // wider is fine",
      "createJobs<Jobs>({ db: sqlite }).define<'mail', { to: string }>('mail', async (p) => void p.to); // explicit type arguments",
      "declare const either: 'mail' | 'other';",
      'createJobs<Jobs>({ db: sqlite }).define(either, async () => undefined); // a union of names',
      '// @ts-expect-error a union holding a name of the map takes a handler for that name\'s payload too',
      'createJobs<Jobs>({ db: sqlite }).define(either, async (p: { q: 1 }) => p);',
      'export {};',
      '',
    ].join('\n');
    compiles(out, 'tx-app.ts', app);
  });

  it('callbacks are typed by the job map: a name of it, its payload, required when the job\'s payload is; untyped jobs take any name', () => {
    const app = [
      "import Database from 'better-sqlite3';",
      "import express from 'express';",
      "import { createJobs, jobsMiddleware, type RequestJobs } from './dist/lib/index.js';",
      'type Jobs = { order: { id: number }; notify: { to: string }; tick: undefined; maybe: { n: number } | undefined };',
      "const jobs = createJobs<Jobs>({ db: new Database(':memory:') });",
      "void jobs.enqueue('order', { id: 1 }, { onSuccess: { name: 'notify', payload: { to: 'ops' } }, onFailure: 'tick' });",
      "void jobs.enqueue('order', { id: 1 }, { onSuccess: 'maybe', onFailure: { name: 'order', payload: { id: 2 }, onSuccess: 'tick', deadLetter: 'dead' } });",
      '// @ts-expect-error no such job in the map',
      "void jobs.enqueue('order', { id: 1 }, { onSuccess: 'no-such-job' });",
      '// @ts-expect-error notify\'s payload is { to: string }',
      "void jobs.enqueue('order', { id: 1 }, { onFailure: { name: 'notify', payload: { to: 42 } } });",
      '// @ts-expect-error notify needs its payload: by name alone it would run with none',
      "void jobs.enqueue('order', { id: 1 }, { onSuccess: 'notify' });",
      '// @ts-expect-error a callback takes no serial key (it is refused at run time too)',
      "void jobs.enqueue('order', { id: 1 }, { onSuccess: { name: 'tick', serial: 'k' } });",
      "void jobs.enqueueMany([{ name: 'order', payload: { id: 1 }, onSuccess: 'tick' }]);",
      '// @ts-expect-error in enqueueMany items too',
      "void jobs.enqueueMany([{ name: 'order', payload: { id: 1 }, onSuccess: { name: 'notify', payload: {} } }]);",
      "void jobs.batch([{ name: 'order', payload: { id: 1 } }], { onComplete: 'tick', onSuccess: { name: 'notify', payload: { to: 'x' } } });",
      '// @ts-expect-error a batch\'s callbacks too',
      "void jobs.batch([{ name: 'order', payload: { id: 1 } }], { onFailure: 'nope' });",
      "const app = express();",
      'app.use(jobsMiddleware(jobs));',
      "app.post('/', async (req, res) => {",
      "  const rj = req.jobs as unknown as RequestJobs<Jobs>;",
      "  await rj.enqueue('order', { id: 1 }, { onSuccess: { name: 'notify', payload: { to: 'x' } } });",
      '  // @ts-expect-error req.jobs\' callbacks too',
      "  await rj.enqueue('order', { id: 1 }, { onSuccess: 'nope' });",
      '  res.end();',
      '});',
      "const untyped = createJobs({ db: new Database(':memory:') });",
      "void untyped.enqueue('anything', {}, { onSuccess: 'whatever', onFailure: { name: 'other', payload: [1] } });",
      'export {};',
      '',
    ].join('\n');
    compiles(out, 'callbacks-app.ts', app);
  });

  it("the README's Express options compile as written: req is Express's request, with what the app declares on it", () => {
    const app = [
      "import express from 'express';",
      "import Database from 'better-sqlite3';",
      "import type pg from 'pg';",
      "import { createJobs, jobsMiddleware } from './dist/lib/index.js';",
      'declare global {',
      '  namespace Express {',
      '    interface Request { user?: { id: string }; trx?: pg.PoolClient }',
      '  }',
      '}',
      "const jobs = createJobs<{ mail: { to: string } }>({ db: new Database(':memory:') });",
      'const app = express();',
      'app.use(jobsMiddleware(jobs, { userId: (req) => req.user?.id }));',
      'app.use(jobsMiddleware(jobs, { transaction: (req) => req.trx }));',
      'app.use(jobsMiddleware(jobs, { userId: (req: express.Request) => req.user?.id, commitWhen: (_req, res) => res.statusCode < 300 }));',
      '// @ts-expect-error no such property on the request',
      'app.use(jobsMiddleware(jobs, { userId: (req) => req.account?.id }));',
      '',
    ].join('\n');
    compiles(out, 'express-app.ts', app);
  });

  it("the README's Koa typing compiles as written: ctx.jobs typed by RequestJobMap, the user from ctx.state", () => {
    const app = [
      "import Koa from 'koa';",
      "import Database from 'better-sqlite3';",
      "import { createJobs, koaJobs, type RequestJobs, type RequestJobMap } from './dist/lib/index.js';",
      "declare module 'koa' {",
      '  interface DefaultContext { jobs: RequestJobs<RequestJobMap> }',
      '}',
      "declare module './dist/lib/index.js' {",
      '  interface RequestJobMap { mail: { to: string } }',
      '}',
      "const jobs = createJobs<{ mail: { to: string } }>({ db: new Database(':memory:') });",
      'const app = new Koa();',
      'app.use(koaJobs(jobs, { userId: (ctx: Koa.Context) => ctx.state.user?.id }));',
      '// A context typed with its own job map (as examples/koa-postgres does), in the option callbacks too.',
      'interface ShopContext { jobs: RequestJobs<{ receipt: { order: number } }> }',
      'type ShopCtx = Koa.ParameterizedContext<{ user?: { id: string } }, ShopContext>;',
      'app.use(koaJobs(jobs, { userId: (ctx: ShopCtx) => ctx.state.user?.id, commitWhen: (ctx: ShopCtx) => ctx.status < 300 }));',
      'app.use(async (ctx) => {',
      "  await ctx.jobs.enqueue('mail', { to: 'a@example.com' });",
      '  // @ts-expect-error the payload is typed by RequestJobMap',
      "  await ctx.jobs.enqueue('mail', { to: 1 });",
      '  // @ts-expect-error so is the name',
      "  await ctx.jobs.enqueue('nope', {});",
      '});',
      '',
    ].join('\n');
    compiles(out, 'koa-app.ts', app);
  });
});

/** Compile `source` as an app of its own under strict mode against the built declarations. */
function compiles(out: string, file: string, source: string): void {
  fs.writeFileSync(path.join(out, file), source);
  fs.writeFileSync(path.join(out, 'package.json'), '{ "type": "module" }');
  const args = ['--noEmit', '--strict', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--types', 'node', '--skipLibCheck', '--esModuleInterop', path.join(out, file)];
  try {
    execFileSync(TSC, args, { cwd: out, stdio: 'pipe' });
  } catch (err) {
    throw new Error(`${file} does not compile against the declarations:\n${(err as { stdout?: Buffer }).stdout?.toString()}`);
  }
}
