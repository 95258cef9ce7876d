/**
 * SQL Server's shared spelling (its statements are written in ./statements.ts and one file per
 * hot operation): typed parameters, the clock, our id type, a rolled-back-on-error batch,
 * millisecond arithmetic, the columns live and history share.
 */
import type { BindType } from '../portable/statement.ts';
import { mssql } from '../portable/dialect.ts';
import { SHARED_COLUMNS } from '../columns.ts';

/** The SQL Server types parameters are bound with (mapped to the driver's types by the store). */
export type ParamType = BindType;

export interface Param {
  name: string;
  type: ParamType;
  value: string | number | boolean | Date | null;
}

export interface Stmt {
  text: string;
  params: Param[];
}

export const NOW = 'SYSUTCDATETIME()';
/** Our ids as text: binary collation, so comparisons and order are by byte (UUIDv7 time order). */
export const ID = 'CHAR(36) COLLATE Latin1_General_BIN2';

/**
 * Statements in one transaction that is rolled back on any error (the error is then re-raised).
 * TRY/CATCH rather than SET XACT_ABORT ON, which would stay set on the pooled connection.
 */
export function atomic(body: string): string {
  return `BEGIN TRY
BEGIN TRANSACTION;
${body}
COMMIT;
END TRY
BEGIN CATCH
  IF @@TRANCOUNT > 0 ROLLBACK;
  THROW;
END CATCH;`;
}

/** `base` plus a BIGINT number of milliseconds (DATEADD takes an INT: split into days and ms). */
export function addMs(base: string, ms: string): string {
  return `DATEADD(millisecond, (${ms}) % 86400000, DATEADD(day, (${ms}) / 86400000, ${base}))`;
}

/** A DATETIME2(3) from epoch milliseconds (BIGINT). */
export function fromEpoch(ms: string): string {
  return addMs("CAST('19700101' AS DATETIME2(3))", ms);
}

/**
 * Columns both tables share, in one order, so a move between them is INSERT ... SELECT.
 * CHECKPOINT is a reserved word in T-SQL: that column is always written delimited.
 */
export const COMMON = SHARED_COLUMNS.map((c) => mssql.col(c));
