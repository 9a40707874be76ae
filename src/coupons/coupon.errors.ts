import { DomainError, ErrorReason } from '../common/domain-error';
import type { Refusal } from './coupon-redemption.rules';
import type { CouponLocator } from './coupon.repository';

/**
 * COUPON_NOT_FOUND, for every use case that names a coupon (the coupon
 * use cases and the credit ones). ErrorInfo metadata names the coupon the way
 * the request did: `coupon_id`, or `code`.
 */
export function couponNotFound(locator: CouponLocator): DomainError {
  return 'id' in locator
    ? new DomainError(ErrorReason.CouponNotFound, `Coupon ${locator.id} does not exist.`, [], { coupon_id: locator.id })
    : new DomainError(ErrorReason.CouponNotFound, `No coupon has the code ${locator.code}.`, [], { code: locator.code });
}

/**
 * A coupon's refusal as an error, with `coupon_id` beside the refusal's own
 * metadata; `consequence` is a sentence appended to the message (what the
 * refusal stops, when that is not a redemption).
 */
export function couponRefusalError(refusal: Refusal, couponId: string, consequence?: string): DomainError {
  const message = consequence === undefined ? refusal.message : `${refusal.message} ${consequence}`;
  return new DomainError(refusal.reason, message, [], { coupon_id: couponId, ...refusal.metadata });
}
