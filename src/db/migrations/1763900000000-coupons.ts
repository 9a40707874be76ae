import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Coupons and their redemptions. The CHECK constraints restate the rules the
 * service validates (src/coupons/coupon.rules.ts), so no code path can store
 * a coupon that breaks them, nor count past `max_redemptions`.
 */
export class Coupons1763900000000 implements MigrationInterface {
  name = 'Coupons1763900000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // seq orders coupons newest first for keyset pagination; it never changes.
    // redemption_count is only changed while the row is locked (FOR UPDATE).
    await queryRunner.query(`
      CREATE TABLE coupons (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        code text NOT NULL CHECK (code ~ '^[A-Za-z0-9_-]{1,50}$'),
        name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
        type text NOT NULL CHECK (type IN ('PERCENTAGE', 'FIXED_AMOUNT')),
        percentage integer CHECK (percentage BETWEEN 1 AND 100),
        fixed_amount bigint CHECK (fixed_amount > 0),
        fixed_currency_code text CHECK (fixed_currency_code ~ '^[A-Z]{3}$'),
        frequency text NOT NULL CHECK (frequency IN ('ONCE', 'LIMITED', 'LIFETIME')),
        frequency_interval integer CHECK (frequency_interval >= 1),
        max_redemptions integer CHECK (max_redemptions >= 1),
        max_redemptions_per_customer integer CHECK (max_redemptions_per_customer >= 1),
        expire_time timestamptz,
        limited_to_plans text[] NOT NULL DEFAULT '{}',
        excluded_from_plans text[] NOT NULL DEFAULT '{}',
        limited_to_products text[] NOT NULL DEFAULT '{}',
        excluded_from_products text[] NOT NULL DEFAULT '{}',
        enabled boolean NOT NULL DEFAULT true,
        redemption_count bigint NOT NULL DEFAULT 0 CHECK (redemption_count >= 0),
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        update_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        CONSTRAINT coupons_type_terms CHECK (
          (type = 'PERCENTAGE' AND percentage IS NOT NULL AND fixed_amount IS NULL AND fixed_currency_code IS NULL)
          OR (type = 'FIXED_AMOUNT' AND percentage IS NULL AND fixed_amount IS NOT NULL AND fixed_currency_code IS NOT NULL)
        ),
        CONSTRAINT coupons_frequency_interval CHECK ((frequency = 'LIMITED') = (frequency_interval IS NOT NULL)),
        CONSTRAINT coupons_within_max_redemptions CHECK (max_redemptions IS NULL OR redemption_count <= max_redemptions),
        CONSTRAINT coupons_plans_disjoint CHECK (NOT (limited_to_plans && excluded_from_plans)),
        CONSTRAINT coupons_products_disjoint CHECK (NOT (limited_to_products && excluded_from_products)),
        CONSTRAINT coupons_tenant_id UNIQUE (tenant_id, id)
      )`);
    // Codes are unique per tenant ignoring case (codes are ASCII, so lower() is exact).
    await queryRunner.query(`CREATE UNIQUE INDEX coupons_tenant_code ON coupons (tenant_id, lower(code))`);
    await queryRunner.query(`CREATE INDEX coupons_tenant_seq ON coupons (tenant_id, seq DESC)`);

    // Immutable; written while the coupon row is locked. The composite foreign
    // key keeps a redemption in its coupon's tenant and makes deleting a
    // redeemed coupon impossible.
    await queryRunner.query(`
      CREATE TABLE coupon_redemptions (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        tenant_id uuid NOT NULL,
        coupon_id uuid NOT NULL,
        customer_id text NOT NULL CHECK (customer_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
        plan_id text CHECK (plan_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
        product_id text CHECK (product_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
        amount bigint CHECK (amount >= 0),
        discount bigint CHECK (discount >= 0 AND discount <= amount),
        currency_code text CHECK (currency_code ~ '^[A-Z]{3}$'),
        done_by text NOT NULL,
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        FOREIGN KEY (tenant_id, coupon_id) REFERENCES coupons (tenant_id, id),
        CONSTRAINT coupon_redemptions_money CHECK (
          (amount IS NULL AND discount IS NULL AND currency_code IS NULL)
          OR (amount IS NOT NULL AND discount IS NOT NULL AND currency_code IS NOT NULL)
        )
      )`);
    await queryRunner.query(`CREATE INDEX coupon_redemptions_tenant_seq ON coupon_redemptions (tenant_id, seq DESC)`);
    await queryRunner.query(`CREATE INDEX coupon_redemptions_tenant_coupon_seq ON coupon_redemptions (tenant_id, coupon_id, seq DESC)`);
    // Serves the per-customer count under the coupon lock and the list by coupon and customer.
    await queryRunner.query(
      `CREATE INDEX coupon_redemptions_tenant_coupon_customer_seq ON coupon_redemptions (tenant_id, coupon_id, customer_id, seq DESC)`,
    );
    await queryRunner.query(`CREATE INDEX coupon_redemptions_tenant_customer_seq ON coupon_redemptions (tenant_id, customer_id, seq DESC)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE coupon_redemptions`);
    await queryRunner.query(`DROP TABLE coupons`);
  }
}
