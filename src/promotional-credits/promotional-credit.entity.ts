import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { bigintColumn } from '../db/bigint-column';

export type EntryType = 'INCREMENT' | 'DECREMENT';
/** What wrote an entry; null for entries written before origins were recorded. */
export type Origin = 'ADD' | 'DEDUCT' | 'SET' | 'EXPIRATION' | 'REVERSAL' | 'HOLD_CAPTURE';
export const ORIGINS: readonly Origin[] = ['ADD', 'DEDUCT', 'SET', 'EXPIRATION', 'REVERSAL', 'HOLD_CAPTURE'];

/** What a DECREMENT drew from one lot (or a reversal put back). */
export interface LotAllocation {
  lotId: string;
  amount: bigint;
}
export type CreditType = 'GENERAL' | 'LOYALTY_CREDITS' | 'REFERRAL_REWARDS';

/** One immutable ledger entry; corrections are new entries. */
@Entity({ name: 'promotional_credits' })
export class PromotionalCreditEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  /** Ledger order; drawn while the balance row is locked. Not exposed. */
  @Column({ type: 'bigint', transformer: bigintColumn, insert: false, update: false })
  seq!: bigint;

  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId!: string;

  @Column({ name: 'customer_id', type: 'text' })
  customerId!: string;

  @Column({ name: 'currency_code', type: 'text' })
  currencyCode!: string;

  @Column({ type: 'text' })
  type!: EntryType;

  @Column({ type: 'bigint', transformer: bigintColumn })
  amount!: bigint;

  @Column({ type: 'text' })
  description!: string;

  @Column({ name: 'credit_type', type: 'text' })
  creditType!: CreditType;

  @Column({ type: 'text' })
  reference!: string;

  @Column({ name: 'closing_balance', type: 'bigint', transformer: bigintColumn })
  closingBalance!: bigint;

  @Column({ name: 'done_by', type: 'text' })
  doneBy!: string;

  @Column({ name: 'create_time', type: 'timestamptz', insert: false, update: false })
  createTime!: Date;

  @Column({ type: 'text', nullable: true })
  origin!: Origin | null;

  /** INCREMENT: when its lot expires; EXPIRATION: when its credits left the balance (the lot's expiry, or when the hold that kept them ended, or the reversal that put them back). */
  @Column({ name: 'expire_time', type: 'timestamptz', nullable: true })
  expireTime!: Date | null;

  @Column({ type: 'jsonb', nullable: true, transformer: { to: (v: unknown) => v, from: allocationsFromJson } })
  allocations!: LotAllocation[];

  @Column({ name: 'reverses_id', type: 'uuid', nullable: true })
  reversesId!: string | null;

  @Column({ type: 'jsonb' })
  metadata!: Record<string, string>;

  /** Null only for an entry written before hashes existed and not hashed since (none: the migration hashed them all). */
  @Column({ type: 'text', nullable: true })
  hash!: string | null;
}

/** Allocations as stored (`[{lot_id, amount}]`, amounts as strings), exact. */
export function allocationsFromJson(value: Array<{ lot_id: string; amount: string }> | null): LotAllocation[] {
  return (value ?? []).map((a) => ({ lotId: a.lot_id, amount: BigInt(a.amount) }));
}
