import type { DataSource } from 'typeorm';
import { systemClock, type Clock } from '../common/clock';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import type { PageTokenCodec } from '../common/page-token';
import { Pager, type Page } from '../common/pager';
import { checkUuid } from '../common/text';
import { isUniqueViolation } from '../db/db-errors';
import type { WorkRunner } from '../db/unit-of-work';
import type { Money } from '../money/money';
import type { Principal } from '../tenants/principal';
import {
  validateCouponListInput,
  validateRedemptionListInput,
  type CouponListInput,
  type RedemptionListInput,
} from './coupon-list.rules';
import type { CouponRedemptionEntity } from './coupon-redemption.entity';
import { computeDiscount, validateRedemptionInput, type Refusal, type RedemptionInput } from './coupon-redemption.rules';
import type { CouponEntity } from './coupon.entity';
import { couponNotFound } from './coupon.errors';
import { CODE_UNIQUE_INDEX, CouponRepository, type CouponLocator } from './coupon.repository';
import { changedFields, checkCode, validateCouponTerms, type CouponTermsInput } from './coupon.rules';
import { redeemCouponInTransaction, redemptionRefusal, type RedemptionOutcome } from './redeem-coupon';

export interface ValidationOutcome {
  coupon: CouponEntity;
  /** Why RedeemCoupon would be refused; undefined when it would succeed. */
  refusal: Refusal | undefined;
  /** Set when valid and an amount was given. */
  discount: Money | undefined;
}

/** Use cases of coupons and their redemptions. */
export class CouponsService {
  private readonly pager = new Pager(this.pageTokens);

  constructor(
    private readonly dataSource: DataSource,
    private readonly pageTokens: PageTokenCodec,
    private readonly clock: Clock = systemClock,
  ) {}

  async create(principal: Principal, input: CouponTermsInput, run: WorkRunner): Promise<CouponEntity> {
    const terms = validateCouponTerms(new Violations(), input, principal, this.clock());
    return withCodeUniqueness(terms.code, () =>
      run.statement((m) => new CouponRepository(m).insertCoupon(principal.tenantId, terms)),
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
    const repo = new CouponRepository(this.dataSource.manager);
    return this.pager.page(principal.tenantId, filterKey, input, (beforeSeq, limit) => repo.listCoupons(principal.tenantId, filter, beforeSeq, limit));
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
      run.transaction(
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
      ),
    );
  }

  async delete(principal: Principal, id: string, run: WorkRunner): Promise<void> {
    const v = new Violations();
    const couponId = checkUuid(v, 'id', id);
    v.throwIfAny();
    const outcome = await run.statement((m) => new CouponRepository(m).deleteUnused(principal.tenantId, couponId));
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
    const refusal = await redemptionRefusal(repo, principal.tenantId, coupon, request, this.clock());
    const discount =
      refusal === undefined && request.amount !== undefined
        ? { amount: computeDiscount(coupon, request.amount.amount), currencyCode: request.amount.currencyCode }
        : undefined;
    return { coupon, refusal, discount };
  }

  async redeem(principal: Principal, input: RedemptionInput, run: WorkRunner): Promise<RedemptionOutcome> {
    const { code, request } = validateRedemptionInput(input, principal);
    return run.transaction((m) => redeemCouponInTransaction(m, principal.tenantId, { code }, request, principal.keyName, this.clock));
  }

  async listRedemptions(principal: Principal, input: RedemptionListInput): Promise<Page<CouponRedemptionEntity>> {
    const { filter, filterKey } = validateRedemptionListInput(input);
    const repo = new CouponRepository(this.dataSource.manager);
    return this.pager.page(principal.tenantId, filterKey, input, async (beforeSeq, limit) => {
      // After the token is read: a bad token is INVALID_ARGUMENT whatever the coupon.
      if (filter.couponId !== undefined && !(await repo.findCoupon(principal.tenantId, { id: filter.couponId }))) {
        throw couponNotFound({ id: filter.couponId });
      }
      return repo.listRedemptions(principal.tenantId, filter, beforeSeq, limit);
    });
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
