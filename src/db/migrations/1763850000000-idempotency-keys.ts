import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Idempotency keys: the outcome of a mutating call, stored with its effect. */
export class IdempotencyKeys1763850000000 implements MigrationInterface {
  name = 'IdempotencyKeys1763850000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE idempotency_keys (
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
        method text NOT NULL,
        fingerprint bytea NOT NULL,
        -- Exactly one of response (the encoded proto response) and error (JSON of the status sent).
        response bytea,
        error jsonb,
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        expire_time timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, key),
        CHECK ((response IS NULL) <> (error IS NULL))
      )`);
    await queryRunner.query(`CREATE INDEX idempotency_keys_expire_time ON idempotency_keys (expire_time)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE idempotency_keys`);
  }
}
