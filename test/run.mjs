// Runs every test file with mocha (TypeScript through tsx) and ends with a plain summary line,
// `N passed, N failed, N skipped`. Beside mocha's own failures, the run fails when a promise
// rejection goes unhandled, when `.only` is left in a file under CI, and when `-g` matches no test.
import Mocha from 'mocha';
import { register } from 'tsx/esm/api';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

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

function summary(passed, failed, skipped) {
  if (rejections.size) console.error(`\n${rejections.size} unhandled rejection(s) counted as failures`);
  const failures = failed + rejections.size;
  console.log(`\n${passed} passed, ${failures} failed, ${skipped} skipped`);
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
runner.on('end', () => {
  const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
  let failed = s.failures;
  if (grep !== undefined && runner.total === 0) {
    console.error(`\n  ✗ -g ${JSON.stringify(grep)} matches no test`);
    failed += 1;
  }
  // Open handles may keep the process alive; the pause also counts a rejection that surfaces just after the last test.
  setTimeout(() => summary(s.passes, failed, s.pending), 500);
});
