/**
 * SQL Server without a server: the T-SQL of history partitioned by month (lib/driver/mssql/
 * partitions.ts), as text and bindings. It is not run against a live SQL Server here; the
 * decisions (which months to make, which may go) are the ones MySQL/MariaDB runs live
 * (test/mysql/partitions.test.ts, test/unit/monthly.test.ts).
 */
import { expect } from 'chai';
import mssql from 'mssql';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  HISTORY_INDEXES, monthDrop, monthIds, monthReferenced, monthsSplit, monthTrailDelete, oldestFinish, partitionsList, partitionsLock, partitionTable,
  type MssqlPartition,
} from '../../lib/driver/mssql/partitions.ts';
import { monthPartition } from '../../lib/driver/monthly.ts';
import { historyMonthsOfPartitions } from '../../lib/driver/partition-months.ts';
import type { HistoryMonth } from '../../lib/driver/store.ts';
import { splitStatements } from '../../lib/driver/migrations.ts';
import { tables } from '../../lib/driver/portable/statement.ts';
import { bind, named } from '../../lib/driver/mssql/store.ts';
import type { Stmt } from '../../lib/driver/mssql/tsql.ts';
import { historyMonthCounts, historyNewestBefore } from '../../lib/driver/portable/reads.ts';
import { throughputRead } from '../../lib/driver/portable/throughput.ts';
import { historyPrunePick } from '../../lib/driver/portable/admin.ts';
import { sqlFor } from '../helpers/portable.ts';

const HOSTILE = "x'); DROP TABLE sqljobs_jobs; --";
const T = tables('app_');
const NOW = new Date('2026-12-05T09:00:00.000Z');
const MONTHS = [-2, -1, 0, 1].map((k) => monthPartition(NOW, k));
/** Partition 3 of a history made for MONTHS: November 2026 (partition 1 is before the first month, 2 October). */
const NOVEMBER: MssqlPartition = { name: 'partition 3', number: 3, from: MONTHS[1].from, to: MONTHS[1].to, rows: 10, bytes: 81_920 };

/** Every partition statement, with hostile text where text goes in (the checks in ./statements.test.ts run on them too). */
export function partitionStatements(prefix: string): [string, Stmt][] {
  const t = tables(prefix);
  return [
    ['list', partitionsList(t)],
    ['oldest', oldestFinish(t)],
    ['lock', partitionsLock(prefix)],
    ...partitionTable(t, prefix, MONTHS).map((s, i): [string, Stmt] => [`partition ${i}`, s]),
    ...monthsSplit(prefix, MONTHS.slice(-1)).map((s, i): [string, Stmt] => [`split ${i}`, s]),
    ['referenced', monthReferenced(t, NOVEMBER)],
    ['ids', monthIds(t, NOVEMBER, HOSTILE, 5000)],
    ['trail', monthTrailDelete(t, [HOSTILE])],
    ['drop', monthDrop(t, prefix, NOVEMBER)],
  ];
}

/** History's nonclustered indexes as the migrations leave them: name -> definition after ON history. */
function migratedHistoryIndexes(): Map<string, string> {
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations', 'mssql');
  const indexes = new Map<string, string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    for (const stmt of splitStatements(readFileSync(path.join(dir, file), 'utf8'))) {
      const made = /^CREATE INDEX \{\{prefix\}\}(history_\w+) ON \{\{prefix\}\}history (.+)$/s.exec(stmt.trim());
      if (made) indexes.set(made[1], made[2].replace(/\s+/g, ' ').trim());
      const dropped = /^DROP INDEX \{\{prefix\}\}(history_\w+) ON \{\{prefix\}\}history$/.exec(stmt.trim());
      if (dropped) indexes.delete(dropped[1]);
    }
  }
  return indexes;
}

describe('SQL Server: history partitioned by month (statement text)', () => {
  it('the script rebuilds every history index the migrations made, aligned with the scheme (TRUNCATE … WITH (PARTITIONS) needs them all aligned)', () => {
    const expected = new Map(HISTORY_INDEXES.map((i) => [i.name, `(${i.columns})${i.where ? ` WHERE ${i.where}` : ''}`]));
    expect(expected).to.deep.equal(migratedHistoryIndexes());
    const ddl = partitionTable(T, 'app_', MONTHS).map((s) => s.text);
    for (const i of HISTORY_INDEXES) {
      expect(ddl, i.name).to.include(`CREATE INDEX app_${i.name} ON app_history (${i.columns})${i.where ? ` WHERE ${i.where}` : ''} WITH (DROP_EXISTING = ON) ON app_history_months_scheme (finished_at)`);
    }
  });

  it('partitions by month: RANGE RIGHT boundaries at each month start through the end of next month, the key clustered on (id, finished_at) on the scheme', () => {
    const [fn, scheme, dropKey, key] = partitionTable(T, 'app_', MONTHS);
    expect(fn.text).to.equal(`CREATE PARTITION FUNCTION app_history_months (DATETIME2(3)) AS RANGE RIGHT FOR VALUES ('2026-10-01T00:00:00.000', '2026-11-01T00:00:00.000', '2026-12-01T00:00:00.000', '2027-01-01T00:00:00.000', '2027-02-01T00:00:00.000')`);
    expect(scheme.text).to.equal('CREATE PARTITION SCHEME app_history_months_scheme AS PARTITION app_history_months ALL TO ([PRIMARY])');
    // The key's system-made name is looked up, the table's name bound.
    expect(dropKey.text).to.match(/^DECLARE @pk SYSNAME = \(SELECT name FROM sys\.key_constraints WHERE parent_object_id = OBJECT_ID\(@p1\) AND type = 'PK'\);\nEXEC \(N'ALTER TABLE app_history DROP CONSTRAINT ' \+ QUOTENAME\(@pk\)\)$/);
    expect(dropKey.params).to.deep.equal([{ name: 'p1', type: 'nvarchar', value: 'app_history' }]);
    expect(key.text).to.equal('ALTER TABLE app_history ADD CONSTRAINT app_history_pkey PRIMARY KEY CLUSTERED (id, finished_at) ON app_history_months_scheme (finished_at)');
  });

  it('a coming month is split off the last partition, its boundary bound as DATETIME2(3)', () => {
    const next = monthPartition(NOW, 2);
    const [use, split] = monthsSplit('app_', [next]);
    expect(use.text).to.equal('ALTER PARTITION SCHEME app_history_months_scheme NEXT USED [PRIMARY]');
    expect(split).to.deep.equal({ text: 'ALTER PARTITION FUNCTION app_history_months() SPLIT RANGE (@p1)', params: [{ name: 'p1', type: 'datetime2', value: new Date('2027-03-01T00:00:00.000Z') }] });
  });

  it('retention: the month is locked, checked for live references, truncated by number and its lower boundary merged away, in one transaction', () => {
    const drop = monthDrop(T, 'app_', NOVEMBER);
    const at = (s: string) => {
      const i = drop.text.indexOf(s);
      expect(i, s).to.be.greaterThan(-1);
      return i;
    };
    const order = [
      at('BEGIN TRANSACTION'), at('FROM app_history WITH (TABLOCKX, HOLDLOCK, NOWAIT)'),
      at('JOIN app_jobs j ON j.id = dp.child_id'), at('WHERE bt.finished_at IS NULL'),
      at('TRUNCATE TABLE app_history WITH (PARTITIONS (3))'), at('ALTER PARTITION FUNCTION app_history_months() MERGE RANGE (@from)'), at('SET @dropped = 1'), at('SELECT @dropped AS dropped'), at('COMMIT;'),
    ];
    expect(order).to.deep.equal([...order].sort((a, b) => a - b));
    expect(drop.text).to.match(/BEGIN CATCH\s+IF @@TRANCOUNT > 0 ROLLBACK;\s+THROW;/);
    expect(drop.params).to.deep.equal([{ name: 'from', type: 'datetime2', value: NOVEMBER.from }, { name: 'to', type: 'datetime2', value: NOVEMBER.to }]);
    expect(() => monthDrop(T, 'app_', { ...NOVEMBER, number: 1 }), 'partition 1 (before the first month) is the merge target').to.throw(/partition number 1 is not a month/);
    expect(() => monthDrop(T, 'app_', { ...NOVEMBER, number: 2.5 })).to.throw(/partition number 2.5/);
  });

  it('the trail goes first in batches: ids of the month by its bounds in id order, then logs, attempts and edges by one JSON array', () => {
    const ids = monthIds(T, NOVEMBER, null, 5000);
    expect(ids.text).to.equal('SELECT TOP (@limit) id FROM app_history h WHERE h.finished_at >= @from AND h.finished_at < @to AND (@after IS NULL OR id > @after) ORDER BY id');
    expect(ids.params.map((p) => [p.name, p.type, p.value])).to.deep.equal([['from', 'datetime2', NOVEMBER.from], ['to', 'datetime2', NOVEMBER.to], ['after', 'char36', null], ['limit', 'int', 5000]]);
    const trail = monthTrailDelete(T, ['a', HOSTILE]);
    expect(trail.text.split('\n')).to.deep.equal(['app_logs job_id', 'app_attempts job_id', 'app_deps child_id'].map((x) => {
      const [table, key] = x.split(' ');
      return `DELETE FROM ${table} WHERE ${key} IN (SELECT CAST(value AS CHAR(36)) FROM OPENJSON(@ids));`;
    }));
    expect(trail.params).to.deep.equal([{ name: 'ids', type: 'nvarchar(max)', value: JSON.stringify(['a', HOSTILE]) }]);
  });

  it('history reads bounded by time compare finished_at itself with a value computed once (a seek on the finish-time index, and partition elimination)', () => {
    const sql = sqlFor('mssql');
    const reads = [
      throughputRead(sql, { from: NOW.getTime() - 3_600_000, to: null, bucketMs: 60_000, counted: null }),
      throughputRead(sql, { from: NOW.getTime() - 60_000, to: NOW.getTime() - 2_000, bucketMs: 60_000, counted: null }),
      throughputRead(sql, { from: NOW.getTime() - 3_600_000, to: null, bucketMs: 60_000, counted: { from: NOW.getTime() - 3_540_000, to: NOW.getTime() - 5_000 } }),
      historyNewestBefore(sql, { before: NOW.getTime() }),
      historyMonthCounts(sql, { from: MONTHS[1].from.getTime(), to: MONTHS[1].to.getTime(), cap: 1000 }),
      historyPrunePick(sql, { olderThanMs: 86_400_000, limit: 5000, since: MONTHS[0].from.getTime() }),
    ];
    for (const r of reads) {
      // History's own WHERE (a subquery after it has its own).
      const where = r.text.slice(r.text.indexOf('WHERE', r.text.lastIndexOf(`FROM ${T.history}`)));
      expect(where, r.text).to.match(/^WHERE finished_at [<>]=? /);
      // The column is never inside a function or arithmetic there (that would scan).
      expect(where, r.text).to.not.match(/\(\s*finished_at\b|finished_at\s*[-+*/]/);
    }
  });

  it('the History view places each month in its partition by number, with its size from the allocation units and its row count where the count was capped', () => {
    expect(partitionsList(T).text).to.match(/SUM\(a\.used_pages\)[\s\S]+sys\.allocation_units a ON a\.container_id = ap\.partition_id[\s\S]+\* 8192 AS bytes/);
    const parts: MssqlPartition[] = [
      { name: 'partition 1', number: 1, from: null, to: MONTHS[0].from, rows: 0, bytes: 0 },
      { name: 'partition 2', number: 2, from: MONTHS[0].from, to: MONTHS[0].to, rows: 4, bytes: 16_384 },
      NOVEMBER,
      { name: 'partition 4', number: 4, from: MONTHS[2].from, to: null, rows: 90_000, bytes: 9_000_000 },
    ];
    const month = (m: string, counts: HistoryMonth['counts'], estimated = false): HistoryMonth => ({ month: m, storedIn: null, counts, estimated, bytes: null, storedUntil: null });
    const placed = historyMonthsOfPartitions(
      [month('2026-12', { completed: 500, failed: 500 }, true), month('2026-11', { completed: 10 }), month('2026-10', { completed: 3, failed: 1 })], parts);
    expect(placed[0], 'the open-ended last partition: placed, never dropped, no size of its own').to.deep.include({ storedIn: 'partition 4', storedUntil: null, bytes: null });
    expect(placed[1], 'November alone in partition 3').to.deep.include({ storedIn: 'partition 3', bytes: 81_920, counts: { completed: 10 } });
    expect(placed[1].storedUntil).to.deep.equal(MONTHS[1].to);
    expect(placed[2]).to.deep.include({ storedIn: 'partition 2', bytes: 16_384 });
  });

  it('hands each partition statement\'s parameters to a real mssql Request with its driver type', () => {
    for (const [name, stmt] of partitionStatements('app_')) {
      const req = new mssql.Request();
      bind(req as never, stmt.params);
      expect(Object.keys((req as unknown as { parameters: object }).parameters), name).to.deep.equal(stmt.params.map((p) => p.name));
    }
    expect(named(historyPrunePick(sqlFor('mssql'), { olderThanMs: 1, limit: 2 })).params.map((p) => p.type)).to.deep.equal(['bigint', 'int']);
  });
});
