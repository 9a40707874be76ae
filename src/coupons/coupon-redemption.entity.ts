import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { bigintColumn } from '../db/bigint-column';
import type { RedemptionStatus } from './redemption-status.rules';

/**
 * One use of a coupon. The row is append-only (a trigger refuses UPDATE and
 * DELETE); where it stands lives in coupon_redemption_states. The last three
 * fields are not columns of this table: the repository reads them with it.
 * Money columns are all set or all null.
 */
@Entity({ name: 'coupon_redemptions' })
export class CouponRedemptionEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  /** Creation order for keyset pagination. Not exposed. */
  @Column({ type: 'bigint', transformer: bigintColumn, insert: false, update: false })
  seq!: bigint;

  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId!: string;

  @Column({ name: 'coupon_id', type: 'uuid' })
  couponId!: string;

  @Column({ name: 'customer_id', type: 'text' })
  customerId!: string;

  @Column({ name: 'plan_id', type: 'text', nullable: true })
  planId!: string | null;

  @Column({ name: 'product_id', type: 'text', nullable: true })
  productId!: string | null;

  /** The total the discount was computed on, in minor units of `currencyCode`. */
  @Column({ type: 'bigint', transformer: bigintColumn, nullable: true })
  amount!: bigint | null;

  @Column({ type: 'bigint', transformer: bigintColumn, nullable: true })
  discount!: bigint | null;

  @Column({ name: 'currency_code', type: 'text', nullable: true })
  currencyCode!: string | null;

  @Column({ name: 'done_by', type: 'text' })
  doneBy!: string;

  @Column({ name: 'create_time', type: 'timestamptz', insert: false, update: false })
  createTime!: Date;

  /** Held until then; null: confirmed at once. */
  @Column({ name: 'hold_until', type: 'timestamptz', nullable: true })
  holdUntil!: Date | null;

  @Column({ type: 'jsonb' })
  metadata!: Record<string, string>;

  /** The customer credit it used (customer_credit_redemptions); null for RedeemCoupon's. */
  customerCreditId!: string | null;

  /** Where it stands at the instant it was read (see redemptionStatusAt). */
  status!: RedemptionStatus;

  /** When `status` last changed. */
  updateTime!: Date;
}
