// Runs every test file with mocha (TypeScript through tsx) and ends with a plain summary line,
// `N passed, N failed, N skipped` (also written to the file SQLJOBS_TEST_SUMMARY names, as JSON). Beside mocha's own failures, the run fails when a promise
// rejection goes unhandled, when `.only` is left in a file under CI, and when `-g` matches no test.
import Mocha from 'mocha';
import { register } from 'tsx/esm/api';
import module from 'node:module';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// SQLJOBS_TEST_OVERLAY=<dir>: the packages named in <dir>/package.json's dependencies load from
// <dir>/node_modules instead of this project's (CI runs the suites on another Node with drivers
// installed there, e.g. a better-sqlite3 for that Node's ABI, leaving node_modules as it is).
const overlay = process.env.SQLJOBS_TEST_OVERLAY;
if (overlay) {
  if (typeof module.registerHooks !== 'function') throw new Error(`SQLJOBS_TEST_OVERLAY needs Node >= 22.15 (this is ${process.version})`);
  const from = pathToFileURL(path.resolve(overlay, 'package.json')).href;
  const names = new Set(Object.keys(JSON.parse(readFileSync(new URL(from), 'utf8')).dependencies ?? {}));
  const requireThere = module.createRequire(from);
  let inside = false;
  module.registerHooks({
    resolve(specifier, context, next) {
      const name = specifier.split('/', specifier.startsWith('@') ? 2 : 1).join('/');
      if (!names.has(name) || inside) return next(specifier, context);
      // require() resolves from its parent module, not from parentURL: resolve it there ourselves.
      // (That resolve comes back through this hook: `inside` lets it through.)
      if (context.conditions?.includes('require') && !inside) {
        inside = true;
        try {
          return { url: pathToFileURL(requireThere.resolve(specifier)).href, shortCircuit: true };
        } finally {
          inside = false;
        }
      }
      return next(specifier, { ...context, parentURL: from });
    },
  });
}

// `node test/run.mjs --totals <summary.json>...`: CI's closing line over several runs (each run
// writes its counts to SQLJOBS_TEST_SUMMARY). A run whose summary is missing counts as a failure.
if (process.argv[2] === '--totals') {
  const t = { passed: 0, failed: 0, skipped: 0 };
  for (const f of process.argv.slice(3)) {
    let s;
    try {
      s = JSON.parse(readFileSync(f, 'utf8'));
    } catch (err) {
      s = { label: f, passed: 0, failed: 1, skipped: 0 };
      console.error(`  ✗ ${f}: no summary (${err.message}): counted as a failure`);
    }
    console.log(`${s.label}: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`);
    for (const title of s.failures ?? []) console.log(`  ✗ ${title}`);
    for (const k of Object.keys(t)) t[k] += s[k];
  }
  console.log(`\n${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped`);
  process.exit(t.failed || process.argv.length === 3 ? 1 : 0);
}

register();
const { isCI } = await import('./helpers/ci.ts');

function testFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(path.join(dir, e.name)) : e.name.endsWith('.test.ts') ? [path.join(dir, e.name)] : [],
  );
}

// Mocha swallows a rejection nobody handled (it re-emits it on process, where nothing listens):
// a test whose stray promise failed would pass. Each one counts as a failure of the run (once:
// Node reports it here, then mocha's own listener re-emits it).
const rejections = new Set();
process.on('unhandledRejection', (reason, promise) => {
  if (rejections.has(promise)) return;
  rejections.add(promise);
  console.error('\n  ✗ unhandled rejection during the run:', reason);
});

// Titles of failed tests, repeated in the summary file so CI's closing lines name them.
const failedTitles = [];

function summary(passed, failed, skipped) {
  if (rejections.size) console.error(`\n${rejections.size} unhandled rejection(s) counted as failures`);
  const failures = failed + rejections.size;
  console.log(`\n${passed} passed, ${failures} failed, ${skipped} skipped`);
  if (process.env.SQLJOBS_TEST_SUMMARY) {
    const label = process.env.SQLJOBS_TEST_LABEL || `Node ${process.version}`;
    writeFileSync(process.env.SQLJOBS_TEST_SUMMARY, JSON.stringify({ label, passed, failed: failures, skipped, failures: failedTitles }));
  }
  process.exit(failures ? 1 : 0);
}

// Arguments: test files or folders (default: all under test/), and `-g <pattern>` to run only matching tests.
const args = process.argv.slice(2);
const g = args.indexOf('-g');
const grep = g >= 0 ? args.splice(g, 2)[1] : undefined;
const files = args.length ? args.flatMap((a) => (statSync(a).isDirectory() ? testFiles(a).sort() : [a])) : testFiles('test').sort();
const mocha = new Mocha({ timeout: 60_000, reporter: 'spec', slow: 2000, grep, forbidOnly: isCI() });
for (const f of files) mocha.addFile(f);
try {
  await mocha.loadFilesAsync();
} catch (err) {
  // A file that does not load (a syntax error, `.only` under CI) fails the run, not just the process.
  console.error(err);
  summary(0, 1, 0);
}
const runner = mocha.run();
// Seconds spent per file (tests and hooks), so CI can say where its time goes.
const secondsByFile = new Map();
const addTime = (runnable) => {
  if (!runnable.file || !runnable.duration) return;
  secondsByFile.set(runnable.file, (secondsByFile.get(runnable.file) ?? 0) + runnable.duration / 1000);
};
runner.on('test end', addTime);
runner.on('hook end', addTime);
runner.on('fail', (test, err) => failedTitles.push(`${test.fullTitle()}: ${String(err?.message ?? err).split('\n')[0].slice(0, 300)}`));
runner.on('end', () => {
  const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
  let failed = s.failures;
  if (grep !== undefined && runner.total === 0) {
    console.error(`\n  ✗ -g ${JSON.stringify(grep)} matches no test`);
    failed += 1;
  }
  if (isCI() || process.env.SQLJOBS_TEST_TIMES) {
    const slowest = [...secondsByFile].sort((a, b) => b[1] - a[1]).slice(0, 25);
    console.log('\nslowest files (seconds in tests and hooks):');
    for (const [file, seconds] of slowest) console.log(`  ${seconds.toFixed(1).padStart(7)}  ${path.relative(process.cwd(), file)}`);
  }
  // Open handles may keep the process alive; the pause also counts a rejection that surfaces just after the last test.
  setTimeout(() => summary(s.passes, failed, s.pending), 500);
});
