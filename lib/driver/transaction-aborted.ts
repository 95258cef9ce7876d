// Public (exported by lib/index.ts): this module imports no driver's types.

/**
 * A request's transaction that a failed statement had ended (PostgreSQL refuses every statement
 * after an error until ROLLBACK, and answers COMMIT with a rollback; MariaDB rolls the whole
 * transaction back at a deadlock, and a COMMIT then commits nothing): nothing in it was committed.
 */
export class TransactionAbortedError extends Error {
  readonly code = '25P02';
  constructor(cause?: unknown) {
    super(
      "the request's transaction was rolled back, not committed: a statement in it failed, and the database ended the transaction (PostgreSQL refuses the rest of " +
        'a transaction after any error: run a statement that may fail inside a SAVEPOINT, and ROLLBACK TO SAVEPOINT when it does; MariaDB rolls a transaction back whole at a deadlock)',
      cause === undefined ? undefined : { cause },
    );
    this.name = 'TransactionAbortedError';
  }
}
