import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Customer credits (coupons issued to one customer) and the link from each
 * credit redemption to the coupon redemption it recorded. The CHECK
 * constraints restate the rules the service enforces
 * (src/credits/credit.rules.ts), so no code path can use a credit more often
 * than it has uses, nor redeem a revoked one.
 */
export class CustomerCredits1763950000000 implements MigrationInterface {
  name = 'CustomerCredits1763950000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // The state is derived, never stored (expiry needs no job): REVOKED when
    // revoke_time is set, else REDEEMED when redemption_count reached
    // uses_total, else EXPIRED when expire_time has passed, else ACTIVE.
    // uses_total NULL means unlimited. redemption_count only changes while
    // the row is locked (FOR UPDATE). seq orders credits newest first for
    // keyset pagination and never changes. The composite foreign key keeps a
    // credit in its coupon's tenant and stops a coupon with credits from
    // being deleted.
    await queryRunner.query(`
      CREATE TABLE customer_credits (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        tenant_id uuid NOT NULL,
        customer_id text NOT NULL CHECK (customer_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
        coupon_id uuid NOT NULL,
        membership_id text CHECK (membership_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
        uses_total integer CHECK (uses_total >= 1),
        multi_use boolean NOT NULL GENERATED ALWAYS AS (uses_total IS NULL OR uses_total > 1) STORED,
        redemption_count bigint NOT NULL DEFAULT 0 CHECK (redemption_count >= 0),
        expire_time timestamptz,
        revenue_amount bigint CHECK (revenue_amount >= 0),
        revenue_currency_code text CHECK (revenue_currency_code ~ '^[A-Z]{3}$'),
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        revoke_time timestamptz,
        last_redeem_time timestamptz,
        CONSTRAINT customer_credits_coupon FOREIGN KEY (tenant_id, coupon_id) REFERENCES coupons (tenant_id, id),
        CONSTRAINT customer_credits_within_uses CHECK (uses_total IS NULL OR redemption_count <= uses_total),
        CONSTRAINT customer_credits_revenue CHECK ((revenue_amount IS NULL) = (revenue_currency_code IS NULL)),
        CONSTRAINT customer_credits_last_redeem_time CHECK ((redemption_count = 0) = (last_redeem_time IS NULL)),
        CONSTRAINT customer_credits_revoked_unredeemed CHECK (revoke_time IS NULL OR redemption_count = 0),
        CONSTRAINT customer_credits_tenant_id UNIQUE (tenant_id, id)
      )`);
    // Serves the customer's list (newest first) and Get/Revoke/Redeem by customer and id.
    await queryRunner.query(`CREATE INDEX customer_credits_tenant_customer_seq ON customer_credits (tenant_id, customer_id, seq DESC)`);
    // Serves the foreign key check when a coupon is deleted, and DeleteCoupon's "has credits" test.
    await queryRunner.query(`CREATE INDEX customer_credits_tenant_coupon ON customer_credits (tenant_id, coupon_id)`);

    // Immutable; one row per redemption of a credit, written in the same
    // transaction as the coupon redemption and the credit's count: which
    // credit a coupon redemption used, and the revenue allocated to it.
    await queryRunner.query(`
      CREATE TABLE customer_credit_redemptions (
        redemption_id uuid PRIMARY KEY REFERENCES coupon_redemptions (id),
        tenant_id uuid NOT NULL,
        credit_id uuid NOT NULL,
        revenue_amount bigint CHECK (revenue_amount >= 0),
        revenue_currency_code text CHECK (revenue_currency_code ~ '^[A-Z]{3}$'),
        FOREIGN KEY (tenant_id, credit_id) REFERENCES customer_credits (tenant_id, id),
        CONSTRAINT customer_credit_redemptions_revenue CHECK ((revenue_amount IS NULL) = (revenue_currency_code IS NULL))
      )`);
    await queryRunner.query(`CREATE INDEX customer_credit_redemptions_tenant_credit ON customer_credit_redemptions (tenant_id, credit_id)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE customer_credit_redemptions`);
    await queryRunner.query(`DROP TABLE customer_credits`);
  }
}
