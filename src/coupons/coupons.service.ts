import type { DataSource } from 'typeorm';
import { systemClock, type Clock } from '../common/clock';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import { checkMetadata, type Metadata } from '../common/metadata';
import type { PageTokenCodec } from '../common/page-token';
import { Pager, type Page } from '../common/pager';
import { checkUuid } from '../common/text';
import { databaseNow } from '../db/database-clock';
import { isUniqueViolation } from '../db/db-errors';
import { inTransaction } from '../db/transaction';
import type { WorkRunner } from '../db/unit-of-work';
import { appendEvents } from '../events/outbox';
import type { Money } from '../money/money';
import type { Principal } from '../tenants/principal';
import { CustomerCreditRepository } from '../credits/customer-credit.repository';
import { couponEvent, redemptionEvent, type CouponEventSnapshots } from './coupon-events';
import {
  validateCouponListInput,
  validateRedemptionListInput,
  type CouponListInput,
  type RedemptionListInput,
} from './coupon-list.rules';
import type { CouponRedemptionEntity } from './coupon-redemption.entity';
import { computeDiscount, couponRefusal, customerLimitRefusal, validateRedemptionInput, type Refusal, type RedemptionInput } from './coupon-redemption.rules';
import type { CouponEntity } from './coupon.entity';
import { couponNotFound } from './coupon.errors';
import { CODE_UNIQUE_INDEX, CouponRepository, LAPSE_LOCK_TIMEOUT_MS, type CouponLocator } from './coupon.repository';
import { changedFields, checkCode, validateCouponTerms, type CouponTermsInput } from './coupon.rules';
import { couponRedemptionError, REDEMPTIONS, type RedemptionItem, type RedemptionOutcome } from './redeem-coupon';
import { lapsedAt, transitionRefusal, type RedemptionTransition } from './redemption-status.rules';
import { runOrRehearse } from './validate-only';

export interface ValidationOutcome {
  coupon: CouponEntity;
  /** Why RedeemCoupon would be refused; undefined when it would succeed. */
  refusal: Refusal | undefined;
  /** Set when valid and an amount was given. */
  discount: Money | undefined;
}

/** What Create and Update take besides the terms. */
export interface CouponWriteInput extends CouponTermsInput {
  metadata: Record<string, string>;
  validateOnly: boolean;
}

/** A mutating call on one existing resource, by id. */
export interface ByIdInput {
  id: string;
  validateOnly: boolean;
}

/** Use cases of coupons and their redemptions. */
export class CouponsService {
  private readonly pager = new Pager(this.pageTokens);

  constructor(
    private readonly dataSource: DataSource,
    private readonly pageTokens: PageTokenCodec,
    private readonly clock: Clock = systemClock,
  ) {}

  async create(principal: Principal, input: CouponWriteInput, run: WorkRunner, snapshots: CouponEventSnapshots): Promise<CouponEntity> {
    const v = new Violations();
    const metadata = checkMetadata(v, 'metadata', input.metadata);
    const terms = validateCouponTerms(v, input, principal, this.clock());
    const coupon = await withCodeUniqueness(terms.code, () =>
      runOrRehearse(run, input.validateOnly, async (manager) => {
        const created = await new CouponRepository(manager).insertCoupon(principal.tenantId, terms, metadata);
        await appendEvents(manager, [couponEvent('COUPON_CREATED', created, snapshots)]);
        return created;
      }),
    );
    return input.validateOnly ? Object.assign(coupon, { id: '' }) : coupon;
  }

  async get(principal: Principal, lookup: { id?: string; code?: string }): Promise<CouponEntity> {
    const locator = checkLocator(lookup);
    const coupon = await new CouponRepository(this.dataSource.manager).findCoupon(principal.tenantId, locator, this.clock());
    if (!coupon) throw couponNotFound(locator);
    return coupon;
  }

  async list(principal: Principal, input: CouponListInput): Promise<Page<CouponEntity>> {
    const { filter, filterKey } = validateCouponListInput(input);
    const repo = new CouponRepository(this.dataSource.manager);
    const now = this.clock();
    return this.pager.page(principal.tenantId, filterKey, input, (beforeSeq, limit) => repo.listCoupons(principal.tenantId, filter, beforeSeq, limit, now));
  }

  /**
   * Replaces every writable field and the metadata under the coupon's row
   * lock. A redeemed coupon accepts only a change of `enabled` and
   * `metadata`; an unchanged request writes nothing (and no event).
   */
  async update(principal: Principal, id: string, input: CouponWriteInput, run: WorkRunner, snapshots: CouponEventSnapshots): Promise<CouponEntity> {
    const v = new Violations();
    const couponId = checkUuid(v, 'id', id);
    const idIsValid = !v.any;
    const metadata = checkMetadata(v, 'metadata', input.metadata);
    const now = this.clock();
    // The "expire_time in the future" rule needs the stored value (a passed
    // expiry left as it is is fine), so the fields are checked against the
    // locked row, every bad one at once (checked before it, a bad name hid
    // a passed expiry until fixed), and before the coupon's absence; a
    // request whose id names no coupon is answered without reading.
    if (!idIsValid) validateCouponTerms(v, input, principal, now, null);
    return withCodeUniqueness(input.code, () =>
      runOrRehearse(run, input.validateOnly, async (manager) => {
        const repo = new CouponRepository(manager);
        const current = await repo.lockCoupon(principal.tenantId, { id: couponId });
        const terms = validateCouponTerms(v, input, principal, now, current?.expireTime ?? null);
        if (!current) throw couponNotFound({ id: couponId });
        // The database's clock, read once the lock is held: the one lapses are judged by.
        const at = await databaseNow(manager);
        await repo.withUses(principal.tenantId, [current], at);
        const changed = changedFields(current, terms);
        const frozen = changed.filter((field) => field !== 'enabled');
        if (current.redeemed && frozen.length > 0) {
          throw new DomainError(
            ErrorReason.CouponRedeemed,
            `Coupon ${current.code} has been redeemed, so only enabled and metadata may change; this request also changes ${frozen.join(', ')}.`,
            [],
            { coupon_id: current.id, changed_fields: frozen.join(',') },
          );
        }
        if (changed.length === 0 && sameMetadata(current.metadata, metadata)) return current;
        const updated = await repo.updateCoupon(current, terms, metadata);
        // Its redemption_count leaves out the holds lapsed by `at`: their REDEMPTION_CANCELED first.
        await repo.recordLapses(principal.tenantId, [current.id], at);
        await appendEvents(manager, [couponEvent('COUPON_UPDATED', updated, snapshots)]);
        return updated;
      }),
    );
  }

  /** Deletes a never-redeemed coupon without credits under its row lock, with its COUPON_DELETED event. */
  async delete(principal: Principal, input: ByIdInput, run: WorkRunner, snapshots: CouponEventSnapshots): Promise<void> {
    const v = new Violations();
    const couponId = checkUuid(v, 'id', input.id);
    v.throwIfAny();
    await runOrRehearse(run, input.validateOnly, async (manager) => {
      const repo = new CouponRepository(manager);
      const coupon = await repo.lockCoupon(principal.tenantId, { id: couponId });
      if (!coupon) throw couponNotFound({ id: couponId });
      if (coupon.redeemed) {
        throw new DomainError(
          ErrorReason.CouponRedeemed,
          `Coupon ${couponId} has been redeemed and cannot be deleted; disable it with UpdateCoupon instead.`,
          [],
          { coupon_id: couponId },
        );
      }
      if ((await repo.deleteUnredeemed(principal.tenantId, couponId)) === 'has-credits') {
        throw new DomainError(
          ErrorReason.CouponHasCredits,
          `Customer credits were issued from coupon ${couponId}, so it cannot be deleted; disable it with UpdateCoupon instead.`,
          [],
          { coupon_id: couponId },
        );
      }
      // Never redeemed: no use counts.
      await appendEvents(manager, [couponEvent('COUPON_DELETED', coupon, snapshots)]);
    });
  }

  /**
   * The redemption's checks and discount, without a lock and without
   * writing: the rules of coupon-redemption.rules.ts on the coupon and the
   * counts read now. RedeemCoupon's are coupon_redeem's, under the lock
   * (test/coupons/rules-agree.test.ts holds them to the same answers).
   */
  async validate(principal: Principal, input: RedemptionInput): Promise<ValidationOutcome> {
    const now = this.clock();
    const { code, request } = validateRedemptionInput(input, principal, now);
    const repo = new CouponRepository(this.dataSource.manager);
    const coupon = await repo.findCoupon(principal.tenantId, { code }, now);
    if (!coupon) throw couponNotFound({ code });
    let refusal = couponRefusal(coupon, request, now);
    if (refusal === undefined && coupon.maxRedemptionsPerCustomer !== null) {
      const uses = await repo.countCustomerUses(principal.tenantId, coupon.id, request.customerId, now);
      refusal = customerLimitRefusal(coupon, request.customerId, uses);
    }
    const discount =
      refusal === undefined && request.amount !== undefined
        ? { amount: computeDiscount(coupon, request.amount.amount), currencyCode: request.amount.currencyCode }
        : undefined;
    return { coupon, refusal, discount };
  }

  /**
   * Records a redemption (HELD with hold_until, else CONFIRMED) with its
   * event, or refuses it, in one statement shared with the redemptions other
   * calls submit meanwhile (REDEMPTIONS: coupon_redeem decides every check
   * under the coupon's row lock). validate_only decides and answers the same
   * way and writes nothing.
   */
  async redeem(
    principal: Principal,
    input: RedemptionInput & { validateOnly: boolean },
    run: WorkRunner,
  ): Promise<RedemptionOutcome> {
    const { code, request } = validateRedemptionInput(input, principal, this.clock());
    const item: RedemptionItem = { tenantId: principal.tenantId, target: { code }, request, doneBy: principal.keyName, validateOnly: input.validateOnly };
    const result = await run.submit(REDEMPTIONS, item);
    if ('refused' in result) throw couponRedemptionError(item, { code }, result);
    return { coupon: result.coupon, redemption: result.redemption };
  }

  /** ConfirmCouponRedemption: HELD → CONFIRMED. */
  confirm(principal: Principal, input: ByIdInput, run: WorkRunner, snapshots: CouponEventSnapshots): Promise<RedemptionOutcome> {
    return this.transition(principal, input, 'CONFIRM', run, snapshots);
  }

  /** CancelCouponRedemption: HELD or CONFIRMED → CANCELED, giving the use back. */
  cancel(principal: Principal, input: ByIdInput, run: WorkRunner, snapshots: CouponEventSnapshots): Promise<RedemptionOutcome> {
    return this.transition(principal, input, 'CANCEL', run, snapshots);
  }

  /**
   * Moves a redemption on, under the locks every redemption takes, in their
   * order: its credit's row (a credit's redemption), then its coupon's. Its
   * status is read again once both are held, at an instant read after them
   * from the database's clock (the one coupon_redeem and the lapse sweep
   * judge lapses by), so a transition never races another, nor a hold's
   * lapse, whatever this server's clock says. Confirming
   * counts the use as confirmed on the coupon (and the credit); canceling a
   * confirmed one takes it off again; a held one's use stops counting with
   * its status. Each writes its event.
   */
  private async transition(
    principal: Principal,
    input: ByIdInput,
    transition: RedemptionTransition,
    run: WorkRunner,
    snapshots: CouponEventSnapshots,
  ): Promise<RedemptionOutcome> {
    const v = new Violations();
    const redemptionId = checkUuid(v, 'redemption_id', input.id);
    v.throwIfAny();
    const tenantId = principal.tenantId;
    return runOrRehearse(run, input.validateOnly, async (manager) => {
      const repo = new CouponRepository(manager);
      const credits = new CustomerCreditRepository(manager);
      const found = await repo.findRedemption(tenantId, redemptionId, this.clock());
      if (!found) throw redemptionNotFound(redemptionId);
      if (found.customerCreditId !== null) await credits.lockCreditById(tenantId, found.customerCreditId);
      await repo.lockCoupon(tenantId, { id: found.couponId });
      const now = await databaseNow(manager);
      const current = (await repo.findRedemption(tenantId, redemptionId, now))!;
      const refusal = transitionRefusal(redemptionId, current.status, transition, lapsedAt(current));
      if (refusal) throw refusal;
      const status = transition === 'CONFIRM' ? 'CONFIRMED' : 'CANCELED';
      const confirmedDelta = transition === 'CONFIRM' ? 1 : current.status === 'CONFIRMED' ? -1 : 0;
      const updateTime = await repo.setRedemptionStatus(current, status, confirmedDelta);
      if (current.customerCreditId !== null && confirmedDelta !== 0) {
        await credits.addConfirmedUses(tenantId, current.customerCreditId, confirmedDelta);
      }
      const redemption: CouponRedemptionEntity = Object.assign(current, { status, updateTime });
      await appendEvents(manager, [redemptionEvent(transition === 'CONFIRM' ? 'REDEMPTION_CONFIRMED' : 'REDEMPTION_CANCELED', redemption, snapshots)]);
      const coupon = (await repo.findCoupon(tenantId, { id: current.couponId }, now))!;
      return { redemption, coupon };
    });
  }

  /**
   * Records the lapse of held redemptions whose hold_until has passed (the
   * background sweep, run by every replica's expiry timer): each becomes
   * CANCELED for good, as of its hold_until, with the REDEMPTION_CANCELED
   * event CancelCouponRedemption writes (the redemption as it now reads), in
   * one transaction per `batch`; at most `maxPerRun` per call, the rest is
   * left to the next. Readers never waited for this: a lapsed hold read
   * CANCELED and stopped counting from its hold_until on. A redemption or
   * an update of the coupon (or a revoke of a credit of it) that comes
   * first records them itself, before its own event, with the same payload
   * rendered in SQL (coupon_record_lapses in sql/coupon-redeem.sql).
   * Answers how many it recorded.
   */
  async recordLapsedHolds(
    snapshots: CouponEventSnapshots,
    { batch = 500, maxPerRun = 5000, lockTimeoutMs = LAPSE_LOCK_TIMEOUT_MS, signal }: { batch?: number; maxPerRun?: number; lockTimeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<number> {
    let recorded = 0;
    // Coupons that stayed locked (see cancelLapsedHolds): the later batches of this run pass them by.
    const skipped: string[] = [];
    while (recorded < maxPerRun && !signal?.aborted) {
      const limit = Math.min(batch, maxPerRun - recorded);
      const outcome = await inTransaction(this.dataSource, async (manager) => {
        const lapsed = await new CouponRepository(manager).cancelLapsedHolds(limit, lockTimeoutMs, skipped);
        await appendEvents(manager, lapsed.canceled.map((redemption) => redemptionEvent('REDEMPTION_CANCELED', redemption, snapshots)));
        return lapsed;
      });
      recorded += outcome.canceled.length;
      skipped.push(...outcome.skipped);
      // Fewer due than asked: none left. Nothing recorded and nothing passed by: another process took them and goes on with them.
      if (outcome.due < limit || (outcome.canceled.length === 0 && outcome.skipped.length === 0)) break;
    }
    return recorded;
  }

  async listRedemptions(principal: Principal, input: RedemptionListInput): Promise<Page<CouponRedemptionEntity>> {
    const { filter, filterKey } = validateRedemptionListInput(input);
    const repo = new CouponRepository(this.dataSource.manager);
    const now = this.clock();
    return this.pager.page(principal.tenantId, filterKey, input, async (beforeSeq, limit) => {
      // After the token is read: a bad token is INVALID_ARGUMENT whatever the coupon.
      if (filter.couponId !== undefined && !(await repo.findCoupon(principal.tenantId, { id: filter.couponId }, now))) {
        throw couponNotFound({ id: filter.couponId });
      }
      return repo.listRedemptions(principal.tenantId, filter, beforeSeq, limit, now);
    });
  }
}

function redemptionNotFound(redemptionId: string): DomainError {
  return new DomainError(ErrorReason.RedemptionNotFound, `Redemption ${redemptionId} does not exist.`, [], { redemption_id: redemptionId });
}

function sameMetadata(a: Metadata, b: Metadata): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && b[key] === a[key]);
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
