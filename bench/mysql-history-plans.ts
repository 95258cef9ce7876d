/**
 * MariaDB/MySQL: the plan of every history read the admin and the API make, on a history of
 * 1,000,000 rows (seeded set-based from MariaDB's sequence engine, in a dedicated hx_ prefix): each
 * statement is the one the store runs (built by the same functions), EXPLAINed, with the access
 * type, the index, the planner's estimate and the rows really read (ANALYZE). An access of history
 * of type ALL, or one that read more than a tenth of it, is flagged FULL SCAN. With --partitioned,
 * the same after `sqljobs history-partitions --apply`'s DDL, and the time that DDL took.
 *
 *   node --import tsx bench/mysql-history-plans.ts [--rows 1000000] [--partitioned] [--keep]
 */
import mysql from 'mysql2/promise';
import { parseArgs } from 'node:util';
import { createJobs } from '../lib/index.ts';
import { historyPlanChecks, seedHistory, explainAll, UNINDEXED } from './lib/mysql-history.ts';
import { MysqlStore } from '../lib/driver/mysql/store.ts';

const { values: flags } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    partitioned: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const URL = process.env.SQLJOBS_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
const PREFIX = 'hx_';

const pool = mysql.createPool({ uri: URL, connectionLimit: 4 });
const jobs = createJobs({ db: pool, tablePrefix: PREFIX });
try {
  const [have] = await pool.query(`SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`, [`${PREFIX}history`]);
  if (Number((have as { n: number }[])[0].n) === 0 || !flags.keep) {
    await dropPrefix();
    await jobs.migrate();
    const t0 = performance.now();
    await seedHistory(pool, PREFIX, Number(flags.rows));
    console.log(`seeded ${flags.rows} history rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const store = jobs.store as MysqlStore;
  if (flags.partitioned && !(await store.historyPartitioned())) {
    const t0 = performance.now();
    const ddl = await store.historyPartitionScript({ apply: true });
    console.log(`${ddl.map((s) => s.text).join(';\n')};\npartitioned in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const [count] = await pool.query(`SELECT COUNT(*) AS n FROM ${PREFIX}history`);
  const plans = await explainAll(pool, historyPlanChecks(store, await sampleId(), await store.historyPartitioned()), `${PREFIX}history`, Number((count as { n: number }[])[0].n));
  for (const p of plans) console.log(`${p.fullScan ? 'FULL SCAN ' : 'ok        '} ${p.what.padEnd(44)} ${p.plan}`);
  // The filters without an index are expected to scan (documented); any other scan fails the run.
  process.exitCode = plans.some((p) => p.fullScan && !UNINDEXED.test(p.what)) ? 1 : 0;
} finally {
  if (!flags.keep) await dropPrefix();
  await jobs.close();
  await pool.end();
}

/** A finished job from the middle of history. */
async function sampleId(): Promise<string> {
  // Every 10th seeded job has refId ref-<i>, i ending in 2: the one halfway.
  const [rows] = await pool.query(`SELECT id FROM ${PREFIX}history WHERE ref_id = ?`, [`ref-${Math.floor(Number(flags.rows) / 20) * 10 + 2}`]);
  return (rows as { id: string }[])[0].id;
}

async function dropPrefix(): Promise<void> {
  const [tables] = await pool.query(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?`, [`${PREFIX.replace('_', '\\_')}%`]);
  for (const t of tables as { t: string }[]) await pool.query(`DROP TABLE IF EXISTS \`${t.t}\``);
}
