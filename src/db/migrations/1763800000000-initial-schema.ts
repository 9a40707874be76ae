import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Tenants, API keys, page-token secret and the promotional credit ledger. */
export class InitialSchema1763800000000 implements MigrationInterface {
  name = 'InitialSchema1763800000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE tenants (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
        default_currency text NOT NULL CHECK (default_currency ~ '^[A-Z]{3}$'),
        multi_currency boolean NOT NULL DEFAULT false,
        create_time timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await queryRunner.query(`
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
        secret_hash bytea NOT NULL,
        scopes text[] NOT NULL,
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        revoke_time timestamptz
      )`);
    // One active key per name and tenant, so a name identifies who did a write.
    await queryRunner.query(`CREATE UNIQUE INDEX api_keys_active_name ON api_keys (tenant_id, name) WHERE revoke_time IS NULL`);
    // Secrets shared by every replica (page tokens are signed with it).
    await queryRunner.query(`CREATE TABLE service_secrets (name text PRIMARY KEY, value bytea NOT NULL)`);
    await queryRunner.query(
      `INSERT INTO service_secrets (name, value) VALUES ('page_token', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))`,
    );
    await queryRunner.query(`
      CREATE TABLE promotional_credit_balances (
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        customer_id text NOT NULL,
        currency_code text NOT NULL,
        amount bigint NOT NULL CHECK (amount >= 0),
        update_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (tenant_id, customer_id, currency_code)
      )`);
    // Ledger entries are immutable. seq orders them: it is drawn while the
    // balance row is locked, so one balance's entries chain in seq order.
    await queryRunner.query(`
      CREATE TABLE promotional_credits (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        tenant_id uuid NOT NULL,
        customer_id text NOT NULL,
        currency_code text NOT NULL,
        type text NOT NULL CHECK (type IN ('INCREMENT', 'DECREMENT')),
        amount bigint NOT NULL CHECK (amount >= 0),
        description text NOT NULL,
        credit_type text NOT NULL CHECK (credit_type IN ('GENERAL', 'LOYALTY_CREDITS', 'REFERRAL_REWARDS')),
        reference text NOT NULL DEFAULT '',
        closing_balance bigint NOT NULL CHECK (closing_balance >= 0),
        done_by text NOT NULL,
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        FOREIGN KEY (tenant_id, customer_id, currency_code) REFERENCES promotional_credit_balances
      )`);
    await queryRunner.query(`CREATE INDEX promotional_credits_tenant_seq ON promotional_credits (tenant_id, seq DESC)`);
    await queryRunner.query(
      `CREATE INDEX promotional_credits_tenant_customer_seq ON promotional_credits (tenant_id, customer_id, seq DESC)`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE promotional_credits`);
    await queryRunner.query(`DROP TABLE promotional_credit_balances`);
    await queryRunner.query(`DROP TABLE service_secrets`);
    await queryRunner.query(`DROP TABLE api_keys`);
    await queryRunner.query(`DROP TABLE tenants`);
  }
}
