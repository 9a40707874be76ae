import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The sweep that records lapsed holds of redemptions (CouponsService
 * `recordLapsedHolds`, run by every replica's expiry timer) looks for rows
 * stored HELD whose `hold_until` has passed, across tenants, oldest first.
 * The partial indexes of 1764600000000 lead with the tenant and the coupon
 * (or credit), so that search would read every held row; this one is ordered
 * by `hold_until` alone and holds only rows stored HELD, which the sweep
 * moves out of it once they lapse: it stays as small as the open holds.
 */
export class LapsedRedemptionSweep1764750000000 implements MigrationInterface {
  name = 'LapsedRedemptionSweep1764750000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE INDEX coupon_redemption_states_held_until ON coupon_redemption_states (hold_until) WHERE status = 'HELD'`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX coupon_redemption_states_held_until`);
  }
}
