/** The systems the harness runs, by name. Each module is loaded only by the child that measures it. */
import type { SystemOptions } from '../lib/config.ts';
import type { Backend, BenchSystem } from './types.ts';

export interface SystemInfo {
  name: string;
  label: string;
  backend: Backend;
  /** npm package whose version is printed; null for the raw-SQL floors. */
  pkg: string | null;
  /** Notes printed under the table: the options used. */
  notes: string;
  /** Loads the system's module (and so its library) only when called. */
  create(opts: SystemOptions): Promise<BenchSystem>;
}

export const SYSTEMS: SystemInfo[] = [
  {
    name: 'sqljobs-sqlite', label: 'sqljobs', backend: 'sqlite', pkg: null,
    notes: 'createJobs({ db, tablePrefix, worker: { concurrency } }), defaults otherwise',
    create: (o) => import('./sqljobs.ts').then((m) => new m.SqljobsSqlite(o)),
  },
  {
    name: 'plainjob', label: 'plainjob', backend: 'sqlite', pkg: 'plainjob',
    notes: 'one worker (no concurrency option), default 1 s poll; add / addMany',
    create: (o) => import('./plainjob.ts').then((m) => new m.Plainjob(o)),
  },
  {
    name: 'floor-sqlite', label: 'raw SQL floor', backend: 'sqlite', pkg: null,
    notes: '1 connection, claim 100 with UPDATE … RETURNING, one DELETE per batch',
    create: (o) => import('./floor-sqlite.ts').then((m) => new m.FloorSqlite({ ...o, archive: false })),
  },
  {
    name: 'floor-sqlite-archive', label: 'raw SQL floor, archiving', backend: 'sqlite', pkg: null,
    notes: 'as the floor, but INSERT … SELECT into history + DELETE per batch (one transaction)',
    create: (o) => import('./floor-sqlite.ts').then((m) => new m.FloorSqlite({ ...o, archive: true })),
  },
  {
    name: 'sqljobs-pg', label: 'sqljobs', backend: 'postgres', pkg: null,
    notes: 'createJobs({ db: pool, tablePrefix, worker: { concurrency } }), defaults otherwise',
    create: (o) => import('./sqljobs.ts').then((m) => new m.SqljobsPg(o)),
  },
  {
    name: 'graphile-worker', label: 'graphile-worker (tuned)', backend: 'postgres', pkg: 'graphile-worker',
    notes: 'concurrency 10, preset.worker.localQueue.size 100, completeJobBatchDelay 0; addJob / addJobs',
    create: (o) => import('./graphile-worker.ts').then((m) => new m.GraphileWorker(o)),
  },
  {
    name: 'pg-boss', label: 'pg-boss', backend: 'postgres', pkg: 'pg-boss',
    notes: 'work({ localConcurrency 10, batchSize 100, burstWhenBatchFull }), useListenNotify + queue notify; send / insert',
    create: (o) => import('./pg-boss.ts').then((m) => new m.PgBossSystem(o)),
  },
  {
    name: 'floor-pg', label: 'raw SQL floor', backend: 'postgres', pkg: null,
    notes: '4 claimers × claim 100 FOR UPDATE SKIP LOCKED, one UPDATE per batch; INSERT + pg_notify per enqueue',
    create: (o) => import('./floor-pg.ts').then((m) => new m.FloorPg({ ...o, archive: false })),
  },
  {
    name: 'floor-pg-archive', label: 'raw SQL floor, archiving', backend: 'postgres', pkg: null,
    notes: 'as the floor, but one DELETE … RETURNING → INSERT into history per batch',
    create: (o) => import('./floor-pg.ts').then((m) => new m.FloorPg({ ...o, archive: true })),
  },
  {
    name: 'sqljobs-mysql', label: 'sqljobs', backend: 'mysql', pkg: null,
    notes: 'createJobs({ db: mysql2 pool, tablePrefix, worker: { concurrency } }), defaults otherwise (no NOTIFY: in-process wake-up + polling)',
    create: (o) => import('./sqljobs.ts').then((m) => new m.SqljobsMysql(o)),
  },
  {
    name: 'floor-mysql', label: 'raw SQL floor', backend: 'mysql', pkg: null,
    notes: '4 claimers × claim 100: READ COMMITTED SELECT … FOR UPDATE SKIP LOCKED + UPDATE … WHERE id IN, one UPDATE per finished batch; in-process wake-up',
    create: (o) => import('./floor-mysql.ts').then((m) => new m.FloorMysql({ ...o, archive: false })),
  },
  {
    name: 'floor-mysql-archive', label: 'raw SQL floor, archiving', backend: 'mysql', pkg: null,
    notes: 'as the floor, but INSERT … SELECT into history + DELETE per finished batch (one transaction)',
    create: (o) => import('./floor-mysql.ts').then((m) => new m.FloorMysql({ ...o, archive: true })),
  },
];

export function systemByName(name: string): SystemInfo {
  const s = SYSTEMS.find((x) => x.name === name);
  if (!s) throw new Error(`unknown system "${name}"; known: ${SYSTEMS.map((x) => x.name).join(', ')}`);
  return s;
}
