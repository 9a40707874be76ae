import { ErrorReason, Violations } from '../common/domain-error';
import { checkMetadata, type Metadata } from '../common/metadata';
import { checkTime } from '../common/list-filters';
import { checkCustomerId, checkUuid } from '../common/text';
import { checkRedemptionTerms, couponRefusal, type CouponView, type Refusal, type RedemptionRequest } from '../coupons/coupon-redemption.rules';
import type { CouponEntity } from '../coupons/coupon.entity';
import { checkReferenceId } from '../coupons/coupon.rules';
import type { Money, MoneyInput } from '../money/money';
import { resolveCurrency } from '../money/resolve-currency';
import type { Principal } from '../tenants/principal';

/** Most credits one BatchCreateCustomerCredits call issues. */
export const MAX_BATCH_CREDITS = 500;

export type CreditState = 'ACTIVE' | 'REDEEMED' | 'EXPIRED' | 'REVOKED';

/** What the state depends on; plain values so it can be tested without a database. */
export interface CreditCounters {
  /** null: unlimited uses. */
  usesTotal: number | null;
  /** The uses that count: confirmed plus unexpired holds. */
  redemptionCount: bigint;
  expireTime: Date | null;
  revokeTime: Date | null;
}

/** One credit to issue, as the transport hands it over. */
export interface CreditDraftInput {
  customerId: string;
  /** Empty: none. */
  membershipId: string;
  /** undefined: the coupon's. */
  expireTime: Date | undefined;
  revenue: MoneyInput | undefined;
  metadata: Record<string, string>;
}

/** One credit to issue, validated on its own (the coupon's expiry is checked later). */
export interface CreditDraft {
  customerId: string;
  membershipId: string | null;
  /** undefined: the coupon's. */
  expireTime: Date | undefined;
  revenue: Money | undefined;
  metadata: Metadata;
}

/** A credit named the way every RPC but Create names it: by its customer and id. */
export interface CreditLocatorInput {
  customerId: string;
  creditId: string;
}

export interface CreditLocator {
  customerId: string;
  /** Lower-case UUID. */
  creditId: string;
}

export interface RedeemCreditInput extends CreditLocatorInput {
  planId: string;
  productId: string;
  amount: MoneyInput | undefined;
  holdUntil: Date | undefined;
  metadata: Record<string, string>;
}

/** Why a credit cannot be redeemed or revoked: the FAILED_PRECONDITION reason and a sentence. */
export interface CreditRefusal {
  reason: ErrorReason.CreditRevoked | ErrorReason.CreditAlreadyRedeemed | ErrorReason.CreditExpired;
  message: string;
  metadata: Record<string, string>;
}

/**
 * The state of a credit at `now`, by precedence: REVOKED once revoked; else
 * REDEEMED when no use is left; else EXPIRED from the instant `expireTime` is
 * reached; else ACTIVE. Nothing stores it, so expiry needs no background job.
 * The list query restates it in SQL (customer-credit.repository.ts).
 */
export function creditState(credit: CreditCounters, now: Date): CreditState {
  if (credit.revokeTime !== null) return 'REVOKED';
  if (usesRemaining(credit) === 0) return 'REDEEMED';
  if (credit.expireTime !== null && credit.expireTime.getTime() <= now.getTime()) return 'EXPIRED';
  return 'ACTIVE';
}

/** Uses left; null: unlimited. */
export function usesRemaining(credit: Pick<CreditCounters, 'usesTotal' | 'redemptionCount'>): number | null {
  if (credit.usesTotal === null) return null;
  const left = BigInt(credit.usesTotal) - credit.redemptionCount;
  return left > 0n ? Number(left) : 0;
}

/** The uses a credit gets from its coupon's frequency: ONCE 1, LIMITED the interval, LIFETIME unlimited (null). */
export function usesFromFrequency(coupon: Pick<CouponEntity, 'frequency' | 'frequencyInterval'>): number | null {
  switch (coupon.frequency) {
    case 'ONCE':
      return 1;
    case 'LIMITED':
      return coupon.frequencyInterval!;
    case 'LIFETIME':
      return null;
  }
}

/** More than one use possible. PostgreSQL generates the same from uses_total. */
export function isMultiUse(usesTotal: number | null): boolean {
  return usesTotal === null || usesTotal > 1;
}

/**
 * Validates what CreateCustomerCredit or BatchCreateCustomerCredits gives,
 * listing every bad field of every entry at once; `fieldOf` names an entry's
 * field (`customer_id` for Create, `credits[3].customer_id` for a batch).
 * What needs the coupon (its expiry) is checked by resolveExpireTime once
 * the coupon is read: the violations found here are answered `pending`, to
 * be thrown with those (every bad field at once), unless the coupon cannot
 * be read at all (no valid coupon_id) or `v` already had some (a batch of
 * the wrong size): then this throws.
 */
export function validateIssueInput(
  input: { couponId: string; drafts: readonly CreditDraftInput[] },
  principal: Principal,
  now: Date,
  fieldOf: (index: number, field: string) => string,
  v = new Violations(),
): { couponId: string; drafts: CreditDraft[]; pending: Violations } {
  const couponId = checkUuid(v, 'coupon_id', input.couponId);
  const couponUnread = v.any; // no coupon to read, or a batch refused whatever it says
  const drafts = input.drafts.map((draft, i) => validateDraft(v, draft, principal, now, (field) => fieldOf(i, field)));
  if (couponUnread) v.throwIfAny();
  return { couponId, drafts, pending: v };
}

function validateDraft(v: Violations, input: CreditDraftInput, principal: Principal, now: Date, field: (name: string) => string): CreditDraft {
  checkCustomerId(v, field('customer_id'), input.customerId);
  checkReferenceId(v, field('membership_id'), input.membershipId);
  if (input.expireTime !== undefined && checkTime(v, field('expire_time'), input.expireTime) && input.expireTime.getTime() <= now.getTime()) {
    v.add(field('expire_time'), `must be in the future, got ${input.expireTime.toISOString()}`);
  }
  let revenue: Money | undefined;
  if (input.revenue !== undefined) {
    if (input.revenue.amount < 0n) v.add(field('revenue.amount'), 'must not be negative');
    const currencyCode = resolveCurrency(v, input.revenue.currencyCode, principal, field('revenue.currency_code'));
    if (currencyCode !== undefined) revenue = { amount: input.revenue.amount, currencyCode };
  }
  return {
    customerId: input.customerId,
    membershipId: input.membershipId === '' ? null : input.membershipId,
    expireTime: input.expireTime,
    revenue,
    metadata: checkMetadata(v, field('metadata'), input.metadata),
  };
}

/**
 * A credit's expiry: the coupon's when none is given; a given one (already
 * known to be in the future) must not be later than the coupon's.
 */
export function resolveExpireTime(v: Violations, field: string, given: Date | undefined, couponExpireTime: Date | null): Date | null {
  if (given === undefined) return couponExpireTime;
  if (couponExpireTime !== null && given.getTime() > couponExpireTime.getTime()) {
    v.add(field, `must not be later than the coupon's expire_time ${couponExpireTime.toISOString()}, got ${given.toISOString()}`);
  }
  return given;
}

/**
 * Why a coupon cannot issue credits now: disabled, expired, or its total
 * limit used up (a credit from it could never be redeemed), in the coupon's
 * own order and words. Plan and product rules are for the redemption to
 * check, when the plan and product are known.
 */
export function issueRefusal(coupon: CouponView, now: Date): Refusal | undefined {
  // With no plan, product or amount and no "limited to" lists, the
  // applicability check cannot fail: what is left is exactly the above.
  const noScope: Pick<RedemptionRequest, 'planId' | 'productId' | 'amount'> = { planId: undefined, productId: undefined, amount: undefined };
  return couponRefusal(Object.assign({}, coupon, { limitedToPlans: [], limitedToProducts: [] }), noScope, now);
}

/**
 * A credit's refusal to be redeemed, as the caller is told it. The decision
 * (revoked, then no use left, then expired: creditState's precedence, at the
 * instant the locks were held) is coupon_redeem's (sql/coupon-redeem.sql);
 * `credit` is the locked row with the uses that counted then.
 */
export function creditRefusalOf(reason: CreditRefusal['reason'], credit: CreditCounters & { id: string }): CreditRefusal {
  const metadata = { credit_id: credit.id };
  switch (reason) {
    case ErrorReason.CreditRevoked:
      return {
        reason,
        message: `Credit ${credit.id} was revoked at ${credit.revokeTime!.toISOString()}.`,
        metadata: Object.assign({}, metadata, { revoke_time: credit.revokeTime!.toISOString() }),
      };
    case ErrorReason.CreditAlreadyRedeemed:
      return {
        reason,
        message: `Credit ${credit.id} has no use left: it was redeemed ${credit.redemptionCount} of ${credit.usesTotal} times.`,
        metadata: Object.assign({}, metadata, { redemption_count: credit.redemptionCount.toString() }),
      };
    case ErrorReason.CreditExpired:
      return {
        reason,
        message: `Credit ${credit.id} expired at ${credit.expireTime!.toISOString()}.`,
        metadata: Object.assign({}, metadata, { expire_time: credit.expireTime!.toISOString() }),
      };
  }
}

/** Why a credit cannot be revoked: already revoked, or a use of it counts (held or confirmed; even with uses left). */
export function revokeRefusal(credit: CreditCounters & { id: string }): CreditRefusal | undefined {
  if (credit.revokeTime !== null) {
    return {
      reason: ErrorReason.CreditRevoked,
      message: `Credit ${credit.id} was already revoked at ${credit.revokeTime.toISOString()}.`,
      metadata: { credit_id: credit.id, revoke_time: credit.revokeTime.toISOString() },
    };
  }
  if (credit.redemptionCount > 0n) {
    return {
      reason: ErrorReason.CreditAlreadyRedeemed,
      message: `Credit ${credit.id} has been redeemed ${credit.redemptionCount} times and cannot be revoked.`,
      metadata: { credit_id: credit.id, redemption_count: credit.redemptionCount.toString() },
    };
  }
  return undefined;
}

/** Validates the customer and credit id of Get/Revoke/Redeem. */
export function checkCreditLocator(v: Violations, input: CreditLocatorInput): CreditLocator {
  checkCustomerId(v, 'customer_id', input.customerId);
  const creditId = checkUuid(v, 'credit_id', input.creditId);
  return { customerId: input.customerId, creditId };
}

export function validateCreditLocator(input: CreditLocatorInput): CreditLocator {
  const v = new Violations();
  const locator = checkCreditLocator(v, input);
  v.throwIfAny();
  return locator;
}

/** Validates RedeemCustomerCredit at `now`; the redemption is made for the credit's customer. */
export function validateRedeemInput(input: RedeemCreditInput, principal: Principal, now: Date): { locator: CreditLocator; request: RedemptionRequest } {
  const v = new Violations();
  const locator = checkCreditLocator(v, input);
  const terms = checkRedemptionTerms(v, input, principal, now);
  v.throwIfAny();
  return { locator, request: { customerId: input.customerId, ...terms } };
}

/** Validates BatchCreateCustomerCredits: 1..500 entries, each as for CreateCustomerCredit, named `credits[i].<field>`. */
export function validateBatchInput(
  input: { couponId: string; drafts: readonly CreditDraftInput[] },
  principal: Principal,
  now: Date,
): { couponId: string; drafts: CreditDraft[]; pending: Violations } {
  const v = new Violations();
  const count = input.drafts.length;
  if (count === 0) v.add('credits', `must have 1 to ${MAX_BATCH_CREDITS} entries, got none`);
  else if (count > MAX_BATCH_CREDITS) v.add('credits', `must have 1 to ${MAX_BATCH_CREDITS} entries, got ${count}; split the batch`);
  // Too many entries: do not list violations of entries that are refused anyway.
  const drafts = count > MAX_BATCH_CREDITS ? [] : input.drafts;
  return validateIssueInput({ couponId: input.couponId, drafts }, principal, now, (i, field) => `credits[${i}].${field}`, v);
}
