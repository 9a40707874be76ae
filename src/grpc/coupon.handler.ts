import type { CouponServiceServer } from '../../gen/credits/v1/coupon_service';
import type { CouponsService } from '../coupons/coupons.service';
import {
  couponListInputFromProto,
  couponRedemptionToProto,
  couponTermsFromProto,
  couponToProto,
  redemptionInputFromProto,
  redemptionListInputFromProto,
} from './coupon.mapper';
import { pageToProto } from './page.mapper';
import type { Rpc } from './rpc';

/** CouponService: translation between proto and the use cases, nothing else. */
export function couponHandlers(service: CouponsService, rpc: Rpc): CouponServiceServer {
  return {
    createCoupon: rpc.write(async (request, ctx) => ({
      coupon: couponToProto(await service.create(ctx.principal, couponTermsFromProto(request), ctx.run)),
    })),
    getCoupon: rpc.read(async (request, ctx) => ({
      coupon: couponToProto(await service.get(ctx.principal, { id: request.id, code: request.code })),
    })),
    listCoupons: rpc.read(async (request, ctx) =>
      pageToProto('coupons', await service.list(ctx.principal, couponListInputFromProto(request)), couponToProto),
    ),
    updateCoupon: rpc.write(async (request, ctx) => ({
      coupon: couponToProto(await service.update(ctx.principal, request.id, couponTermsFromProto(request), ctx.run)),
    })),
    deleteCoupon: rpc.write(async (request, ctx) => {
      await service.delete(ctx.principal, request.id, ctx.run);
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
    redeemCoupon: rpc.write(async (request, ctx) => {
      const outcome = await service.redeem(ctx.principal, redemptionInputFromProto(request), ctx.run);
      return { redemption: couponRedemptionToProto(outcome.redemption), coupon: couponToProto(outcome.coupon) };
    }),
    listCouponRedemptions: rpc.read(async (request, ctx) =>
      pageToProto('redemptions', await service.listRedemptions(ctx.principal, redemptionListInputFromProto(request)), couponRedemptionToProto),
    ),
  };
}
