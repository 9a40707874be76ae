import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Two-phase redemptions and metadata on coupons, customer credits and
 * redemptions.
 *
 * `coupon_redemptions` stays append-only (its trigger refuses UPDATE and
 * DELETE): a redemption's `hold_until` and `metadata` are written once, with
 * it. Where a redemption stands lives in `coupon_redemption_states`, a
 * mutable table of its own with one row per redemption that was ever held or
 * canceled (no row: CONFIRMED at once, as every redemption before this
 * migration was):
 * - HELD: counts toward every limit while `hold_until` is in the future; from
 *   that instant it reads CANCELED, with nothing written (no job needed);
 * - CONFIRMED, CANCELED: written under the coupon's row lock (and the
 *   credit's, for a credit's redemption), never moving back.
 *
 * Counters: `coupons.redemption_count` and `customer_credits.redemption_count`
 * count CONFIRMED uses only, so a hold that lapses never leaves a stored
 * count to correct and the existing CHECKs (count <= max_redemptions, <=
 * uses_total) keep holding. The uses that count at an instant are that
 * counter plus the HELD rows whose `hold_until` is later, counted through
 * the partial indexes below (they hold only rows stored HELD; lapsed ones
 * sort before `now` and are never read by the count).
 *
 * `coupons.redeemed`: whether the coupon ever had a redemption (held,
 * confirmed or since canceled): its terms stay frozen and it cannot be
 * deleted (the redemptions' foreign key forbids that anyway) even when every
 * use was given back. A credit's `last_redeem_time` stays when its uses are
 * given back, so its CHECK only requires it once a use was confirmed.
 */
export class TwoPhaseRedemptions1764600000000 implements MigrationInterface {
  name = 'TwoPhaseRedemptions1764600000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // Adding a column with a constant default rewrites no row (and fires no row trigger).
    await queryRunner.query(`ALTER TABLE coupon_redemptions ADD COLUMN hold_until timestamptz, ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'`);
    await queryRunner.query(`ALTER TABLE coupons ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}', ADD COLUMN redeemed boolean NOT NULL DEFAULT false`);
    await queryRunner.query(`UPDATE coupons SET redeemed = true WHERE redemption_count > 0`);
    await queryRunner.query(`ALTER TABLE customer_credits ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'`);
    await queryRunner.query(`
      ALTER TABLE customer_credits
        DROP CONSTRAINT customer_credits_last_redeem_time,
        ADD CONSTRAINT customer_credits_last_redeem_time CHECK (redemption_count = 0 OR last_redeem_time IS NOT NULL)`);

    await queryRunner.query(`
      CREATE TABLE coupon_redemption_states (
        redemption_id uuid PRIMARY KEY REFERENCES coupon_redemptions (id),
        tenant_id uuid NOT NULL,
        coupon_id uuid NOT NULL,
        customer_credit_id uuid,
        status text NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'CANCELED')),
        hold_until timestamptz,
        update_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        CONSTRAINT coupon_redemption_states_held CHECK (status <> 'HELD' OR hold_until IS NOT NULL)
      )`);
    await queryRunner.query(
      `CREATE INDEX coupon_redemption_states_held_by_coupon ON coupon_redemption_states (tenant_id, coupon_id, hold_until) WHERE status = 'HELD'`,
    );
    await queryRunner.query(
      `CREATE INDEX coupon_redemption_states_held_by_credit ON coupon_redemption_states (tenant_id, customer_credit_id, hold_until)
        WHERE status = 'HELD' AND customer_credit_id IS NOT NULL`,
    );

    // The metadata filters of ListCouponRedemptions and ListCustomerCredits
    // (containment, @>), as promotional_credits_metadata serves the ledger's.
    await queryRunner.query(`CREATE INDEX coupon_redemptions_metadata ON coupon_redemptions USING gin (metadata jsonb_path_ops)`);
    await queryRunner.query(`CREATE INDEX customer_credits_metadata ON customer_credits USING gin (metadata jsonb_path_ops)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX customer_credits_metadata`);
    await queryRunner.query(`DROP INDEX coupon_redemptions_metadata`);
    await queryRunner.query(`DROP TABLE coupon_redemption_states`);
    await queryRunner.query(`
      ALTER TABLE customer_credits
        DROP CONSTRAINT customer_credits_last_redeem_time,
        ADD CONSTRAINT customer_credits_last_redeem_time CHECK ((redemption_count = 0) = (last_redeem_time IS NULL))`);
    await queryRunner.query(`ALTER TABLE customer_credits DROP COLUMN metadata`);
    await queryRunner.query(`ALTER TABLE coupons DROP COLUMN redeemed, DROP COLUMN metadata`);
    // Dropping columns rewrites no row either.
    await queryRunner.query(`ALTER TABLE coupon_redemptions DROP COLUMN metadata, DROP COLUMN hold_until`);
  }
}
