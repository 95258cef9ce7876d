/**
 * A statement and its bound values, built by pure functions: values never enter the text, and
 * each carries the type SQL Server binds it with (the other drivers infer it).
 */
import type { SqlDialect } from './dialect.ts';

/** The types values are bound with (SQL Server needs them; see mssql/store.ts driverType). */
export type BindType = 'nvarchar' | 'nvarchar(max)' | 'varchar' | 'bigint' | 'int' | 'bit' | 'datetime2' | 'char36' | 'varbinary(max)';

export interface Statement {
  text: string;
  values: unknown[];
  types: BindType[];
  /**
   * Whether the statement answers rows (a SELECT, or a write with RETURNING/OUTPUT). A write
   * without (MySQL) answers its affected-row count instead.
   */
  returnsRows: boolean;
}

/** One statement's values, in placeholder order: each method binds a value and returns its placeholder. */
export class Binder {
  readonly values: unknown[] = [];
  readonly types: BindType[] = [];
  constructor(readonly d: SqlDialect) {}

  private add(value: unknown, type: BindType): string {
    this.values.push(value);
    this.types.push(type);
    return this.d.placeholder(this.values.length);
  }

  /** Short text (names, queues, keys, owners: NVARCHAR(4000) on SQL Server). */
  text(v: string | null): string {
    return this.add(v, 'nvarchar');
  }
  /**
   * ASCII text compared with a VARCHAR column (job states): VARCHAR on SQL Server, where an
   * NVARCHAR value would convert the column and keep the comparison from seeking its index.
   */
  ascii(v: string): string {
    return this.add(v, 'varchar');
  }
  /** Text of any length (JSON documents, messages). */
  longText(v: string | null): string {
    return this.add(v, 'nvarchar(max)');
  }
  /** A job id or claim token (CHAR(36) on MySQL and SQL Server: binding it so lets the index be used). */
  id(v: string): string {
    return this.add(v, 'char36');
  }
  /** Bytes (a binary payload). */
  bytes(v: Buffer | null): string {
    return this.add(v, 'varbinary(max)');
  }
  int(v: number | null): string {
    return this.add(v, 'int');
  }
  bigint(v: number | null): string {
    return this.add(v, 'bigint');
  }
  bool(v: boolean): string {
    return this.add(this.d.bool(v), 'bit');
  }
  /** A time the library computed (epoch ms). */
  time(ms: number | null): string {
    return this.add(this.d.time(ms), 'datetime2');
  }
  /** `TOP (n) ` right after SELECT where the dialect limits rows so (SQL Server); elsewhere nothing, and nothing bound. */
  top(n: number): string {
    return this.spelled(this.d.top, n);
  }
  /** ` LIMIT n` at the end of a SELECT where the dialect limits rows so; elsewhere nothing, and nothing bound. */
  limit(n: number): string {
    return this.spelled(this.d.limit, n);
  }
  /** `fragment` over n bound, or nothing where the dialect does not spell it (a value bound without its placeholder would shift the others). */
  private spelled(fragment: (p: string) => string, n: number): string {
    return fragment('') === '' ? '' : fragment(this.int(n));
  }
  /** The string at `key` of the JSON object in `column` (NULL without it), the key bound as the dialect looks it up. */
  jsonText(column: string, key: string): string {
    return this.d.jsonText(column, this.text(this.d.jsonKey(key)));
  }
  /** `IN (…)` over these strings, bound as one value. */
  in(values: string[]): string {
    return this.d.inList(this.add(this.d.listValue(values), 'nvarchar(max)'));
  }
  /** `IN (…)` over these job ids (well-formed: see isValidId), bound as one value. */
  ids(values: string[]): string {
    return this.d.inIds(this.add(this.d.listValue(values), 'nvarchar(max)'));
  }

  /** The statement: `text` answers rows when it is a SELECT or carries RETURNING/OUTPUT here. */
  done(text: string, returnsRows: boolean): Statement {
    return { text, values: this.values, types: this.types, returnsRows };
  }
}

/** A statement that reads rows. */
export function read(d: SqlDialect, build: (b: Binder) => string): Statement {
  const b = new Binder(d);
  return b.done(build(b), true);
}

/**
 * A write. Written with `d.output(…)` and `d.returning(…)` where the caller needs to know which
 * rows it changed: it answers those rows where the database can (changes = rows.length), and its
 * affected-row count where it cannot (MySQL).
 */
export function write(d: SqlDialect, build: (b: Binder) => string, withRows = false): Statement {
  const b = new Binder(d);
  return b.done(build(b), withRows && d.returnsRows);
}

/** What running a statement answers: its rows, and how many rows it changed. */
export interface Outcome {
  rows: Record<string, unknown>[];
  /** Rows changed: the RETURNING/OUTPUT rows when the statement answered rows, else the affected-row count. */
  changes: number;
}

/** Runs statements on the store's own connections. Each dialect's store provides one. */
export interface SqlRunner {
  run(s: Statement): Promise<Outcome>;
  /** Statements in order, in one transaction (rolled back if any fails). */
  transaction(statements: Statement[]): Promise<Outcome[]>;
  /**
   * A conversation in one transaction: the steps yield statements and decide the next from what
   * each answered (./flow.ts). Rolled back if a statement or a step throws.
   */
  within<T>(steps: Steps<T>): Promise<T>;
}

/** Statements decided one after another: each yield is run and its outcome sent back in. */
export type Steps<T> = Generator<Statement, T, Outcome>;

/** Drive `steps`, running each statement with `run` (asynchronously). */
export async function drive<T>(steps: Steps<T>, run: (s: Statement) => Promise<Outcome>): Promise<T> {
  let next = steps.next();
  while (!next.done) next = steps.next(await run(next.value));
  return next.value;
}

/** Drive `steps` synchronously (better-sqlite3: a transaction cannot span an await). */
export function driveSync<T>(steps: Steps<T>, run: (s: Statement) => Outcome): T {
  let next = steps.next();
  while (!next.done) next = steps.next(run(next.value));
  return next.value;
}

/** Table names for a prefix (the prefix is validated once: see validatePrefix). */
export function tables(prefix: string) {
  const t = (name: string) => prefix + name;
  return {
    jobs: t('jobs'),
    history: t('history'),
    attempts: t('attempts'),
    logs: t('logs'),
    workers: t('workers'),
    leases: t('leases'),
    schedules: t('schedules'),
    ticks: t('schedule_ticks'),
    paused: t('paused_queues'),
    migrations: t('migrations'),
    /** MySQL only: how far a migration cut half way got (see mysql/migrate.ts). */
    migrationSteps: t('migration_steps'),
    deps: t('deps'),
    batches: t('batches'),
    keys: t('keys'),
    queues: t('queues'),
    queueGroups: t('queue_groups'),
    starts: t('starts'),
    /** Completed and failed jobs per minute, counted by the leader (see throughput.ts). */
    throughput: t('throughput'),
    /** MySQL only (no partial index): see sideIndex.ts. */
    uniqueJobs: t('unique_jobs'),
    reservations: t('reservations'),
    /** PostgreSQL only: the processes that hear finished jobs pushed (migration 016). */
    subscribers: t('subscribers'),
    /** Indexes some statements name (SQLite INDEXED BY, MySQL FORCE INDEX). */
    jobsClaim: t('jobs_claim'),
    jobsQueue: t('jobs_queue'),
    jobsRunning: t('jobs_running'),
    historyState: t('history_state'),
    historyFinished: t('history_finished'),
  };
}

export type Tables = ReturnType<typeof tables>;
