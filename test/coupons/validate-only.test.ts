import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { issueRequest, once, redeemCreditRequest } from '../credits/fixtures';
import { expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { percentageCoupon, redeemRequest, sameTerms } from './fixtures';
import { footprint, inMs } from './footprint';

/** Strips what differs between two answers of the same call by nature: ids made and instants read. */
function comparable<T>(value: T): unknown {
  return JSON.parse(
    JSON.stringify(value, (key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (['id', 'createTime', 'updateTime', 'lastRedeemTime', 'revokeTime'].includes(key)) return undefined;
      return v;
    }),
  );
}

describe('validate_only on every mutating RPC of CouponService and CreditService', () => {
  const t = useTenantClients();
  /** Every validate_only call below also carries an idempotency key: no record may be stored for it. */
  const keyed = () => {
    const md = new Metadata();
    md.set('idempotency-key', `vo-${Math.random()}`);
    return md;
  };

  /**
   * Runs `call(true)` and checks that it wrote nothing (rows, counters,
   * events, idempotency records), then `call(false)` and checks that both
   * answered alike: the same error, or the same response but for `id`s made
   * and instants read. Answers both responses.
   */
  async function rehearse<R>(call: (validateOnly: boolean, metadata: Metadata) => Promise<R>): Promise<{ rehearsed: R; real: R } | undefined> {
    const before = await footprint(t.server.dataSource, t.tenant.id);
    let rehearsed: R | undefined;
    let rehearsalError: unknown;
    try {
      rehearsed = await call(true, keyed());
    } catch (err) {
      rehearsalError = err;
    }
    expect(await footprint(t.server.dataSource, t.tenant.id), 'validate_only wrote nothing').to.deep.equal(before);
    if (rehearsalError !== undefined) {
      const { code, details } = rehearsalError as { code: status; details: string };
      const real = await expectError(call(false, new Metadata()), code);
      expect(real.message).to.equal(details);
      return undefined;
    }
    const real = await call(false, new Metadata());
    expect(comparable(rehearsed)).to.deep.equal(comparable(real));
    return { rehearsed: rehearsed!, real };
  }

  it('CreateCoupon answers the coupon with an empty id, and ALREADY_EXISTS for a taken code', async () => {
    const request = percentageCoupon({ metadata: { campaign: 'spring' } });
    const both = (await rehearse((validateOnly, md) => t.coupons.createCoupon({ ...request, validateOnly }, md)))!;
    expect(both.rehearsed.coupon!.id).to.equal('');
    expect(both.real.coupon!.id).to.not.equal('');
    await rehearse((validateOnly, md) => t.coupons.createCoupon({ ...request, validateOnly }, md));
  });

  it('UpdateCoupon answers the updated coupon, and COUPON_REDEEMED for a frozen term', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    const both = (await rehearse((validateOnly, md) => t.coupons.updateCoupon(sameTerms(coupon, { name: 'New name', validateOnly }), md)))!;
    expect(both.rehearsed.coupon).to.include({ id: coupon.id, name: 'New name' });
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c'));
    await rehearse((validateOnly, md) => t.coupons.updateCoupon(sameTerms(coupon, { name: 'Other', validateOnly }), md));
  });

  it('DeleteCoupon answers what the deletion would, and COUPON_REDEEMED for a redeemed coupon', async () => {
    const unused = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    await rehearse((validateOnly, md) => t.coupons.deleteCoupon({ id: unused.id, validateOnly }, md));
    await expectError(t.coupons.getCoupon({ id: unused.id }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    const redeemed = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    await t.coupons.redeemCoupon(redeemRequest(redeemed.code, 'c'));
    await rehearse((validateOnly, md) => t.coupons.deleteCoupon({ id: redeemed.id, validateOnly }, md));
  });

  it('RedeemCoupon answers the redemption with an empty id and the coupon as it would be, and the refusal at the limit', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
    const request = redeemRequest(coupon.code, 'c', { holdUntil: inMs(600_000), amount: { amount: 1999n, currencyCode: 'USD' }, metadata: { order: 'o1' } });
    const both = (await rehearse((validateOnly, md) => t.coupons.redeemCoupon({ ...request, validateOnly }, md)))!;
    expect(both.rehearsed.redemption!.id).to.equal('');
    expect(both.rehearsed.coupon!.redemptionCount).to.equal(1n);
    expect(both.rehearsed.redemption!.discount).to.deep.equal({ amount: 200n, currencyCode: 'USD' });
    await rehearse((validateOnly, md) => t.coupons.redeemCoupon({ ...request, customerId: 'd', validateOnly }, md));
  });

  it('ConfirmCouponRedemption and CancelCouponRedemption answer the transition, and its refusal', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    const held = (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c', { holdUntil: inMs(600_000) }))).redemption!;
    const confirmed = (await rehearse((validateOnly, md) => t.coupons.confirmCouponRedemption({ redemptionId: held.id, validateOnly }, md)))!;
    expect(confirmed.rehearsed.redemption!.id).to.equal(held.id);
    await rehearse((validateOnly, md) => t.coupons.confirmCouponRedemption({ redemptionId: held.id, validateOnly }, md));
    await rehearse((validateOnly, md) => t.coupons.cancelCouponRedemption({ redemptionId: held.id, validateOnly }, md));
    await rehearse((validateOnly, md) => t.coupons.cancelCouponRedemption({ redemptionId: held.id, validateOnly }, md));
  });

  it('CreateCustomerCredit and BatchCreateCustomerCredits answer the credits with empty ids, and the coupon refusal', async () => {
    const coupon = (await t.coupons.createCoupon(once())).coupon!;
    const single = (await rehearse((validateOnly, md) => t.credits.createCustomerCredit({ ...issueRequest(coupon.id, 'c'), validateOnly }, md)))!;
    expect(single.rehearsed.credit!.id).to.equal('');
    const entries = [
      { customerId: 'a', metadata: { tier: 'gold' } },
      { customerId: 'b', membershipId: 'm-1' },
    ];
    const batch = (await rehearse((validateOnly, md) => t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: entries, validateOnly }, md)))!;
    expect(batch.rehearsed.credits.map((c) => c.id)).to.deep.equal(['', '']);
    const disabled = (await t.coupons.createCoupon(once({ enabled: false }))).coupon!;
    await rehearse((validateOnly, md) => t.credits.batchCreateCustomerCredits({ couponId: disabled.id, credits: entries, validateOnly }, md));
  });

  it('RevokeCustomerCredit and RedeemCustomerCredit answer the credit (and the redemption with an empty id), and their refusals', async () => {
    const coupon = (await t.coupons.createCoupon(once())).coupon!;
    const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'c'))).credit!;
    const redeemed = (await rehearse((validateOnly, md) => t.credits.redeemCustomerCredit({ ...redeemCreditRequest('c', credit.id), validateOnly }, md)))!;
    expect(redeemed.rehearsed.redemption!.id).to.equal('');
    expect(redeemed.rehearsed.redemption!.customerCreditId).to.equal(credit.id);
    await rehearse((validateOnly, md) => t.credits.redeemCustomerCredit({ ...redeemCreditRequest('c', credit.id), validateOnly }, md));
    await rehearse((validateOnly, md) => t.credits.revokeCustomerCredit({ customerId: 'c', creditId: credit.id, validateOnly }, md));
    const fresh = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'c'))).credit!;
    const revoked = (await rehearse((validateOnly, md) => t.credits.revokeCustomerCredit({ customerId: 'c', creditId: fresh.id, validateOnly }, md)))!;
    expect(revoked.rehearsed.credit!.id).to.equal(fresh.id);
  });
});
