/** sqljobs public API. */
export { Jobs } from './jobs.ts';
export type { DefinedOptions } from './jobs.ts';
export { jobsMiddleware } from './http/express.ts';
export type { ExpressRequestLike, JobsMiddlewareOptions } from './http/express.ts';
export { koaJobs } from './http/koa.ts';
export type { KoaJobsOptions, KoaLikeContext } from './http/koa.ts';
export { RequestJobs } from './http/unit-of-work.ts';
export type { RequestJobMap } from './http/unit-of-work.ts';
export type {
  BatchOptions, DefineOptions, EnqueueManyItem, Handler, JobMap, JobName, JobsEvents, JobsMode, JobsOptions, JobsStatus, PayloadOf, SupportedDb,
} from './jobs.ts';
export { DiscardJob, JobAbortError, SnoozeJob } from './worker/context.ts';
export { jobRequest } from './http/app-requests.ts';
export type { AppLike, JobRequestInfo, JobRequestInit, JobRequestResult } from './http/app-requests.ts';
export type { TransientOptions, TransientRun } from './worker/options.ts';
export { LockBusyError, Locks } from './locks.ts';
export type { MissedPolicy, OverlapPolicy, RecurringOptions, ScheduleRecord, ScheduleSpec, IntervalUnit } from './schedule/schedule.ts';
export type { HeldLock, LockOptions } from './locks.ts';
export type { AbortReason, JobContext, JobParent } from './worker/context.ts';
export type { Logger } from './report.ts';
export type { ProcessSpanRelation, TracingOptions } from './telemetry/options.ts';
export type { QueueSettings, QueueSettingsRecord } from './queues.ts';
export { JobValidationError, JOB_STATES } from './model.ts';
export type {
  AttemptRecord, BackoffOptions, CallbackOption, CallbackSpec, EnqueueOptions, EnqueueResult, JobCallbackNames, JobError, JobRecord, JobState, JsonValue,
  ListFilter, ListPage, LogRecord, RedriveFilter, RedriveResult, RedriveSkip,
} from './model.ts';

import { Jobs, type JobMap, type JobsOptions } from './jobs.ts';
import type { MssqlPoolLike, MysqlPoolLike, PgPoolLike, SlonikPoolLike, SqliteDatabaseLike } from './driver/handles.ts';
import type {
  MssqlTransactionHandle, MysqlTransactionHandle, PostgresTransactionHandle, SqliteTransactionHandle,
} from './driver/orm/types.ts';

/**
 * Create a Jobs instance on the app's own database handle (a better-sqlite3 Database, pg or slonik pool,
 * mysql2 pool, mssql ConnectionPool, or an ORM instance on one of them).
 * Type parameter: a map from job name to payload type, e.g. createJobs<{ sendReceipt: { orderId: number } }>({ db }).
 */
export function createJobs<M extends JobMap = {}>(options: JobsOptions & { db: SqliteDatabaseLike }): Jobs<M, SqliteTransactionHandle>;
export function createJobs<M extends JobMap = {}>(options: JobsOptions & { db: PgPoolLike | SlonikPoolLike }): Jobs<M, PostgresTransactionHandle>;
export function createJobs<M extends JobMap = {}>(options: JobsOptions & { db: MysqlPoolLike }): Jobs<M, MysqlTransactionHandle>;
export function createJobs<M extends JobMap = {}>(options: JobsOptions & { db: MssqlPoolLike }): Jobs<M, MssqlTransactionHandle>;
export function createJobs<M extends JobMap = {}>(options: JobsOptions): Jobs<M>;
export function createJobs<M extends JobMap = {}>(options: JobsOptions): Jobs<M> {
  return new Jobs<M>(options);
}
export { jobsAdmin, koaJobsAdmin } from './admin/index.ts';
export type { AdminAccess, AdminOptions, AdminJobs, ExpressLikeRequest, KoaAdminOptions, KoaLikeAdminContext, MetricsAccess } from './admin/index.ts';
export type { HistoryMonth, HistoryOverview } from './history.ts';
export type { FinishedJob, SubscribeEvent } from './finished.ts';
export { WaitTimeoutError } from './wait.ts';
export { TransactionAbortedError } from './driver/transaction-aborted.ts';
export type { BatchStatus, JobLink, QueueGroupCounts, QueueGroupStats, QueueStats, ThroughputBuckets } from './driver/store.ts';
export type { SqlTransaction } from './driver/orm/caller.ts';
export type {
  DrizzleTransactionLike, KnexTransactionLike, KyselyTransactionLike, MikroOrmEntityManagerLike, PrismaTransactionLike,
  SequelizeTransactionLike, TransactionHandle, TypeormTransactionLike, OrmInstance, KnexInstanceLike, DrizzleDatabaseLike,
  TypeormDataSourceLike, SequelizeInstanceLike, MikroOrmInstanceLike, SqliteTransactionHandle, PostgresTransactionHandle,
  MysqlTransactionHandle, MssqlTransactionHandle,
} from './driver/orm/types.ts';
export type {
  MssqlPoolLike, MssqlTransactionLike, MysqlConnectionLike, MysqlPoolLike, PgClientLike, PgPoolLike, PoolerMode, SlonikConnectionLike, SlonikPoolLike,
  SqliteDatabaseLike,
} from './driver/handles.ts';
