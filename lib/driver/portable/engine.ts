/**
 * The verbs whose statement is the same on every database, written once over the dialect's
 * fragments (./dialect.ts) and run by the dialect's runner. A dialect's store extends this class
 * and writes only what its database does differently (Oban's engines: override what differs).
 */
import type { SqlDialect } from './dialect.ts';
import type { Sql } from './sql.ts';
import { tables, type SqlRunner, type Tables } from './statement.ts';
import { leaseRelease, leaseRenew } from './leases.ts';
import { jobSaveCheckpoint, jobsNextDue, jobsOwnedBy, jobsStalled, workerHeartbeat, workerRemove, workersRemoveStale } from './workers.ts';
import { scheduleAdvance, scheduleRemove, scheduleSetEnabled, scheduleTicksRemove, schedulesDue, schedulesList } from './schedules.ts';
import { toStalledJob, toStoredSchedule } from '../rows.ts';
import type { Fenced, StalledJob, StoredSchedule, WorkerInfo } from '../store.ts';

export abstract class PortableStore implements Sql {
  readonly t: Tables;
  /** Runs statements on the store's own connections; set by the dialect's constructor. */
  protected abstract readonly runner: SqlRunner;

  constructor(readonly d: SqlDialect, prefix: string) {
    this.t = tables(prefix);
  }

  // ---------------------------------------------------------------- liveness

  /** Two statements, not one transaction: which attempts the worker still owns does not depend on its beat. */
  async heartbeat(w: WorkerInfo): Promise<Fenced[]> {
    await this.runner.run(workerHeartbeat(this, w));
    const { rows } = await this.runner.run(jobsOwnedBy(this, w.id));
    return rows.map((r) => ({ id: String(r.id), token: String(r.token) }));
  }

  async removeWorker(workerId: string): Promise<void> {
    await this.runner.run(workerRemove(this, workerId));
  }

  async stalledJobs(stallMs: number, limit: number): Promise<StalledJob[]> {
    const { rows } = await this.runner.run(jobsStalled(this, { stallMs, limit }));
    return rows.map((r) => toStalledJob(r, this.d.codec));
  }

  async removeStaleWorkers(stallMs: number): Promise<void> {
    await this.runner.run(workersRemoveStale(this, stallMs));
  }

  async nextDueIn(names: string[], queues?: string[]): Promise<number | null> {
    const due = (await this.runner.run(jobsNextDue(this, { names, queues }))).rows[0]?.due;
    // Whole milliseconds, never negative: a job already due is due now.
    return due === null || due === undefined ? null : Math.max(0, Math.ceil(Number(due)));
  }

  async saveCheckpoint(item: Fenced, stateJson: string): Promise<boolean> {
    return (await this.runner.run(jobSaveCheckpoint(this, item, stateJson))).changes === 1;
  }

  // ---------------------------------------------------------------- schedules

  async listSchedules(): Promise<StoredSchedule[]> {
    return (await this.runner.run(schedulesList(this))).rows.map((r) => toStoredSchedule(r, this.d.codec));
  }

  /** The database clock, in ms (each dialect's plumbing). */
  abstract dbNow(): Promise<number>;

  /** One round trip when a schedule is due (the rows carry the clock they were compared with), a second for the clock when none is. */
  async dueSchedules(): Promise<{ now: number; due: StoredSchedule[] }> {
    const { rows } = await this.runner.run(schedulesDue(this));
    const now = rows.length ? this.d.codec.date(rows[0].db_now)!.getTime() : await this.dbNow();
    return { now, due: rows.map((r) => toStoredSchedule(r, this.d.codec)) };
  }

  async setScheduleEnabled(key: string, enabled: boolean, nextRunAt: number | null): Promise<boolean> {
    return (await this.runner.run(scheduleSetEnabled(this, { key, enabled, nextRunAt }))).changes === 1;
  }

  /** The schedule and its ticks, in one transaction. */
  async removeSchedule(key: string): Promise<boolean> {
    const [, removed] = await this.runner.transaction([scheduleTicksRemove(this, key), scheduleRemove(this, key)]);
    return removed.changes === 1;
  }

  async advanceSchedule(key: string, from: number, nextRunAt: number | null): Promise<void> {
    await this.runner.run(scheduleAdvance(this, { key, from, nextRunAt }));
  }

  // ---------------------------------------------------------------- leases

  async renewLease(name: string, owner: string, token: number, ttlMs: number): Promise<boolean> {
    return (await this.runner.run(leaseRenew(this, { name, owner, token, ttlMs }))).changes === 1;
  }

  async releaseLease(name: string, owner: string, token: number): Promise<boolean> {
    return (await this.runner.run(leaseRelease(this, { name, owner, token }))).changes === 1;
  }
}
