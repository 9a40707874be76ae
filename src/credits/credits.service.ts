import type { DataSource, EntityManager } from 'typeorm';
import { systemClock, type Clock } from '../common/clock';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import { Semaphore } from '../common/semaphore';
import type { PageTokenCodec } from '../common/page-token';
import { Pager, type Page } from '../common/pager';
import { isForeignKeyViolation } from '../db/db-errors';
import type { WorkRunner } from '../db/unit-of-work';
import type { CouponRedemptionEntity } from '../coupons/coupon-redemption.entity';
import type { CouponEntity } from '../coupons/coupon.entity';
import { couponNotFound, couponRefusalError } from '../coupons/coupon.errors';
import { CouponRepository, CREDITS_COUPON_FOREIGN_KEY } from '../coupons/coupon.repository';
import { redeemCouponInTransaction } from '../coupons/redeem-coupon';
import type { Money } from '../money/money';
import type { Principal } from '../tenants/principal';
import { validateCreditListInput, type CreditListInput } from './credit-list.rules';
import {
  creditState,
  issueRefusal,
  redeemRefusal,
  resolveExpireTime,
  revokeRefusal,
  usesFromFrequency,
  validateBatchInput,
  validateCreditLocator,
  validateIssueInput,
  validateRedeemInput,
  type CreditDraft,
  type CreditDraftInput,
  type CreditLocator,
  type CreditLocatorInput,
  type CreditRefusal,
  type CreditState,
  type RedeemCreditInput,
} from './credit.rules';
import type { CustomerCreditEntity } from './customer-credit.entity';
import { CustomerCreditRepository } from './customer-credit.repository';

/** A credit with its state at the instant the use case looked at it. */
export interface CreditView {
  credit: CustomerCreditEntity;
  state: CreditState;
}

export interface CreditRedemptionOutcome {
  /** The credit after this use. */
  credit: CreditView;
  redemption: CouponRedemptionEntity;
  /** The revenue allocated to this redemption; undefined when the credit has none. */
  revenue: Money | undefined;
}

/**
 * Credits that standalone issue calls may be inserting at once: four full
 * batches, enough to keep PostgreSQL busy (measured: 2,000 issues as many
 * credits/s as no limit, 1,000 a fifth fewer). Without it 64 batches of 500 in
 * flight took every pooled connection from the other calls, and ~15 MB more
 * memory. A call waiting here holds no connection.
 */
const ISSUING_CREDITS_AT_ONCE = 2_000;

/** Use cases of customer credits. */
export class CreditsService {
  private readonly issuing = new Semaphore(ISSUING_CREDITS_AT_ONCE);
  private readonly pager = new Pager(this.pageTokens);

  constructor(
    private readonly dataSource: DataSource,
    private readonly pageTokens: PageTokenCodec,
    private readonly clock: Clock = systemClock,
  ) {}

  /** CreateCustomerCredit: one credit, by the rules of a batch of one. */
  async create(principal: Principal, input: { couponId: string } & CreditDraftInput, run: WorkRunner): Promise<CreditView> {
    const now = this.clock();
    const { couponId, drafts } = validateIssueInput({ couponId: input.couponId, drafts: [input] }, principal, now, (_i, field) => field);
    const [credit] = await this.issue(principal, couponId, drafts, (_i, field) => field, run);
    return credit!;
  }

  /** BatchCreateCustomerCredits: every entry is validated first, the coupon checked once, all rows inserted in one statement. */
  async batchCreate(principal: Principal, input: { couponId: string; drafts: CreditDraftInput[] }, run: WorkRunner): Promise<CreditView[]> {
    const now = this.clock();
    const { couponId, drafts } = validateBatchInput(input, principal, now);
    return this.issue(principal, couponId, drafts, (i, field) => `credits[${i}].${field}`, run);
  }

  async get(principal: Principal, input: CreditLocatorInput): Promise<CreditView> {
    const locator = validateCreditLocator(input);
    const credit = await new CustomerCreditRepository(this.dataSource.manager).findCredit(principal.tenantId, locator.customerId, locator.creditId);
    if (!credit) throw creditNotFound(locator);
    return this.view(credit, this.clock());
  }

  async list(principal: Principal, input: CreditListInput): Promise<Page<CreditView>> {
    const { filter, filterKey } = validateCreditListInput(input);
    const repo = new CustomerCreditRepository(this.dataSource.manager);
    // One instant for the filter and the states shown.
    const now = this.clock();
    const page = await this.pager.page(principal.tenantId, filterKey, input, (beforeSeq, limit) =>
      repo.listCredits(principal.tenantId, filter, now, beforeSeq, limit),
    );
    return { items: page.items.map((credit) => this.view(credit, now)), nextPageToken: page.nextPageToken };
  }

  /** Revokes a never-redeemed credit under its row lock; the row stays, with revoke_time. */
  async revoke(principal: Principal, input: CreditLocatorInput, run: WorkRunner): Promise<CreditView> {
    const locator = validateCreditLocator(input);
    return run.transaction(
      async (manager) => {
        const repo = new CustomerCreditRepository(manager);
        const credit = await repo.findCredit(principal.tenantId, locator.customerId, locator.creditId, true);
        if (!credit) throw creditNotFound(locator);
        const refusal = revokeRefusal(credit);
        if (refusal) throw creditRefusalError(refusal);
        return this.view(await repo.revoke(credit), this.clock());
      },
    );
  }

  /**
   * Uses one use of a credit in one transaction: locks the credit row, checks
   * it, then records the coupon redemption (which locks the coupon row: the
   * lock order is always credit, then coupon) and counts the use.
   */
  async redeem(principal: Principal, input: RedeemCreditInput, run: WorkRunner): Promise<CreditRedemptionOutcome> {
    const { locator, request } = validateRedeemInput(input, principal);
    return run.transaction(
      async (manager) => {
        const repo = new CustomerCreditRepository(manager);
        const credit = await repo.findCredit(principal.tenantId, locator.customerId, locator.creditId, true);
        if (!credit) throw creditNotFound(locator);
        // Read the time after the lock is granted: a caller that waited for
        // it must not use a credit that expired meanwhile.
        const refusal = redeemRefusal(credit, this.clock());
        if (refusal) throw creditRefusalError(refusal);
        const { redemption } = await redeemCouponInTransaction(
          manager,
          principal.tenantId,
          { id: credit.couponId },
          request,
          principal.keyName,
          this.clock,
        );
        const counted = await repo.countRedemption(credit, redemption.id);
        const revenue =
          counted.revenueAmount === null || counted.revenueCurrencyCode === null
            ? undefined
            : { amount: counted.revenueAmount, currencyCode: counted.revenueCurrencyCode };
        return { credit: this.view(counted, this.clock()), redemption, revenue };
      },
    );
  }

  /**
   * Issues validated drafts from one coupon: the coupon must exist, be usable
   * and outlast every given expiry; then one INSERT writes every credit.
   */
  private async issue(
    principal: Principal,
    couponId: string,
    drafts: CreditDraft[],
    fieldOf: (index: number, field: string) => string,
    run: WorkRunner,
  ): Promise<CreditView[]> {
    const insert = async (): Promise<CreditView[]> => {
      try {
        return await run.transaction(
          async (manager) => {
            const coupon = await findCoupon(manager, principal.tenantId, couponId);
            const now = this.clock();
            const refusal = issueRefusal(coupon, now);
            if (refusal) throw couponRefusalError(refusal, coupon.id, 'No credit can be issued from it.');
            const v = new Violations();
            const rows = drafts.map((draft, i) => ({
              customerId: draft.customerId,
              membershipId: draft.membershipId,
              expireTime: resolveExpireTime(v, fieldOf(i, 'expire_time'), draft.expireTime, coupon.expireTime),
              revenueAmount: draft.revenue?.amount ?? null,
              revenueCurrencyCode: draft.revenue?.currencyCode ?? null,
            }));
            v.throwIfAny();
            const credits = await new CustomerCreditRepository(manager).insertCredits(principal.tenantId, coupon.id, usesFromFrequency(coupon), rows);
            return credits.map((credit) => this.view(credit, now));
          },
        );
      } catch (err) {
        // The coupon was deleted between the read and the insert.
        if (isForeignKeyViolation(err, CREDITS_COUPON_FOREIGN_KEY)) throw couponNotFound({ id: couponId });
        throw err;
      }
    };
    // A call inside a caller's transaction already holds a pooled connection:
    // it must not wait for permits held by calls that still need one.
    return run.standalone ? this.issuing.use(drafts.length, insert) : insert();
  }

  private view(credit: CustomerCreditEntity, now: Date): CreditView {
    return { credit, state: creditState(credit, now) };
  }
}

async function findCoupon(manager: EntityManager, tenantId: string, couponId: string): Promise<CouponEntity> {
  const coupon = await new CouponRepository(manager).findCoupon(tenantId, { id: couponId });
  if (!coupon) throw couponNotFound({ id: couponId });
  return coupon;
}

function creditNotFound(locator: CreditLocator): DomainError {
  return new DomainError(ErrorReason.CreditNotFound, `Customer ${locator.customerId} has no credit ${locator.creditId}.`, [], {
    customer_id: locator.customerId,
    credit_id: locator.creditId,
  });
}

function creditRefusalError(refusal: CreditRefusal): DomainError {
  return new DomainError(refusal.reason, refusal.message, [], refusal.metadata);
}
