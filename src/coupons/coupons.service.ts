import type { DataSource, EntityManager } from 'typeorm';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import { effectivePageSize, seqOfPosition, type PageTokenCodec } from '../common/page-token';
import { checkUuid } from '../common/text';
import { isUniqueViolation } from '../db/db-errors';
import type { WorkRunner } from '../db/unit-of-work';
import type { Principal } from '../tenants/principal';
import {
  validateCouponListInput,
  validateRedemptionListInput,
  type CouponListInput,
  type RedemptionListInput,
} from './coupon-list.rules';
import type { CouponRedemptionEntity } from './coupon-redemption.entity';
import {
  computeDiscount,
  couponRefusal,
  customerLimitRefusal,
  validateRedemptionInput,
  type Money,
  type Refusal,
  type RedemptionInput,
  type RedemptionRequest,
} from './coupon-redemption.rules';
import type { CouponEntity } from './coupon.entity';
import { CODE_UNIQUE_INDEX, CouponRepository, type CouponLocator } from './coupon.repository';
import { changedFields, checkCode, validateCouponTerms, type CouponTermsInput } from './coupon.rules';

export interface RedemptionOutcome {
  /** The coupon after the redemption. */
  coupon: CouponEntity;
  redemption: CouponRedemptionEntity;
}

export interface ValidationOutcome {
  coupon: CouponEntity;
  /** Why RedeemCoupon would be refused; undefined when it would succeed. */
  refusal: Refusal | undefined;
  /** Set when valid and an amount was given. */
  discount: Money | undefined;
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

export type Clock = () => Date;

/**
 * Records one redemption of a coupon inside the caller's transaction (which
 * `manager` must belong to): locks the coupon row (SELECT … FOR UPDATE), runs
 * the checks in the contract's order (COUPON_DISABLED, COUPON_EXPIRED,
 * COUPON_NOT_APPLICABLE, COUPON_MAX_REDEMPTIONS_REACHED,
 * COUPON_CUSTOMER_LIMIT_REACHED), then inserts the redemption and counts it on
 * the coupon while the lock is held, so the limits hold however many callers
 * race. Throws DomainError (COUPON_NOT_FOUND or a refusal); the caller's
 * transaction must then roll back.
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
  clock: Clock = () => new Date(),
): Promise<RedemptionOutcome> {
  const repo = new CouponRepository(manager);
  const coupon = await repo.findCoupon(tenantId, locator, true);
  if (!coupon) throw couponNotFound(locator);
  // Read the time after the lock is granted: a caller that waited for it must
  // not redeem a coupon that expired meanwhile.
  const refusal =
    couponRefusal(coupon, request, clock()) ??
    (coupon.maxRedemptionsPerCustomer === null
      ? undefined
      : customerLimitRefusal(coupon, request.customerId, await repo.countCustomerRedemptions(tenantId, coupon.id, request.customerId)));
  if (refusal) throw refusalError(refusal, coupon);
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

/** Use cases of coupons and their redemptions. */
export class CouponsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly pageTokens: PageTokenCodec,
    private readonly clock: Clock = () => new Date(),
  ) {}

  async create(principal: Principal, input: CouponTermsInput, run: WorkRunner): Promise<CouponEntity> {
    const terms = validateCouponTerms(new Violations(), input, principal, this.clock());
    return withCodeUniqueness(terms.code, () =>
      run((m) => new CouponRepository(m).insertCoupon(principal.tenantId, terms), { singleStatement: true }),
    );
  }

  async get(principal: Principal, lookup: { id?: string; code?: string }): Promise<CouponEntity> {
    const locator = checkLocator(lookup);
    const coupon = await new CouponRepository(this.dataSource.manager).findCoupon(principal.tenantId, locator);
    if (!coupon) throw couponNotFound(locator);
    return coupon;
  }

  async list(principal: Principal, input: CouponListInput): Promise<Page<CouponEntity>> {
    const { filter, filterKey } = validateCouponListInput(input);
    const beforeSeq = this.cursor(principal, filterKey, input.pageToken);
    const pageSize = effectivePageSize(input.pageSize);
    const rows = await new CouponRepository(this.dataSource.manager).listCoupons(principal.tenantId, filter, beforeSeq, pageSize + 1);
    return this.page(principal, filterKey, rows, pageSize);
  }

  /**
   * Replaces every writable field under the coupon's row lock. A redeemed
   * coupon accepts only a change of `enabled`; an unchanged request writes
   * nothing.
   */
  async update(principal: Principal, id: string, input: CouponTermsInput, run: WorkRunner): Promise<CouponEntity> {
    const v = new Violations();
    const couponId = checkUuid(v, 'id', id);
    const now = this.clock();
    // Every field but the "expire_time in the future" rule, which needs the
    // stored value (an unchanged passed expiry is fine); checked again below.
    const terms = validateCouponTerms(v, input, principal, now, input.expireTime ?? null);
    return withCodeUniqueness(terms.code, () =>
      run(
        async (manager) => {
          const repo = new CouponRepository(manager);
          const current = await repo.findCoupon(principal.tenantId, { id: couponId }, true);
          if (!current) throw couponNotFound({ id: couponId });
          validateCouponTerms(new Violations(), input, principal, now, current.expireTime);
          const changed = changedFields(current, terms);
          const frozen = changed.filter((field) => field !== 'enabled');
          if (current.redemptionCount > 0n && frozen.length > 0) {
            throw new DomainError(
              ErrorReason.CouponRedeemed,
              `Coupon ${current.code} has been redeemed, so only enabled may change; this request also changes ${frozen.join(', ')}.`,
              [],
              { coupon_id: current.id, changed_fields: frozen.join(',') },
            );
          }
          return changed.length === 0 ? current : repo.updateCoupon(current, terms);
        },
        { singleStatement: false },
      ),
    );
  }

  async delete(principal: Principal, id: string, run: WorkRunner): Promise<void> {
    const v = new Violations();
    const couponId = checkUuid(v, 'id', id);
    v.throwIfAny();
    const outcome = await run((m) => new CouponRepository(m).deleteUnused(principal.tenantId, couponId), { singleStatement: true });
    if (outcome === 'missing') throw couponNotFound({ id: couponId });
    if (outcome === 'has-credits') {
      throw new DomainError(
        ErrorReason.CouponHasCredits,
        `Customer credits were issued from coupon ${couponId}, so it cannot be deleted; disable it with UpdateCoupon instead.`,
        [],
        { coupon_id: couponId },
      );
    }
    if (outcome === 'redeemed') {
      throw new DomainError(
        ErrorReason.CouponRedeemed,
        `Coupon ${couponId} has been redeemed and cannot be deleted; disable it with UpdateCoupon instead.`,
        [],
        { coupon_id: couponId },
      );
    }
  }

  /** The redemption's checks and discount, without a lock and without writing. */
  async validate(principal: Principal, input: RedemptionInput): Promise<ValidationOutcome> {
    const { code, request } = validateRedemptionInput(input, principal);
    const repo = new CouponRepository(this.dataSource.manager);
    const coupon = await repo.findCoupon(principal.tenantId, { code });
    if (!coupon) throw couponNotFound({ code });
    const refusal =
      couponRefusal(coupon, request, this.clock()) ??
      (coupon.maxRedemptionsPerCustomer === null
        ? undefined
        : customerLimitRefusal(coupon, request.customerId, await repo.countCustomerRedemptions(principal.tenantId, coupon.id, request.customerId)));
    const discount =
      refusal === undefined && request.amount !== undefined
        ? { amount: computeDiscount(coupon, request.amount.amount), currencyCode: request.amount.currencyCode }
        : undefined;
    return { coupon, refusal, discount };
  }

  async redeem(principal: Principal, input: RedemptionInput, run: WorkRunner): Promise<RedemptionOutcome> {
    const { code, request } = validateRedemptionInput(input, principal);
    return run((m) => redeemCouponInTransaction(m, principal.tenantId, { code }, request, principal.keyName, this.clock), {
      singleStatement: false,
    });
  }

  async listRedemptions(principal: Principal, input: RedemptionListInput): Promise<Page<CouponRedemptionEntity>> {
    const { filter, filterKey } = validateRedemptionListInput(input);
    const beforeSeq = this.cursor(principal, filterKey, input.pageToken);
    const repo = new CouponRepository(this.dataSource.manager);
    if (filter.couponId !== undefined && !(await repo.findCoupon(principal.tenantId, { id: filter.couponId }))) {
      throw couponNotFound({ id: filter.couponId });
    }
    const pageSize = effectivePageSize(input.pageSize);
    const rows = await repo.listRedemptions(principal.tenantId, filter, beforeSeq, pageSize + 1);
    return this.page(principal, filterKey, rows, pageSize);
  }

  private cursor(principal: Principal, filterKey: string, pageToken: string): bigint | undefined {
    const position = this.pageTokens.decode(principal.tenantId, filterKey, pageToken);
    return position ? seqOfPosition(position) : undefined;
  }

  private page<T extends { seq: bigint }>(principal: Principal, filterKey: string, rows: T[], pageSize: number): Page<T> {
    const items = rows.slice(0, pageSize);
    const nextPageToken =
      rows.length > pageSize ? this.pageTokens.encode(principal.tenantId, filterKey, [items[items.length - 1]!.seq.toString()]) : '';
    return { items, nextPageToken };
  }
}

/** GetCoupon's lookup: exactly one of id (a UUID) and code. */
function checkLocator(lookup: { id?: string; code?: string }): CouponLocator {
  const v = new Violations();
  let locator: CouponLocator | undefined;
  if (lookup.id !== undefined) locator = { id: checkUuid(v, 'id', lookup.id) };
  else if (lookup.code !== undefined) {
    checkCode(v, 'code', lookup.code);
    locator = { code: lookup.code };
  } else v.add('id', 'or code is required: give one of them');
  v.throwIfAny();
  return locator!;
}

function couponNotFound(locator: CouponLocator): DomainError {
  return 'id' in locator
    ? new DomainError(ErrorReason.CouponNotFound, `Coupon ${locator.id} does not exist.`, [], { id: locator.id })
    : new DomainError(ErrorReason.CouponNotFound, `No coupon has the code ${locator.code}.`, [], { code: locator.code });
}

function refusalError(refusal: Refusal, coupon: CouponEntity): DomainError {
  return new DomainError(refusal.reason, refusal.message, [], { coupon_id: coupon.id, ...refusal.metadata });
}

/** Turns a unique violation of the code index into ALREADY_EXISTS. */
async function withCodeUniqueness<T>(code: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (isUniqueViolation(err, CODE_UNIQUE_INDEX)) {
      throw new DomainError(
        ErrorReason.CouponCodeAlreadyExists,
        `Another coupon of this tenant already has the code ${code} (codes are unique ignoring case).`,
        [],
        { code },
      );
    }
    throw err;
  }
}
