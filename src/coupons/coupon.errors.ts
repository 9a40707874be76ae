import { DomainError, ErrorReason } from '../common/domain-error';
import type { Refusal } from './coupon-redemption.rules';
import type { CouponLocator } from './coupon.repository';

export function couponNotFound(locator: CouponLocator): DomainError {
  return 'id' in locator
    ? new DomainError(ErrorReason.CouponNotFound, `Coupon ${locator.id} does not exist.`, [], { id: locator.id })
    : new DomainError(ErrorReason.CouponNotFound, `No coupon has the code ${locator.code}.`, [], { code: locator.code });
}

export function couponRefusalError(refusal: Refusal, couponId: string): DomainError {
  return new DomainError(refusal.reason, refusal.message, [], { coupon_id: couponId, ...refusal.metadata });
}
