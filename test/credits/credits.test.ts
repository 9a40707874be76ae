import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreditState } from '../../gen/credits/v1/credit_service';
import { coupons, credits } from '../support/server';
import { decodeError, expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { sameTerms } from '../coupons/fixtures';
import { creditContext, issueRequest, lifetime, limited, listRequest, once, redeemCreditRequest, sleep } from './fixtures';

const UNKNOWN_ID = '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b';

describe('CreditService: issue, get, revoke', () => {
  const t = creditContext();

  describe('CreateCustomerCredit', () => {
    it('issues a single-use credit from a FREQUENCY_ONCE coupon, with the coupon expiry by default', async () => {
      const expireTime = new Date(Date.now() + 86_400_000);
      const coupon = await t.coupon(once({ expireTime }));
      const before = Date.now();
      const credit = await t.issue(coupon.id, 'cust-1', { membershipId: 'gold-2030', revenue: { amount: 9007199254740993n, currencyCode: 'EUR' } });
      expect(credit).to.deep.include({
        customerId: 'cust-1',
        couponId: coupon.id,
        membershipId: 'gold-2030',
        state: CreditState.CREDIT_STATE_ACTIVE,
        multiUse: false,
        usesRemaining: 1,
        redemptionCount: 0n,
        expireTime,
        revenue: { amount: 9007199254740993n, currencyCode: 'EUR' },
        revokeTime: undefined,
        lastRedeemTime: undefined,
      });
      expect(credit.id).to.match(/^[0-9a-f-]{36}$/);
      expect(credit.createTime!.getTime()).to.be.within(before - 1_000, Date.now() + 1_000);
      expect((await t.credits.getCustomerCredit({ customerId: 'cust-1', creditId: credit.id })).credit).to.deep.equal(credit);
      // Issuing is not a redemption: the coupon is not counted nor frozen.
      const after = (await t.coupons.getCoupon({ id: coupon.id })).coupon!;
      expect(after).to.deep.include({ redeemed: false, redemptionCount: 0n });
      await t.coupons.updateCoupon(sameTerms(after, { name: 'renamed' }));
    });

    it('gives FREQUENCY_LIMITED its interval of uses and FREQUENCY_LIFETIME unlimited uses; no membership, revenue or expiry', async () => {
      const three = await t.issue((await t.coupon(limited(3))).id, 'cust-1');
      expect(three).to.deep.include({ multiUse: true, usesRemaining: 3, membershipId: undefined, revenue: undefined, expireTime: undefined });
      const one = await t.issue((await t.coupon(limited(1))).id, 'cust-1');
      expect(one).to.deep.include({ multiUse: false, usesRemaining: 1 });
      const unlimited = await t.issue((await t.coupon(lifetime())).id, 'cust-1');
      expect(unlimited).to.deep.include({ multiUse: true, usesRemaining: undefined, state: CreditState.CREDIT_STATE_ACTIVE });
    });

    it('takes the revenue currency from the tenant default when empty', async () => {
      const coupon = await t.coupon(once());
      const credit = await t.issue(coupon.id, 'c', { revenue: { amount: 0n, currencyCode: '' } });
      expect(credit.revenue).to.deep.equal({ amount: 0n, currencyCode: 'USD' });
    });

    it('accepts an expire_time up to the coupon expiry and refuses a later or past one (INVALID_ARGUMENT)', async () => {
      const couponExpiry = new Date(Date.now() + 3_600_000);
      const coupon = await t.coupon(once({ expireTime: couponExpiry }));
      const earlier = new Date(Date.now() + 60_000);
      expect((await t.issue(coupon.id, 'c', { expireTime: earlier })).expireTime).to.deep.equal(earlier);
      expect((await t.issue(coupon.id, 'c', { expireTime: couponExpiry })).expireTime).to.deep.equal(couponExpiry);
      const later = await expectError(
        t.credits.createCustomerCredit(issueRequest(coupon.id, 'c', { expireTime: new Date(couponExpiry.getTime() + 1) })),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(later.fields['expire_time']).to.contain("coupon's expire_time");
      const past = await expectError(
        t.credits.createCustomerCredit(issueRequest(coupon.id, 'c', { expireTime: new Date(Date.now() - 1_000) })),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(past.fields['expire_time']).to.contain('must be in the future');
      // A coupon that never expires accepts any future expiry.
      const forever = await t.coupon(once());
      const far = new Date('2999-01-01T00:00:00Z');
      expect((await t.issue(forever.id, 'c', { expireTime: far })).expireTime).to.deep.equal(far);
    });

    it('lists every bad field at once', async () => {
      const err = await expectError(
        t.credits.createCustomerCredit({
          customerId: 'no spaces',
          couponId: 'nope',
          membershipId: 'x'.repeat(51),
          expireTime: new Date(Date.now() - 1_000),
          revenue: { amount: -1n, currencyCode: 'usd' },
        }),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(err.fields).sort()).to.deep.equal(
        ['coupon_id', 'customer_id', 'expire_time', 'membership_id', 'revenue.amount', 'revenue.currency_code'].sort(),
      );
    });

    it('refuses an unknown coupon (COUPON_NOT_FOUND) and an unusable one with the coupon reason', async () => {
      await expectError(t.credits.createCustomerCredit(issueRequest(UNKNOWN_ID, 'c')), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      const disabled = await t.coupon(once({ enabled: false }));
      await expectError(t.credits.createCustomerCredit(issueRequest(disabled.id, 'c')), status.FAILED_PRECONDITION, 'COUPON_DISABLED');
      const usedUp = await t.coupon(once({ maxRedemptions: 1 }));
      await t.coupons.redeemCoupon({ code: usedUp.code, customerId: 'someone', planId: '', productId: '' });
      await expectError(t.credits.createCustomerCredit(issueRequest(usedUp.id, 'c')), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
      // Plan and product rules are for the redemption: a coupon limited to plans issues credits.
      await t.issue((await t.coupon(once({ limitedToPlans: ['gold'] }))).id, 'c');
    });

    it('refuses a coupon that expired (COUPON_EXPIRED), without any background job', async function () {
      this.timeout(20_000);
      const coupon = await t.coupon(once({ expireTime: new Date(Date.now() + 1_000) }));
      await t.issue(coupon.id, 'early');
      await sleep(1_200);
      await expectError(t.credits.createCustomerCredit(issueRequest(coupon.id, 'late')), status.FAILED_PRECONDITION, 'COUPON_EXPIRED');
      // With an expire_time later than the coupon's: no expiry could be right now, so the refusal, not a bad field.
      const later = issueRequest(coupon.id, 'late', { expireTime: new Date(Date.now() + 86_400_000) });
      await expectError(t.credits.createCustomerCredit(later), status.FAILED_PRECONDITION, 'COUPON_EXPIRED');
      // Other bad fields still come first.
      const bad = await expectError(t.credits.createCustomerCredit({ ...later, customerId: '' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(bad.fields)).to.deep.equal(['customer_id']);
    });

    it('needs the write scope', async () => {
      const coupon = await t.coupon(once());
      const reader = credits(t.server.address, t.tenant.readKey);
      try {
        await expectError(reader.createCustomerCredit(issueRequest(coupon.id, 'c')), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
      } finally {
        reader.close();
      }
    });
  });

  describe('GetCustomerCredit', () => {
    it('answers NOT_FOUND (CREDIT_NOT_FOUND) for an unknown id, another customer, and validates its input', async () => {
      const credit = await t.issue((await t.coupon(once())).id, 'owner');
      await expectError(t.credits.getCustomerCredit({ customerId: 'owner', creditId: UNKNOWN_ID }), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
      await expectError(t.credits.getCustomerCredit({ customerId: 'other', creditId: credit.id }), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
      const got = await t.credits.getCustomerCredit({ customerId: 'owner', creditId: credit.id.toUpperCase() });
      expect(got.credit!.id).to.equal(credit.id);
      const err = await expectError(t.credits.getCustomerCredit({ customerId: '', creditId: 'x' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(err.fields).sort()).to.deep.equal(['credit_id', 'customer_id']);
    });

    it('reads a credit past its expire_time as EXPIRED at once (no background job)', async function () {
      this.timeout(20_000);
      const coupon = await t.coupon(limited(2));
      const credit = await t.issue(coupon.id, 'c', { expireTime: new Date(Date.now() + 1_000) });
      expect(credit.state).to.equal(CreditState.CREDIT_STATE_ACTIVE);
      expect((await t.credits.listCustomerCredits(listRequest('c'))).credits.map((c) => c.id)).to.deep.equal([credit.id]);
      await sleep(1_200);
      const got = (await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!;
      expect(got).to.deep.include({ state: CreditState.CREDIT_STATE_EXPIRED, usesRemaining: 2 });
      expect((await t.credits.listCustomerCredits(listRequest('c'))).credits).to.deep.equal([]);
      expect((await t.credits.listCustomerCredits(listRequest('c', { includeExpired: true }))).credits).to.deep.equal([got]);
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id)), status.FAILED_PRECONDITION, 'CREDIT_EXPIRED');
    });
  });

  describe('RevokeCustomerCredit', () => {
    it('revokes a credit and keeps it with revoke_time; revoking twice is CREDIT_REVOKED', async () => {
      const credit = await t.issue((await t.coupon(limited(3))).id, 'c');
      const revoked = (await t.credits.revokeCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!;
      expect(revoked).to.deep.include({ id: credit.id, state: CreditState.CREDIT_STATE_REVOKED, usesRemaining: 3, redemptionCount: 0n });
      expect(revoked.revokeTime).to.be.instanceOf(Date);
      expect((await t.credits.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit).to.deep.equal(revoked);
      const again = await expectError(t.credits.revokeCustomerCredit({ customerId: 'c', creditId: credit.id }), status.FAILED_PRECONDITION, 'CREDIT_REVOKED');
      expect(again.metadata).to.deep.include({ credit_id: credit.id });
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id)), status.FAILED_PRECONDITION, 'CREDIT_REVOKED');
    });

    it('refuses a credit with any redemption (CREDIT_ALREADY_REDEEMED), even with uses left', async () => {
      const credit = await t.issue((await t.coupon(limited(3))).id, 'c');
      await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id));
      await expectError(t.credits.revokeCustomerCredit({ customerId: 'c', creditId: credit.id }), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');
      const single = await t.issue((await t.coupon(once())).id, 'c');
      await t.credits.redeemCustomerCredit(redeemCreditRequest('c', single.id));
      await expectError(t.credits.revokeCustomerCredit({ customerId: 'c', creditId: single.id }), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');
      const got = (await t.credits.getCustomerCredit({ customerId: 'c', creditId: single.id })).credit!;
      expect(got).to.deep.include({ state: CreditState.CREDIT_STATE_REDEEMED, revokeTime: undefined });
    });

    it('revokes an expired credit', async function () {
      this.timeout(20_000);
      const credit = await t.issue((await t.coupon(once())).id, 'c', { expireTime: new Date(Date.now() + 500) });
      await sleep(700);
      const revoked = (await t.credits.revokeCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!;
      expect(revoked.state).to.equal(CreditState.CREDIT_STATE_REVOKED);
    });

    it('answers CREDIT_NOT_FOUND for an unknown id or another customer', async () => {
      const credit = await t.issue((await t.coupon(once())).id, 'owner');
      await expectError(t.credits.revokeCustomerCredit({ customerId: 'owner', creditId: UNKNOWN_ID }), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
      await expectError(t.credits.revokeCustomerCredit({ customerId: 'thief', creditId: credit.id }), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
      expect((await t.credits.getCustomerCredit({ customerId: 'owner', creditId: credit.id })).credit!.state).to.equal(CreditState.CREDIT_STATE_ACTIVE);
    });
  });

  it('keeps tenants apart: another tenant sees neither the credits nor the coupon', async () => {
    const coupon = await t.coupon(limited(3));
    const credit = await t.issue(coupon.id, 'shared-customer-id');
    const other = await newTenant(t.server.dataSource);
    const theirs = credits(t.server.address, other.rwKey);
    try {
      const locator = { customerId: 'shared-customer-id', creditId: credit.id };
      await expectError(theirs.getCustomerCredit(locator), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
      await expectError(theirs.revokeCustomerCredit(locator), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
      await expectError(theirs.redeemCustomerCredit(redeemCreditRequest(locator.customerId, credit.id)), status.NOT_FOUND, 'CREDIT_NOT_FOUND');
      expect((await theirs.listCustomerCredits(listRequest('shared-customer-id', { includeRedeemed: true, includeExpired: true, includeRevoked: true }))).credits).to.deep.equal([]);
      await expectError(theirs.createCustomerCredit(issueRequest(coupon.id, 'x')), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      await expectError(theirs.batchCreateCustomerCredits({ couponId: coupon.id, credits: [{ customerId: 'x', membershipId: '' }] }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      // Their own credit for the same customer id does not show up here either.
      const theirCoupon = (await coupons(t.server.address, other.rwKey).createCoupon(once())).coupon!;
      await theirs.createCustomerCredit(issueRequest(theirCoupon.id, 'shared-customer-id'));
      expect((await t.credits.listCustomerCredits(listRequest('shared-customer-id'))).credits.map((c) => c.id)).to.deep.equal([credit.id]);
    } finally {
      theirs.close();
    }
    // Nothing they tried changed it.
    expect((await t.credits.getCustomerCredit({ customerId: 'shared-customer-id', creditId: credit.id })).credit).to.deep.equal(credit);
  });

  describe('DeleteCoupon of a coupon with credits', () => {
    it('is FAILED_PRECONDITION (COUPON_HAS_CREDITS), revoked credits included; a coupon without credits still deletes', async () => {
      const coupon = await t.coupon(once());
      const credit = await t.issue(coupon.id, 'c');
      const err = await expectError(t.coupons.deleteCoupon({ id: coupon.id }), status.FAILED_PRECONDITION, 'COUPON_HAS_CREDITS');
      expect(err.metadata).to.deep.equal({ coupon_id: coupon.id });
      await t.credits.revokeCustomerCredit({ customerId: 'c', creditId: credit.id });
      await expectError(t.coupons.deleteCoupon({ id: coupon.id }), status.FAILED_PRECONDITION, 'COUPON_HAS_CREDITS');
      expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.id).to.equal(coupon.id);

      const unused = await t.coupon(once());
      await t.coupons.deleteCoupon({ id: unused.id });
      await expectError(t.coupons.getCoupon({ id: unused.id }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    });

    it('answers COUPON_REDEEMED first when the coupon was also redeemed through a credit', async () => {
      const coupon = await t.coupon(once());
      const credit = await t.issue(coupon.id, 'c');
      await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id));
      await expectError(t.coupons.deleteCoupon({ id: coupon.id }), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');
    });

    it('never leaves a credit without its coupon when issuing races a delete', async function () {
      this.timeout(60_000);
      for (let round = 0; round < 10; round++) {
        const coupon = await t.coupon(once());
        const [issued, deleted] = await Promise.allSettled([t.issue(coupon.id, 'racer'), t.coupons.deleteCoupon({ id: coupon.id })]);
        const reason = (r: PromiseSettledResult<unknown>) => (r.status === 'fulfilled' ? 'OK' : decodeError(r.reason as ServiceError).reason);
        // Either the credit came first (the delete is refused) or the delete did (the coupon is gone).
        expect([
          ['OK', 'COUPON_HAS_CREDITS'],
          ['COUPON_NOT_FOUND', 'OK'],
        ]).to.deep.include([reason(issued), reason(deleted)]);
      }
    });
  });
});
