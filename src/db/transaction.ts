import type { DataSource, EntityManager } from 'typeorm';
import { DomainError, ErrorReason } from '../common/domain-error';
import { isRetryableConflict } from './db-errors';

export const MAX_ATTEMPTS = 4;

/**
 * Runs `work` in one READ COMMITTED transaction, again (after a short random
 * pause) when PostgreSQL reports a deadlock or serialization failure, and
 * gives up with ABORTED (CONCURRENCY_CONFLICT) after MAX_ATTEMPTS.
 */
export async function inTransaction<T>(dataSource: DataSource, work: (manager: EntityManager) => Promise<T>): Promise<T> {
  return retryConflicts(() => dataSource.transaction(work));
}

/** Retries a whole unit of work on deadlock/serialization failures. */
export async function retryConflicts<T>(attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isRetryableConflict(err)) throw err;
      if (n >= MAX_ATTEMPTS) {
        throw new DomainError(
          ErrorReason.ConcurrencyConflict,
          'The request conflicted with concurrent requests too often; retry it.',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 5 * n + Math.random() * 20 * n));
    }
  }
}

/**
 * One REPEATABLE READ transaction for an audit (`credits verify`): every
 * part of it reads the same snapshot while writes go on, and no
 * statement_timeout cuts it, not even one its role or database sets (SET
 * LOCAL overrides those for the transaction, and unlike a startup
 * parameter works through a transaction-mode pooler).
 */
export function inAuditSnapshot<T>(dataSource: DataSource, work: (manager: EntityManager) => Promise<T>): Promise<T> {
  return dataSource.transaction('REPEATABLE READ', async (manager) => {
    await manager.query('SET LOCAL statement_timeout = 0');
    return work(manager);
  });
}
