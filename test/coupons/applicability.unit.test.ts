import { expect } from 'chai';
import { ErrorReason } from '../../src/common/domain-error';
import { couponRefusal, customerLimitRefusal, notApplicableBecause } from '../../src/coupons/coupon-redemption.rules';
import { changedFields, type CouponTerms } from '../../src/coupons/coupon.rules';
import { couponView as coupon } from './fixtures';

const NOW = new Date('2030-01-01T00:00:00Z');

const none = { planId: undefined, productId: undefined, amount: undefined };

describe('coupon applicability rules (unit)', () => {
  it('applies to anything when no list is set', () => {
    expect(notApplicableBecause(coupon(), none)).to.equal(undefined);
    expect(notApplicableBecause(coupon(), { planId: 'p', productId: 'q', amount: { amount: 1n, currencyCode: 'JPY' } })).to.equal(undefined);
  });

  it('limits to plans: a listed plan applies, another or none does not', () => {
    const c = coupon({ limitedToPlans: ['gold', 'silver'] });
    expect(notApplicableBecause(c, { ...none, planId: 'gold' })).to.equal(undefined);
    expect(notApplicableBecause(c, { ...none, planId: 'bronze' })).to.contain('limited to plans gold, silver');
    expect(notApplicableBecause(c, none)).to.contain('no plan_id was given');
  });

  it('excludes plans and products only when that id is given', () => {
    const c = coupon({ excludedFromPlans: ['free'], excludedFromProducts: ['trial'] });
    expect(notApplicableBecause(c, { ...none, planId: 'free' })).to.equal('plan free is excluded');
    expect(notApplicableBecause(c, { ...none, productId: 'trial' })).to.equal('product trial is excluded');
    expect(notApplicableBecause(c, { ...none, planId: 'pro', productId: 'seat' })).to.equal(undefined);
    expect(notApplicableBecause(c, none)).to.equal(undefined);
  });

  it('limits to products independently of plans', () => {
    const c = coupon({ limitedToPlans: ['pro'], limitedToProducts: ['seat'] });
    expect(notApplicableBecause(c, { ...none, planId: 'pro', productId: 'seat' })).to.equal(undefined);
    expect(notApplicableBecause(c, { ...none, planId: 'pro', productId: 'disk' })).to.contain('limited to products seat');
    expect(notApplicableBecause(c, { ...none, planId: 'pro' })).to.contain('no product_id');
  });

  it('needs a fixed amount’s currency on the amount, and accepts any currency for a percentage', () => {
    const fixed = coupon({ type: 'FIXED_AMOUNT', percentage: null, fixedAmount: 500n, fixedCurrencyCode: 'USD' });
    expect(notApplicableBecause(fixed, { ...none, amount: { amount: 100n, currencyCode: 'USD' } })).to.equal(undefined);
    expect(notApplicableBecause(fixed, { ...none, amount: { amount: 100n, currencyCode: 'EUR' } })).to.contain('in USD');
    expect(notApplicableBecause(fixed, none)).to.equal(undefined);
    expect(notApplicableBecause(coupon(), { ...none, amount: { amount: 100n, currencyCode: 'EUR' } })).to.equal(undefined);
  });

  it('checks in the contract order: disabled, expired, not applicable, total limit', () => {
    const everything = coupon({
      enabled: false,
      expireTime: new Date(NOW.getTime() - 1),
      excludedFromPlans: ['x'],
      maxRedemptions: 1,
      redemptionCount: 1n,
    });
    const request = { ...none, planId: 'x' };
    expect(couponRefusal(everything, request, NOW)?.reason).to.equal(ErrorReason.CouponDisabled);
    expect(couponRefusal({ ...everything, enabled: true }, request, NOW)?.reason).to.equal(ErrorReason.CouponExpired);
    expect(couponRefusal({ ...everything, enabled: true, expireTime: null }, request, NOW)?.reason).to.equal(ErrorReason.CouponNotApplicable);
    expect(couponRefusal({ ...everything, enabled: true, expireTime: null }, none, NOW)?.reason).to.equal(ErrorReason.CouponMaxRedemptionsReached);
    expect(couponRefusal({ ...everything, enabled: true, expireTime: null, redemptionCount: 0n }, none, NOW)).to.equal(undefined);
  });

  it('expires at the instant expire_time is reached', () => {
    expect(couponRefusal(coupon({ expireTime: NOW }), none, NOW)?.reason).to.equal(ErrorReason.CouponExpired);
    expect(couponRefusal(coupon({ expireTime: new Date(NOW.getTime() + 1) }), none, NOW)).to.equal(undefined);
  });

  it('refuses the per-customer limit once reached', () => {
    const c = coupon({ maxRedemptionsPerCustomer: 2 });
    expect(customerLimitRefusal(c, 'c1', 1n)).to.equal(undefined);
    expect(customerLimitRefusal(c, 'c1', 2n)?.reason).to.equal(ErrorReason.CouponCustomerLimitReached);
    expect(customerLimitRefusal(coupon(), 'c1', 1000n)).to.equal(undefined);
  });

  it('finds the changed fields of a PUT, lists compared as sets', () => {
    const terms: CouponTerms = {
      code: 'A',
      name: 'n',
      type: 'PERCENTAGE',
      percentage: 10,
      fixedAmount: null,
      fixedCurrencyCode: null,
      frequency: 'ONCE',
      frequencyInterval: null,
      maxRedemptions: null,
      maxRedemptionsPerCustomer: null,
      expireTime: new Date(NOW),
      limitedToPlans: ['a', 'b'],
      excludedFromPlans: [],
      limitedToProducts: [],
      excludedFromProducts: [],
      enabled: true,
    };
    expect(changedFields(terms, { ...terms, limitedToPlans: ['b', 'a'], expireTime: new Date(NOW) })).to.deep.equal([]);
    expect(changedFields(terms, { ...terms, enabled: false })).to.deep.equal(['enabled']);
    expect(changedFields(terms, { ...terms, code: 'a', expireTime: null, limitedToPlans: ['a'] })).to.deep.equal(['code', 'expire_time', 'limited_to_plans']);
    expect(changedFields(terms, { ...terms, type: 'FIXED_AMOUNT', percentage: null, fixedAmount: 5n, fixedCurrencyCode: 'USD' })).to.deep.equal([
      'type',
      'percentage',
      'fixed_amount',
    ]);
  });
});
