import { ErrorReason, Violations } from '../common/domain-error';
import { checkMetadata, type Metadata } from '../common/metadata';
import { checkCustomerId } from '../common/text';
import { INT64_MAX } from '../money/decimal';
import type { Money, MoneyInput } from '../money/money';
import { resolveCurrency } from '../money/resolve-currency';
import type { Principal } from '../tenants/principal';
import type { CouponEntity } from './coupon.entity';
import { checkCode, checkReferenceId } from './coupon.rules';
import { checkHoldUntil } from './redemption-status.rules';

/** A redemption (or its validation) as the transport hands it over. */
export interface RedemptionInput {
  code: string;
  customerId: string;
  planId: string;
  productId: string;
  amount: MoneyInput | undefined;
  /** RedeemCoupon only (ValidateCoupon has none): undefined = confirm at once. */
  holdUntil?: Date | undefined;
  metadata?: Record<string, string> | undefined;
}

/** Who redeems what: validated. Shared with redemptions made through customer credits. */
export interface RedemptionRequest {
  customerId: string;
  /** undefined: none given. */
  planId: string | undefined;
  productId: string | undefined;
  /** The total the discount is computed on; undefined: none given (no discount is computed). */
  amount: Money | undefined;
  /** Hold the use until then; undefined: confirmed at once. */
  holdUntil: Date | undefined;
  /** The redemption's key/value pairs (empty: none). */
  metadata: Metadata;
}

/** What the checks look at; plain values so they can be tested without a database. */
export type CouponView = Pick<
  CouponEntity,
  | 'code'
  | 'type'
  | 'percentage'
  | 'fixedAmount'
  | 'fixedCurrencyCode'
  | 'maxRedemptions'
  | 'maxRedemptionsPerCustomer'
  | 'expireTime'
  | 'limitedToPlans'
  | 'excludedFromPlans'
  | 'limitedToProducts'
  | 'excludedFromProducts'
  | 'enabled'
  | 'redemptionCount'
>;

export type RefusalReason =
  | ErrorReason.CouponDisabled
  | ErrorReason.CouponExpired
  | ErrorReason.CouponNotApplicable
  | ErrorReason.CouponMaxRedemptionsReached
  | ErrorReason.CouponCustomerLimitReached;

/** Why a coupon cannot be redeemed: the FAILED_PRECONDITION reason and a sentence. */
export interface Refusal {
  reason: RefusalReason;
  message: string;
  metadata: Record<string, string>;
}

/** Validates RedeemCoupon/ValidateCoupon input at `now`, listing every bad field at once. */
export function validateRedemptionInput(input: RedemptionInput, principal: Principal, now: Date): { code: string; request: RedemptionRequest } {
  const v = new Violations();
  checkCode(v, 'code', input.code);
  checkCustomerId(v, 'customer_id', input.customerId);
  const terms = checkRedemptionTerms(v, input, principal, now);
  v.throwIfAny();
  return { code: input.code, request: { customerId: input.customerId, ...terms } };
}

/**
 * Checks what a redemption is asked for: plan and product ids (empty = none),
 * the optional amount the discount applies to, the optional hold (after
 * `now`, at most 7 days ahead) and the metadata. Shared by RedeemCoupon,
 * ValidateCoupon and RedeemCustomerCredit.
 */
export function checkRedemptionTerms(
  v: Violations,
  input: { planId: string; productId: string; amount?: MoneyInput | undefined; holdUntil?: Date | undefined; metadata?: Record<string, string> | undefined },
  principal: Principal,
  now: Date,
): Omit<RedemptionRequest, 'customerId'> {
  checkReferenceId(v, 'plan_id', input.planId);
  checkReferenceId(v, 'product_id', input.productId);
  let amount: Money | undefined;
  if (input.amount !== undefined) {
    if (input.amount.amount < 0n) v.add('amount.amount', 'must not be negative');
    const currencyCode = resolveCurrency(v, input.amount.currencyCode, principal, 'amount.currency_code');
    if (currencyCode !== undefined) amount = { amount: input.amount.amount, currencyCode };
  }
  return {
    planId: input.planId === '' ? undefined : input.planId,
    productId: input.productId === '' ? undefined : input.productId,
    amount,
    holdUntil: checkHoldUntil(v, input.holdUntil, now),
    metadata: checkMetadata(v, 'metadata', input.metadata),
  };
}

/**
 * The discount a coupon gives on `amount` (minor units, 0..2^63-1), exactly:
 * a percentage rounds to the nearest minor unit with halves up; a fixed amount
 * is capped at `amount`, so the total never goes below zero. Either way the
 * discount is between 0 and `amount`. ValidateCoupon computes with it;
 * coupon_redeem (sql/coupon-redeem.sql) computes a redemption's from the
 * locked row the same way, in numeric (test/coupons/rules-agree.test.ts).
 */
export function computeDiscount(coupon: Pick<CouponView, 'type' | 'percentage' | 'fixedAmount'>, amount: bigint): bigint {
  if (amount < 0n || amount > INT64_MAX) throw new RangeError(`amount ${amount} is outside 0..2^63-1`);
  if (coupon.type === 'PERCENTAGE') {
    // amount * percentage / 100, plus one half before flooring: halves round up.
    return (amount * BigInt(coupon.percentage!) + 50n) / 100n;
  }
  const fixed = coupon.fixedAmount!;
  return fixed < amount ? fixed : amount;
}

/**
 * Why the plan, product or currency of a redemption does not fit the coupon,
 * or undefined when it fits. Plans first, then products, then currency.
 */
export function notApplicableBecause(coupon: CouponView, request: Pick<RedemptionRequest, 'planId' | 'productId' | 'amount'>): string | undefined {
  const scope = (kind: 'plan' | 'product', id: string | undefined, limited: string[], excluded: string[]): string | undefined => {
    if (limited.length > 0) {
      if (id === undefined) return `it is limited to ${kind}s ${limited.join(', ')} and no ${kind}_id was given`;
      if (!limited.includes(id)) return `it is limited to ${kind}s ${limited.join(', ')}, not ${kind} ${id}`;
    }
    if (id !== undefined && excluded.includes(id)) return `${kind} ${id} is excluded`;
    return undefined;
  };
  const why =
    scope('plan', request.planId, coupon.limitedToPlans, coupon.excludedFromPlans) ??
    scope('product', request.productId, coupon.limitedToProducts, coupon.excludedFromProducts);
  if (why) return why;
  if (coupon.type === 'FIXED_AMOUNT' && request.amount !== undefined && request.amount.currencyCode !== coupon.fixedCurrencyCode) {
    return `its fixed amount is in ${coupon.fixedCurrencyCode}, the amount in ${request.amount.currencyCode}`;
  }
  return undefined;
}

/**
 * The first refusal among the checks that need only the coupon row, in the
 * contract's order: disabled, expired, not applicable, total limit. The
 * per-customer limit comes after (customerLimitRefusal) because it needs a count.
 *
 * ValidateCoupon decides with these (it takes no lock and writes nothing);
 * RedeemCoupon and RedeemCustomerCredit are decided by coupon_redeem
 * (sql/coupon-redeem.sql), which restates them under the coupon's row lock,
 * and only described here (couponRefusalOf). test/coupons/rules-agree.test.ts
 * runs both on the same cases.
 */
export function couponRefusal(coupon: CouponView, request: Pick<RedemptionRequest, 'planId' | 'productId' | 'amount'>, now: Date): Refusal | undefined {
  if (!coupon.enabled) return couponRefusalOf(ErrorReason.CouponDisabled, coupon, request);
  if (isExpired(coupon, now)) return couponRefusalOf(ErrorReason.CouponExpired, coupon, request);
  if (notApplicableBecause(coupon, request) !== undefined) return couponRefusalOf(ErrorReason.CouponNotApplicable, coupon, request);
  if (coupon.maxRedemptions !== null && coupon.redemptionCount >= BigInt(coupon.maxRedemptions)) {
    return couponRefusalOf(ErrorReason.CouponMaxRedemptionsReached, coupon, request);
  }
  return undefined;
}

/** The refusal when `customerRedemptions` (this customer's redemptions of the coupon) reached its per-customer limit. */
export function customerLimitRefusal(coupon: CouponView, customerId: string, customerRedemptions: bigint): Refusal | undefined {
  if (coupon.maxRedemptionsPerCustomer === null || customerRedemptions < BigInt(coupon.maxRedemptionsPerCustomer)) return undefined;
  return couponRefusalOf(ErrorReason.CouponCustomerLimitReached, coupon, { planId: undefined, productId: undefined, amount: undefined }, customerId, customerRedemptions);
}

/**
 * A refusal decided elsewhere (by the checks above, or by coupon_redeem under
 * the lock) as the caller is told it: the sentence and ErrorInfo metadata.
 * Describes only; `coupon.redemptionCount` is the uses that counted, and
 * `customerRedemptions` the customer's (COUPON_CUSTOMER_LIMIT_REACHED).
 */
export function couponRefusalOf(
  reason: RefusalReason,
  coupon: CouponView,
  request: Pick<RedemptionRequest, 'planId' | 'productId' | 'amount'>,
  customerId = '',
  customerRedemptions = 0n,
): Refusal {
  const metadata = { code: coupon.code };
  switch (reason) {
    case ErrorReason.CouponDisabled:
      return { reason, message: `Coupon ${coupon.code} is disabled.`, metadata };
    case ErrorReason.CouponExpired:
      return {
        reason,
        message: `Coupon ${coupon.code} expired at ${coupon.expireTime!.toISOString()}.`,
        metadata: Object.assign({}, metadata, { expire_time: coupon.expireTime!.toISOString() }),
      };
    case ErrorReason.CouponNotApplicable: {
      const why = notApplicableBecause(coupon, request);
      return { reason, message: `Coupon ${coupon.code} does not apply${why === undefined ? '' : `: ${why}`}.`, metadata };
    }
    case ErrorReason.CouponMaxRedemptionsReached:
      return {
        reason,
        message: `Coupon ${coupon.code} has been redeemed ${coupon.redemptionCount} times, its limit of ${coupon.maxRedemptions}.`,
        metadata: Object.assign({}, metadata, { max_redemptions: String(coupon.maxRedemptions) }),
      };
    case ErrorReason.CouponCustomerLimitReached:
      return {
        reason,
        message: `Customer ${customerId} has redeemed coupon ${coupon.code} ${customerRedemptions} times, its per-customer limit of ${coupon.maxRedemptionsPerCustomer}.`,
        metadata: { code: coupon.code, customer_id: customerId, max_redemptions_per_customer: String(coupon.maxRedemptionsPerCustomer) },
      };
  }
}

/** Expired from the instant `expire_time` is reached; no background job involved. */
export function isExpired(coupon: Pick<CouponView, 'expireTime'>, now: Date): boolean {
  return coupon.expireTime !== null && coupon.expireTime.getTime() <= now.getTime();
}

