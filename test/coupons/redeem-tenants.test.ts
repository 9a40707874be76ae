import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { REDEMPTIONS, type RedemptionItem } from '../../src/coupons/redeem-coupon';
import { PlainRunner } from '../../src/db/unit-of-work';
import { openTestDataSource } from '../support/database';
import { newTenant } from '../support/tenant';

/**
 * Keyless redemptions of several tenants share a group commit, one
 * statement per tenant. A group that fails is split (or retried, on a
 * deadlock) and its items run again: whatever an earlier tenant's statement
 * wrote must not have committed by then, or those calls are redeemed twice.
 */
describe('coupon redemptions of several tenants in one group', () => {
  let dataSource: DataSource;
  before(async () => {
    dataSource = await openTestDataSource(4);
  });
  after(async () => {
    await dataSource.destroy();
  });

  const item = (tenantId: string, customerId: string, metadata: Record<string, string> = {}): RedemptionItem => ({
    tenantId,
    target: { code: 'SHARED' },
    request: { customerId, planId: undefined, productId: undefined, amount: undefined, holdUntil: undefined, metadata },
    doneBy: 'test',
    validateOnly: false,
  });

  it('redeems each call once when a later tenant statement of the group fails (the group is split)', async () => {
    const tenants = [await newTenant(dataSource), await newTenant(dataSource)].sort((a, b) => (a.id < b.id ? -1 : 1));
    const coupons: string[] = [];
    for (const tenant of tenants) {
      const [row] = (await dataSource.query(
        `INSERT INTO coupons (tenant_id, code, name, type, percentage, frequency, max_redemptions) VALUES ($1, 'SHARED', 'shared', 'PERCENTAGE', 10, 'ONCE', 5) RETURNING id`,
        [tenant.id],
      )) as Array<{ id: string }>;
      coupons.push(row!.id);
    }
    const [first, second] = tenants;
    const runner = new PlainRunner(dataSource);
    // Submitted in one turn of the event loop: one group. The second tenant's
    // metadata holds a NUL, which jsonb refuses: its statement fails after
    // the first tenant's ran (tenants go in id order).
    const redeemed = runner.submit(REDEMPTIONS, item(first!.id, 'c-first'));
    const refused = runner.submit(REDEMPTIONS, item(second!.id, 'c-second', { note: 'nul \u0000 here' }));
    const answer = await redeemed;
    const failure = await refused.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure, 'the call with the value PostgreSQL refuses fails').to.be.instanceOf(Error);
    expect('redemption' in answer && answer.coupon.redemptionCount).to.equal(1n);

    const stored = (await dataSource.query(
      `SELECT c.tenant_id, c.redemption_count::int AS count,
              (SELECT count(*)::int FROM coupon_redemptions r WHERE r.coupon_id = c.id) AS redemptions,
              (SELECT count(*)::int FROM events e WHERE e.tenant_id = c.tenant_id AND e.type = 'REDEMPTION_CREATED') AS events
         FROM coupons c WHERE c.id = ANY ($1::uuid[]) ORDER BY c.tenant_id`,
      [coupons],
    )) as Array<{ tenant_id: string; count: number; redemptions: number; events: number }>;
    expect(stored).to.deep.equal([
      { tenant_id: first!.id, count: 1, redemptions: 1, events: 1 },
      { tenant_id: second!.id, count: 0, redemptions: 0, events: 0 },
    ]);
  });
});
