import { expect } from 'chai';
import { DomainError, ErrorReason, Violations } from '../../src/common/domain-error';
import { validateCreditListInput } from '../../src/credits/credit-list.rules';
import {
  creditState,
  isMultiUse,
  issueRefusal,
  MAX_BATCH_CREDITS,
  creditRefusalOf,
  resolveExpireTime,
  revokeRefusal,
  usesFromFrequency,
  usesRemaining,
  validateBatchInput,
  validateIssueInput,
  type CreditCounters,
  type CreditDraftInput,
} from '../../src/credits/credit.rules';
import type { Principal } from '../../src/tenants/principal';
import { couponView as coupon } from '../coupons/fixtures';

const NOW = new Date('2030-01-01T00:00:00Z');
const EARLIER = new Date(NOW.getTime() - 1);
const LATER = new Date(NOW.getTime() + 1);
const COUPON_ID = '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b';

const principal: Principal = {
  tenantId: COUPON_ID,
  tenantSlug: 'acme',
  defaultCurrency: 'USD',
  multiCurrency: false,
  keyName: 'k',
  keyId: '00000000-0000-4000-8000-000000000001',
  scopes: new Set(['read', 'write']),
};

function credit(overrides: Partial<CreditCounters> = {}): CreditCounters & { id: string } {
  return { id: 'c-1', usesTotal: 1, redemptionCount: 0n, expireTime: null, revokeTime: null, ...overrides };
}

function draft(overrides: Partial<CreditDraftInput> = {}): CreditDraftInput {
  return { customerId: 'cust-1', membershipId: '', expireTime: undefined, revenue: undefined, metadata: {}, ...overrides };
}

/** The BadRequest fields of a validation failure. */
function violatedFields(action: () => unknown): string[] {
  try {
    action();
  } catch (err) {
    expect(err).to.be.instanceOf(DomainError);
    expect((err as DomainError).reason).to.equal(ErrorReason.ValidationFailed);
    return (err as DomainError).violations.map((v) => v.field);
  }
  throw new Error('expected a validation failure');
}

describe('customer credit rules (unit)', () => {
  describe('creditState', () => {
    it('is ACTIVE with a use left, not expired and not revoked', () => {
      expect(creditState(credit(), NOW)).to.equal('ACTIVE');
      expect(creditState(credit({ usesTotal: 3, redemptionCount: 2n, expireTime: LATER }), NOW)).to.equal('ACTIVE');
      expect(creditState(credit({ usesTotal: null, redemptionCount: 1000n }), NOW)).to.equal('ACTIVE');
    });

    it('is EXPIRED from the instant expire_time is reached', () => {
      expect(creditState(credit({ expireTime: LATER }), NOW)).to.equal('ACTIVE');
      expect(creditState(credit({ expireTime: NOW }), NOW)).to.equal('EXPIRED');
      expect(creditState(credit({ expireTime: EARLIER }), NOW)).to.equal('EXPIRED');
      expect(creditState(credit({ usesTotal: null, expireTime: EARLIER }), NOW)).to.equal('EXPIRED');
    });

    it('is REDEEMED when no use is left, even once expired; never for unlimited uses', () => {
      expect(creditState(credit({ redemptionCount: 1n }), NOW)).to.equal('REDEEMED');
      expect(creditState(credit({ usesTotal: 3, redemptionCount: 3n, expireTime: EARLIER }), NOW)).to.equal('REDEEMED');
      expect(creditState(credit({ usesTotal: 3, redemptionCount: 2n, expireTime: EARLIER }), NOW)).to.equal('EXPIRED');
    });

    it('is REVOKED once revoked, before anything else', () => {
      expect(creditState(credit({ revokeTime: EARLIER }), NOW)).to.equal('REVOKED');
      expect(creditState(credit({ revokeTime: EARLIER, expireTime: EARLIER }), NOW)).to.equal('REVOKED');
    });
  });

  it('counts uses left; null means unlimited', () => {
    expect(usesRemaining({ usesTotal: 3, redemptionCount: 1n })).to.equal(2);
    expect(usesRemaining({ usesTotal: 1, redemptionCount: 1n })).to.equal(0);
    expect(usesRemaining({ usesTotal: null, redemptionCount: 5n })).to.equal(null);
  });

  it('takes the uses from the coupon frequency: ONCE 1, LIMITED the interval, LIFETIME unlimited', () => {
    expect(usesFromFrequency({ frequency: 'ONCE', frequencyInterval: null })).to.equal(1);
    expect(usesFromFrequency({ frequency: 'LIMITED', frequencyInterval: 3 })).to.equal(3);
    expect(usesFromFrequency({ frequency: 'LIMITED', frequencyInterval: 1 })).to.equal(1);
    expect(usesFromFrequency({ frequency: 'LIFETIME', frequencyInterval: null })).to.equal(null);
    expect([isMultiUse(1), isMultiUse(2), isMultiUse(null)]).to.deep.equal([false, true, true]);
  });

  describe('expire time', () => {
    it('defaults to the coupon expiry (which may be never)', () => {
      const v = new Violations();
      expect(resolveExpireTime(v, 'expire_time', undefined, LATER)).to.equal(LATER);
      expect(resolveExpireTime(v, 'expire_time', undefined, null)).to.equal(null);
      expect(v.any).to.equal(false);
    });

    it('accepts any time up to the coupon expiry, and any future time when the coupon never expires', () => {
      const v = new Violations();
      expect(resolveExpireTime(v, 'expire_time', LATER, LATER)).to.equal(LATER);
      expect(resolveExpireTime(v, 'expire_time', LATER, new Date(LATER.getTime() + 1))).to.equal(LATER);
      expect(resolveExpireTime(v, 'expire_time', LATER, null)).to.equal(LATER);
      expect(v.any).to.equal(false);
    });

    it('refuses a time later than the coupon expiry', () => {
      const v = new Violations();
      resolveExpireTime(v, 'credits[2].expire_time', new Date(LATER.getTime() + 1), LATER);
      expect(violatedFields(() => v.throwIfAny())).to.deep.equal(['credits[2].expire_time']);
    });

    it('refuses a time that is not in the future', () => {
      const input = (expireTime: Date) => ({ couponId: COUPON_ID, drafts: [draft({ expireTime })] });
      // Pending until the coupon is read (its expiry may refuse more fields, listed with these).
      expect(violatedFields(() => validateIssueInput(input(NOW), principal, NOW, (_i, f) => f).pending.throwIfAny())).to.deep.equal(['expire_time']);
      expect(violatedFields(() => validateIssueInput(input(EARLIER), principal, NOW, (_i, f) => f).pending.throwIfAny())).to.deep.equal(['expire_time']);
      expect(validateIssueInput(input(LATER), principal, NOW, (_i, f) => f).drafts[0]!.expireTime).to.equal(LATER);
    });
  });

  describe('issuing', () => {
    it('refuses a disabled, expired or used-up coupon, but not one limited to plans or products', () => {
      expect(issueRefusal(coupon(), NOW)).to.equal(undefined);
      expect(issueRefusal(coupon({ limitedToPlans: ['gold'], limitedToProducts: ['seat'], excludedFromPlans: ['free'] }), NOW)).to.equal(undefined);
      expect(issueRefusal(coupon({ type: 'FIXED_AMOUNT', percentage: null, fixedAmount: 5n, fixedCurrencyCode: 'EUR' }), NOW)).to.equal(undefined);
      expect(issueRefusal(coupon({ maxRedemptions: 2, redemptionCount: 1n }), NOW)).to.equal(undefined);
      expect(issueRefusal(coupon({ enabled: false, expireTime: EARLIER }), NOW)?.reason).to.equal(ErrorReason.CouponDisabled);
      expect(issueRefusal(coupon({ expireTime: NOW }), NOW)?.reason).to.equal(ErrorReason.CouponExpired);
      expect(issueRefusal(coupon({ maxRedemptions: 2, redemptionCount: 2n }), NOW)?.reason).to.equal(ErrorReason.CouponMaxRedemptionsReached);
    });

    it('validates every field of every entry at once, named by index', () => {
      const fields = violatedFields(() =>
        validateBatchInput(
          {
            couponId: 'not-a-uuid',
            drafts: [
              draft(),
              draft({ customerId: '' }),
              draft({ membershipId: 'bad id!', revenue: { amount: -1n, currencyCode: 'XXX' } }),
              draft({ revenue: { amount: 1n, currencyCode: 'EUR' } }), // tenant is not multi-currency
            ],
          },
          principal,
          NOW,
        ),
      );
      expect(fields).to.deep.equal([
        'coupon_id',
        'credits[1].customer_id',
        'credits[2].membership_id',
        'credits[2].revenue.amount',
        'credits[2].revenue.currency_code',
        'credits[3].revenue.currency_code',
      ]);
    });

    it('takes 1 to 500 entries, and fills in the default currency', () => {
      expect(violatedFields(() => validateBatchInput({ couponId: COUPON_ID, drafts: [] }, principal, NOW))).to.deep.equal(['credits']);
      const tooMany = Array.from({ length: MAX_BATCH_CREDITS + 1 }, () => draft({ customerId: '' }));
      expect(violatedFields(() => validateBatchInput({ couponId: COUPON_ID, drafts: tooMany }, principal, NOW))).to.deep.equal(['credits']);
      const max = Array.from({ length: MAX_BATCH_CREDITS }, () => draft({ revenue: { amount: 0n, currencyCode: '' } }));
      const valid = validateBatchInput({ couponId: COUPON_ID.toUpperCase(), drafts: max }, principal, NOW);
      expect(valid.couponId).to.equal(COUPON_ID);
      expect(valid.drafts).to.have.length(MAX_BATCH_CREDITS);
      expect(valid.drafts[0]).to.deep.equal({
        customerId: 'cust-1',
        membershipId: null,
        expireTime: undefined,
        revenue: { amount: 0n, currencyCode: 'USD' },
        metadata: {},
      });
    });
  });

  describe('redeem and revoke refusals', () => {
    // The order (revoked, no use left, expired) is decided by coupon_redeem under the locks: test/credits/redeem.test.ts.
    it('describes a redemption refusal with what the locked credit showed', () => {
      expect(creditRefusalOf(ErrorReason.CreditRevoked, credit({ revokeTime: EARLIER })).metadata).to.deep.include({ revoke_time: EARLIER.toISOString() });
      expect(creditRefusalOf(ErrorReason.CreditAlreadyRedeemed, credit({ redemptionCount: 1n })).message).to.match(/redeemed 1 of 1 times/);
      expect(creditRefusalOf(ErrorReason.CreditExpired, credit({ expireTime: NOW })).metadata).to.deep.include({ expire_time: NOW.toISOString() });
    });

    it('revokes only a never-redeemed, unrevoked credit (expired is fine)', () => {
      expect(revokeRefusal(credit())).to.equal(undefined);
      expect(revokeRefusal(credit({ expireTime: EARLIER }))).to.equal(undefined);
      expect(revokeRefusal(credit({ revokeTime: EARLIER }))?.reason).to.equal(ErrorReason.CreditRevoked);
      expect(revokeRefusal(credit({ usesTotal: 3, redemptionCount: 1n }))?.reason).to.equal(ErrorReason.CreditAlreadyRedeemed);
    });
  });

  it('lists active credits by default and binds page tokens to the customer and the filter', () => {
    const base = { customerId: 'c', pageSize: 0, pageToken: '', includeRedeemed: false, includeExpired: false, includeRevoked: false, multiUse: undefined, metadata: {} };
    expect(validateCreditListInput(base).filter.states).to.deep.equal(['ACTIVE']);
    const all = validateCreditListInput({ ...base, includeRedeemed: true, includeExpired: true, includeRevoked: true, multiUse: true });
    expect(all.filter).to.deep.equal({ customerId: 'c', states: ['ACTIVE', 'REDEEMED', 'EXPIRED', 'REVOKED'], multiUse: true, metadata: undefined });
    const keys = new Set([
      validateCreditListInput(base).filterKey,
      validateCreditListInput({ ...base, customerId: 'd' }).filterKey,
      validateCreditListInput({ ...base, multiUse: false }).filterKey,
      validateCreditListInput({ ...base, includeExpired: true }).filterKey,
    ]);
    expect(keys.size).to.equal(4);
    expect(violatedFields(() => validateCreditListInput({ ...base, customerId: '', pageSize: -1 }))).to.deep.equal(['customer_id', 'page_size']);
  });
});
