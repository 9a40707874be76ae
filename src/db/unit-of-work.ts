import type { DataSource, EntityManager } from 'typeorm';
import { inTransaction, retryConflicts } from './transaction';

/**
 * How a use case runs its database work. The use case decides what the work
 * is and whether it is one statement; the runner decides how it is wrapped
 * (plain, or in a transaction together with an idempotency record).
 */
export type WorkRunner = (<T>(work: (manager: EntityManager) => Promise<T>, shape: { singleStatement: boolean }) => Promise<T>) & {
  /**
   * True when the work is not part of a caller's transaction (no idempotency
   * record to commit with it), so a use case may hand it to a shared batch
   * instead (see LedgerBatcher).
   */
  readonly standalone: boolean;
};

/**
 * The plain runner: one statement runs on its own (PostgreSQL makes it
 * atomic, and no BEGIN/COMMIT round trips hold a row lock longer); more than
 * one runs in a transaction. Both retry deadlocks and serialization failures.
 */
export function plainRunner(dataSource: DataSource): WorkRunner {
  const run = <T>(work: (manager: EntityManager) => Promise<T>, shape: { singleStatement: boolean }) =>
    shape.singleStatement ? retryConflicts(() => work(dataSource.manager)) : inTransaction(dataSource, work);
  return Object.assign(run, { standalone: true });
}

/** The runner of work inside a transaction the caller owns (the idempotency record's). */
export function transactionRunner(manager: EntityManager): WorkRunner {
  return Object.assign(<T>(work: (manager: EntityManager) => Promise<T>) => work(manager), { standalone: false });
}
