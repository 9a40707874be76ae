import { credentials, status, type Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreditServiceClient, CreditState, RedeemCustomerCreditResponse } from '../../gen/credits/v1/credit_service';
import { apiKeyInterceptor } from '../support/server';
import { expectError } from '../support/status';
import { fixedCoupon, sameTerms } from '../coupons/fixtures';
import { creditContext, lifetime, limited, once, redeemCreditRequest, withIdempotencyKey } from './fixtures';

const UNKNOWN_ID = '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b';

describe('CreditService: RedeemCustomerCredit', () => {
  const t = creditContext();

  it('uses one use: records a coupon redemption with its discount and returns the revenue allocated', async () => {
    const coupon = await t.coupon(limited(2, { percentage: 15 }));
    const credit = await t.issue(coupon.id, 'cust-1', { revenue: { amount: 1250n, currencyCode: 'EUR' }, membershipId: 'm-1' });
    const first = await t.credits.redeemCustomerCredit(
      redeemCreditRequest('cust-1', credit.id, { planId: 'pro', productId: 'seat', amount: { amount: 103n, currencyCode: 'USD' } }),
    );
    expect(first.credit).to.deep.include({
      id: credit.id,
      state: CreditState.CREDIT_STATE_ACTIVE,
      usesRemaining: 1,
      redemptionCount: 1n,
      multiUse: true,
      revenue: { amount: 1250n, currencyCode: 'EUR' },
    });
    expect(first.credit!.lastRedeemTime).to.be.instanceOf(Date);
    expect(first.redemption).to.deep.include({
      couponId: coupon.id,
      customerId: 'cust-1',
      planId: 'pro',
      productId: 'seat',
      amount: { amount: 103n, currencyCode: 'USD' },
      discount: { amount: 15n, currencyCode: 'USD' }, // 15.45 rounds down
      doneBy: 'rw-key',
    });
    expect(first.revenue).to.deep.equal({ amount: 1250n, currencyCode: 'EUR' });

    const second = await t.credits.redeemCustomerCredit(redeemCreditRequest('cust-1', credit.id));
    expect(second.credit).to.deep.include({ state: CreditState.CREDIT_STATE_REDEEMED, usesRemaining: 0, redemptionCount: 2n });
    expect(second.credit!.lastRedeemTime!.getTime()).to.be.at.least(first.credit!.lastRedeemTime!.getTime());
    expect(second.redemption).to.deep.include({ amount: undefined, discount: undefined });
    expect((await t.credits.getCustomerCredit({ customerId: 'cust-1', creditId: credit.id })).credit).to.deep.equal(second.credit);
    await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('cust-1', credit.id)), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');

    // Each use is a redemption of the coupon: counted, listed, and the coupon's terms are frozen.
    const after = (await t.coupons.getCoupon({ id: coupon.id })).coupon!;
    expect(after).to.deep.include({ redeemed: true, redemptionCount: 2n });
    const listed = await t.coupons.listCouponRedemptions({ pageSize: 10, pageToken: '', couponId: coupon.id, customerId: 'cust-1' });
    expect(listed.redemptions.map((r) => r.id)).to.deep.equal([second.redemption!.id, first.redemption!.id]);
    await expectError(t.coupons.updateCoupon(sameTerms(after, { name: 'changed' })), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');

    // Which credit each redemption used, and the revenue allocated to it, is recorded.
    const links: Array<{ redemption_id: string; credit_id: string; revenue_amount: string; revenue_currency_code: string }> = await t.server.dataSource.query(
      `SELECT redemption_id, credit_id, revenue_amount, revenue_currency_code FROM customer_credit_redemptions WHERE credit_id = $1 ORDER BY redemption_id`,
      [credit.id],
    );
    expect(links).to.deep.equal(
      [first.redemption!.id, second.redemption!.id].sort().map((id) => ({ redemption_id: id, credit_id: credit.id, revenue_amount: '1250', revenue_currency_code: 'EUR' })),
    );
  });

  it('answers no revenue for a credit without one, and never runs out for FREQUENCY_LIFETIME', async () => {
    const credit = await t.issue((await t.coupon(lifetime())).id, 'c');
    for (let i = 1; i <= 5; i++) {
      const res = await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id));
      expect(res.revenue).to.equal(undefined);
      expect(res.credit).to.deep.include({ state: CreditState.CREDIT_STATE_ACTIVE, usesRemaining: undefined, redemptionCount: BigInt(i) });
    }
  });

  it('answers CREDIT_NOT_FOUND for an unknown credit or another customer, and writes nothing', async () => {
    const coupon = await t.coupon(once());
    const credit = await t.issue(coupon.id, 'owner');
    await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('owner', UNKNOWN_ID)), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
    await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('intruder', credit.id)), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(0n);
    expect((await t.credits.getCustomerCredit({ customerId: 'owner', creditId: credit.id })).credit!.redemptionCount).to.equal(0n);
  });

  it('validates every field at once', async () => {
    const err = await expectError(
      t.credits.redeemCustomerCredit({ customerId: '', creditId: 'x', planId: 'bad plan', productId: 'p'.repeat(51), amount: { amount: -5n, currencyCode: 'ZZZ' } }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(err.fields).sort()).to.deep.equal(['amount.amount', 'amount.currency_code', 'credit_id', 'customer_id', 'plan_id', 'product_id']);
  });

  describe('runs the coupon checks, and a refusal changes nothing', () => {
    async function expectRefusedAndUnchanged(customerId: string, creditId: string, couponId: string, reason: string, overrides = {}) {
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest(customerId, creditId, overrides)), status.FAILED_PRECONDITION, reason);
      const credit = (await t.credits.getCustomerCredit({ customerId, creditId })).credit!;
      expect(credit).to.deep.include({ redemptionCount: 0n, lastRedeemTime: undefined });
      expect((await t.coupons.getCoupon({ id: couponId })).coupon!.redemptionCount).to.equal(0n);
    }

    it('COUPON_DISABLED when the coupon was disabled after issue', async () => {
      const coupon = await t.coupon(once());
      const credit = await t.issue(coupon.id, 'c');
      await t.coupons.updateCoupon(sameTerms(coupon, { enabled: false }));
      await expectRefusedAndUnchanged('c', credit.id, coupon.id, 'COUPON_DISABLED');
      expect((await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!.state).to.equal(CreditState.CREDIT_STATE_ACTIVE);
    });

    it('COUPON_EXPIRED when the coupon expiry was moved before the credit expiry', async () => {
      const coupon = await t.coupon(once());
      const credit = await t.issue(coupon.id, 'c', { expireTime: new Date(Date.now() + 3_600_000) });
      // The coupon was never redeemed, so its terms may still change; move its expiry into the near past.
      await t.coupons.updateCoupon(sameTerms(coupon, { expireTime: new Date(Date.now() + 300) }));
      await new Promise((resolve) => setTimeout(resolve, 400));
      await expectRefusedAndUnchanged('c', credit.id, coupon.id, 'COUPON_EXPIRED');
    });

    it('COUPON_NOT_APPLICABLE for an excluded plan, a product outside the allowed ones, or another currency', async () => {
      const coupon = await t.coupon(fixedCoupon({ excludedFromPlans: ['free'], limitedToProducts: ['seat'] }));
      const credit = await t.issue(coupon.id, 'c');
      await expectRefusedAndUnchanged('c', credit.id, coupon.id, 'COUPON_NOT_APPLICABLE', { planId: 'free', productId: 'seat' });
      await expectRefusedAndUnchanged('c', credit.id, coupon.id, 'COUPON_NOT_APPLICABLE', { productId: 'storage' });
      await expectRefusedAndUnchanged('c', credit.id, coupon.id, 'COUPON_NOT_APPLICABLE', { productId: 'seat', amount: { amount: 100n, currencyCode: 'EUR' } });
      const ok = await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id, { productId: 'seat', amount: { amount: 300n, currencyCode: 'USD' } }));
      expect(ok.redemption!.discount).to.deep.equal({ amount: 300n, currencyCode: 'USD' });
    });

    it('COUPON_MAX_REDEMPTIONS_REACHED when the coupon reached its total limit', async () => {
      const coupon = await t.coupon(once({ maxRedemptions: 2 }));
      const a = await t.issue(coupon.id, 'a');
      const b = await t.issue(coupon.id, 'b');
      const c = await t.issue(coupon.id, 'c');
      await t.credits.redeemCustomerCredit(redeemCreditRequest('a', a.id));
      await t.coupons.redeemCoupon({ code: coupon.code, customerId: 'walk-in', planId: '', productId: '' });
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('b', b.id)), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('c', c.id)), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
      expect((await t.credits.getCustomerCredit({ customerId: 'b', creditId: b.id })).credit).to.deep.include({
        state: CreditState.CREDIT_STATE_ACTIVE,
        redemptionCount: 0n,
      });
      expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(2n);
    });

    it('COUPON_CUSTOMER_LIMIT_REACHED: credit redemptions count toward the per-customer limit', async () => {
      const coupon = await t.coupon(limited(5, { maxRedemptionsPerCustomer: 2 }));
      const credit = await t.issue(coupon.id, 'c');
      const other = await t.issue(coupon.id, 'c');
      await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id));
      await t.coupons.redeemCoupon({ code: coupon.code, customerId: 'c', planId: '', productId: '' });
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('c', other.id)), status.FAILED_PRECONDITION, 'COUPON_CUSTOMER_LIMIT_REACHED');
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id)), status.FAILED_PRECONDITION, 'COUPON_CUSTOMER_LIMIT_REACHED');
      expect((await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!.redemptionCount).to.equal(1n);
      // Another customer's credit is not affected.
      const theirs = await t.issue(coupon.id, 'd');
      await t.credits.redeemCustomerCredit(redeemCreditRequest('d', theirs.id));
    });

    it('checks the credit before the coupon: an expired credit of a disabled coupon is CREDIT_EXPIRED', async function () {
      this.timeout(20_000);
      const coupon = await t.coupon(once());
      const credit = await t.issue(coupon.id, 'c', { expireTime: new Date(Date.now() + 500) });
      await t.coupons.updateCoupon(sameTerms(coupon, { enabled: false }));
      await new Promise((resolve) => setTimeout(resolve, 700));
      await expectRefusedAndUnchanged('c', credit.id, coupon.id, 'CREDIT_EXPIRED');
    });
  });

  describe('with an idempotency-key', () => {
    it('replays the same response for a retry and records one redemption', async () => {
      const coupon = await t.coupon(limited(3));
      const credit = await t.issue(coupon.id, 'c', { revenue: { amount: 700n, currencyCode: 'USD' } });
      const request = redeemCreditRequest('c', credit.id, { amount: { amount: 1000n, currencyCode: 'USD' } });

      const headers: Metadata[] = [];
      const raw = new CreditServiceClient(t.server.address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(t.tenant.rwKey)] });
      const call = () =>
        new Promise<RedeemCustomerCreditResponse>((resolve, reject) => {
          const c = raw.redeemCustomerCredit(request, withIdempotencyKey('checkout-1'), (err, res) => (err ? reject(err) : resolve(res)));
          c.on('metadata', (md: Metadata) => headers.push(md));
        });
      try {
        const first = await call();
        const replay = await call();
        expect(Buffer.from(RedeemCustomerCreditResponse.encode(replay).finish())).to.deep.equal(
          Buffer.from(RedeemCustomerCreditResponse.encode(first).finish()),
        );
        expect(headers.map((h) => h.get('idempotent-replayed'))).to.deep.equal([[], ['true']]);
      } finally {
        raw.close();
      }
      const after = (await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!;
      expect(after).to.deep.include({ redemptionCount: 1n, usesRemaining: 2 });
      expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);

      // The same key with another request is refused and writes nothing.
      const changed = redeemCreditRequest('c', credit.id, { amount: { amount: 1001n, currencyCode: 'USD' } });
      const err = await expectError(t.credits.redeemCustomerCredit(changed, withIdempotencyKey('checkout-1')), status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED');
      expect(err.fields).to.have.property('idempotency-key');
      expect((await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!.redemptionCount).to.equal(1n);
      // A new key is a new redemption.
      const next = await t.credits.redeemCustomerCredit(request, withIdempotencyKey('checkout-2'));
      expect(next.credit!.redemptionCount).to.equal(2n);
    });

    it('replays a refusal: a refused redemption stays refused under its key', async () => {
      const coupon = await t.coupon(once());
      const credit = await t.issue(coupon.id, 'c');
      await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id));
      const request = redeemCreditRequest('c', credit.id, { planId: 'x' });
      await expectError(t.credits.redeemCustomerCredit(request, withIdempotencyKey('k-refused')), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');
      await expectError(t.credits.redeemCustomerCredit(request, withIdempotencyKey('k-refused')), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');
    });

    it('issues a batch once under its key', async () => {
      const coupon = await t.coupon(once());
      const request = { couponId: coupon.id, credits: [{ customerId: 'a', membershipId: '' }, { customerId: 'b', membershipId: '' }] };
      const first = await t.credits.batchCreateCustomerCredits(request, withIdempotencyKey('cycle-2030-01'));
      const replay = await t.credits.batchCreateCustomerCredits(request, withIdempotencyKey('cycle-2030-01'));
      expect(replay).to.deep.equal(first);
      const rows: Array<{ n: string }> = await t.server.dataSource.query(`SELECT count(*) AS n FROM customer_credits WHERE coupon_id = $1`, [coupon.id]);
      expect(rows[0]!.n).to.equal('2');
    });
  });
});
