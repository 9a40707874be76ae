import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { DomainError, ErrorReason } from '../../src/common/domain-error';
import { inTransaction, MAX_ATTEMPTS } from '../../src/db/transaction';
import { openTestDataSource } from '../support/database';

/**
 * Deadlocks and serialization failures are retried inside the service a
 * bounded number of times, then ABORTED (CONCURRENCY_CONFLICT). A real
 * deadlock is made by two transactions locking two rows in opposite order.
 */
describe('transaction retries', () => {
  let dataSource: DataSource;

  before(async () => {
    dataSource = await openTestDataSource(4);
    await dataSource.query(`CREATE TABLE IF NOT EXISTS test_deadlock_probe (id int PRIMARY KEY, n int NOT NULL)`);
    await dataSource.query(`INSERT INTO test_deadlock_probe VALUES (1, 0), (2, 0) ON CONFLICT (id) DO UPDATE SET n = 0`);
  });
  after(async () => {
    await dataSource.query(`DROP TABLE IF EXISTS test_deadlock_probe`);
    await dataSource.destroy();
  });

  it('retries the loser of a real deadlock until both transactions commit', async () => {
    let attempts = 0;
    let bothHoldFirstLock: () => void;
    const firstLocks = new Promise<void>((resolve) => (bothHoldFirstLock = resolve));
    let holding = 0;
    const worker = (first: number, second: number) =>
      inTransaction(dataSource, async (manager) => {
        attempts++;
        await manager.query('UPDATE test_deadlock_probe SET n = n + 1 WHERE id = $1', [first]);
        if (++holding === 2) bothHoldFirstLock();
        await Promise.race([firstLocks, new Promise((r) => setTimeout(r, 200))]);
        await manager.query('UPDATE test_deadlock_probe SET n = n + 1 WHERE id = $1', [second]);
      });
    await Promise.all([worker(1, 2), worker(2, 1)]);
    expect(attempts, 'one transaction ran again after PostgreSQL chose it as the deadlock victim').to.equal(3);
    const rows: Array<{ id: number; n: number }> = await dataSource.query('SELECT id, n FROM test_deadlock_probe ORDER BY id');
    expect(rows).to.deep.equal([
      { id: 1, n: 2 },
      { id: 2, n: 2 },
    ]);
  });

  it('gives up with ABORTED CONCURRENCY_CONFLICT after a bounded number of attempts', async () => {
    let attempts = 0;
    let caught: unknown;
    try {
      await inTransaction(dataSource, async () => {
        attempts++;
        throw Object.assign(new Error('could not serialize access'), { code: '40001' });
      });
    } catch (err) {
      caught = err;
    }
    expect(attempts).to.equal(MAX_ATTEMPTS);
    expect(caught).to.be.instanceOf(DomainError);
    expect((caught as DomainError).reason).to.equal(ErrorReason.ConcurrencyConflict);
  });
});
