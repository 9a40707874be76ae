import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { decodeError, tally } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { allRedemptions, percentageCoupon, redeemRequest } from './fixtures';

describe('CouponService under concurrency (two server processes)', () => {
  const t = useTenantClients({ replica: true });
  /** Even calls go to the in-process server, odd ones to the replica process. */
  const on = (i: number) => (i % 2 === 0 ? t.coupons : t.replica.coupons);

  it('gives exactly 5 of 200 parallel redemptions from different customers of a max_redemptions 5 coupon', async function () {
    this.timeout(120_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 5 }))).coupon!;
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, `cust-${i}`, { amount: { amount: 1000n, currencyCode: 'USD' } }))),
    );
    expect(tally(results)).to.deep.equal({ OK: 5, COUPON_MAX_REDEMPTIONS_REACHED: 195 });

    const after = (await t.coupons.getCoupon({ id: coupon.id })).coupon!;
    expect(after.redemptionCount).to.equal(5n);
    const recorded = await allRedemptions(t.coupons, coupon.id);
    expect(recorded).to.have.length(5);
    expect(new Set(recorded.map((r) => r.customerId)).size).to.equal(5);
    // Each successful response counted its own redemption: 1..5, once each.
    const counts = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.coupon!.redemptionCount] : [])).sort();
    expect(counts).to.deep.equal([1n, 2n, 3n, 4n, 5n]);
  });

  it('gives exactly 2 of 50 parallel redemptions by one customer of a max_redemptions_per_customer 2 coupon', async function () {
    this.timeout(120_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptionsPerCustomer: 2 }))).coupon!;
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, 'same-customer'))));
    expect(tally(results)).to.deep.equal({ OK: 2, COUPON_CUSTOMER_LIMIT_REACHED: 48 });
    expect(await allRedemptions(t.coupons, coupon.id)).to.have.length(2);
    // Other customers are not affected by that customer's limit.
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'other-customer'));
  });

  it('never deletes a coupon under a racing redemption', async function () {
    this.timeout(60_000);
    for (let round = 0; round < 10; round++) {
      const coupon = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
      const [redeemed, deleted] = await Promise.allSettled([
        t.coupons.redeemCoupon(redeemRequest(coupon.code, 'racer')),
        t.coupons.deleteCoupon({ id: coupon.id }),
      ]);
      const outcome = [
        redeemed.status === 'fulfilled' ? 'OK' : decodeError(redeemed.reason as ServiceError).reason,
        deleted.status === 'fulfilled' ? 'OK' : decodeError(deleted.reason as ServiceError).reason,
      ];
      // Either the redemption came first (the delete is refused) or the delete did (the code is gone).
      expect([
        ['OK', 'COUPON_REDEEMED'],
        ['COUPON_NOT_FOUND', 'OK'],
      ]).to.deep.include(outcome);
    }
  });
});
