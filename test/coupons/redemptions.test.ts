import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { Coupon, CouponRedemption, CreateCouponRequest, RedeemCouponRequest } from '../../gen/credits/v1/coupon_service';
import { decodeError, expectError } from '../support/status';
import { walkPages } from '../support/pages';
import { useTenantClients } from '../support/tenant-clients';
import { fixedCoupon, percentageCoupon, redeemRequest, sameTerms } from './fixtures';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('CouponService redemptions', () => {
  const t = useTenantClients();

  const create = async (request: CreateCouponRequest): Promise<Coupon> => (await t.coupons.createCoupon(request)).coupon!;

  /** RedeemCoupon must fail with `reason`, and ValidateCoupon must answer the same reason without an error. */
  async function expectRefused(request: RedeemCouponRequest, reason: string): Promise<void> {
    const validation = await t.coupons.validateCoupon(request);
    expect({ valid: validation.valid, reason: validation.reason }, validation.message).to.deep.equal({ valid: false, reason });
    expect(validation.message).to.not.equal('');
    expect(validation.discount).to.equal(undefined);
    const err = await expectError(t.coupons.redeemCoupon(request), status.FAILED_PRECONDITION, reason);
    expect(err.message).to.contain(validation.coupon!.code);
  }

  it('redeems a percentage coupon: records the redemption, the discount rounded half up, and counts it', async () => {
    const coupon = await create(percentageCoupon({ percentage: 10 }));
    const res = await t.coupons.redeemCoupon(
      redeemRequest(coupon.code.toLowerCase(), 'cust-1', { planId: 'pro', productId: 'seat', amount: { amount: 1005n, currencyCode: 'EUR' } }),
    );
    const r = res.redemption!;
    expect(r).to.deep.include({
      couponId: coupon.id,
      customerId: 'cust-1',
      planId: 'pro',
      productId: 'seat',
      amount: { amount: 1005n, currencyCode: 'EUR' },
      discount: { amount: 101n, currencyCode: 'EUR' }, // 100.5 rounds up
      doneBy: 'rw-key',
    });
    expect(r.id).to.match(/^[0-9a-f-]{36}$/);
    expect(r.createTime).to.be.instanceOf(Date);
    expect(res.coupon).to.deep.include({ id: coupon.id, redeemed: true, redemptionCount: 1n, updateTime: coupon.updateTime });

    const again = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'cust-1', { amount: { amount: 1004n, currencyCode: '' } }));
    expect(again.redemption!.discount).to.deep.equal({ amount: 100n, currencyCode: 'USD' }); // 100.4 rounds down
    expect(again.coupon!.redemptionCount).to.equal(2n);
  });

  it('caps a fixed amount at the amount so the total never goes below zero', async () => {
    const coupon = await create(fixedCoupon({ fixedAmount: { amount: 500n, currencyCode: 'USD' } }));
    const small = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'a', { amount: { amount: 300n, currencyCode: 'USD' } }));
    expect(small.redemption!.discount).to.deep.equal({ amount: 300n, currencyCode: 'USD' });
    const large = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'b', { amount: { amount: 9007199254740993n, currencyCode: 'USD' } }));
    expect(large.redemption!.discount).to.deep.equal({ amount: 500n, currencyCode: 'USD' });
    expect(large.redemption!.amount).to.deep.equal({ amount: 9007199254740993n, currencyCode: 'USD' });
    const zero = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c', { amount: { amount: 0n, currencyCode: 'USD' } }));
    expect(zero.redemption!.discount).to.deep.equal({ amount: 0n, currencyCode: 'USD' });
  });

  it('records a redemption without an amount with no discount', async () => {
    const coupon = await create(fixedCoupon());
    const res = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'cust-9'));
    expect(res.redemption).to.deep.include({ planId: '', productId: '', amount: undefined, discount: undefined });
    const validation = await t.coupons.validateCoupon(redeemRequest(coupon.code, 'cust-9'));
    expect(validation).to.deep.include({ valid: true, reason: '', message: '', discount: undefined });
  });

  it('validates without writing anything', async () => {
    const coupon = await create(percentageCoupon({ percentage: 50, maxRedemptions: 1 }));
    const request = redeemRequest(coupon.code, 'cust-1', { amount: { amount: 1n, currencyCode: 'USD' } });
    for (let i = 0; i < 3; i++) {
      const validation = await t.coupons.validateCoupon(request);
      expect(validation).to.deep.include({ valid: true, reason: '', message: '', discount: { amount: 1n, currencyCode: 'USD' } });
      expect(validation.coupon).to.deep.include({ id: coupon.id, redemptionCount: 0n, redeemed: false });
    }
    const list = await t.coupons.listCouponRedemptions({ pageSize: 0, pageToken: '', couponId: coupon.id, customerId: '' });
    expect(list.redemptions).to.deep.equal([]);
    await t.coupons.redeemCoupon(request);
    await expectRefused(request, 'COUPON_MAX_REDEMPTIONS_REACHED');
  });

  it('refuses a disabled coupon (COUPON_DISABLED)', async () => {
    const coupon = await create(percentageCoupon({ enabled: false }));
    await expectRefused(redeemRequest(coupon.code, 'c'), 'COUPON_DISABLED');
  });

  it('expires without any background job (COUPON_EXPIRED), and an expired redeemed coupon can still be disabled', async function () {
    this.timeout(20_000);
    const coupon = await create(percentageCoupon({ expireTime: new Date(Date.now() + 1_500) }));
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'early'));
    await sleep(1_700);
    await expectRefused(redeemRequest(coupon.code, 'late'), 'COUPON_EXPIRED');
    const current = (await t.coupons.getCoupon({ id: coupon.id })).coupon!;
    const disabled = (await t.coupons.updateCoupon(sameTerms(current, { enabled: false }))).coupon!;
    expect(disabled.enabled).to.equal(false);
    expect(disabled.expireTime).to.deep.equal(coupon.expireTime);
  });

  describe('COUPON_NOT_APPLICABLE', () => {
    it('follows the plan rules', async () => {
      const limited = await create(percentageCoupon({ limitedToPlans: ['gold', 'silver'], excludedFromPlans: ['bronze'] }));
      await expectRefused(redeemRequest(limited.code, 'c', { planId: 'bronze' }), 'COUPON_NOT_APPLICABLE');
      await expectRefused(redeemRequest(limited.code, 'c', { planId: 'platinum' }), 'COUPON_NOT_APPLICABLE');
      await expectRefused(redeemRequest(limited.code, 'c'), 'COUPON_NOT_APPLICABLE');
      await t.coupons.redeemCoupon(redeemRequest(limited.code, 'c', { planId: 'gold' }));

      const excluded = await create(percentageCoupon({ excludedFromPlans: ['free'] }));
      await expectRefused(redeemRequest(excluded.code, 'c', { planId: 'free' }), 'COUPON_NOT_APPLICABLE');
      await t.coupons.redeemCoupon(redeemRequest(excluded.code, 'c', { planId: 'pro' }));
      await t.coupons.redeemCoupon(redeemRequest(excluded.code, 'c'));
    });

    it('follows the product rules', async () => {
      const limited = await create(percentageCoupon({ limitedToProducts: ['seat'] }));
      await expectRefused(redeemRequest(limited.code, 'c', { productId: 'storage' }), 'COUPON_NOT_APPLICABLE');
      await expectRefused(redeemRequest(limited.code, 'c', { planId: 'seat' }), 'COUPON_NOT_APPLICABLE');
      await t.coupons.redeemCoupon(redeemRequest(limited.code, 'c', { productId: 'seat' }));

      const excluded = await create(percentageCoupon({ excludedFromProducts: ['storage'] }));
      await expectRefused(redeemRequest(excluded.code, 'c', { productId: 'storage' }), 'COUPON_NOT_APPLICABLE');
      await t.coupons.redeemCoupon(redeemRequest(excluded.code, 'c', { productId: 'seat' }));
    });

    it('refuses an amount in another currency than a fixed-amount coupon', async () => {
      const fixed = await create(fixedCoupon({ fixedAmount: { amount: 500n, currencyCode: 'USD' } }));
      await expectRefused(redeemRequest(fixed.code, 'c', { amount: { amount: 1000n, currencyCode: 'EUR' } }), 'COUPON_NOT_APPLICABLE');
      // A percentage coupon applies in any currency.
      const percentage = await create(percentageCoupon());
      const res = await t.coupons.redeemCoupon(redeemRequest(percentage.code, 'c', { amount: { amount: 1000n, currencyCode: 'JPY' } }));
      expect(res.redemption!.discount).to.deep.equal({ amount: 100n, currencyCode: 'JPY' });
    });
  });

  it('stops at max_redemptions (COUPON_MAX_REDEMPTIONS_REACHED)', async () => {
    const coupon = await create(percentageCoupon({ maxRedemptions: 2 }));
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'a'));
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'b'));
    await expectRefused(redeemRequest(coupon.code, 'c'), 'COUPON_MAX_REDEMPTIONS_REACHED');
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(2n);
  });

  it('stops at max_redemptions_per_customer (COUPON_CUSTOMER_LIMIT_REACHED) for that customer only', async () => {
    const coupon = await create(percentageCoupon({ maxRedemptionsPerCustomer: 2 }));
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'a'));
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'a'));
    await expectRefused(redeemRequest(coupon.code, 'a'), 'COUPON_CUSTOMER_LIMIT_REACHED');
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'b'));
  });

  it('reports the first failing check in the contract order', async function () {
    this.timeout(20_000);
    // disabled + expired + not applicable + max reached + customer limit → DISABLED, then peel off one at a time.
    const coupon = await create(
      percentageCoupon({ maxRedemptions: 1, maxRedemptionsPerCustomer: 1, excludedFromPlans: ['x'], expireTime: new Date(Date.now() + 1_500) }),
    );
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'a'));
    await sleep(1_700);
    const current = (await t.coupons.getCoupon({ id: coupon.id })).coupon!;
    await t.coupons.updateCoupon(sameTerms(current, { enabled: false }));
    await expectRefused(redeemRequest(coupon.code, 'a', { planId: 'x' }), 'COUPON_DISABLED');
    await t.coupons.updateCoupon(sameTerms(current, { enabled: true }));
    await expectRefused(redeemRequest(coupon.code, 'a', { planId: 'x' }), 'COUPON_EXPIRED');

    const live = await create(percentageCoupon({ maxRedemptions: 1, maxRedemptionsPerCustomer: 1, excludedFromPlans: ['x'] }));
    await t.coupons.redeemCoupon(redeemRequest(live.code, 'a'));
    await expectRefused(redeemRequest(live.code, 'a', { planId: 'x' }), 'COUPON_NOT_APPLICABLE');
    await expectRefused(redeemRequest(live.code, 'a'), 'COUPON_MAX_REDEMPTIONS_REACHED');
  });

  it('answers NOT_FOUND for an unknown code and lists every bad field at once', async () => {
    await expectError(t.coupons.redeemCoupon(redeemRequest('UNKNOWN', 'c')), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    await expectError(t.coupons.validateCoupon(redeemRequest('UNKNOWN', 'c')), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    const bad = { code: '', customerId: 'bad id!', planId: 'p'.repeat(51), productId: 'no spaces', amount: { amount: -1n, currencyCode: 'EURO' } };
    for (const call of [t.coupons.redeemCoupon(bad), t.coupons.validateCoupon(bad)]) {
      const err = await expectError(call, status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(err.fields).sort()).to.deep.equal(['amount.amount', 'amount.currency_code', 'code', 'customer_id', 'plan_id', 'product_id']);
    }
  });

  it('redeems once per idempotency key, even when the retries race', async () => {
    const coupon = await create(percentageCoupon({ maxRedemptions: 10 }));
    const withKey = (key: string) => {
      const metadata = new Metadata();
      metadata.set('idempotency-key', key);
      return metadata;
    };
    const request = redeemRequest(coupon.code, 'cust-1', { amount: { amount: 999n, currencyCode: 'USD' } });
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => t.coupons.redeemCoupon(request, withKey('checkout-42'))));
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(ok.length, 'at least the first call succeeds; the others replay it or are told it is in flight').to.be.greaterThan(0);
    for (const response of ok) expect(response.redemption).to.deep.equal(ok[0]!.redemption);
    for (const r of results) {
      if (r.status === 'rejected') expect(decodeError(r.reason as ServiceError).reason).to.equal('IDEMPOTENCY_KEY_IN_USE');
    }
    const replay = await t.coupons.redeemCoupon(request, withKey('checkout-42'));
    expect(replay.redemption).to.deep.equal(ok[0]!.redemption);
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);
    // A refusal is the call's fate too: it is replayed, not re-evaluated.
    const disabled = await create(percentageCoupon({ enabled: false }));
    await expectError(t.coupons.redeemCoupon(redeemRequest(disabled.code, 'c'), withKey('k-2')), status.FAILED_PRECONDITION, 'COUPON_DISABLED');
    await t.coupons.updateCoupon(sameTerms(disabled, { enabled: true }));
    await expectError(t.coupons.redeemCoupon(redeemRequest(disabled.code, 'c'), withKey('k-2')), status.FAILED_PRECONDITION, 'COUPON_DISABLED');
    await t.coupons.redeemCoupon(redeemRequest(disabled.code, 'c'), withKey('k-3'));
  });

  describe('ListCouponRedemptions', () => {
    function walk(couponId: string, customerId: string, pageSize: number): Promise<CouponRedemption[]> {
      return walkPages(
        (pageToken) => t.coupons.listCouponRedemptions({ pageSize, pageToken, couponId, customerId }),
        (page) => page.redemptions,
      );
    }

    it('lists redemptions per coupon, per customer and both, newest first, across pages', async () => {
      const a = await create(percentageCoupon());
      const b = await create(fixedCoupon());
      const made: CouponRedemption[] = [];
      for (const [coupon, customer] of [
        [a, 'alice'],
        [b, 'alice'],
        [a, 'bob'],
        [a, 'alice'],
        [b, 'carol'],
      ] as const) {
        made.push((await t.coupons.redeemCoupon(redeemRequest(coupon.code, customer))).redemption!);
      }
      const newestFirst = [...made].reverse();
      const ids = (list: CouponRedemption[]) => list.map((r) => r.id);
      expect(ids(await walk('', '', 2))).to.deep.equal(ids(newestFirst));
      expect(ids(await walk(a.id, '', 1))).to.deep.equal(ids(newestFirst.filter((r) => r.couponId === a.id)));
      expect(ids(await walk(a.id.toUpperCase(), '', 10))).to.deep.equal(ids(newestFirst.filter((r) => r.couponId === a.id)));
      expect(ids(await walk('', 'alice', 2))).to.deep.equal(ids(newestFirst.filter((r) => r.customerId === 'alice')));
      expect(ids(await walk(b.id, 'alice', 2))).to.deep.equal(ids(newestFirst.filter((r) => r.customerId === 'alice' && r.couponId === b.id)));
      expect(await walk(b.id, 'bob', 2)).to.deep.equal([]);
      expect((await walk(a.id, 'bob', 0))[0]).to.deep.equal(made[2]);
    });

    it('rejects an unknown coupon, bad filters and a token used with other filters', async () => {
      const a = await create(percentageCoupon());
      await t.coupons.redeemCoupon(redeemRequest(a.code, 'x'));
      await t.coupons.redeemCoupon(redeemRequest(a.code, 'y'));
      await expectError(
        t.coupons.listCouponRedemptions({ pageSize: 0, pageToken: '', couponId: '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b', customerId: '' }),
        status.NOT_FOUND,
        'COUPON_NOT_FOUND',
      );
      const err = await expectError(
        t.coupons.listCouponRedemptions({ pageSize: -5, pageToken: '', couponId: 'abc', customerId: 'bad id!' }),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(err.fields).sort()).to.deep.equal(['coupon_id', 'customer_id', 'page_size']);
      const page = await t.coupons.listCouponRedemptions({ pageSize: 1, pageToken: '', couponId: a.id, customerId: '' });
      await expectError(t.coupons.listCouponRedemptions({ pageSize: 1, pageToken: page.nextPageToken, couponId: '', customerId: '' }), status.INVALID_ARGUMENT);
    });
  });
});
