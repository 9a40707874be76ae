import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreditState } from '../../gen/credits/v1/credit_service';
import { decodeError, tally } from '../support/status';
import { creditContext, limited, once, redeemCreditRequest } from './fixtures';

describe('CreditService under concurrency', () => {
  const t = creditContext();

  it('gives exactly one of 20 parallel redemptions of a fresh single-use credit', async function () {
    this.timeout(60_000);
    const coupon = await t.coupon(once());
    const credit = await t.issue(coupon.id, 'c');
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id))));
    expect(tally(results)).to.deep.equal({ OK: 1, CREDIT_ALREADY_REDEEMED: 19 });
    const after = (await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!;
    expect(after).to.deep.include({ state: CreditState.CREDIT_STATE_REDEEMED, redemptionCount: 1n, usesRemaining: 0 });
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);
  });

  it('gives exactly 3 of 20 parallel redemptions of a FREQUENCY_LIMITED interval-3 credit, which then reads REDEEMED', async function () {
    this.timeout(60_000);
    const coupon = await t.coupon(limited(3));
    const credit = await t.issue(coupon.id, 'c');
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id))));
    expect(tally(results)).to.deep.equal({ OK: 3, CREDIT_ALREADY_REDEEMED: 17 });
    // Each success counted its own use: 1, 2, 3 once each.
    const counts = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.credit!.redemptionCount] : [])).sort();
    expect(counts).to.deep.equal([1n, 2n, 3n]);
    const after = (await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!;
    expect(after).to.deep.include({ state: CreditState.CREDIT_STATE_REDEEMED, redemptionCount: 3n, usesRemaining: 0 });
    const redemptions = await t.coupons.listCouponRedemptions({ pageSize: 100, pageToken: '', couponId: coupon.id, customerId: '' });
    expect(redemptions.redemptions).to.have.length(3);
  });

  it("holds the coupon's total limit across many credits redeemed in parallel", async function () {
    this.timeout(60_000);
    const coupon = await t.coupon(once({ maxRedemptions: 5 }));
    const batch = await t.credits.batchCreateCustomerCredits({
      couponId: coupon.id,
      credits: Array.from({ length: 20 }, (_, i) => ({ customerId: `cust-${i}`, membershipId: '' })),
    });
    const results = await Promise.allSettled(batch.credits.map((c) => t.credits.redeemCustomerCredit(redeemCreditRequest(c.customerId, c.id))));
    expect(tally(results)).to.deep.equal({ OK: 5, COUPON_MAX_REDEMPTIONS_REACHED: 15 });
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(5n);
    // The refused credits are untouched and still active.
    const refused = batch.credits.filter((_, i) => results[i]!.status === 'rejected');
    for (const c of refused) {
      const got = (await t.credits.getCustomerCredit({ customerId: c.customerId, creditId: c.id })).credit!;
      expect(got).to.deep.include({ state: CreditState.CREDIT_STATE_ACTIVE, redemptionCount: 0n });
    }
  });

  it('never revokes a credit that a racing redemption used', async function () {
    this.timeout(60_000);
    const coupon = await t.coupon(limited(2));
    for (let round = 0; round < 10; round++) {
      const credit = await t.issue(coupon.id, `racer-${round}`);
      const [redeemed, revoked] = await Promise.allSettled([
        t.credits.redeemCustomerCredit(redeemCreditRequest(credit.customerId, credit.id)),
        t.credits.revokeCustomerCredit({ customerId: credit.customerId, creditId: credit.id }),
      ]);
      const outcome = [redeemed, revoked].map((r) => (r.status === 'fulfilled' ? 'OK' : decodeError(r.reason as ServiceError).reason));
      expect([
        ['OK', 'CREDIT_ALREADY_REDEEMED'],
        ['CREDIT_REVOKED', 'OK'],
      ]).to.deep.include(outcome);
    }
  });
});
