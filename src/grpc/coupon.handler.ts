import type { CouponServiceServer } from '../../gen/credits/v1/coupon_service';
import type { CouponsService } from '../coupons/coupons.service';
import type { RedemptionOutcome } from '../coupons/redeem-coupon';
import {
  couponListInputFromProto,
  couponRedemptionToProto,
  couponTermsFromProto,
  couponEventSnapshots as events,
  couponToProto,
  redeemInputFromProto,
  redemptionInputFromProto,
  redemptionListInputFromProto,
} from './coupon.mapper';
import { pageToProto } from './page.mapper';
import type { Rpc } from './rpc';

/** CouponService: translation between proto and the use cases, nothing else. */
export function couponHandlers(service: CouponsService, rpc: Rpc): CouponServiceServer {
  return {
    createCoupon: rpc.write(async (request, ctx) => ({
      coupon: couponToProto(await service.create(ctx.principal, couponTermsFromProto(request), ctx.run, events)),
    })),
    getCoupon: rpc.read(async (request, ctx) => ({
      coupon: couponToProto(await service.get(ctx.principal, { id: request.id, code: request.code })),
    })),
    listCoupons: rpc.read(async (request, ctx) =>
      pageToProto('coupons', await service.list(ctx.principal, couponListInputFromProto(request)), couponToProto),
    ),
    updateCoupon: rpc.write(async (request, ctx) => ({
      coupon: couponToProto(await service.update(ctx.principal, request.id, couponTermsFromProto(request), ctx.run, events)),
    })),
    deleteCoupon: rpc.write(async (request, ctx) => {
      await service.delete(ctx.principal, { id: request.id, validateOnly: request.validateOnly }, ctx.run, events);
      return {};
    }),
    validateCoupon: rpc.read(async (request, ctx) => {
      const outcome = await service.validate(ctx.principal, redemptionInputFromProto(request));
      return {
        valid: outcome.refusal === undefined,
        reason: outcome.refusal?.reason ?? '',
        message: outcome.refusal?.message ?? '',
        discount: outcome.discount,
        coupon: couponToProto(outcome.coupon),
      };
    }),
    // Its database work is one submitted item (REDEMPTIONS): keyed calls may share a transaction.
    redeemCoupon: rpc.write(
      async (request, ctx) => redemptionOutcomeToProto(await service.redeem(ctx.principal, redeemInputFromProto(request), ctx.run)),
      { sharedTransaction: true },
    ),
    confirmCouponRedemption: rpc.write(async (request, ctx) =>
      redemptionOutcomeToProto(await service.confirm(ctx.principal, { id: request.redemptionId, validateOnly: request.validateOnly }, ctx.run, events)),
    ),
    cancelCouponRedemption: rpc.write(async (request, ctx) =>
      redemptionOutcomeToProto(await service.cancel(ctx.principal, { id: request.redemptionId, validateOnly: request.validateOnly }, ctx.run, events)),
    ),
    listCouponRedemptions: rpc.read(async (request, ctx) =>
      pageToProto('redemptions', await service.listRedemptions(ctx.principal, redemptionListInputFromProto(request)), couponRedemptionToProto),
    ),
  };
}

function redemptionOutcomeToProto(outcome: RedemptionOutcome) {
  return { redemption: couponRedemptionToProto(outcome.redemption), coupon: couponToProto(outcome.coupon) };
}
