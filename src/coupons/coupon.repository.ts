import type { EntityManager } from 'typeorm';
import { likePrefix } from '../common/list-filters';
import type { Metadata } from '../common/metadata';
import { isForeignKeyViolation, isLockNotAvailable } from '../db/db-errors';
import { preparedQuery } from '../db/prepared-query';
import type { CouponListFilter, RedemptionListFilter } from './coupon-list.rules';
import type { CouponTerms } from './coupon.rules';
import { CouponRedemptionEntity } from './coupon-redemption.entity';
import { CouponEntity } from './coupon.entity';
import { countedSql, redemptionStatusAt, type RedemptionStatus } from './redemption-status.rules';

/** How long the sweep of lapsed holds waits for a coupon's row lock by default (see cancelLapsedHolds). */
export const LAPSE_LOCK_TIMEOUT_MS = 1_000;

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

/** A redemption's row, its credit and its state row, as redemptionRow maps it. */
interface RedemptionRow {
  id: string;
  seq: string;
  tenant_id: string;
  coupon_id: string;
  customer_id: string;
  plan_id: string | null;
  product_id: string | null;
  amount: string | null;
  discount: string | null;
  currency_code: string | null;
  done_by: string;
  create_time: Date;
  hold_until: Date | null;
  metadata: Metadata;
  customer_credit_id: string | null;
  state_status: RedemptionStatus | null;
  state_update_time: Date | null;
}

/** A redemption's row and its credit (RECORDED_COLUMNS), without its state row. */
type RecordedRow = Omit<RedemptionRow, 'state_status' | 'state_update_time'>;

/** A redemption's row and its credit (`r`, `l`): what it was recorded with. */
const RECORDED_COLUMNS = `r.id, r.seq, r.tenant_id, r.coupon_id, r.customer_id, r.plan_id, r.product_id, r.amount, r.discount,
  r.currency_code, r.done_by, r.create_time, r.hold_until, r.metadata, l.credit_id AS customer_credit_id`;
const REDEMPTION_COLUMNS = `${RECORDED_COLUMNS}, s.status AS state_status, s.update_time AS state_update_time`;
const REDEMPTION_FROM = `coupon_redemptions r
  LEFT JOIN customer_credit_redemptions l ON l.redemption_id = r.id
  LEFT JOIN coupon_redemption_states s ON s.redemption_id = r.id`;

/**
 * The FROM of redemptions found by id (`ids`: an array parameter), their
 * credit links (and with `states` their state rows) matched by key too.
 * Joined on the redemption alone, the planner read the links whole into a
 * hash for 100 ids on the bench's database (8,000 links: 3.3 ms against
 * 0.3 by key, merged index scans).
 */
function byIdFrom(ids: string, states: boolean): string {
  return `coupon_redemptions r
  LEFT JOIN customer_credit_redemptions l ON l.redemption_id = r.id AND l.redemption_id = ANY (${ids})${
    states ? `
  LEFT JOIN coupon_redemption_states s ON s.redemption_id = r.id AND s.redemption_id = ANY (${ids})` : ''
  }`;
}

/** One request of coupon_redeem, as its JSON (see sql/coupon-redeem.sql). */
export interface RedeemRequestJson {
  /** RedeemCoupon: the coupon's code. */
  code?: string | undefined;
  /** RedeemCustomerCredit: the credit (of customer_id) whose coupon is redeemed. */
  credit_id?: string | undefined;
  customer_id: string;
  plan_id: string | null;
  product_id: string | null;
  /** Minor units as a string; null: no amount. */
  amount: string | null;
  currency_code: string | null;
  /** ISO instant; null: confirmed at once. */
  hold_until: string | null;
  metadata: Metadata;
  done_by: string;
  validate_only: boolean;
  /**
   * Only from replicas of the versions before REDEMPTION_CREATED was stored
   * by reference (and tests that act as one): its payload but for what the
   * statement adds (id, couponId, discount, createTime, updateTime), stored
   * as the event's payload.
   */
  event?: unknown;
  /** The redemption's id if it is recorded (a UUIDv7); null or absent: the statement makes one. */
  id?: string | null | undefined;
  /** Its REDEMPTION_CREATED event's id; null or absent: the statement makes one. */
  event_id?: string | null | undefined;
}

/** One row of coupon_redeem: the request's outcome, the coupon after it and (credit requests) the credit after it. */
export interface RedeemRow {
  item: number;
  reason: string | null;
  redemption_id: string | null;
  redemption_seq: string | null;
  redemption_time: Date | null;
  discount: string | null;
  customer_uses: string | null;
  c_id: string | null;
  c_seq: string;
  c_code: string;
  c_name: string;
  c_type: CouponEntity['type'];
  c_percentage: number | null;
  c_fixed_amount: string | null;
  c_fixed_currency_code: string | null;
  c_frequency: CouponEntity['frequency'];
  c_frequency_interval: number | null;
  c_max_redemptions: number | null;
  c_max_redemptions_per_customer: number | null;
  c_expire_time: Date | null;
  c_limited_to_plans: string[];
  c_excluded_from_plans: string[];
  c_limited_to_products: string[];
  c_excluded_from_products: string[];
  c_enabled: boolean;
  c_confirmed: string;
  c_live: string;
  c_redeemed: boolean;
  c_metadata: Metadata;
  c_create_time: Date;
  c_update_time: Date;
  cr_id: string | null;
  cr_seq: string;
  cr_customer_id: string;
  cr_coupon_id: string;
  cr_membership_id: string | null;
  cr_uses_total: number | null;
  cr_multi_use: boolean;
  cr_confirmed: string;
  cr_live: string;
  cr_expire_time: Date | null;
  cr_revenue_amount: string | null;
  cr_revenue_currency_code: string | null;
  cr_create_time: Date;
  cr_revoke_time: Date | null;
  cr_last_redeem_time: Date | null;
  cr_metadata: Metadata;
}

// Each coupon's terms on its first row only (copied to the rest by redeem()).
const REDEEM_SQL = `SELECT * FROM coupon_redeem($1::uuid, $2::jsonb, false)`;

/** The columns of a coupon_redeem row that are the coupon's terms: on the first row of each coupon only. */
const COUPON_TERMS = [
  'c_seq', 'c_code', 'c_name', 'c_type', 'c_percentage', 'c_fixed_amount', 'c_fixed_currency_code', 'c_frequency', 'c_frequency_interval',
  'c_max_redemptions', 'c_max_redemptions_per_customer', 'c_expire_time', 'c_limited_to_plans', 'c_excluded_from_plans',
  'c_limited_to_products', 'c_excluded_from_products', 'c_enabled', 'c_metadata', 'c_create_time', 'c_update_time',
] as const satisfies ReadonlyArray<keyof RedeemRow>;

function copyColumn<K extends keyof RedeemRow>(to: RedeemRow, from: RedeemRow, column: K): void {
  to[column] = from[column];
}

/** The coupon of a coupon_redeem row (c_id set), with its counts after the row's request. */
export function couponOfRedeemRow(tenantId: string, row: RedeemRow): CouponEntity {
  const coupon: CouponEntity = {
    id: row.c_id!,
    seq: BigInt(row.c_seq),
    tenantId,
    code: row.c_code,
    name: row.c_name,
    type: row.c_type,
    percentage: row.c_percentage,
    fixedAmount: row.c_fixed_amount === null ? null : BigInt(row.c_fixed_amount),
    fixedCurrencyCode: row.c_fixed_currency_code,
    frequency: row.c_frequency,
    frequencyInterval: row.c_frequency_interval,
    maxRedemptions: row.c_max_redemptions,
    maxRedemptionsPerCustomer: row.c_max_redemptions_per_customer,
    expireTime: row.c_expire_time,
    limitedToPlans: row.c_limited_to_plans,
    excludedFromPlans: row.c_excluded_from_plans,
    limitedToProducts: row.c_limited_to_products,
    excludedFromProducts: row.c_excluded_from_products,
    enabled: row.c_enabled,
    confirmedCount: BigInt(row.c_confirmed),
    redemptionCount: BigInt(row.c_live),
    redeemed: row.c_redeemed,
    metadata: row.c_metadata,
    createTime: row.c_create_time,
    updateTime: row.c_update_time,
  };
  return Object.assign(new CouponEntity(), coupon);
}

export class CouponRepository {
  constructor(private readonly manager: EntityManager) {}

  /** Inserts a coupon; throws a unique violation on CODE_UNIQUE_INDEX when the code is taken. */
  async insertCoupon(tenantId: string, terms: CouponTerms, metadata: Metadata): Promise<CouponEntity> {
    const inserted = await this.manager
      .createQueryBuilder()
      .insert()
      .into(CouponEntity)
      .values(Object.assign({}, terms, { metadata, tenantId }))
      .returning('id, seq, create_time, update_time')
      .execute();
    const row = inserted.raw[0] as { id: string; seq: string; create_time: Date; update_time: Date };
    return Object.assign(new CouponEntity(), terms, {
      metadata,
      tenantId,
      id: row.id,
      seq: BigInt(row.seq),
      confirmedCount: 0n,
      redemptionCount: 0n,
      redeemed: false,
      createTime: row.create_time,
      updateTime: row.update_time,
    });
  }

  /** Reads a coupon of the tenant with the uses that count at `now`. */
  async findCoupon(tenantId: string, locator: CouponLocator, now: Date): Promise<CouponEntity | undefined> {
    const coupon = await this.couponQuery(tenantId, locator).getOne();
    if (!coupon) return undefined;
    const [counted] = await this.withUses(tenantId, [coupon], now);
    return counted;
  }

  /**
   * Reads a coupon of the tenant and takes its row lock (SELECT … FOR
   * UPDATE, no joins) until the transaction ends, which must be open. Its
   * `redemptionCount` is only its confirmed count here: the held uses must be
   * counted by a later statement (withUses), at an instant read after the
   * lock was granted, so as to see every hold that committed meanwhile and
   * none that lapsed meanwhile.
   */
  async lockCoupon(tenantId: string, locator: CouponLocator): Promise<CouponEntity | undefined> {
    const coupon = await this.couponQuery(tenantId, locator).setLock('pessimistic_write').getOne();
    if (coupon) coupon.redemptionCount = coupon.confirmedCount;
    return coupon ?? undefined;
  }

  private couponQuery(tenantId: string, locator: CouponLocator) {
    const q = this.manager.getRepository(CouponEntity).createQueryBuilder('c').where('c.tenant_id = :tenantId', { tenantId });
    if ('id' in locator) q.andWhere('c.id = :id', { id: locator.id });
    else q.andWhere('lower(c.code) = lower(:code)', { code: locator.code });
    return q;
  }

  /**
   * Records the lapse of the coupons' held redemptions whose hold_until is
   * at or before `at` (the caller holds the coupons' locks): CANCELED as of
   * hold_until, with their REDEMPTION_CANCELED events, in the order they
   * lapsed, as the sweep and coupon_redeem record them
   * (coupon_record_lapses): written before an event of the coupon whose
   * counts at `at` leave them out, they come before it in the stream.
   * Answers how many it recorded.
   */
  async recordLapses(tenantId: string, couponIds: readonly string[], at: Date): Promise<number> {
    const rows: Array<{ recorded: number }> = await this.manager.query(
      `SELECT coupon_record_lapses($1, $2::uuid[], $3, current_setting('credits.events', true) IS DISTINCT FROM 'off') AS recorded`,
      [tenantId, couponIds, at],
    );
    return rows[0]!.recorded;
  }

  /** Fills in each coupon's `redemptionCount` at `now`: confirmed plus unexpired holds. */
  async withUses(tenantId: string, coupons: CouponEntity[], now: Date): Promise<CouponEntity[]> {
    const held = await countHeld(this.manager, tenantId, 'coupon_id', coupons, now);
    for (const coupon of coupons) coupon.redemptionCount = coupon.confirmedCount + (held.get(coupon.id) ?? 0n);
    return coupons;
  }

  /** A customer's uses of a coupon that count at `now` (confirmed, or held and not lapsed); ValidateCoupon's count, without a lock. */
  async countCustomerUses(tenantId: string, couponId: string, customerId: string, now: Date): Promise<bigint> {
    const rows: Array<{ uses: string }> = await this.manager.query(
      `SELECT count(*) AS uses FROM coupon_redemptions r LEFT JOIN coupon_redemption_states s ON s.redemption_id = r.id
        WHERE r.tenant_id = $1 AND r.coupon_id = $2 AND r.customer_id = $3 AND ${countedSql('s', '$4')}`,
      [tenantId, couponId, customerId, now],
    );
    return BigInt(rows[0]!.uses);
  }

  /** Replaces the writable fields and metadata of a coupon the caller has locked; answers it as stored. */
  async updateCoupon(coupon: CouponEntity, terms: CouponTerms, metadata: Metadata): Promise<CouponEntity> {
    const updated = await this.manager
      .createQueryBuilder()
      .update(CouponEntity)
      .set(Object.assign({}, terms, { metadata, updateTime: () => 'clock_timestamp()' }))
      .where({ tenantId: coupon.tenantId, id: coupon.id })
      .returning('update_time')
      .execute();
    const row = (updated.raw as Array<{ update_time: Date }>)[0]!;
    return Object.assign(new CouponEntity(), coupon, terms, { metadata, updateTime: row.update_time });
  }

  /**
   * Deletes a coupon the caller has locked and found never redeemed (a
   * redemption waits for that lock), unless customer credits were issued
   * from it: one issued meanwhile, not yet visible to the statement, makes
   * the credits' foreign key refuse the DELETE.
   */
  async deleteUnredeemed(tenantId: string, id: string): Promise<'deleted' | 'has-credits'> {
    try {
      const rows: Array<{ deleted: boolean }> = await this.manager.query(
        `WITH deleted AS (
           DELETE FROM coupons WHERE tenant_id = $1 AND id = $2
              AND NOT EXISTS (SELECT 1 FROM customer_credits WHERE tenant_id = $1 AND coupon_id = $2) RETURNING id
         )
         SELECT EXISTS (SELECT 1 FROM deleted) AS deleted`,
        [tenantId, id],
      );
      return rows[0]!.deleted ? 'deleted' : 'has-credits';
    } catch (err) {
      if (isForeignKeyViolation(err, CREDITS_COUPON_FOREIGN_KEY)) return 'has-credits';
      throw err;
    }
  }

  /** One page of coupons, newest first, strictly before the `beforeSeq` cursor; asks for `limit` rows; counts at `now`. */
  async listCoupons(tenantId: string, filter: CouponListFilter, beforeSeq: bigint | undefined, limit: number, now: Date): Promise<CouponEntity[]> {
    const q = this.manager.getRepository(CouponEntity).createQueryBuilder('c').where('c.tenant_id = :tenantId', { tenantId });
    if (beforeSeq !== undefined) q.andWhere('c.seq < :beforeSeq', { beforeSeq: beforeSeq.toString() });
    if (filter.enabled !== undefined) q.andWhere('c.enabled = :enabled', { enabled: filter.enabled });
    if (filter.codePrefix !== undefined) {
      q.andWhere(`lower(c.code) LIKE :codePrefix ESCAPE '\\'`, { codePrefix: likePrefix(filter.codePrefix) });
    }
    return this.withUses(tenantId, await q.orderBy('c.seq', 'DESC').limit(limit).getMany(), now);
  }

  /**
   * Decides and records redemptions of one tenant in ONE statement:
   * coupon_redeem (sql/coupon-redeem.sql) locks each credit and coupon once,
   * decides every request in order under those locks and writes the accepted
   * ones with their events. Rows come back in the order of `requests`, each
   * with its coupon's terms (sent once per coupon, copied here).
   */
  async redeem(tenantId: string, requests: readonly RedeemRequestJson[]): Promise<RedeemRow[]> {
    const { rows } = await preparedQuery<RedeemRow>(this.manager, 'coupon_redeem', REDEEM_SQL, [tenantId, JSON.stringify(requests)]);
    const first = new Map<string, RedeemRow>();
    for (const row of rows) {
      if (row.c_id === null) continue;
      const terms = first.get(row.c_id);
      if (terms === undefined) first.set(row.c_id, row);
      else for (const column of COUPON_TERMS) copyColumn(row, terms, column);
    }
    return rows;
  }

  /**
   * The tenant's redemptions of `ids` as their REDEMPTION_CREATED events show
   * them (redemptionAsCreated), by id: for the event read, whose events
   * store them by reference (sql/coupon-redeem.sql). By primary key, one
   * statement for a page.
   */
  async redemptionsAsCreated(tenantId: string, ids: readonly string[]): Promise<Map<string, CouponRedemptionEntity>> {
    const { rows } = await preparedQuery<RecordedRow>(
      this.manager,
      'redemptions_as_created',
      // The tenant is a filter on the rows found by id (IS NOT DISTINCT
      // FROM: no index takes it; see sql/coupon-redeem.sql's locks).
      `SELECT ${RECORDED_COLUMNS} FROM ${byIdFrom('$2::uuid[]', false)} WHERE r.id = ANY ($2::uuid[]) AND r.tenant_id IS NOT DISTINCT FROM $1::uuid`,
      [tenantId, ids],
    );
    return new Map(rows.map((row) => [row.id, redemptionAsCreated(row)]));
  }

  /** A redemption of the tenant, with its credit and its status at `now`. */
  async findRedemption(tenantId: string, id: string, now: Date): Promise<CouponRedemptionEntity | undefined> {
    const rows: RedemptionRow[] = await this.manager.query(
      `SELECT ${REDEMPTION_COLUMNS} FROM ${REDEMPTION_FROM} WHERE r.tenant_id = $1 AND r.id = $2`,
      [tenantId, id],
    );
    return rows[0] && redemptionFromRow(rows[0], now);
  }

  /**
   * Moves a redemption to CONFIRMED or CANCELED and changes its coupon's
   * confirmed count by `confirmedDelta`, in one statement; the caller holds
   * the coupon's row lock (and the credit's) and has checked the transition.
   * Answers the state row's update_time.
   */
  async setRedemptionStatus(redemption: CouponRedemptionEntity, status: 'CONFIRMED' | 'CANCELED', confirmedDelta: -1 | 0 | 1): Promise<Date> {
    const rows: Array<{ update_time: Date }> = await this.manager.query(
      `WITH state AS (
         INSERT INTO coupon_redemption_states (redemption_id, tenant_id, coupon_id, customer_credit_id, status, hold_until)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (redemption_id) DO UPDATE SET status = excluded.status, update_time = excluded.update_time
         RETURNING update_time
       ), counted AS (
         UPDATE coupons SET redemption_count = redemption_count + $7 WHERE tenant_id = $2 AND id = $3 AND $7 <> 0
       )
       SELECT update_time FROM state`,
      [redemption.id, redemption.tenantId, redemption.couponId, redemption.customerCreditId, status, redemption.holdUntil, confirmedDelta],
    );
    return rows[0]!.update_time;
  }

  /**
   * Records the lapse of up to `limit` held redemptions (of every tenant)
   * whose hold_until has passed, oldest hold_until first: each state row
   * becomes CANCELED with update_time = its hold_until (when it read
   * CANCELED from). Answers them as they now stand, in that order, and how
   * many were due (at most `limit`; more than it recorded when another
   * process recorded some first).
   *
   * Runs in the caller's transaction. The state rows of a coupon's
   * redemptions are written only under the coupon's row lock (Confirm and
   * Cancel take it before they read the status), so this takes the locks
   * of the coupons concerned, in id order as every path does (it takes no
   * credit's: a lapse changes no credit counter), and only then writes the
   * rows still HELD. A transition that read HELD before its hold_until
   * committed first, and its row is no longer HELD; one that comes after
   * reads the CANCELED written here, with the same answer as before it was
   * written (the status read as CANCELED from hold_until already). Two
   * processes sweeping at once wait for each other on those locks, and the
   * second finds nothing left to write: a lapse is recorded exactly once.
   * The coupons' locks are waited for `lockTimeoutMs` at most; when one
   * stays locked longer (a stuck transaction), the coupons free at that
   * moment are taken and the others are left for a later run, answered in
   * `skipped` (review: one coupon kept locked stopped every tenant's lapses
   * from being recorded, as long as it stayed locked: the run gave up whole,
   * and the stuck hold, the oldest, came first in every run). Coupons in
   * `skip` (skipped by the caller's earlier batches) are not looked at. A
   * busy coupon's locks are held for milliseconds, so skipping locked
   * coupons from the start (SKIP LOCKED alone) would starve the lapses of
   * the hottest ones.
   * The coupons' stored counters count CONFIRMED uses only, so a lapse
   * changes none.
   */
  async cancelLapsedHolds(
    limit: number,
    lockTimeoutMs = LAPSE_LOCK_TIMEOUT_MS,
    skip: readonly string[] = [],
  ): Promise<{ due: number; canceled: CouponRedemptionEntity[]; skipped: string[] }> {
    const due: Array<{ redemption_id: string; coupon_id: string }> = await this.manager.query(
      `SELECT redemption_id, coupon_id FROM coupon_redemption_states
        WHERE status = 'HELD' AND hold_until <= clock_timestamp() AND coupon_id <> ALL ($2::uuid[])
        ORDER BY hold_until LIMIT $1`,
      [limit, skip],
    );
    if (due.length === 0) return { due: 0, canceled: [], skipped: [] };
    const couponIds = [...new Set(due.map((d) => d.coupon_id))];
    // Waiting at most lockTimeoutMs for each: a coupon locked for long must
    // not stall the run, the balance sweep after it and a shutdown, all while
    // holding the locks of the coupons before it (a redemption of one of
    // those waited 12 s in review).
    await this.manager.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.trunc(lockTimeoutMs))}`);
    const locked = await this.lockCouponsWaitingBriefly(couponIds);
    const skipped = couponIds.filter((id) => !locked.has(id));
    const canceled: Array<{ redemption_id: string }> = await this.manager.query(
      // A SELECT around the UPDATE: TypeORM answers an UPDATE's rows with its row count.
      `WITH canceled AS (
         UPDATE coupon_redemption_states SET status = 'CANCELED', update_time = hold_until
          WHERE redemption_id = ANY ($1::uuid[]) AND status = 'HELD' AND hold_until <= clock_timestamp()
          RETURNING redemption_id
       )
       SELECT redemption_id FROM canceled`,
      [due.filter((d) => locked.has(d.coupon_id)).map((d) => d.redemption_id)],
    );
    if (canceled.length === 0) return { due: due.length, canceled: [], skipped };
    const rows: RedemptionRow[] = await this.manager.query(
      `SELECT ${REDEMPTION_COLUMNS} FROM ${byIdFrom('$1::uuid[]', true)} WHERE r.id = ANY ($1::uuid[]) ORDER BY r.hold_until, r.seq`,
      [canceled.map((c) => c.redemption_id)],
    );
    const now = new Date();
    return { due: due.length, canceled: rows.map((row) => redemptionFromRow(row, now)), skipped };
  }

  /**
   * Locks the coupons, in id order as every path takes them, waiting at most
   * the transaction's lock_timeout; answers the ones it holds. All at once
   * first (one statement, under a savepoint); when a lock times out, that
   * statement is taken back (the transaction goes on) and the coupons free
   * at that moment are locked without waiting (SKIP LOCKED): waiting for
   * each busy one in turn held the free ones' locks for a second per busy
   * coupon (found in review), and held by another process's sweep, they
   * are recorded by it.
   */
  private async lockCouponsWaitingBriefly(couponIds: readonly string[]): Promise<Set<string>> {
    await this.manager.query('SAVEPOINT lapse_locks');
    try {
      await this.manager.query(`SELECT id FROM coupons WHERE id = ANY ($1::uuid[]) ORDER BY id FOR UPDATE`, [couponIds]);
      await this.manager.query('RELEASE SAVEPOINT lapse_locks');
      return new Set(couponIds);
    } catch (err) {
      if (!isLockNotAvailable(err)) throw err;
      await this.manager.query('ROLLBACK TO SAVEPOINT lapse_locks');
    }
    const free: Array<{ id: string }> = await this.manager.query(
      `SELECT id FROM coupons WHERE id = ANY ($1::uuid[]) ORDER BY id FOR UPDATE SKIP LOCKED`,
      [couponIds],
    );
    return new Set(free.map((c) => c.id));
  }

  /** One page of redemptions, newest first, strictly before the `beforeSeq` cursor, with their status at `now`. */
  async listRedemptions(
    tenantId: string,
    filter: RedemptionListFilter,
    beforeSeq: bigint | undefined,
    limit: number,
    now: Date,
  ): Promise<CouponRedemptionEntity[]> {
    const params: unknown[] = [tenantId, limit];
    const where = ['r.tenant_id = $1'];
    const param = (value: unknown) => `$${params.push(value)}`;
    if (beforeSeq !== undefined) where.push(`r.seq < ${param(beforeSeq.toString())}`);
    if (filter.couponId !== undefined) where.push(`r.coupon_id = ${param(filter.couponId)}`);
    if (filter.customerId !== undefined) where.push(`r.customer_id = ${param(filter.customerId)}`);
    // Containment on the GIN index (jsonb_path_ops): one pair finds its redemptions without reading the tenant's.
    if (filter.metadata !== undefined) where.push(`r.metadata @> ${param(JSON.stringify(filter.metadata))}::jsonb`);
    const rows: RedemptionRow[] = await this.manager.query(
      `SELECT ${REDEMPTION_COLUMNS} FROM ${REDEMPTION_FROM} WHERE ${where.join(' AND ')} ORDER BY r.seq DESC LIMIT $2`,
      params,
    );
    return rows.map((row) => redemptionFromRow(row, now));
  }
}

/**
 * The held redemptions whose hold_until is after `now`, per coupon or per
 * customer credit (by `column`) of `owners`, through the partial indexes on
 * open holds; owners without any are absent from the map.
 */
export async function countHeld(
  manager: EntityManager,
  tenantId: string,
  column: 'coupon_id' | 'customer_credit_id',
  owners: ReadonlyArray<{ id: string }>,
  now: Date,
): Promise<Map<string, bigint>> {
  if (owners.length === 0) return new Map();
  const rows: Array<{ owner: string; held: string }> = await manager.query(
    `SELECT ${column} AS owner, count(*) AS held FROM coupon_redemption_states
      WHERE tenant_id = $1 AND ${column} = ANY ($2::uuid[]) AND status = 'HELD' AND hold_until > $3
      GROUP BY ${column}`,
    [tenantId, owners.map((o) => o.id), now],
  );
  return new Map(rows.map((r) => [r.owner, BigInt(r.held)]));
}

function redemptionFromRow(row: RedemptionRow, now: Date): CouponRedemptionEntity {
  const { status, updateTime } = redemptionStatusAt(
    { status: row.state_status, holdUntil: row.hold_until, updateTime: row.state_update_time, createTime: row.create_time },
    now,
  );
  return redemptionOfRow(row, status, updateTime);
}

/**
 * A redemption as its REDEMPTION_CREATED event shows it: as recorded, HELD
 * if it has a hold_until (else CONFIRMED), updated when created, whatever
 * became of it since. coupon_redemption_created_json is the same in SQL
 * (test/coupons/created-event-by-reference.test.ts compares them).
 */
function redemptionAsCreated(row: RecordedRow): CouponRedemptionEntity {
  return redemptionOfRow(row, row.hold_until === null ? 'CONFIRMED' : 'HELD', row.create_time);
}

function redemptionOfRow(row: RecordedRow, status: RedemptionStatus, updateTime: Date): CouponRedemptionEntity {
  const redemption: CouponRedemptionEntity = {
    id: row.id,
    seq: BigInt(row.seq),
    tenantId: row.tenant_id,
    couponId: row.coupon_id,
    customerId: row.customer_id,
    planId: row.plan_id,
    productId: row.product_id,
    amount: row.amount === null ? null : BigInt(row.amount),
    discount: row.discount === null ? null : BigInt(row.discount),
    currencyCode: row.currency_code,
    doneBy: row.done_by,
    createTime: row.create_time,
    holdUntil: row.hold_until,
    metadata: row.metadata,
    customerCreditId: row.customer_credit_id,
    status,
    updateTime,
  };
  return Object.assign(new CouponRedemptionEntity(), redemption);
}
