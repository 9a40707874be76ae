import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';

/**
 * A statement the database stops (the 30 s statement timeout on a lock
 * wait, a lock_timeout, a cancel request) rolls its transaction back: the
 * caller is told to retry (ABORTED), not INTERNAL ("a bug").
 */
describe('faults: a statement the database stops', function () {
  this.timeout(60_000);
  const t = useTenantClients();
  const base = { currencyCode: 'USD', description: 'cut' };

  it('answers ABORTED (CONCURRENCY_CONFLICT) and writes nothing', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'cut', amount: 100n });
    const locker = t.server.dataSource.createQueryRunner();
    await locker.connect();
    try {
      await locker.startTransaction();
      await locker.query('SELECT 1 FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 FOR UPDATE', [t.tenant.id, 'cut']);
      const deduct = expectError(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'cut', amount: 10n }), status.ABORTED, 'CONCURRENCY_CONFLICT');
      // Cancel the deduction's statement once it waits on the lock, as the statement timeout would after 30 s.
      const deadline = Date.now() + 10_000;
      let canceled = 0;
      while (canceled === 0 && Date.now() < deadline) {
        const [row] = await t.server.dataSource.query(
          `SELECT count(pg_cancel_backend(pid))::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%promotional_credit_apply%'`,
        );
        canceled = row.n;
        if (canceled === 0) await new Promise((r) => setTimeout(r, 20));
      }
      expect(canceled, 'the deduction waited on the lock').to.equal(1);
      const err = await deduct;
      expect(err.message).to.match(/nothing was written; retry/);
    } finally {
      await locker.commitTransaction();
      await locker.release();
    }
    expect((await t.promotionalCredits.getCustomerBalance({ customerId: 'cut' })).balance!.balances.map((b) => b.amount)).to.deep.equal([100n]);
  });
});
