import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type Scope = 'read' | 'write';
export const SCOPES: readonly Scope[] = ['read', 'write'];

/** An API key: only the SHA-256 of its secret is stored. */
@Entity({ name: 'api_keys' })
export class ApiKeyEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId!: string;

  /** Recorded as `done_by` on what the key writes. */
  @Column({ type: 'text' })
  name!: string;

  @Column({ name: 'secret_hash', type: 'bytea' })
  secretHash!: Buffer;

  @Column({ type: 'text', array: true })
  scopes!: Scope[];

  @Column({ name: 'create_time', type: 'timestamptz', insert: false, update: false })
  createTime!: Date;

  @Column({ name: 'revoke_time', type: 'timestamptz', nullable: true })
  revokeTime!: Date | null;
}
