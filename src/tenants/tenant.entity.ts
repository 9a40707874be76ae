import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** A company department or product line with its own keys and data. */
@Entity({ name: 'tenants' })
export class TenantEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ type: 'text' })
  slug!: string;

  /** Currency used when a request leaves `currency_code` empty. */
  @Column({ name: 'default_currency', type: 'text' })
  defaultCurrency!: string;

  /** When false only `defaultCurrency` is accepted. */
  @Column({ name: 'multi_currency', type: 'boolean' })
  multiCurrency!: boolean;

  @Column({ name: 'create_time', type: 'timestamptz', insert: false, update: false })
  createTime!: Date;
}
