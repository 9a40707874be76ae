import { Violations } from '../common/domain-error';
import { checkMetadata, type Metadata } from '../common/metadata';
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
  /** Pairs a redemption's metadata must all have; empty: no filter. */
  metadata: Record<string, string>;
}

export interface RedemptionListFilter {
  couponId?: string;
  customerId?: string;
  metadata?: Metadata;
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
  const metadata = metadataFilter(v, input.metadata);
  v.throwIfAny();
  const filter: RedemptionListFilter = { couponId, customerId: input.customerId === '' ? undefined : input.customerId, metadata };
  return {
    filter,
    filterKey: JSON.stringify(['coupon_redemptions', filter.couponId ?? null, filter.customerId ?? null, metadataKey(metadata)]),
  };
}

/** A list's metadata filter, checked as metadata is: undefined when empty (no filter). */
export function metadataFilter(v: Violations, metadata: Record<string, string>): Metadata | undefined {
  const checked = checkMetadata(v, 'metadata', metadata);
  return Object.keys(checked).length > 0 ? checked : undefined;
}

/** The metadata filter in a page token's filter key: its pairs in key order, so that the order they were sent in does not matter. */
export function metadataKey(metadata: Metadata | undefined): Array<[string, string]> | null {
  return metadata ? Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : null;
}
