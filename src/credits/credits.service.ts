import type { DataSource, EntityManager } from 'typeorm';
import { systemClock, type Clock } from '../common/clock';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import { Semaphore } from '../common/semaphore';
import type { PageTokenCodec } from '../common/page-token';
import { Pager, type Page } from '../common/pager';
import { databaseNow } from '../db/database-clock';
import { isForeignKeyViolation } from '../db/db-errors';
import type { WorkRunner } from '../db/unit-of-work';
import type { CouponRedemptionEntity } from '../coupons/coupon-redemption.entity';
import type { CouponEntity } from '../coupons/coupon.entity';
import { isExpired } from '../coupons/coupon-redemption.rules';
import { couponNotFound, couponRefusalError } from '../coupons/coupon.errors';
import { CouponRepository, CREDITS_COUPON_FOREIGN_KEY } from '../coupons/coupon.repository';
import type { CouponEventSnapshots } from '../coupons/coupon-events';
import { couponRedemptionError, HOLD_UNTIL_PASSED, holdUntilPassed, REDEMPTIONS, type RedemptionItem } from '../coupons/redeem-coupon';
import { runOrRehearse } from '../coupons/validate-only';
import { appendEvents, type OutboxEvent } from '../events/outbox';
import type { Money } from '../money/money';
import type { Principal } from '../tenants/principal';
import { validateCreditListInput, type CreditListInput } from './credit-list.rules';
import {
  creditState,
  issueRefusal,
  creditRefusalOf,
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
import { creditOfRedeemRow, CustomerCreditRepository } from './customer-credit.repository';

/** A credit with its state at the instant the use case looked at it. */
export interface CreditView {
  credit: CustomerCreditEntity;
  state: CreditState;
}

/** How credits (and the redemptions they record) become event payloads: see CouponEventSnapshots. */
export interface CreditEventSnapshots extends CouponEventSnapshots {
  customerCredit(credit: CreditView): unknown;
}

function creditEvent(type: 'CUSTOMER_CREDIT_CREATED' | 'CUSTOMER_CREDIT_REVOKED', view: CreditView, snapshots: CreditEventSnapshots): OutboxEvent {
  return {
    tenantId: view.credit.tenantId,
    type,
    customerId: view.credit.customerId,
    payload: { kind: 'customer_credit', json: snapshots.customerCredit(view) },
  };
}

export interface CreditRedemptionOutcome {
  /** The credit after this use. */
  credit: CreditView;
  redemption: CouponRedemptionEntity;
  /** The revenue allocated to this redemption; undefined when the credit has none. */
  revenue: Money | undefined;
}

/**
 * Credits that standalone issue calls may be inserting at once: two full
 * batches, enough to keep PostgreSQL busy. Without it 64 batches of 500 in
 * flight took every pooled connection from the other calls, and ~15 MB more
 * memory. Measured (bench batch-credits, 64 calls of 500 in flight, three
 * alternating pairs): 1,000 issues as many credits/s as 2,000 (38.7 and 39
 * calls/s) with a peak RSS of 197-200 MB against 201-208 MB. A call waiting
 * here holds no connection.
 */
const ISSUING_CREDITS_AT_ONCE = 1_000;

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
  async create(
    principal: Principal,
    input: { couponId: string; validateOnly: boolean } & CreditDraftInput,
    run: WorkRunner,
    snapshots: CreditEventSnapshots,
  ): Promise<CreditView> {
    const now = this.clock();
    const { couponId, drafts, pending } = validateIssueInput({ couponId: input.couponId, drafts: [input] }, principal, now, (_i, field) => field);
    const [credit] = await this.issue(principal, couponId, drafts, pending, (_i, field) => field, { run, snapshots, validateOnly: input.validateOnly });
    return credit!;
  }

  /** BatchCreateCustomerCredits: every entry is validated first, the coupon checked once, all rows inserted in one statement. */
  async batchCreate(
    principal: Principal,
    input: { couponId: string; drafts: CreditDraftInput[]; validateOnly: boolean },
    run: WorkRunner,
    snapshots: CreditEventSnapshots,
  ): Promise<CreditView[]> {
    const now = this.clock();
    const { couponId, drafts, pending } = validateBatchInput(input, principal, now);
    return this.issue(principal, couponId, drafts, pending, (i, field) => `credits[${i}].${field}`, { run, snapshots, validateOnly: input.validateOnly });
  }

  async get(principal: Principal, input: CreditLocatorInput): Promise<CreditView> {
    const locator = validateCreditLocator(input);
    const now = this.clock();
    const credit = await new CustomerCreditRepository(this.dataSource.manager).findCredit(principal.tenantId, locator.customerId, locator.creditId, now);
    if (!credit) throw creditNotFound(locator);
    return this.view(credit, now);
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

  /**
   * Revokes a credit none of whose uses counts, under its row lock; the row
   * stays, with revoke_time. Once it may, its coupon's lock too (credit,
   * then coupon, the order every path takes; a refused revoke never waits
   * for a busy coupon): the coupon's lapsed holds, the credit's among them,
   * are recorded with their REDEMPTION_CANCELED before the
   * CUSTOMER_CREDIT_REVOKED that counts them out (see
   * CouponRepository.recordLapses).
   */
  async revoke(
    principal: Principal,
    input: CreditLocatorInput & { validateOnly: boolean },
    run: WorkRunner,
    snapshots: CreditEventSnapshots,
  ): Promise<CreditView> {
    const locator = validateCreditLocator(input);
    return runOrRehearse(run, input.validateOnly, async (manager) => {
      const repo = new CustomerCreditRepository(manager);
      const credit = await repo.lockCredit(principal.tenantId, locator.customerId, locator.creditId);
      if (!credit) throw creditNotFound(locator);
      // Held uses count until their hold lapses by the database's clock, as
      // Confirm sees it; every writer of the credit's uses holds its lock.
      const now = await databaseNow(manager);
      await repo.withUses(principal.tenantId, [credit], now);
      const refusal = revokeRefusal(credit);
      if (refusal) throw creditRefusalError(refusal);
      // The holds lapsed by `now` are lapsed still: recorded under the coupon's lock, as every writer of its states.
      const coupons = new CouponRepository(manager);
      await coupons.lockCoupon(principal.tenantId, { id: credit.couponId });
      await coupons.recordLapses(principal.tenantId, [credit.couponId], now);
      const revoked = this.view(await repo.revoke(credit), now);
      await appendEvents(manager, [creditEvent('CUSTOMER_CREDIT_REVOKED', revoked, snapshots)]);
      return revoked;
    });
  }

  /**
   * Uses one use of a credit: coupon_redeem (REDEMPTIONS, shared with other
   * calls' redemptions) locks the credit row, then the coupon row, in one
   * statement and one transaction, checks the credit (its uses counted at
   * the instant the locks were held: confirmed ones and unexpired holds),
   * then the coupon, records the coupon redemption (HELD with `hold_until`)
   * and counts the use on both.
   */
  async redeem(
    principal: Principal,
    input: RedeemCreditInput & { validateOnly: boolean },
    run: WorkRunner,
  ): Promise<CreditRedemptionOutcome> {
    const { locator, request } = validateRedeemInput(input, principal, this.clock());
    const item: RedemptionItem = {
      tenantId: principal.tenantId,
      target: { creditId: locator.creditId },
      request,
      doneBy: principal.keyName,
      validateOnly: input.validateOnly,
    };
    const result = await run.submit(REDEMPTIONS, item);
    const credit = result.row.cr_id === null ? undefined : creditOfRedeemRow(principal.tenantId, result.row);
    if ('refused' in result) {
      if (result.refused === HOLD_UNTIL_PASSED) throw holdUntilPassed(request.holdUntil);
      if (result.refused === ErrorReason.CreditNotFound || credit === undefined) throw creditNotFound(locator);
      if (result.refused === ErrorReason.CreditRevoked || result.refused === ErrorReason.CreditAlreadyRedeemed || result.refused === ErrorReason.CreditExpired) {
        throw creditRefusalError(creditRefusalOf(result.refused, credit));
      }
      throw couponRedemptionError(item, { id: credit.couponId }, result);
    }
    const revenue =
      credit!.revenueAmount === null || credit!.revenueCurrencyCode === null ? undefined : { amount: credit!.revenueAmount, currencyCode: credit!.revenueCurrencyCode };
    return { credit: this.view(credit!, this.clock()), redemption: result.redemption, revenue };
  }

  /**
   * Issues validated drafts from one coupon: the coupon must exist, be usable
   * and outlast every given expiry; then one INSERT writes every credit.
   * `pending`: what validation found wrong with the drafts, thrown with the
   * expiries the coupon refuses (every bad field at once), and before the
   * coupon's own refusals (a bad request is answered as such first).
   */
  private async issue(
    principal: Principal,
    couponId: string,
    drafts: CreditDraft[],
    pending: Violations,
    fieldOf: (index: number, field: string) => string,
    { run, snapshots, validateOnly }: { run: WorkRunner; snapshots: CreditEventSnapshots; validateOnly: boolean },
  ): Promise<CreditView[]> {
    const insert = async (): Promise<CreditView[]> => {
      try {
        return await runOrRehearse(run, validateOnly,
          async (manager) => {
            // Whether the coupon has expired, by the database's clock as redemptions judge it (a server whose
            // clock was behind issued credits from a coupon that had expired, which no redemption then accepted).
            const now = await databaseNow(manager);
            const coupon = await findCoupon(manager, principal.tenantId, couponId, now).catch((err: unknown) => {
              pending.throwIfAny();
              throw err;
            });
            // Every bad field (an expiry later than the coupon's included)
            // before the coupon's own refusal: a bad request is answered as
            // such. Not against a coupon that has expired: no expiry could
            // be right, and COUPON_EXPIRED says what to do.
            const couponExpired = isExpired(coupon, now);
            const rows = drafts.map((draft, i) => ({
              customerId: draft.customerId,
              membershipId: draft.membershipId,
              expireTime: couponExpired ? (draft.expireTime ?? null) : resolveExpireTime(pending, fieldOf(i, 'expire_time'), draft.expireTime, coupon.expireTime),
              revenueAmount: draft.revenue?.amount ?? null,
              revenueCurrencyCode: draft.revenue?.currencyCode ?? null,
              metadata: draft.metadata,
            }));
            pending.throwIfAny();
            const refusal = issueRefusal(coupon, now);
            if (refusal) throw couponRefusalError(refusal, coupon.id, 'No credit can be issued from it.');
            const credits = await new CustomerCreditRepository(manager).insertCredits(principal.tenantId, coupon.id, usesFromFrequency(coupon), rows);
            const views = credits.map((credit) => this.view(credit, now));
            await appendEvents(manager, views.map((view) => creditEvent('CUSTOMER_CREDIT_CREATED', view, snapshots)));
            if (validateOnly) for (const view of views) view.credit.id = '';
            return views;
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

async function findCoupon(manager: EntityManager, tenantId: string, couponId: string, now: Date): Promise<CouponEntity> {
  const coupon = await new CouponRepository(manager).findCoupon(tenantId, { id: couponId }, now);
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
