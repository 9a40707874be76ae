import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The outbox's event types and payload kinds, as migration 1764500000000 made them. */
const EVENT_TYPES = [
  'PROMOTIONAL_CREDIT_CREATED',
  'BALANCE_DEPLETED',
  'HOLD_CREATED',
  'HOLD_CAPTURED',
  'HOLD_RELEASED',
  'HOLD_EXPIRED',
  'COUPON_CREATED',
  'COUPON_UPDATED',
  'COUPON_DELETED',
  'REDEMPTION_CREATED',
  'REDEMPTION_CONFIRMED',
  'REDEMPTION_CANCELED',
  'CUSTOMER_CREDIT_CREATED',
  'CUSTOMER_CREDIT_REVOKED',
]
  .map((t) => `'${t}'`)
  .join(', ');
const PAYLOAD_KINDS = ['promotional_credit', 'hold', 'coupon', 'redemption', 'customer_credit'].map((k) => `'${k}'`).join(', ');

/**
 * The redemptions' rules, checked at a fraction of the cost, as migration
 * 1764650000000 did for the ledger. PostgreSQL prepares a table's CHECK
 * constraints anew for every statement that writes the table (ExecRelCheck
 * parses, plans and compiles each stored expression), and coupon_redeem
 * writes five tables per group: the coupon's 16 CHECKs alone cost 0.6 M
 * instructions per group for an UPDATE of one row. A domain's CHECK is
 * prepared once per session. Counted with callgrind on a single-user
 * backend, 16 requests per statement: 11.8-12.2 → 10.6 M instructions per
 * statement of code requests, 19.1-19.9 → 17.2 M of credit requests. The
 * single-column rules become domains:
 * - coupons: code, name, type, percentage, fixed amount and currency,
 *   frequency and its interval, the limits and redemption_count;
 * - coupon_redemptions: amount, currency, customer, plan and product;
 * - customer_credits: customer, membership, redemption_count and revenue
 *   (uses_total keeps its CHECK: the generated multi_use reads it, and a
 *   column a generated column uses cannot change type);
 * - customer_credit_redemptions: revenue;
 * - events (every write path's outbox): type and payload_kind.
 * Rules that compare columns stay table CHECKs. Amounts use the ledger's
 * domains (ledger_amount ≥ 0, ledger_positive_amount > 0). The columns keep
 * their base types for every reader (PostgreSQL describes a domain column
 * by its base type); no row is rewritten, each is checked once against its
 * domain. A function that answers such a column in a result declared with
 * the base type casts it (coupon_redeem's RETURN QUERY).
 */
export class RedemptionCheckDomains1764800000000 implements MigrationInterface {
  name = 'RedemptionCheckDomains1764800000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE DOMAIN credits_identifier AS text CHECK (VALUE ~ '^[A-Za-z0-9_.@:-]{1,50}$')`);
    await queryRunner.query(`CREATE DOMAIN credits_currency_code AS text CHECK (VALUE ~ '^[A-Z]{3}$')`);
    await queryRunner.query(`CREATE DOMAIN credits_count AS bigint CHECK (VALUE >= 0)`);
    await queryRunner.query(`CREATE DOMAIN credits_limit AS integer CHECK (VALUE >= 1)`);
    await queryRunner.query(`CREATE DOMAIN coupon_code AS text CHECK (VALUE ~ '^[A-Za-z0-9_-]{1,50}$')`);
    await queryRunner.query(`CREATE DOMAIN coupon_name AS text CHECK (char_length(VALUE) BETWEEN 1 AND 255)`);
    await queryRunner.query(`CREATE DOMAIN coupon_percentage AS integer CHECK (VALUE BETWEEN 1 AND 100)`);
    await queryRunner.query(`CREATE DOMAIN coupon_type AS text CHECK (VALUE IN ('PERCENTAGE', 'FIXED_AMOUNT'))`);
    await queryRunner.query(`CREATE DOMAIN coupon_frequency AS text CHECK (VALUE IN ('ONCE', 'LIMITED', 'LIFETIME'))`);
    await queryRunner.query(`CREATE DOMAIN event_type AS text CHECK (VALUE IN (${EVENT_TYPES}))`);
    await queryRunner.query(`CREATE DOMAIN event_payload_kind AS text CHECK (VALUE IN (${PAYLOAD_KINDS}))`);
    await queryRunner.query(
      `ALTER TABLE coupons
         DROP CONSTRAINT coupons_code_check,
         DROP CONSTRAINT coupons_name_check,
         DROP CONSTRAINT coupons_type_check,
         DROP CONSTRAINT coupons_percentage_check,
         DROP CONSTRAINT coupons_fixed_amount_check,
         DROP CONSTRAINT coupons_fixed_currency_code_check,
         DROP CONSTRAINT coupons_frequency_check,
         DROP CONSTRAINT coupons_frequency_interval_check,
         DROP CONSTRAINT coupons_max_redemptions_check,
         DROP CONSTRAINT coupons_max_redemptions_per_customer_check,
         DROP CONSTRAINT coupons_redemption_count_check,
         ALTER COLUMN code TYPE coupon_code,
         ALTER COLUMN name TYPE coupon_name,
         ALTER COLUMN type TYPE coupon_type,
         ALTER COLUMN percentage TYPE coupon_percentage,
         ALTER COLUMN fixed_amount TYPE ledger_positive_amount,
         ALTER COLUMN fixed_currency_code TYPE credits_currency_code,
         ALTER COLUMN frequency TYPE coupon_frequency,
         ALTER COLUMN frequency_interval TYPE credits_limit,
         ALTER COLUMN max_redemptions TYPE credits_limit,
         ALTER COLUMN max_redemptions_per_customer TYPE credits_limit,
         ALTER COLUMN redemption_count TYPE credits_count`,
    );
    await queryRunner.query(
      `ALTER TABLE coupon_redemptions
         DROP CONSTRAINT coupon_redemptions_amount_check,
         DROP CONSTRAINT coupon_redemptions_currency_code_check,
         DROP CONSTRAINT coupon_redemptions_customer_id_check,
         DROP CONSTRAINT coupon_redemptions_plan_id_check,
         DROP CONSTRAINT coupon_redemptions_product_id_check,
         ALTER COLUMN amount TYPE ledger_amount,
         ALTER COLUMN currency_code TYPE credits_currency_code,
         ALTER COLUMN customer_id TYPE credits_identifier,
         ALTER COLUMN plan_id TYPE credits_identifier,
         ALTER COLUMN product_id TYPE credits_identifier`,
    );
    await queryRunner.query(
      `ALTER TABLE customer_credits
         DROP CONSTRAINT customer_credits_customer_id_check,
         DROP CONSTRAINT customer_credits_membership_id_check,
         DROP CONSTRAINT customer_credits_redemption_count_check,
         DROP CONSTRAINT customer_credits_revenue_amount_check,
         DROP CONSTRAINT customer_credits_revenue_currency_code_check,
         ALTER COLUMN customer_id TYPE credits_identifier,
         ALTER COLUMN membership_id TYPE credits_identifier,
         ALTER COLUMN redemption_count TYPE credits_count,
         ALTER COLUMN revenue_amount TYPE ledger_amount,
         ALTER COLUMN revenue_currency_code TYPE credits_currency_code`,
    );
    await queryRunner.query(
      `ALTER TABLE customer_credit_redemptions
         DROP CONSTRAINT customer_credit_redemptions_revenue_amount_check,
         DROP CONSTRAINT customer_credit_redemptions_revenue_currency_code_check,
         ALTER COLUMN revenue_amount TYPE ledger_amount,
         ALTER COLUMN revenue_currency_code TYPE credits_currency_code`,
    );
    await queryRunner.query(
      `ALTER TABLE events
         DROP CONSTRAINT events_type_check,
         DROP CONSTRAINT events_payload_kind_check,
         ALTER COLUMN type TYPE event_type,
         ALTER COLUMN payload_kind TYPE event_payload_kind`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE events
         ALTER COLUMN type TYPE text,
         ALTER COLUMN payload_kind TYPE text,
         ADD CONSTRAINT events_type_check CHECK (type IN (${EVENT_TYPES})),
         ADD CONSTRAINT events_payload_kind_check CHECK (payload_kind IN (${PAYLOAD_KINDS}))`,
    );
    await queryRunner.query(
      `ALTER TABLE customer_credit_redemptions
         ALTER COLUMN revenue_amount TYPE bigint,
         ALTER COLUMN revenue_currency_code TYPE text,
         ADD CONSTRAINT customer_credit_redemptions_revenue_amount_check CHECK (revenue_amount >= 0),
         ADD CONSTRAINT customer_credit_redemptions_revenue_currency_code_check CHECK (revenue_currency_code ~ '^[A-Z]{3}$')`,
    );
    await queryRunner.query(
      `ALTER TABLE customer_credits
         ALTER COLUMN customer_id TYPE text,
         ALTER COLUMN membership_id TYPE text,
         ALTER COLUMN redemption_count TYPE bigint,
         ALTER COLUMN revenue_amount TYPE bigint,
         ALTER COLUMN revenue_currency_code TYPE text,
         ADD CONSTRAINT customer_credits_customer_id_check CHECK (customer_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
         ADD CONSTRAINT customer_credits_membership_id_check CHECK (membership_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
         ADD CONSTRAINT customer_credits_redemption_count_check CHECK (redemption_count >= 0),
         ADD CONSTRAINT customer_credits_revenue_amount_check CHECK (revenue_amount >= 0),
         ADD CONSTRAINT customer_credits_revenue_currency_code_check CHECK (revenue_currency_code ~ '^[A-Z]{3}$')`,
    );
    await queryRunner.query(
      `ALTER TABLE coupon_redemptions
         ALTER COLUMN amount TYPE bigint,
         ALTER COLUMN currency_code TYPE text,
         ALTER COLUMN customer_id TYPE text,
         ALTER COLUMN plan_id TYPE text,
         ALTER COLUMN product_id TYPE text,
         ADD CONSTRAINT coupon_redemptions_amount_check CHECK (amount >= 0),
         ADD CONSTRAINT coupon_redemptions_currency_code_check CHECK (currency_code ~ '^[A-Z]{3}$'),
         ADD CONSTRAINT coupon_redemptions_customer_id_check CHECK (customer_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
         ADD CONSTRAINT coupon_redemptions_plan_id_check CHECK (plan_id ~ '^[A-Za-z0-9_.@:-]{1,50}$'),
         ADD CONSTRAINT coupon_redemptions_product_id_check CHECK (product_id ~ '^[A-Za-z0-9_.@:-]{1,50}$')`,
    );
    await queryRunner.query(
      `ALTER TABLE coupons
         ALTER COLUMN code TYPE text,
         ALTER COLUMN name TYPE text,
         ALTER COLUMN type TYPE text,
         ALTER COLUMN percentage TYPE integer,
         ALTER COLUMN fixed_amount TYPE bigint,
         ALTER COLUMN fixed_currency_code TYPE text,
         ALTER COLUMN frequency TYPE text,
         ALTER COLUMN frequency_interval TYPE integer,
         ALTER COLUMN max_redemptions TYPE integer,
         ALTER COLUMN max_redemptions_per_customer TYPE integer,
         ALTER COLUMN redemption_count TYPE bigint,
         ADD CONSTRAINT coupons_code_check CHECK (code ~ '^[A-Za-z0-9_-]{1,50}$'),
         ADD CONSTRAINT coupons_name_check CHECK (char_length(name) BETWEEN 1 AND 255),
         ADD CONSTRAINT coupons_type_check CHECK (type IN ('PERCENTAGE', 'FIXED_AMOUNT')),
         ADD CONSTRAINT coupons_percentage_check CHECK (percentage BETWEEN 1 AND 100),
         ADD CONSTRAINT coupons_fixed_amount_check CHECK (fixed_amount > 0),
         ADD CONSTRAINT coupons_fixed_currency_code_check CHECK (fixed_currency_code ~ '^[A-Z]{3}$'),
         ADD CONSTRAINT coupons_frequency_check CHECK (frequency IN ('ONCE', 'LIMITED', 'LIFETIME')),
         ADD CONSTRAINT coupons_frequency_interval_check CHECK (frequency_interval >= 1),
         ADD CONSTRAINT coupons_max_redemptions_check CHECK (max_redemptions >= 1),
         ADD CONSTRAINT coupons_max_redemptions_per_customer_check CHECK (max_redemptions_per_customer >= 1),
         ADD CONSTRAINT coupons_redemption_count_check CHECK (redemption_count >= 0)`,
    );
    for (const domain of [
      'event_payload_kind',
      'event_type',
      'coupon_frequency',
      'coupon_type',
      'coupon_percentage',
      'coupon_name',
      'coupon_code',
      'credits_limit',
      'credits_count',
      'credits_currency_code',
      'credits_identifier',
    ]) {
      await queryRunner.query(`DROP DOMAIN ${domain}`);
    }
  }
}
