import { Violations } from '../common/domain-error';
import { checkTime } from '../common/list-filters';
import { checkText } from '../common/text';
import type { MoneyInput } from '../money/money';
import { resolveCurrency } from '../money/resolve-currency';
import type { Principal } from '../tenants/principal';
import type { CouponType, Frequency } from './coupon.entity';

/** The writable fields of a coupon as the transport hands them over, before validation. */
export interface CouponTermsInput {
  code: string;
  name: string;
  /** undefined: unset; 'UNRECOGNIZED': a number the contract does not define. */
  type: CouponType | 'UNRECOGNIZED' | undefined;
  percentage: number | undefined;
  fixedAmount: MoneyInput | undefined;
  frequency: Frequency | 'UNRECOGNIZED' | undefined;
  frequencyInterval: number | undefined;
  maxRedemptions: number | undefined;
  maxRedemptionsPerCustomer: number | undefined;
  expireTime: Date | undefined;
  limitedToPlans: string[];
  excludedFromPlans: string[];
  limitedToProducts: string[];
  excludedFromProducts: string[];
  enabled: boolean | undefined;
}

/** Validated, canonical coupon terms, shaped like the coupons row (null = absent). */
export interface CouponTerms {
  code: string;
  name: string;
  type: CouponType;
  percentage: number | null;
  fixedAmount: bigint | null;
  fixedCurrencyCode: string | null;
  frequency: Frequency;
  frequencyInterval: number | null;
  maxRedemptions: number | null;
  maxRedemptionsPerCustomer: number | null;
  expireTime: Date | null;
  /** Sorted, without duplicates. */
  limitedToPlans: string[];
  excludedFromPlans: string[];
  limitedToProducts: string[];
  excludedFromProducts: string[];
  enabled: boolean;
}

export const CODE_MAX_LENGTH = 50;
const CODE = /^[A-Za-z0-9_-]+$/;
/** Plan and product ids are the caller's opaque ids, like customer ids. */
const REFERENCE_ID = /^[A-Za-z0-9_.@:-]{1,50}$/;
export const MAX_LIST_ENTRIES = 100;
const INT32_MAX = 2_147_483_647;

const TYPE_NAMES = 'COUPON_TYPE_PERCENTAGE or COUPON_TYPE_FIXED_AMOUNT';
const FREQUENCY_NAMES = 'FREQUENCY_ONCE, FREQUENCY_LIMITED or FREQUENCY_LIFETIME';

/** Checks a coupon code: 1..50 of A-Z a-z 0-9 _ -. Codes are ASCII so that "ignoring case" is exact. */
export function checkCode(v: Violations, field: string, code: string): void {
  if (code === '') v.add(field, 'is required');
  else if (code.length > CODE_MAX_LENGTH) v.add(field, `must be at most ${CODE_MAX_LENGTH} characters long, got ${code.length}`);
  else if (!CODE.test(code)) v.add(field, 'must contain only A-Z, a-z, 0-9, _ and -');
}

/** Checks an optional plan or product id given with a redemption (empty: none). */
export function checkReferenceId(v: Violations, field: string, value: string): void {
  if (value !== '' && !REFERENCE_ID.test(value)) v.add(field, 'must be empty or 1 to 50 characters of A-Z, a-z, 0-9 and _ . @ : -');
}

/**
 * Validates a coupon's writable fields, listing every bad field at once, and
 * answers them in canonical form (lists sorted without duplicates, the
 * default currency filled in, `enabled` defaulting to true).
 *
 * `expire_time` must be in the future, unless it equals `keptExpireTime` (an
 * update that leaves a passed expiry as it is).
 */
export function validateCouponTerms(
  v: Violations,
  input: CouponTermsInput,
  principal: Principal,
  now: Date,
  keptExpireTime?: Date | null,
): CouponTerms {
  checkCode(v, 'code', input.code);
  checkText(v, 'name', input.name, 1, 255);

  if (input.type === undefined) v.add('type', `is required: ${TYPE_NAMES}`);
  else if (input.type === 'UNRECOGNIZED') v.add('type', `must be ${TYPE_NAMES}`);

  if (input.percentage !== undefined) {
    if (input.type === 'FIXED_AMOUNT') v.add('percentage', 'must be absent for a COUPON_TYPE_FIXED_AMOUNT coupon');
    else if (!Number.isInteger(input.percentage) || input.percentage < 1 || input.percentage > 100) {
      v.add('percentage', `must be a whole number from 1 to 100, got ${input.percentage}`);
    }
  } else if (input.type === 'PERCENTAGE') {
    v.add('percentage', 'is required for a COUPON_TYPE_PERCENTAGE coupon');
  }

  let fixedCurrencyCode: string | undefined;
  if (input.fixedAmount !== undefined) {
    if (input.type === 'PERCENTAGE') v.add('fixed_amount', 'must be absent for a COUPON_TYPE_PERCENTAGE coupon');
    else {
      if (input.fixedAmount.amount <= 0n) v.add('fixed_amount.amount', 'must be greater than zero');
      fixedCurrencyCode = resolveCurrency(v, input.fixedAmount.currencyCode, principal, 'fixed_amount.currency_code');
    }
  } else if (input.type === 'FIXED_AMOUNT') {
    v.add('fixed_amount', 'is required for a COUPON_TYPE_FIXED_AMOUNT coupon');
  }

  if (input.frequency === undefined) v.add('frequency', `is required: ${FREQUENCY_NAMES}`);
  else if (input.frequency === 'UNRECOGNIZED') v.add('frequency', `must be ${FREQUENCY_NAMES}`);
  if (input.frequencyInterval !== undefined) {
    if (input.frequency === 'ONCE' || input.frequency === 'LIFETIME') {
      v.add('frequency_interval', `must be absent unless frequency is FREQUENCY_LIMITED (it is FREQUENCY_${input.frequency})`);
    } else checkLimit(v, 'frequency_interval', input.frequencyInterval);
  } else if (input.frequency === 'LIMITED') {
    v.add('frequency_interval', 'is required for FREQUENCY_LIMITED: the number of uses, at least 1');
  }

  if (input.maxRedemptions !== undefined) checkLimit(v, 'max_redemptions', input.maxRedemptions, ' (leave it unset for no limit)');
  if (input.maxRedemptionsPerCustomer !== undefined) {
    checkLimit(v, 'max_redemptions_per_customer', input.maxRedemptionsPerCustomer, ' (leave it unset for no limit)');
  }

  if (input.expireTime !== undefined && checkTime(v, 'expire_time', input.expireTime)) {
    const kept = keptExpireTime != null && keptExpireTime.getTime() === input.expireTime.getTime();
    if (!kept && input.expireTime.getTime() <= now.getTime()) {
      v.add('expire_time', `must be in the future, got ${input.expireTime.toISOString()}`);
    }
  }

  const limitedToPlans = checkIdList(v, 'limited_to_plans', input.limitedToPlans);
  const excludedFromPlans = checkIdList(v, 'excluded_from_plans', input.excludedFromPlans);
  const limitedToProducts = checkIdList(v, 'limited_to_products', input.limitedToProducts);
  const excludedFromProducts = checkIdList(v, 'excluded_from_products', input.excludedFromProducts);
  checkDisjoint(v, ['limited_to_plans', limitedToPlans], ['excluded_from_plans', excludedFromPlans]);
  checkDisjoint(v, ['limited_to_products', limitedToProducts], ['excluded_from_products', excludedFromProducts]);

  v.throwIfAny();
  return {
    code: input.code,
    name: input.name,
    type: input.type as CouponType,
    percentage: input.percentage ?? null,
    fixedAmount: input.fixedAmount?.amount ?? null,
    fixedCurrencyCode: fixedCurrencyCode ?? null,
    frequency: input.frequency as Frequency,
    frequencyInterval: input.frequencyInterval ?? null,
    maxRedemptions: input.maxRedemptions ?? null,
    maxRedemptionsPerCustomer: input.maxRedemptionsPerCustomer ?? null,
    expireTime: input.expireTime ?? null,
    limitedToPlans,
    excludedFromPlans,
    limitedToProducts,
    excludedFromProducts,
    enabled: input.enabled ?? true,
  };
}

function checkLimit(v: Violations, field: string, value: number, hint = ''): void {
  if (!Number.isInteger(value) || value < 1 || value > INT32_MAX) v.add(field, `must be at least 1${hint}, got ${value}`);
}

/** Checks each id of a plan/product list; answers the valid ones sorted without duplicates. */
function checkIdList(v: Violations, field: string, ids: readonly string[]): string[] {
  if (ids.length > MAX_LIST_ENTRIES) {
    v.add(field, `must have at most ${MAX_LIST_ENTRIES} ids, got ${ids.length}`);
    return [];
  }
  ids.forEach((id, i) => {
    if (!REFERENCE_ID.test(id)) v.add(`${field}[${i}]`, 'must be 1 to 50 characters of A-Z, a-z, 0-9 and _ . @ : -');
  });
  return [...new Set(ids.filter((id) => REFERENCE_ID.test(id)))].sort();
}

function checkDisjoint(v: Violations, [limitedField, limited]: [string, string[]], [excludedField, excluded]: [string, string[]]): void {
  const both = limited.filter((id) => excluded.includes(id));
  if (both.length === 0) return;
  const list = both.map((id) => `"${id}"`).join(', ');
  v.add(limitedField, `must not contain ids that are also in ${excludedField}: ${list}`);
  v.add(excludedField, `must not contain ids that are also in ${limitedField}: ${list}`);
}

const TERM_FIELDS: ReadonlyArray<[keyof CouponTerms, string]> = [
  ['code', 'code'],
  ['name', 'name'],
  ['type', 'type'],
  ['percentage', 'percentage'],
  ['fixedAmount', 'fixed_amount'],
  ['fixedCurrencyCode', 'fixed_amount'],
  ['frequency', 'frequency'],
  ['frequencyInterval', 'frequency_interval'],
  ['maxRedemptions', 'max_redemptions'],
  ['maxRedemptionsPerCustomer', 'max_redemptions_per_customer'],
  ['expireTime', 'expire_time'],
  ['limitedToPlans', 'limited_to_plans'],
  ['excludedFromPlans', 'excluded_from_plans'],
  ['limitedToProducts', 'limited_to_products'],
  ['excludedFromProducts', 'excluded_from_products'],
  ['enabled', 'enabled'],
];

/** The proto names of the fields whose value differs between two sets of terms (lists compare as sets). */
export function changedFields(current: CouponTerms, next: CouponTerms): string[] {
  const changed = new Set<string>();
  for (const [key, field] of TERM_FIELDS) {
    if (!sameValue(current[key], next[key])) changed.add(field);
  }
  return [...changed];
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b)) return false;
    const left = [...new Set(a)].sort();
    const right = [...new Set(b)].sort();
    return left.length === right.length && left.every((x, i) => x === right[i]);
  }
  return a === b;
}
