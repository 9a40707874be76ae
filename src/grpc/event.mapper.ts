import { Coupon, CouponRedemption } from '../../gen/credits/v1/coupon_service';
import { CustomerCredit } from '../../gen/credits/v1/credit_service';
import { EventType as EventTypeProto, type Event, type ListEventsRequest, type StreamEventsRequest } from '../../gen/credits/v1/event_service';
import type { EventQueryInput } from '../events/event-query.rules';
import type { EventRecord } from '../events/event.repository';
import type { EventType } from '../events/outbox';
import { couponRedemptionToProto } from './coupon.mapper';
import { enumFromProto } from './enum.mapper';
import { holdToProto, promotionalCreditToProto } from './promotional-credit.mapper';

const EVENT_TYPE_TO_PROTO: Record<EventType, EventTypeProto> = {
  PROMOTIONAL_CREDIT_CREATED: EventTypeProto.EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED,
  BALANCE_DEPLETED: EventTypeProto.EVENT_TYPE_BALANCE_DEPLETED,
  HOLD_CREATED: EventTypeProto.EVENT_TYPE_HOLD_CREATED,
  HOLD_CAPTURED: EventTypeProto.EVENT_TYPE_HOLD_CAPTURED,
  HOLD_RELEASED: EventTypeProto.EVENT_TYPE_HOLD_RELEASED,
  HOLD_EXPIRED: EventTypeProto.EVENT_TYPE_HOLD_EXPIRED,
  COUPON_CREATED: EventTypeProto.EVENT_TYPE_COUPON_CREATED,
  COUPON_UPDATED: EventTypeProto.EVENT_TYPE_COUPON_UPDATED,
  COUPON_DELETED: EventTypeProto.EVENT_TYPE_COUPON_DELETED,
  REDEMPTION_CREATED: EventTypeProto.EVENT_TYPE_REDEMPTION_CREATED,
  REDEMPTION_CONFIRMED: EventTypeProto.EVENT_TYPE_REDEMPTION_CONFIRMED,
  REDEMPTION_CANCELED: EventTypeProto.EVENT_TYPE_REDEMPTION_CANCELED,
  CUSTOMER_CREDIT_CREATED: EventTypeProto.EVENT_TYPE_CUSTOMER_CREDIT_CREATED,
  CUSTOMER_CREDIT_REVOKED: EventTypeProto.EVENT_TYPE_CUSTOMER_CREDIT_REVOKED,
};

export const eventTypeFromProto = enumFromProto(EVENT_TYPE_TO_PROTO);

/** The filters both RPCs share, as the rules read them. */
export function eventQueryFromProto(request: ListEventsRequest | StreamEventsRequest): EventQueryInput {
  return { afterCursor: request.afterCursor, types: request.types.map(eventTypeFromProto), customerId: request.customerId };
}

/**
 * An event in proto form, its payload in the one field its kind names. Hold
 * events carry the hold as it was written (its status then); coupons,
 * redemptions and customer credits were stored in their proto JSON form,
 * but for a REDEMPTION_CREATED stored by reference (the redemption as it
 * was created, read with the page).
 */
export function eventToProto(event: EventRecord, cursor: string): Event {
  const proto: Event = {
    cursor,
    id: event.id,
    type: EVENT_TYPE_TO_PROTO[event.type],
    createTime: event.createTime,
    customerId: event.customerId ?? '',
  };
  const { payload } = event;
  switch (payload.kind) {
    case 'promotional_credit':
      proto.promotionalCredit = promotionalCreditToProto(payload.entry);
      break;
    case 'hold':
      proto.hold = holdToProto({ hold: payload.hold, status: payload.hold.status });
      break;
    case 'coupon':
      proto.coupon = Coupon.fromJSON(payload.json);
      break;
    case 'redemption':
      proto.redemption = CouponRedemption.fromJSON(payload.json);
      break;
    case 'customer_credit':
      proto.customerCredit = CustomerCredit.fromJSON(payload.json);
      break;
    case 'created_redemption':
      proto.redemption = couponRedemptionToProto(payload.redemption);
      break;
    default:
      throw new Error(`event ${event.id} has a payload of no known kind`);
  }
  return proto;
}
