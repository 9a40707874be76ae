import { Violations } from '../common/domain-error';
import { checkPageSize, type PageInput } from '../common/pager';
import { checkCustomerId, checkUuid } from '../common/text';
import { checkCode } from './coupon.rules';

export interface CouponListInput extends PageInput {
  enabled: boolean | undefined;
  /** Empty: no filter. */
  codePrefix: string;
}

export interface CouponListFilter {
  enabled?: boolean;
  /** Lower case; matched against lower(code). */
  codePrefix?: string;
}

export interface RedemptionListInput extends PageInput {
  /** Empty: no filter. */
  couponId: string;
  customerId: string;
}

export interface RedemptionListFilter {
  couponId?: string;
  customerId?: string;
}

/** Validates ListCoupons input; `filterKey` binds page tokens to the filter. */
export function validateCouponListInput(input: CouponListInput): { filter: CouponListFilter; filterKey: string } {
  const v = new Violations();
  checkPageSize(v, input.pageSize);
  if (input.codePrefix !== '') checkCode(v, 'code_prefix', input.codePrefix);
  v.throwIfAny();
  const filter: CouponListFilter = {
    enabled: input.enabled,
    codePrefix: input.codePrefix === '' ? undefined : input.codePrefix.toLowerCase(),
  };
  return { filter, filterKey: JSON.stringify(['coupons', filter.enabled ?? null, filter.codePrefix ?? null]) };
}

/** Validates ListCouponRedemptions input; `filterKey` binds page tokens to the filter. */
export function validateRedemptionListInput(input: RedemptionListInput): { filter: RedemptionListFilter; filterKey: string } {
  const v = new Violations();
  checkPageSize(v, input.pageSize);
  const couponId = input.couponId === '' ? undefined : checkUuid(v, 'coupon_id', input.couponId);
  if (input.customerId !== '') checkCustomerId(v, 'customer_id', input.customerId);
  v.throwIfAny();
  const filter: RedemptionListFilter = { couponId, customerId: input.customerId === '' ? undefined : input.customerId };
  return { filter, filterKey: JSON.stringify(['coupon_redemptions', filter.couponId ?? null, filter.customerId ?? null]) };
}
