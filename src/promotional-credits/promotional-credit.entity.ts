import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { bigintColumn } from '../db/bigint-column';

export type EntryType = 'INCREMENT' | 'DECREMENT';
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
}
