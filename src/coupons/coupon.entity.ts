import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { bigintColumn } from '../db/bigint-column';

export type CouponType = 'PERCENTAGE' | 'FIXED_AMOUNT';
export type Frequency = 'ONCE' | 'LIMITED' | 'LIFETIME';

/**
 * A coupon template. `confirmedCount` (column redemption_count) counts its
 * CONFIRMED redemptions and only changes while the row is locked;
 * `redemptionCount`, the uses that count toward its limits at an instant
 * (confirmed plus unexpired holds), is no column: the repository fills it in
 * at the instant it reads the coupon.
 */
@Entity({ name: 'coupons' })
export class CouponEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  /** Creation order for keyset pagination; never changes. Not exposed. */
  @Column({ type: 'bigint', transformer: bigintColumn, insert: false, update: false })
  seq!: bigint;

  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId!: string;

  @Column({ type: 'text' })
  code!: string;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text' })
  type!: CouponType;

  @Column({ type: 'integer', nullable: true })
  percentage!: number | null;

  @Column({ name: 'fixed_amount', type: 'bigint', transformer: bigintColumn, nullable: true })
  fixedAmount!: bigint | null;

  @Column({ name: 'fixed_currency_code', type: 'text', nullable: true })
  fixedCurrencyCode!: string | null;

  @Column({ type: 'text' })
  frequency!: Frequency;

  @Column({ name: 'frequency_interval', type: 'integer', nullable: true })
  frequencyInterval!: number | null;

  @Column({ name: 'max_redemptions', type: 'integer', nullable: true })
  maxRedemptions!: number | null;

  @Column({ name: 'max_redemptions_per_customer', type: 'integer', nullable: true })
  maxRedemptionsPerCustomer!: number | null;

  @Column({ name: 'expire_time', type: 'timestamptz', nullable: true })
  expireTime!: Date | null;

  @Column({ name: 'limited_to_plans', type: 'text', array: true })
  limitedToPlans!: string[];

  @Column({ name: 'excluded_from_plans', type: 'text', array: true })
  excludedFromPlans!: string[];

  @Column({ name: 'limited_to_products', type: 'text', array: true })
  limitedToProducts!: string[];

  @Column({ name: 'excluded_from_products', type: 'text', array: true })
  excludedFromProducts!: string[];

  @Column({ type: 'boolean' })
  enabled!: boolean;

  @Column({ name: 'redemption_count', type: 'bigint', transformer: bigintColumn })
  confirmedCount!: bigint;

  /** Confirmed redemptions plus held ones whose hold_until is after the instant of the read. Not a column. */
  redemptionCount!: bigint;

  /** Whether it ever had a redemption (held, confirmed or since canceled): its terms are then frozen. */
  @Column({ type: 'boolean', insert: false })
  redeemed!: boolean;

  /** The caller's key/value pairs. */
  @Column({ type: 'jsonb' })
  metadata!: Record<string, string>;

  @Column({ name: 'create_time', type: 'timestamptz', insert: false, update: false })
  createTime!: Date;

  @Column({ name: 'update_time', type: 'timestamptz' })
  updateTime!: Date;
}
