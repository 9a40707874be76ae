import type { EntityManager } from 'typeorm';
import type { WorkRunner } from '../db/unit-of-work';

/**
 * Runs a mutating use case's work in a transaction; with `validateOnly`
 * (AIP-163) the work runs all the same, with every check, lock and write it
 * would make, inside a savepoint that is then rolled back: the call answers
 * exactly what the work produced (or throws what it threw) and nothing it
 * wrote stays, its events included. Answering a validate_only call as a
 * response (not an error) is how the work's result gets out; the transport
 * stores no idempotency record for validate_only requests.
 */
export function runOrRehearse<T>(run: WorkRunner, validateOnly: boolean, work: (manager: EntityManager) => Promise<T>): Promise<T> {
  if (!validateOnly) return run.transaction(work);
  return run.transaction(async (manager) => {
    await manager.query('SAVEPOINT validate_only');
    let result: T;
    try {
      result = await work(manager);
    } catch (err) {
      await manager.query('ROLLBACK TO SAVEPOINT validate_only');
      throw err;
    }
    await manager.query('ROLLBACK TO SAVEPOINT validate_only');
    return result;
  });
}
