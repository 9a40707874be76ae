import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A hold reserves particular credits when it is made (the soonest-expiring
 * available ones of the lots that exist then) instead of being reckoned,
 * whenever asked, as the first credits in consumption order. Reckoned that
 * way a hold moved onto lots made after it: Add 10, Hold 10, Add 10 expiring
 * in a second; once that second passed, the hold "kept" the expired lot and
 * the customer could spend 20.
 *
 * - `promotional_credit_holds.allocations`: what the hold reserved,
 *   [{lot_id, amount}] (amounts as strings, like an entry's), set when it is
 *   made and kept as its record once it ends. NULL only for holds that ended
 *   before this migration.
 * - `promotional_credit_lots.reserved`: what the active holds reserve of the
 *   lot, at most what is left of it. Deductions draw only the rest.
 * - `promotional_credit_lots.revoke_time`: when the lot's credit was
 *   reversed. What holds reserve of it then leaves when they end, as if the
 *   lot had expired then; its expire_time (and place in consumption order)
 *   stays.
 *
 * The active holds of an existing database get their reservations when the
 * write path's definition that reads them is applied (version 13 of
 * promotional_credit_apply), in the same transaction; a hold an older
 * replica makes meanwhile gets them at its balance's next write or sweep.
 * Each reserves, as it would have when made, of the lots that existed and
 * had not expired then (of others only where deductions since drew those).
 *
 * Reversals made before keep what they did then: a credit reversed while
 * holds needed part of its lot took the rest, and that part stays the
 * customer's once the holds end, as version 12 documented ("as far as
 * active holds leave it available"). Reversals from now on take it when
 * the holds end.
 */
export class HoldReservations1765000000000 implements MigrationInterface {
  name = 'HoldReservations1765000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE promotional_credit_holds ADD COLUMN allocations jsonb`);
    await queryRunner.query(
      `ALTER TABLE promotional_credit_lots
         ADD COLUMN reserved bigint NOT NULL DEFAULT 0,
         ADD COLUMN revoke_time timestamptz,
         DROP CONSTRAINT promotional_credit_lots_remaining,
         ADD CONSTRAINT promotional_credit_lots_remaining
           CHECK (remaining >= 0 AND remaining <= amount AND reserved >= 0 AND reserved <= remaining
                  AND (NOT expired OR expire_time IS NOT NULL OR revoke_time IS NOT NULL))`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE promotional_credit_lots
         DROP CONSTRAINT promotional_credit_lots_remaining,
         DROP COLUMN reserved,
         DROP COLUMN revoke_time,
         ADD CONSTRAINT promotional_credit_lots_remaining CHECK (remaining >= 0 AND remaining <= amount AND (NOT expired OR expire_time IS NOT NULL))`,
    );
    await queryRunner.query(`ALTER TABLE promotional_credit_holds DROP COLUMN allocations`);
  }
}
