import type { EntityManager } from 'typeorm';
import { likePrefix } from '../common/list-filters';
import { isForeignKeyViolation } from '../db/db-errors';
import { preparedQuery } from '../db/prepared-query';
import type { CouponListFilter, RedemptionListFilter } from './coupon-list.rules';
import type { CouponTerms } from './coupon.rules';
import { CouponRedemptionEntity } from './coupon-redemption.entity';
import { CouponEntity } from './coupon.entity';

/** How a coupon is named: by id, or by code (matched ignoring case). */
export type CouponLocator = { id: string } | { code: string };

/** The unique index that makes codes unique per tenant ignoring case. */
export const CODE_UNIQUE_INDEX = 'coupons_tenant_code';

/**
 * The foreign key from customer credits to their coupon
 * (src/db/migrations/1763950000000-customer-credits.ts): it keeps a coupon
 * with credits from being deleted, and a credit from outliving its coupon.
 */
export const CREDITS_COUPON_FOREIGN_KEY = 'customer_credits_coupon';

export interface RedemptionDraft {
  tenantId: string;
  couponId: string;
  customerId: string;
  planId: string | null;
  productId: string | null;
  amount: bigint | null;
  discount: bigint | null;
  currencyCode: string | null;
  doneBy: string;
}

export class CouponRepository {
  constructor(private readonly manager: EntityManager) {}

  /** Inserts a coupon; throws a unique violation on CODE_UNIQUE_INDEX when the code is taken. */
  async insertCoupon(tenantId: string, terms: CouponTerms): Promise<CouponEntity> {
    const inserted = await this.manager
      .createQueryBuilder()
      .insert()
      .into(CouponEntity)
      .values({ ...terms, tenantId })
      .returning('id, seq, create_time, update_time')
      .execute();
    const row = inserted.raw[0] as { id: string; seq: string; create_time: Date; update_time: Date };
    return Object.assign(new CouponEntity(), {
      ...terms,
      tenantId,
      id: row.id,
      seq: BigInt(row.seq),
      redemptionCount: 0n,
      createTime: row.create_time,
      updateTime: row.update_time,
    });
  }

  /**
   * Reads a coupon of the tenant; with `lock`, takes its row lock (SELECT …
   * FOR UPDATE, no joins) until the transaction ends, which must be open.
   */
  async findCoupon(tenantId: string, locator: CouponLocator, lock = false): Promise<CouponEntity | undefined> {
    const q = this.manager.getRepository(CouponEntity).createQueryBuilder('c').where('c.tenant_id = :tenantId', { tenantId });
    if ('id' in locator) q.andWhere('c.id = :id', { id: locator.id });
    else q.andWhere('lower(c.code) = lower(:code)', { code: locator.code });
    if (lock) q.setLock('pessimistic_write');
    return (await q.getOne()) ?? undefined;
  }

  /** Replaces the writable fields of a coupon the caller has locked; answers it as stored. */
  async updateCoupon(coupon: CouponEntity, terms: CouponTerms): Promise<CouponEntity> {
    const updated = await this.manager
      .createQueryBuilder()
      .update(CouponEntity)
      .set({ ...terms, updateTime: () => 'clock_timestamp()' })
      .where({ tenantId: coupon.tenantId, id: coupon.id })
      .returning('update_time')
      .execute();
    const row = (updated.raw as Array<{ update_time: Date }>)[0]!;
    return Object.assign(new CouponEntity(), { ...coupon, ...terms, updateTime: row.update_time });
  }

  /**
   * Deletes a coupon unless it has been redeemed or customer credits were
   * issued from it, in one statement: a redemption holding the row lock makes
   * the DELETE wait and then see the new count, so a coupon is never deleted
   * under a redemption; a credit issued meanwhile (not yet visible to the
   * statement) makes the credits' foreign key refuse the DELETE.
   */
  async deleteUnused(tenantId: string, id: string): Promise<'deleted' | 'redeemed' | 'has-credits' | 'missing'> {
    let rows: Array<{ found: string; deleted: string; redeemed: boolean; has_credits: boolean }>;
    try {
      rows = await this.manager.query(
        `WITH target AS (
           SELECT id, redemption_count FROM coupons WHERE tenant_id = $1 AND id = $2
         ), credits AS (
           SELECT EXISTS (SELECT 1 FROM customer_credits WHERE tenant_id = $1 AND coupon_id = $2) AS present
         ), deleted AS (
           DELETE FROM coupons WHERE tenant_id = $1 AND id = $2 AND redemption_count = 0 AND NOT (SELECT present FROM credits) RETURNING id
         )
         SELECT (SELECT count(*) FROM target) AS found, (SELECT count(*) FROM deleted) AS deleted,
                coalesce((SELECT redemption_count > 0 FROM target), false) AS redeemed, (SELECT present FROM credits) AS has_credits`,
        [tenantId, id],
      );
    } catch (err) {
      if (isForeignKeyViolation(err, CREDITS_COUPON_FOREIGN_KEY)) return 'has-credits';
      throw err;
    }
    const { found, deleted, redeemed, has_credits } = rows[0]!;
    if (deleted !== '0') return 'deleted';
    if (found === '0') return 'missing';
    // Not deleted though found: redeemed, maybe by a redemption that committed while the DELETE waited.
    return has_credits && !redeemed ? 'has-credits' : 'redeemed';
  }

  /** One page of coupons, newest first, strictly before the `beforeSeq` cursor; asks for `limit` rows. */
  async listCoupons(tenantId: string, filter: CouponListFilter, beforeSeq: bigint | undefined, limit: number): Promise<CouponEntity[]> {
    const q = this.manager.getRepository(CouponEntity).createQueryBuilder('c').where('c.tenant_id = :tenantId', { tenantId });
    if (beforeSeq !== undefined) q.andWhere('c.seq < :beforeSeq', { beforeSeq: beforeSeq.toString() });
    if (filter.enabled !== undefined) q.andWhere('c.enabled = :enabled', { enabled: filter.enabled });
    if (filter.codePrefix !== undefined) {
      q.andWhere(`lower(c.code) LIKE :codePrefix ESCAPE '\\'`, { codePrefix: likePrefix(filter.codePrefix) });
    }
    return q.orderBy('c.seq', 'DESC').limit(limit).getMany();
  }

  /** How often a customer has redeemed a coupon. Exact only while the coupon row is locked. */
  async countCustomerRedemptions(tenantId: string, couponId: string, customerId: string): Promise<bigint> {
    const rows: Array<{ n: string }> = await this.manager.query(
      `SELECT count(*) AS n FROM coupon_redemptions WHERE tenant_id = $1 AND coupon_id = $2 AND customer_id = $3`,
      [tenantId, couponId, customerId],
    );
    return BigInt(rows[0]!.n);
  }

  /**
   * Records a redemption and counts it on the coupon in ONE statement; the
   * caller holds the coupon's row lock, which this keeps for one round trip
   * rather than two.
   */
  async insertRedemption(draft: RedemptionDraft): Promise<{ redemption: CouponRedemptionEntity; redemptionCount: bigint }> {
    const { rows } = await preparedQuery<{ id: string; seq: string; create_time: Date; redemption_count: string }>(
      this.manager,
      'coupon_redemption_insert',
      `WITH inserted AS (
         INSERT INTO coupon_redemptions (tenant_id, coupon_id, customer_id, plan_id, product_id, amount, discount, currency_code, done_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING id, seq, create_time
       ), counted AS (
         UPDATE coupons SET redemption_count = redemption_count + 1 WHERE tenant_id = $1 AND id = $2 RETURNING redemption_count
       )
       SELECT i.id, i.seq, i.create_time, c.redemption_count FROM inserted i, counted c`,
      [
        draft.tenantId,
        draft.couponId,
        draft.customerId,
        draft.planId,
        draft.productId,
        draft.amount?.toString() ?? null,
        draft.discount?.toString() ?? null,
        draft.currencyCode,
        draft.doneBy,
      ],
    );
    const row = rows[0]!;
    const redemption: CouponRedemptionEntity = {
      id: row.id,
      seq: BigInt(row.seq),
      tenantId: draft.tenantId,
      couponId: draft.couponId,
      customerId: draft.customerId,
      planId: draft.planId,
      productId: draft.productId,
      amount: draft.amount,
      discount: draft.discount,
      currencyCode: draft.currencyCode,
      doneBy: draft.doneBy,
      createTime: row.create_time,
    };
    return { redemption: Object.assign(new CouponRedemptionEntity(), redemption), redemptionCount: BigInt(row.redemption_count) };
  }

  /** One page of redemptions, newest first, strictly before the `beforeSeq` cursor. */
  async listRedemptions(
    tenantId: string,
    filter: RedemptionListFilter,
    beforeSeq: bigint | undefined,
    limit: number,
  ): Promise<CouponRedemptionEntity[]> {
    const q = this.manager.getRepository(CouponRedemptionEntity).createQueryBuilder('r').where('r.tenant_id = :tenantId', { tenantId });
    if (beforeSeq !== undefined) q.andWhere('r.seq < :beforeSeq', { beforeSeq: beforeSeq.toString() });
    if (filter.couponId !== undefined) q.andWhere('r.coupon_id = :couponId', { couponId: filter.couponId });
    if (filter.customerId !== undefined) q.andWhere('r.customer_id = :customerId', { customerId: filter.customerId });
    return q.orderBy('r.seq', 'DESC').limit(limit).getMany();
  }
}
