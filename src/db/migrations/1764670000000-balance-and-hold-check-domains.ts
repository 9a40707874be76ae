import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The rest of the write path's CHECKs, as in migration 1764650000000: each
 * CHECK of a table is parsed, planned and compiled again for every statement
 * that writes it, a domain's once per session. Every balance change updates
 * its balance row, a capture its hold and its lot: under callgrind a hold
 * and its capture passed fourteen CHECK preparations (12% of their
 * instructions). Single-column rules become domains (balance amount, hold
 * amount, status and captured amount); the rules that compare columns stay,
 * one CHECK per table: held ≤ amount (balances), 0 ≤ remaining ≤ amount and
 * an expired lot has an expire_time (lots; `remaining` stays bigint, as the
 * generated `open` reads it), captured ≤ amount and a capture id
 * exactly when CAPTURED (holds). Nothing is rewritten; the rows are checked.
 */
export class BalanceAndHoldCheckDomains1764670000000 implements MigrationInterface {
  name = 'BalanceAndHoldCheckDomains1764670000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE DOMAIN hold_status AS text CHECK (VALUE IN ('ACTIVE', 'CAPTURED', 'RELEASED', 'EXPIRED'))`);
    await queryRunner.query(
      `ALTER TABLE promotional_credit_balances
         DROP CONSTRAINT promotional_credit_balances_amount_check,
         ALTER COLUMN amount TYPE ledger_amount`,
    );
    await queryRunner.query(
      `ALTER TABLE promotional_credit_lots
         DROP CONSTRAINT promotional_credit_lots_check,
         DROP CONSTRAINT promotional_credit_lots_expired,
         ADD CONSTRAINT promotional_credit_lots_remaining CHECK (remaining >= 0 AND remaining <= amount AND (NOT expired OR expire_time IS NOT NULL))`,
    );
    await queryRunner.query(
      `ALTER TABLE promotional_credit_holds
         DROP CONSTRAINT promotional_credit_holds_amount_check,
         DROP CONSTRAINT promotional_credit_holds_status_check,
         DROP CONSTRAINT promotional_credit_holds_check,
         DROP CONSTRAINT promotional_credit_holds_captured,
         ALTER COLUMN amount TYPE ledger_positive_amount,
         ALTER COLUMN status TYPE hold_status,
         ALTER COLUMN captured_amount TYPE ledger_amount,
         ADD CONSTRAINT promotional_credit_holds_capture CHECK (captured_amount <= amount AND (status = 'CAPTURED') = (capture_id IS NOT NULL))`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE promotional_credit_holds
         DROP CONSTRAINT promotional_credit_holds_capture,
         ALTER COLUMN amount TYPE bigint,
         ALTER COLUMN status TYPE text,
         ALTER COLUMN captured_amount TYPE bigint,
         ADD CONSTRAINT promotional_credit_holds_amount_check CHECK (amount > 0),
         ADD CONSTRAINT promotional_credit_holds_status_check CHECK (status IN ('ACTIVE', 'CAPTURED', 'RELEASED', 'EXPIRED')),
         ADD CONSTRAINT promotional_credit_holds_check CHECK (captured_amount >= 0 AND captured_amount <= amount),
         ADD CONSTRAINT promotional_credit_holds_captured CHECK ((status = 'CAPTURED') = (capture_id IS NOT NULL))`,
    );
    await queryRunner.query(
      `ALTER TABLE promotional_credit_lots
         DROP CONSTRAINT promotional_credit_lots_remaining,
         ADD CONSTRAINT promotional_credit_lots_check CHECK (remaining >= 0 AND remaining <= amount),
         ADD CONSTRAINT promotional_credit_lots_expired CHECK (NOT expired OR expire_time IS NOT NULL)`,
    );
    await queryRunner.query(
      `ALTER TABLE promotional_credit_balances
         ALTER COLUMN amount TYPE bigint,
         ADD CONSTRAINT promotional_credit_balances_amount_check CHECK (amount >= 0)`,
    );
    await queryRunner.query(`DROP DOMAIN hold_status`);
  }
}
