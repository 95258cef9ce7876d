/**
 * MySQL/MariaDB only: every history read of the admin and the API reads a bounded part of a history
 * of 100,000 rows (ANALYZE: the rows each access really read), on the plain table and once it is
 * partitioned by month. bench/mysql-history-plans.ts prints the same plans on 1,000,000 rows.
 */
import { expect } from 'chai';
import { mysqlDialect as factory, requireDatabase, type TestDb } from '../helpers/dialects.ts';
import { explainAll, historyPlanChecks, seedHistory, UNINDEXED } from '../../bench/lib/mysql-history.ts';
import type { MysqlStore } from '../../lib/driver/mysql/store.ts';
import type mysql from 'mysql2/promise';

const ROWS = 100_000;

describe('history reads at scale: no full scan [mysql]', function () {
  this.timeout(120_000);
  before(requireDatabase(factory));
  let t: TestDb;
  before(async () => {
    t = await factory.create();
  });
  after(async () => {
    await t?.cleanup();
  });

  async function plans(store: MysqlStore) {
    const pool = t.db as mysql.Pool;
    const [sample] = await t.query<{ id: string }>(`SELECT id FROM ${t.prefix}history WHERE ref_id = 'ref-50002'`); // halfway: every 10th seeded job has refId ref-<i>, i ending in 2
    return explainAll(pool, historyPlanChecks(store, sample.id, await store.historyPartitioned()), `${t.prefix}history`, ROWS);
  }

  function expectBounded(found: Awaited<ReturnType<typeof plans>>): void {
    const scans = found.filter((p) => p.fullScan && !UNINDEXED.test(p.what)).map((p) => `${p.what}: ${p.plan}`);
    expect(scans, 'reads that scan history').to.deep.equal([]);
  }

  it('plain history, then partitioned by month', async () => {
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    await seedHistory(t.db as mysql.Pool, t.prefix, ROWS);
    expectBounded(await plans(jobs.store as MysqlStore));
    await jobs.historyPartitions({ apply: true });
    await t.query(`ANALYZE TABLE ${t.prefix}history`);
    expectBounded(await plans(jobs.store as MysqlStore));
  });
});
