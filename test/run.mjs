// Runs every test file with mocha (TypeScript through tsx) and ends with a plain summary line.
import Mocha from 'mocha';
import { register } from 'tsx/esm/api';
import { readdirSync } from 'node:fs';
import path from 'node:path';

register();
function testFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(path.join(dir, e.name)) : e.name.endsWith('.test.ts') ? [path.join(dir, e.name)] : [],
  );
}
// Arguments: test files (default: all under test/), and `-g <pattern>` to run only matching tests.
const args = process.argv.slice(2);
const g = args.indexOf('-g');
const grep = g >= 0 ? args.splice(g, 2)[1] : undefined;
const files = args.length ? args : testFiles('test').sort();
const mocha = new Mocha({ timeout: 60_000, reporter: 'spec', slow: 2000, grep });
for (const f of files) mocha.addFile(f);
await mocha.loadFilesAsync();
const runner = mocha.run();
runner.on('end', () => {
  const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
  console.log(`\n${s.passes} passed, ${s.failures} failed, ${s.pending} skipped`);
  process.exitCode = s.failures ? 1 : 0;
  setTimeout(() => process.exit(process.exitCode), 500).unref();
});
