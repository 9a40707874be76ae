import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Holds: credits reserved during a checkout, then captured or released.
 * `held` on the balance row is the sum of its ACTIVE holds, kept by the
 * ledger's write path under the balance row's lock; the CHECK makes "the sum
 * of active holds never exceeds the balance" the database's rule. A hold is
 * not a ledger entry (only its capture writes one), so holds are mutable
 * rows; `next_expire_time` of the balance also covers its holds' expiry.
 */
export class CreditHolds1764400000000 implements MigrationInterface {
  name = 'CreditHolds1764400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE promotional_credit_balances
        ADD COLUMN held bigint NOT NULL DEFAULT 0,
        ADD CONSTRAINT promotional_credit_balances_held CHECK (held >= 0 AND held <= amount)`);
    await queryRunner.query(`
      CREATE TABLE promotional_credit_holds (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        tenant_id uuid NOT NULL,
        customer_id text NOT NULL,
        currency_code text NOT NULL,
        amount bigint NOT NULL CHECK (amount > 0),
        captured_amount bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
        status text NOT NULL CHECK (status IN ('ACTIVE', 'CAPTURED', 'RELEASED', 'EXPIRED')),
        description text NOT NULL,
        reference text NOT NULL DEFAULT '',
        metadata jsonb NOT NULL DEFAULT '{}',
        done_by text NOT NULL,
        capture_id uuid,
        expire_time timestamptz NOT NULL,
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        update_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        FOREIGN KEY (tenant_id, customer_id, currency_code) REFERENCES promotional_credit_balances,
        CONSTRAINT promotional_credit_holds_captured CHECK ((status = 'CAPTURED') = (capture_id IS NOT NULL))
      )`);
    // A balance's active holds by expiry (settling the due ones), and the sweep's.
    await queryRunner.query(`
      CREATE INDEX promotional_credit_holds_active ON promotional_credit_holds (tenant_id, customer_id, currency_code, expire_time)
       WHERE status = 'ACTIVE'`);
    // ListPromotionalCreditHolds: a customer's holds, newest first.
    await queryRunner.query(`CREATE INDEX promotional_credit_holds_customer_seq ON promotional_credit_holds (tenant_id, customer_id, seq DESC)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE promotional_credit_holds`);
    await queryRunner.query(`ALTER TABLE promotional_credit_balances DROP CONSTRAINT promotional_credit_balances_held, DROP COLUMN held`);
  }
}
