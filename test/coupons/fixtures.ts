import { randomBytes } from 'node:crypto';
import {
  CouponType,
  Frequency,
  type Coupon,
  type CouponRedemption,
  type CreateCouponRequest,
  type RedeemCouponRequest,
  type UpdateCouponRequest,
} from '../../gen/credits/v1/coupon_service';
import type { CouponView } from '../../src/coupons/coupon-redemption.rules';
import type { RedeemRequestJson } from '../../src/coupons/coupon.repository';
import { walkPages } from '../support/pages';
import type { CouponClient } from '../support/server';

export type { CouponClient };

/** A code no other test uses. */
export function uniqueCode(prefix = 'C'): string {
  return `${prefix}${randomBytes(5).toString('hex').toUpperCase()}`;
}

/** A valid 10% coupon request with a fresh code; `overrides` replace fields. */
export function percentageCoupon(overrides: Partial<CreateCouponRequest> = {}): CreateCouponRequest {
  return {
    code: uniqueCode(),
    name: 'Ten percent off',
    type: CouponType.COUPON_TYPE_PERCENTAGE,
    percentage: 10,
    frequency: Frequency.FREQUENCY_ONCE,
    limitedToPlans: [],
    excludedFromPlans: [],
    limitedToProducts: [],
    excludedFromProducts: [],
    metadata: {},
    validateOnly: false,
    ...overrides,
  };
}

/** A valid USD 5.00 fixed-amount coupon request with a fresh code. */
export function fixedCoupon(overrides: Partial<CreateCouponRequest> = {}): CreateCouponRequest {
  return percentageCoupon({
    name: 'Five dollars off',
    type: CouponType.COUPON_TYPE_FIXED_AMOUNT,
    percentage: undefined,
    fixedAmount: { amount: 500n, currencyCode: 'USD' },
    ...overrides,
  });
}

/** An UpdateCouponRequest that restates a coupon's current terms (PUT), with `overrides`. */
export function sameTerms(coupon: Coupon, overrides: Partial<UpdateCouponRequest> = {}): UpdateCouponRequest {
  return {
    id: coupon.id,
    code: coupon.code,
    name: coupon.name,
    type: coupon.type,
    percentage: coupon.percentage,
    fixedAmount: coupon.fixedAmount,
    frequency: coupon.frequency,
    frequencyInterval: coupon.frequencyInterval,
    maxRedemptions: coupon.maxRedemptions,
    maxRedemptionsPerCustomer: coupon.maxRedemptionsPerCustomer,
    expireTime: coupon.expireTime,
    limitedToPlans: coupon.limitedToPlans,
    excludedFromPlans: coupon.excludedFromPlans,
    limitedToProducts: coupon.limitedToProducts,
    excludedFromProducts: coupon.excludedFromProducts,
    enabled: coupon.enabled,
    metadata: coupon.metadata,
    validateOnly: false,
    ...overrides,
  };
}

/** A redemption request with empty plan/product and no amount. */
export function redeemRequest(code: string, customerId: string, overrides: Partial<RedeemCouponRequest> = {}): RedeemCouponRequest {
  return { code, customerId, planId: '', productId: '', metadata: {}, validateOnly: false, ...overrides };
}

/** One request of coupon_redeem (its JSON) by code or credit, no plan, product, amount or hold; `overrides` replace fields. */
export function redeemRequestJson(
  target: { code: string } | { credit_id: string },
  customerId: string,
  overrides: Partial<RedeemRequestJson> = {},
): RedeemRequestJson {
  return {
    ...target,
    customer_id: customerId,
    plan_id: null,
    product_id: null,
    amount: null,
    currency_code: null,
    hold_until: null,
    metadata: {},
    done_by: 'test',
    validate_only: false,
    ...overrides,
  };
}

/** Every redemption of a coupon, newest first, read through ListCouponRedemptions. */
export function allRedemptions(client: CouponClient, couponId: string): Promise<CouponRedemption[]> {
  return walkPages(
    (pageToken) => client.listCouponRedemptions({ pageSize: 100, pageToken, couponId, customerId: '' }),
    (page) => page.redemptions,
  );
}

/** The coupon fields the redemption rules look at: an enabled 10% coupon without limits, expiry or plan lists; `overrides` replace fields. */
export function couponView(overrides: Partial<CouponView> = {}): CouponView {
  return {
    code: 'SAVE',
    type: 'PERCENTAGE',
    percentage: 10,
    fixedAmount: null,
    fixedCurrencyCode: null,
    maxRedemptions: null,
    maxRedemptionsPerCustomer: null,
    expireTime: null,
    limitedToPlans: [],
    excludedFromPlans: [],
    limitedToProducts: [],
    excludedFromProducts: [],
    enabled: true,
    redemptionCount: 0n,
    ...overrides,
  };
}
