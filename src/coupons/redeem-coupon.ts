import { randomUUID } from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { DomainError, ErrorReason } from '../common/domain-error';
import { uuidV7 } from '../common/uuid-v7';
import type { SharedWork } from '../db/unit-of-work';
import { CouponRedemptionEntity } from './coupon-redemption.entity';
import { couponRefusalOf, type RedemptionRequest, type RefusalReason } from './coupon-redemption.rules';
import type { CouponEntity } from './coupon.entity';
import { couponNotFound, couponRefusalError } from './coupon.errors';
import { couponOfRedeemRow, CouponRepository, type CouponLocator, type RedeemRequestJson, type RedeemRow } from './coupon.repository';

export interface RedemptionOutcome {
  /** The coupon after the redemption. */
  coupon: CouponEntity;
  redemption: CouponRedemptionEntity;
}

/**
 * One redemption to decide and record: of a coupon by code (RedeemCoupon) or
 * of the coupon of a customer's credit (RedeemCustomerCredit, `creditId`).
 */
export interface RedemptionItem {
  tenantId: string;
  target: { code: string } | { creditId: string };
  request: RedemptionRequest;
  doneBy: string;
  /** Decide and answer, write nothing. */
  validateOnly: boolean;
}

/**
 * What coupon_redeem answered for an item: the redemption with the coupon
 * (and the row, for the credit's columns), or the reason it was refused,
 * nothing written.
 */
export type RedemptionResult =
  | { redemption: CouponRedemptionEntity; coupon: CouponEntity; row: RedeemRow }
  | { refused: string; coupon: CouponEntity | undefined; row: RedeemRow };

/**
 * Redemptions, many in one statement (coupon_redeem, sql/coupon-redeem.sql):
 * keyless calls are group-committed (a group that fails is split, each call
 * runs again alone), keyed calls share their transaction's statement. Items
 * of several tenants go out as one statement per tenant, tenants in id
 * order, in ONE transaction: one by one, each would commit at once, and a
 * group failing at a later tenant's statement (a deadlock, a canceled
 * statement, a value PostgreSQL refuses) would run the earlier tenants'
 * items again when retried or split, redeeming them twice. In id order, two
 * such groups lock their tenants' coupons in the same order.
 */
export const REDEMPTIONS: SharedWork<RedemptionItem, RedemptionResult> = {
  async runAll(manager, items) {
    const results = new Array<RedemptionResult>(items.length);
    const tenants = new Map<string, number[]>();
    items.forEach((item, i) => {
      const indexes = tenants.get(item.tenantId);
      if (indexes) indexes.push(i);
      else tenants.set(item.tenantId, [i]);
    });
    const redeemAll = async (m: EntityManager) => {
      const repo = new CouponRepository(m);
      for (const tenantId of [...tenants.keys()].sort()) {
        const indexes = tenants.get(tenantId)!;
        const rows = await repo.redeem(
          tenantId,
          indexes.map((i) => requestJson(items[i]!)),
        );
        for (const row of rows) {
          const index = indexes[row.item - 1]!;
          results[index] = resultOf(items[index]!, row);
        }
      }
    };
    // A caller's transaction (keyed calls) already makes them one.
    if (tenants.size > 1 && !manager.queryRunner?.isTransactionActive) await manager.transaction(redeemAll);
    else await redeemAll(manager);
    return results;
  },
  wrote: (result) => 'redemption' in result && result.redemption.id !== '',
};

/**
 * coupon_redeem's refusal of a hold_until that was in the future when the
 * call was checked and had passed once the redemption's locks were held
 * (it waited for a busy coupon): recorded, the hold would be lapsed from
 * the start, yet counted for the requests after it.
 */
export const HOLD_UNTIL_PASSED = 'HOLD_UNTIL_PASSED';

/** VALIDATION_FAILED on hold_until, as if the call had been checked when it was decided. */
export function holdUntilPassed(holdUntil: Date | undefined): DomainError {
  const description = `must be in the future when the redemption is recorded: ${holdUntil?.toISOString()} had passed by then (the call waited for the coupon); hold for longer`;
  return new DomainError(ErrorReason.ValidationFailed, `Invalid request: hold_until ${description}.`, [{ field: 'hold_until', description }]);
}

/** The error a refused RedeemCoupon (or the coupon part of RedeemCustomerCredit) answers. */
export function couponRedemptionError(item: RedemptionItem, locator: CouponLocator, result: Extract<RedemptionResult, { refused: string }>) {
  if (result.refused === HOLD_UNTIL_PASSED) return holdUntilPassed(item.request.holdUntil);
  if (result.refused === ErrorReason.CouponNotFound || result.coupon === undefined) return couponNotFound(locator);
  const customerUses = result.row.customer_uses === null ? 0n : BigInt(result.row.customer_uses);
  const refusal = couponRefusalOf(result.refused as RefusalReason, result.coupon, item.request, item.request.customerId, customerUses);
  return couponRefusalError(refusal, result.coupon.id);
}

function requestJson(item: RedemptionItem): RedeemRequestJson {
  const { request } = item;
  // One literal (JSON.stringify leaves out the undefined one of code and
  // credit_id): `{ ...(…), customer_id, … }` cost ~3 µs a redemption on Node 20.
  return {
    code: 'code' in item.target ? item.target.code : undefined,
    credit_id: 'creditId' in item.target ? item.target.creditId : undefined,
    customer_id: request.customerId,
    plan_id: request.planId ?? null,
    product_id: request.productId ?? null,
    amount: request.amount?.amount.toString() ?? null,
    currency_code: request.amount?.currencyCode ?? null,
    hold_until: request.holdUntil?.toISOString() ?? null,
    metadata: request.metadata,
    done_by: item.doneBy,
    validate_only: item.validateOnly,
    // No `event`: REDEMPTION_CREATED is stored by reference to the redemption (see the SQL).
    // Ids are made here, not by the statement (see the SQL); a refused request's go unused.
    id: item.validateOnly ? null : uuidV7(),
    event_id: item.validateOnly ? null : randomUUID(),
  };
}

function resultOf(item: RedemptionItem, row: RedeemRow): RedemptionResult {
  const coupon = row.c_id === null ? undefined : couponOfRedeemRow(item.tenantId, row);
  if (row.reason !== null) return { refused: row.reason, coupon, row };
  const redemption = redemptionOf(item, {
    id: row.redemption_id ?? '',
    seq: row.redemption_seq === null ? 0n : BigInt(row.redemption_seq),
    couponId: coupon!.id,
    discount: row.discount === null ? null : BigInt(row.discount),
    createTime: row.redemption_time!,
  });
  return { redemption, coupon: coupon!, row };
}

/** The redemption an item records, with what the statement made. */
function redemptionOf(
  item: RedemptionItem,
  made: { id: string; seq?: bigint; couponId: string; discount: bigint | null; createTime: Date },
): CouponRedemptionEntity {
  const { request } = item;
  const redemption: CouponRedemptionEntity = {
    id: made.id,
    seq: made.seq ?? 0n,
    tenantId: item.tenantId,
    couponId: made.couponId,
    customerId: request.customerId,
    planId: request.planId ?? null,
    productId: request.productId ?? null,
    amount: request.amount?.amount ?? null,
    discount: made.discount,
    currencyCode: request.amount?.currencyCode ?? null,
    doneBy: item.doneBy,
    createTime: made.createTime,
    holdUntil: request.holdUntil ?? null,
    metadata: request.metadata,
    customerCreditId: 'creditId' in item.target ? item.target.creditId : null,
    status: request.holdUntil === undefined ? 'CONFIRMED' : 'HELD',
    updateTime: made.createTime,
  };
  return Object.assign(new CouponRedemptionEntity(), redemption);
}
