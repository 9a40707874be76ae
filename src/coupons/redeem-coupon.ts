import type { EntityManager } from 'typeorm';
import { systemClock, type Clock } from '../common/clock';
import type { CouponRedemptionEntity } from './coupon-redemption.entity';
import { computeDiscount, couponRefusal, customerLimitRefusal, type Refusal, type RedemptionRequest } from './coupon-redemption.rules';
import type { CouponEntity } from './coupon.entity';
import { couponNotFound, couponRefusalError } from './coupon.errors';
import { CouponRepository, type CouponLocator } from './coupon.repository';

export interface RedemptionOutcome {
  /** The coupon after the redemption. */
  coupon: CouponEntity;
  redemption: CouponRedemptionEntity;
}

/**
 * Records one redemption of a coupon inside the caller's transaction (which
 * `manager` must belong to): locks the coupon row (SELECT … FOR UPDATE), runs
 * the checks in the contract's order (redemptionRefusal), then inserts the
 * redemption and counts it on the coupon while the lock is held, so the limits
 * hold however many callers race. Throws DomainError (COUPON_NOT_FOUND or a
 * refusal); the caller's transaction must then roll back.
 *
 * RedeemCoupon uses it, and so can anything else that redeems a coupon (a
 * customer credit's redemption) in its own transaction.
 */
export async function redeemCouponInTransaction(
  manager: EntityManager,
  tenantId: string,
  locator: CouponLocator,
  request: RedemptionRequest,
  doneBy: string,
  clock: Clock = systemClock,
): Promise<RedemptionOutcome> {
  const repo = new CouponRepository(manager);
  const coupon = await repo.findCoupon(tenantId, locator, true);
  if (!coupon) throw couponNotFound(locator);
  // Read the time after the lock is granted: a caller that waited for it must
  // not redeem a coupon that expired meanwhile.
  const refusal = await redemptionRefusal(repo, tenantId, coupon, request, clock());
  if (refusal) throw couponRefusalError(refusal, coupon.id);
  const discount = request.amount === undefined ? null : computeDiscount(coupon, request.amount.amount);
  const { redemption, redemptionCount } = await repo.insertRedemption({
    tenantId,
    couponId: coupon.id,
    customerId: request.customerId,
    planId: request.planId ?? null,
    productId: request.productId ?? null,
    amount: request.amount?.amount ?? null,
    discount,
    currencyCode: request.amount?.currencyCode ?? null,
    doneBy,
  });
  coupon.redemptionCount = redemptionCount;
  return { coupon, redemption };
}

/**
 * Why a redemption of `coupon` would be refused at `now`, or undefined: the
 * checks on the coupon row in the contract's order (COUPON_DISABLED,
 * COUPON_EXPIRED, COUPON_NOT_APPLICABLE, COUPON_MAX_REDEMPTIONS_REACHED), then
 * COUPON_CUSTOMER_LIMIT_REACHED, which counts this customer's redemptions
 * (only for a coupon with a per-customer limit). RedeemCoupon asks it under
 * the coupon's row lock, ValidateCoupon without one.
 */
export async function redemptionRefusal(
  repo: CouponRepository,
  tenantId: string,
  coupon: CouponEntity,
  request: RedemptionRequest,
  now: Date,
): Promise<Refusal | undefined> {
  const refusal = couponRefusal(coupon, request, now);
  if (refusal !== undefined || coupon.maxRedemptionsPerCustomer === null) return refusal;
  return customerLimitRefusal(coupon, request.customerId, await repo.countCustomerRedemptions(tenantId, coupon.id, request.customerId));
}
