import { expect } from 'chai';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { issueRequest, lifetime } from '../credits/fixtures';
import { redeemRequest } from '../coupons/fixtures';
import { useTenantClients } from '../support/tenant-clients';
import { msOfUuidV7 as msOf, UUID_V7 } from '../support/uuid-v7';

/** How far an id's time may be from its row's create_time: the same write, a statement or a round trip apart. */
const SAME_WRITE_MS = 1_000;

describe('ids are time-ordered (UUIDv7): every row the service makes lands at the end of its primary key', function () {
  this.timeout(20_000);
  const t = useTenantClients();
  const base = { currencyCode: 'USD', description: 'ids', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };

  /** The rows of `table` of the test tenant: id and create_time in ms, in `order`. */
  const rowsOf = async (table: string, order: string): Promise<Array<{ id: string; created: number }>> => {
    const rows: Array<{ id: string; created: string }> = await t.server.dataSource.query(
      `SELECT id::text AS id, floor(extract(epoch FROM create_time) * 1000)::bigint::text AS created FROM ${table} WHERE tenant_id = $1 ORDER BY ${order}`,
      [t.tenant.id],
    );
    return rows.map((r) => ({ id: r.id, created: Number(r.created) }));
  };

  const expectTimeOrdered = (rows: Array<{ id: string; created: number }>, what: string) => {
    expect(rows, what).to.not.be.empty;
    for (const row of rows) {
      expect(row.id, what).to.match(UUID_V7);
      expect(msOf(row.id), `${what}: ${row.id} made at its create_time`).to.be.closeTo(row.created, SAME_WRITE_MS);
    }
  };

  it('makes ledger entries, lots and holds with UUIDv7 ids, in the order they were written', async () => {
    const pc = t.promotionalCredits;
    // One by one (a first write, then writes of the group-of-ADDs path and of
    // the item-by-item one), then many at once, shared by a group.
    await pc.addPromotionalCredits({ ...base, customerId: 'ids-1', amount: 100n });
    await pc.addPromotionalCredits({ ...base, customerId: 'ids-1', amount: 50n, expireTime: new Date(Date.now() + 3_600_000) });
    const deducted = (await pc.deductPromotionalCredits({ ...base, customerId: 'ids-1', amount: 30n })).promotionalCredit!;
    await pc.reversePromotionalCredit({ id: deducted.id, description: 'ids refund' });
    await pc.holdPromotionalCredits({ ...base, customerId: 'ids-1', amount: 20n, expireTime: new Date(Date.now() + 3_600_000) });
    await Promise.all(Array.from({ length: 20 }, (_, i) => pc.addPromotionalCredits({ ...base, customerId: `ids-many-${i % 10}`, amount: 1n + BigInt(i) })));

    const entries = await rowsOf('promotional_credits', 'seq');
    expect(entries).to.have.length(24);
    expectTimeOrdered(entries, 'entries');
    const oneByOne = entries.slice(0, 4).map((e) => e.id);
    expect(oneByOne, 'written one after another: ids in the order written').to.deep.equal(oneByOne.slice().sort());
    expectTimeOrdered(await rowsOf('promotional_credit_lots', 'seq'), 'lots');
    expectTimeOrdered(await rowsOf('promotional_credit_holds', 'create_time'), 'holds');
  });

  it('makes coupons, redemptions and customer credits with UUIDv7 ids', async () => {
    const coupon = (await t.coupons.createCoupon(lifetime())).coupon!;
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'ids-redeemer'));
    await t.credits.createCustomerCredit(issueRequest(coupon.id, 'ids-credit-1'));
    const batch = await t.credits.batchCreateCustomerCredits({
      couponId: coupon.id,
      credits: Array.from({ length: 5 }, (_, i) => ({ customerId: `ids-batch-${i}`, membershipId: '', expireTime: undefined, revenue: undefined, metadata: {} })),
      validateOnly: false,
    });

    expectTimeOrdered(await rowsOf('coupons', 'create_time'), 'coupons');
    expectTimeOrdered(await rowsOf('coupon_redemptions', 'create_time'), 'redemptions');
    const credits = await rowsOf('customer_credits', 'seq');
    expect(credits).to.have.length(6);
    expectTimeOrdered(credits, 'customer credits');
    const batchIds = batch.credits.map((c) => c.id);
    expect(batchIds, 'a batch: ids in request order').to.deep.equal(batchIds.slice().sort());
  });
});
