import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintColumn } from '../db/bigint-column';

/** A customer's balance in one currency: the row every change locks. */
@Entity({ name: 'promotional_credit_balances' })
export class PromotionalCreditBalanceEntity {
  @PrimaryColumn({ name: 'tenant_id', type: 'uuid' })
  tenantId!: string;

  @PrimaryColumn({ name: 'customer_id', type: 'text' })
  customerId!: string;

  @PrimaryColumn({ name: 'currency_code', type: 'text' })
  currencyCode!: string;

  @Column({ type: 'bigint', transformer: bigintColumn })
  amount!: bigint;

  @Column({ name: 'update_time', type: 'timestamptz' })
  updateTime!: Date;
}
