import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { forEachDialect, MYSQL_HISTORY_PARTITIONED, until, type TestDb } from '../helpers/dialects.ts';

const run = (t: TestDb, args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli.ts', ...args], {
    env: { ...process.env, DIALECT: t.dialect, DRIVER: t.driver, LOCATION: t.location, PREFIX: t.prefix, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });

forEachDialect('sqljobs CLI', ({ fresh }) => {
  it('migrate, worker, status and history on the module an app exports', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const migrated = run(t, ['migrate', 'test/fixtures/cli-jobs.ts']);
    expect(migrated.status, migrated.stderr).to.equal(0);
    expect(migrated.stdout).to.include('schema is up to date');

    const producer = t.jobs({ worker: false });
    const ids = (await producer.enqueueMany(Array.from({ length: 5 }, (_, i) => ({ name: 'hello', payload: { who: `n${i}` }, queue: 'greetings' })))).map((r) => r.id);
    const before = run(t, ['status', 'test/fixtures/cli-jobs.ts', '--json']);
    expect(before.status, before.stderr).to.equal(0);
    expect(JSON.parse(before.stdout).live).to.deep.equal([{ state: 'pending', queue: 'greetings', count: 5 }]);

    const worker = spawn(process.execPath, ['--import', 'tsx', 'lib/cli.ts', 'worker', 'test/fixtures/cli-jobs.ts'], {
      env: { ...process.env, DIALECT: t.dialect, DRIVER: t.driver, LOCATION: t.location, PREFIX: t.prefix },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    worker.stdout!.on('data', (d) => (out += d));
    try {
      await until(async () => (await producer.get(ids[4]))?.state === 'completed', 'the CLI worker to run the jobs', 20_000, 50);
      await until(() => out.includes('now leading'), 'the worker to lead', 5000);
      const during = run(t, ['status', 'test/fixtures/cli-jobs.ts']);
      expect(during.stdout).to.match(/completed\s+5/);
      expect(during.stdout).to.match(/workers:\n {2}\S+ {2}pid \d+/);
      expect(during.stdout).to.match(/leader: (\S+ \(lease|PostgreSQL session \d+|MySQL connection \d+ .*\(GET_LOCK\))/);
    } finally {
      worker.kill('SIGTERM');
    }
    const code = await new Promise((r) => worker.on('exit', r));
    expect(code).to.equal(0);
    expect(out).to.include('stopped: 5 completed, 0 failed');
    const months = run(t, ['history', 'test/fixtures/cli-jobs.ts']);
    expect(months.status, months.stderr).to.equal(0);
    const thisMonth = new Date().toISOString().slice(0, 7);
    expect(months.stdout).to.match(new RegExp(`finished jobs per month \\(UTC\\):\\n {2}${thisMonth} {2}completed 5`));
    expect(months.stdout).to.match(/retention: /);
    const json = run(t, ['history', 'test/fixtures/cli-jobs.ts', '--json']);
    expect(JSON.parse(json.stdout).months[0]).to.deep.include({ month: thisMonth, counts: { completed: 5 }, estimated: false });
    // A module shared by both tiers, made a producer here: the worker says so and exits (it ran nothing, silently).
    const producerOnly = run(t, ['worker', 'test/fixtures/cli-jobs.ts'], { MODE: 'producer' });
    expect(producerOnly.status).to.equal(2);
    expect(producerOnly.stderr).to.include("mode: 'producer'");
    const bad = run(t, ['frobnicate', 'x']);
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.include('unknown command "frobnicate"');
  });

  it('history-partitions: prints the partition DDL on MySQL/MariaDB (test/mysql/partitions.test.ts applies it); elsewhere says there is none', async function () {
    this.timeout(60_000);
    const t = await fresh();
    const printed = run(t, ['history-partitions', 'test/fixtures/cli-jobs.ts']);
    if (t.dialect === 'mysql') {
      expect(printed.status, printed.stderr).to.equal(0);
      // Under SQLJOBS_MYSQL_PARTITIONED=1 the test database starts partitioned, with this month and the next.
      if (MYSQL_HISTORY_PARTITIONED) expect(printed.stdout).to.include('nothing to do');
      else expect(printed.stdout).to.match(/^ALTER TABLE \S+history DROP PRIMARY KEY[\s\S]*-- not applied/);
    } else {
      expect(printed.status).to.equal(2);
      expect(printed.stderr).to.include(`historyPartitions: ${t.dialect} has no partition script`);
    }
  });
});

describe('sqljobs CLI arguments', () => {
  const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli.ts', ...args], { encoding: 'utf8', timeout: 30_000 });

  it('help and version answer; a missing command or module, an unknown command or argument is a usage error (exit 2), never ignored', () => {
    for (const help of ['--help', '-h', 'help']) {
      const r = cli([help]);
      expect(r.status, help).to.equal(0);
      expect(r.stdout).to.match(/^usage: sqljobs/);
    }
    // A flag before the module is the same flag.
    const flagFirst = cli(['status', '--jsn', 'test/fixtures/cli-jobs.ts']);
    expect(flagFirst.stderr).to.match(/unknown argument "--jsn"/);
    const version = cli(['--version']);
    expect(version.status).to.equal(0);
    expect(version.stdout.trim()).to.match(/^\d+\.\d+\.\d+/);
    for (const [args, said] of [
      [[], /which command\?/],
      [['status'], /sqljobs status: which module\?/],
      [['bogus'], /unknown command "bogus"/],
      [['status', 'test/fixtures/cli-jobs.ts', '--jsn'], /sqljobs status: unknown argument "--jsn" \(it takes --json\)/],
      [['migrate', 'test/fixtures/cli-jobs.ts', 'extra'], /sqljobs migrate: unknown argument "extra" \(it takes none\)/],
    ] as [string[], RegExp][]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).to.equal(2);
      expect(r.stderr, args.join(' ')).to.match(said).and.match(/usage: sqljobs/);
    }
  });
});
