import type { EntityManager } from 'typeorm';
import { systemClock, type Clock } from '../common/clock';
import { appendEvents } from '../events/outbox';
import { redemptionEvent, type CouponEventSnapshots } from './coupon-events';
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

/** Who records a redemption, and for which customer credit (if any). */
export interface RedemptionSource {
  doneBy: string;
  /** The credit whose use this is; the caller holds its row lock. null: RedeemCoupon. */
  customerCreditId: string | null;
}

/**
 * Records one redemption of a coupon inside the caller's transaction (which
 * `manager` must belong to): locks the coupon row (SELECT … FOR UPDATE),
 * counts the uses that count at that instant, runs the checks in the
 * contract's order (redemptionRefusal), then inserts the redemption (HELD
 * with `request.holdUntil`, else CONFIRMED), counts it on the coupon and
 * writes its REDEMPTION_CREATED event while the lock is held, so the limits
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
  source: RedemptionSource,
  snapshots: CouponEventSnapshots,
  clock: Clock = systemClock,
): Promise<RedemptionOutcome> {
  const repo = new CouponRepository(manager);
  const coupon = await repo.lockCoupon(tenantId, locator);
  if (!coupon) throw couponNotFound(locator);
  // Read the time after the lock is granted: a caller that waited for it must
  // not redeem a coupon that expired meanwhile, nor count a hold that lapsed.
  const now = clock();
  const refusal = await redemptionRefusal(repo, tenantId, coupon, request, now);
  if (refusal) throw couponRefusalError(refusal, coupon.id);
  const discount = request.amount === undefined ? null : computeDiscount(coupon, request.amount.amount);
  const { redemption, confirmedCount, redemptionCount } = await repo.insertRedemption(
    {
      tenantId,
      couponId: coupon.id,
      customerId: request.customerId,
      planId: request.planId ?? null,
      productId: request.productId ?? null,
      amount: request.amount?.amount ?? null,
      discount,
      currencyCode: request.amount?.currencyCode ?? null,
      doneBy: source.doneBy,
      holdUntil: request.holdUntil ?? null,
      metadata: request.metadata,
      customerCreditId: source.customerCreditId,
    },
    now,
  );
  await appendEvents(manager, [redemptionEvent('REDEMPTION_CREATED', redemption, snapshots)]);
  return { coupon: Object.assign(coupon, { confirmedCount, redemptionCount, redeemed: true }), redemption };
}

/**
 * Why a redemption of `coupon` would be refused at `now`, or undefined: the
 * checks on the coupon row in the contract's order (COUPON_DISABLED,
 * COUPON_EXPIRED, COUPON_NOT_APPLICABLE, COUPON_MAX_REDEMPTIONS_REACHED), then
 * COUPON_CUSTOMER_LIMIT_REACHED, which counts this customer's redemptions
 * (only for a coupon with a per-customer limit). Held redemptions count
 * until their hold_until, canceled ones never: both counts are taken at
 * `now` (the coupon's `redemptionCount` is recounted here, so that a hold
 * that lapsed since the coupon was read no longer counts). RedeemCoupon asks
 * it under the coupon's row lock, ValidateCoupon without one.
 */
export async function redemptionRefusal(
  repo: CouponRepository,
  tenantId: string,
  coupon: CouponEntity,
  request: Pick<RedemptionRequest, 'customerId' | 'planId' | 'productId' | 'amount'>,
  now: Date,
): Promise<Refusal | undefined> {
  // The confirmed count is a lower bound of the uses that count: a refusal
  // with it (any reason before the limits, or the total limit already
  // reached by confirmed uses alone, when no hold can be left) stands, and
  // needs no count; so does an unlimited coupon's success (the insert
  // answers the new count). Only a coupon under a limit is counted.
  const refusal = couponRefusal(coupon, request, now);
  if (refusal !== undefined || (coupon.maxRedemptions === null && coupon.maxRedemptionsPerCustomer === null)) return refusal;
  const uses = await repo.countUses(tenantId, coupon.id, coupon.maxRedemptionsPerCustomer === null ? undefined : request.customerId, now);
  coupon.redemptionCount = coupon.confirmedCount + uses.held;
  return couponRefusal(coupon, request, now) ?? (uses.customer === undefined ? undefined : customerLimitRefusal(coupon, request.customerId, uses.customer));
}
