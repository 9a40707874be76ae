import {
  CouponType as CouponTypeProto,
  Frequency as FrequencyProto,
  RedemptionStatus as RedemptionStatusProto,
  Coupon,
  CouponRedemption,
  type CreateCouponRequest,
  type ListCouponRedemptionsRequest,
  type ListCouponsRequest,
  type RedeemCouponRequest,
  type ValidateCouponRequest,
} from '../../gen/credits/v1/coupon_service';
import type { CouponListInput, RedemptionListInput } from '../coupons/coupon-list.rules';
import type { CouponRedemptionEntity } from '../coupons/coupon-redemption.entity';
import type { RedemptionInput } from '../coupons/coupon-redemption.rules';
import type { CouponEntity, CouponType, Frequency } from '../coupons/coupon.entity';
import type { CouponEventSnapshots } from '../coupons/coupon-events';
import type { CouponWriteInput } from '../coupons/coupons.service';
import type { RedemptionStatus } from '../coupons/redemption-status.rules';
import { enumFromProto } from './enum.mapper';
import { moneyFromProto, moneyToProto } from './money.mapper';

const COUPON_TYPE_TO_PROTO: Record<CouponType, CouponTypeProto> = {
  PERCENTAGE: CouponTypeProto.COUPON_TYPE_PERCENTAGE,
  FIXED_AMOUNT: CouponTypeProto.COUPON_TYPE_FIXED_AMOUNT,
};

const FREQUENCY_TO_PROTO: Record<Frequency, FrequencyProto> = {
  ONCE: FrequencyProto.FREQUENCY_ONCE,
  LIMITED: FrequencyProto.FREQUENCY_LIMITED,
  LIFETIME: FrequencyProto.FREQUENCY_LIFETIME,
};

const REDEMPTION_STATUS_TO_PROTO: Record<RedemptionStatus, RedemptionStatusProto> = {
  HELD: RedemptionStatusProto.REDEMPTION_STATUS_HELD,
  CONFIRMED: RedemptionStatusProto.REDEMPTION_STATUS_CONFIRMED,
  CANCELED: RedemptionStatusProto.REDEMPTION_STATUS_CANCELED,
};

const couponTypeFromProto = enumFromProto(COUPON_TYPE_TO_PROTO);
const frequencyFromProto = enumFromProto(FREQUENCY_TO_PROTO);

/** The writable fields, metadata and validate_only that CreateCouponRequest and UpdateCouponRequest share. */
export function couponTermsFromProto(request: CreateCouponRequest): CouponWriteInput {
  return {
    code: request.code,
    name: request.name,
    type: couponTypeFromProto(request.type),
    percentage: request.percentage,
    fixedAmount: moneyFromProto(request.fixedAmount),
    frequency: frequencyFromProto(request.frequency),
    frequencyInterval: request.frequencyInterval,
    maxRedemptions: request.maxRedemptions,
    maxRedemptionsPerCustomer: request.maxRedemptionsPerCustomer,
    expireTime: request.expireTime,
    limitedToPlans: request.limitedToPlans,
    excludedFromPlans: request.excludedFromPlans,
    limitedToProducts: request.limitedToProducts,
    excludedFromProducts: request.excludedFromProducts,
    enabled: request.enabled,
    metadata: request.metadata,
    validateOnly: request.validateOnly,
  };
}

export function couponToProto(coupon: CouponEntity): Coupon {
  return {
    id: coupon.id,
    code: coupon.code,
    name: coupon.name,
    type: COUPON_TYPE_TO_PROTO[coupon.type],
    percentage: coupon.percentage ?? undefined,
    fixedAmount: moneyToProto(coupon.fixedAmount, coupon.fixedCurrencyCode),
    frequency: FREQUENCY_TO_PROTO[coupon.frequency],
    frequencyInterval: coupon.frequencyInterval ?? undefined,
    maxRedemptions: coupon.maxRedemptions ?? undefined,
    maxRedemptionsPerCustomer: coupon.maxRedemptionsPerCustomer ?? undefined,
    expireTime: coupon.expireTime ?? undefined,
    limitedToPlans: coupon.limitedToPlans,
    excludedFromPlans: coupon.excludedFromPlans,
    limitedToProducts: coupon.limitedToProducts,
    excludedFromProducts: coupon.excludedFromProducts,
    enabled: coupon.enabled,
    createTime: coupon.createTime,
    updateTime: coupon.updateTime,
    redeemed: coupon.redeemed,
    redemptionCount: coupon.redemptionCount,
    metadata: coupon.metadata,
  };
}

export function couponRedemptionToProto(redemption: CouponRedemptionEntity): CouponRedemption {
  return {
    id: redemption.id,
    couponId: redemption.couponId,
    customerId: redemption.customerId,
    planId: redemption.planId ?? '',
    productId: redemption.productId ?? '',
    amount: moneyToProto(redemption.amount, redemption.currencyCode),
    discount: moneyToProto(redemption.discount, redemption.currencyCode),
    doneBy: redemption.doneBy,
    createTime: redemption.createTime,
    status: REDEMPTION_STATUS_TO_PROTO[redemption.status],
    holdUntil: redemption.holdUntil ?? undefined,
    customerCreditId: redemption.customerCreditId ?? '',
    metadata: redemption.metadata,
    updateTime: redemption.updateTime,
  };
}

/** Coupons and redemptions as their events carry them: the proto messages' JSON. */
export const couponEventSnapshots: CouponEventSnapshots = {
  coupon: (coupon) => Coupon.toJSON(couponToProto(coupon)),
  redemption: (redemption) => CouponRedemption.toJSON(couponRedemptionToProto(redemption)),
};

export function redemptionInputFromProto(request: ValidateCouponRequest): RedemptionInput {
  return {
    code: request.code,
    customerId: request.customerId,
    planId: request.planId,
    productId: request.productId,
    amount: moneyFromProto(request.amount),
  };
}

export function redeemInputFromProto(request: RedeemCouponRequest): RedemptionInput & { validateOnly: boolean } {
  // Object.assign onto the fresh input (~0.1 µs): `{ ...redemptionInputFromProto(request), holdUntil, … }`
  // cost ~2 µs a call on Node 20 (a spread followed by properties it lacks).
  return Object.assign(redemptionInputFromProto(request), { holdUntil: request.holdUntil, metadata: request.metadata, validateOnly: request.validateOnly });
}

export function couponListInputFromProto(request: ListCouponsRequest): CouponListInput {
  return { pageSize: request.pageSize, pageToken: request.pageToken, enabled: request.enabled, codePrefix: request.codePrefix };
}

export function redemptionListInputFromProto(request: ListCouponRedemptionsRequest): RedemptionListInput {
  return {
    pageSize: request.pageSize,
    pageToken: request.pageToken,
    couponId: request.couponId,
    customerId: request.customerId,
    metadata: request.metadata,
  };
}
