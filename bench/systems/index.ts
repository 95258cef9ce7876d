/** The systems the harness runs, by name. */
import type { SystemOptions } from '../lib/config.ts';
import { FloorPg } from './floor-pg.ts';
import { FloorSqlite } from './floor-sqlite.ts';
import { GraphileWorker } from './graphile-worker.ts';
import { PgBossSystem } from './pg-boss.ts';
import { Plainjob } from './plainjob.ts';
import { SqljobsPg, SqljobsSqlite } from './sqljobs.ts';
import type { BenchSystem } from './types.ts';

export interface SystemInfo {
  name: string;
  label: string;
  backend: 'sqlite' | 'postgres';
  /** npm package whose version is printed; null for the raw-SQL floors. */
  pkg: string | null;
  /** Notes printed under the table: the options used. */
  notes: string;
  create(opts: SystemOptions): BenchSystem;
}

export const SYSTEMS: SystemInfo[] = [
  {
    name: 'sqljobs-sqlite', label: 'sqljobs', backend: 'sqlite', pkg: null,
    notes: 'createJobs({ db, tablePrefix, worker: { concurrency } }), defaults otherwise',
    create: (o) => new SqljobsSqlite(o),
  },
  {
    name: 'plainjob', label: 'plainjob', backend: 'sqlite', pkg: 'plainjob',
    notes: 'one worker (no concurrency option), default 1 s poll; add / addMany',
    create: (o) => new Plainjob(o),
  },
  {
    name: 'floor-sqlite', label: 'raw SQL floor', backend: 'sqlite', pkg: null,
    notes: '1 connection, claim 100 with UPDATE … RETURNING, one DELETE per batch',
    create: (o) => new FloorSqlite({ ...o, archive: false }),
  },
  {
    name: 'floor-sqlite-archive', label: 'raw SQL floor, archiving', backend: 'sqlite', pkg: null,
    notes: 'as the floor, but INSERT … SELECT into history + DELETE per batch (one transaction)',
    create: (o) => new FloorSqlite({ ...o, archive: true }),
  },
  {
    name: 'sqljobs-pg', label: 'sqljobs', backend: 'postgres', pkg: null,
    notes: 'createJobs({ db: pool, tablePrefix, worker: { concurrency } }), defaults otherwise',
    create: (o) => new SqljobsPg(o),
  },
  {
    name: 'graphile-worker', label: 'graphile-worker (tuned)', backend: 'postgres', pkg: 'graphile-worker',
    notes: 'concurrency 10, preset.worker.localQueue.size 100, completeJobBatchDelay 0; addJob / addJobs',
    create: (o) => new GraphileWorker(o),
  },
  {
    name: 'pg-boss', label: 'pg-boss', backend: 'postgres', pkg: 'pg-boss',
    notes: 'work({ localConcurrency 10, batchSize 100, burstWhenBatchFull }), useListenNotify + queue notify; send / insert',
    create: (o) => new PgBossSystem(o),
  },
  {
    name: 'floor-pg', label: 'raw SQL floor', backend: 'postgres', pkg: null,
    notes: '4 claimers × claim 100 FOR UPDATE SKIP LOCKED, one UPDATE per batch; INSERT + pg_notify per enqueue',
    create: (o) => new FloorPg({ ...o, archive: false }),
  },
  {
    name: 'floor-pg-archive', label: 'raw SQL floor, archiving', backend: 'postgres', pkg: null,
    notes: 'as the floor, but one DELETE … RETURNING → INSERT into history per batch',
    create: (o) => new FloorPg({ ...o, archive: true }),
  },
];

export function systemByName(name: string): SystemInfo {
  const s = SYSTEMS.find((x) => x.name === name);
  if (!s) throw new Error(`unknown system "${name}"; known: ${SYSTEMS.map((x) => x.name).join(', ')}`);
  return s;
}
