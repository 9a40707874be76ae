import type { EventType, OutboxEvent } from '../events/outbox';
import type { CouponRedemptionEntity } from './coupon-redemption.entity';
import type { CouponEntity } from './coupon.entity';

/**
 * How coupons and redemptions become event payloads: the transport's JSON of
 * each (the proto message's, as the API shows it). The use cases write the
 * events in their transaction but know nothing of the proto; the handlers
 * pass this in with each call.
 */
export interface CouponEventSnapshots {
  coupon(coupon: CouponEntity): unknown;
  redemption(redemption: CouponRedemptionEntity): unknown;
}

export function couponEvent(type: Extract<EventType, `COUPON_${string}`>, coupon: CouponEntity, snapshots: CouponEventSnapshots): OutboxEvent {
  return { tenantId: coupon.tenantId, type, customerId: null, payload: { kind: 'coupon', json: snapshots.coupon(coupon) } };
}

export function redemptionEvent(
  type: Extract<EventType, `REDEMPTION_${string}`>,
  redemption: CouponRedemptionEntity,
  snapshots: CouponEventSnapshots,
): OutboxEvent {
  return { tenantId: redemption.tenantId, type, customerId: redemption.customerId, payload: { kind: 'redemption', json: snapshots.redemption(redemption) } };
}
