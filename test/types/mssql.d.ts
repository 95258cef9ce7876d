/**
 * The part of mssql 12's API the tests use (mssql ships no types and @types/mssql is not a
 * dependency). The library itself declares the shapes it relies on in lib/driver/mssql/store.ts.
 */
declare module 'mssql' {
  interface IResult {
    recordset: Record<string, unknown>[];
    recordsets: Record<string, unknown>[][];
    rowsAffected: number[];
  }
  class Request {
    constructor(parent?: ConnectionPool | Transaction);
    parameters: Record<string, { name: string; type: { name: string } | ((...a: unknown[]) => unknown); value: unknown; length?: number; scale?: number }>;
    input(name: string, typeOrValue: unknown, value?: unknown): Request;
    query(text: string): Promise<IResult>;
  }
  class Transaction {
    constructor(parent?: ConnectionPool);
    parent: ConnectionPool;
    begin(isolationLevel?: number): Promise<Transaction>;
    commit(): Promise<void>;
    rollback(): Promise<void>;
    request(): Request;
  }
  class ConnectionPool {
    constructor(config: string | Record<string, unknown>);
    readonly connected: boolean;
    readonly connecting: boolean;
    readonly config: Record<string, unknown>;
    connect(): Promise<ConnectionPool>;
    close(): Promise<void>;
    request(): Request;
    transaction(): Transaction;
    on(event: 'error', cb: (err: unknown) => void): this;
  }
  const NVarChar: ((len?: number) => unknown) & { name: string };
  const VarChar: ((len?: number) => unknown) & { name: string };
  const Char: ((len?: number) => unknown) & { name: string };
  const BigInt: { name: string };
  const Int: { name: string };
  const Bit: { name: string };
  const DateTime2: ((scale?: number) => unknown) & { name: string };
  const MAX: number;
  const ISOLATION_LEVEL: { READ_COMMITTED: number };
  const mssql: {
    ConnectionPool: typeof ConnectionPool;
    Transaction: typeof Transaction;
    Request: typeof Request;
    NVarChar: typeof NVarChar;
    VarChar: typeof VarChar;
    Char: typeof Char;
    BigInt: typeof BigInt;
    Int: typeof Int;
    Bit: typeof Bit;
    DateTime2: typeof DateTime2;
    MAX: number;
    ISOLATION_LEVEL: typeof ISOLATION_LEVEL;
  };
  export { ConnectionPool, Transaction, Request, NVarChar, VarChar, Char, BigInt, Int, Bit, DateTime2, MAX, ISOLATION_LEVEL };
  export default mssql;
}
