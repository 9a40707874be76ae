import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Credits that expire: every INCREMENT opens a lot (its id is the entry's
 * id) holding what is left of it; deductions draw from lots, soonest
 * `expire_time` first, never-expiring last, then oldest first, and list what
 * they drew in `allocations`. Entries gain `origin` (what wrote them; NULL for
 * entries written before origins were recorded), `expire_time` and
 * `allocations`. The balance row gains `next_expire_time`, the earliest
 * moment something of it expires, so that a write sees in its own row
 * whether expirations are due before it.
 *
 * Balances that exist already get one never-expiring lot per INCREMENT
 * entry, with what is left of each as if every earlier deduction had drawn
 * oldest first (the only order there was for credits that never expire):
 * with C = what was ever deducted and P the credits granted before a lot,
 * the lot lost min(amount, max(0, C - P)). That loss is kept in
 * `consumed_before_lots`, since those deductions list no allocations.
 */
export class CreditLots1764200000000 implements MigrationInterface {
  name = 'CreditLots1764200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE promotional_credits
        ADD COLUMN origin text CHECK (origin IN ('ADD', 'DEDUCT', 'SET', 'EXPIRATION', 'REVERSAL', 'HOLD_CAPTURE')),
        ADD COLUMN expire_time timestamptz,
        ADD COLUMN allocations jsonb`);
    await queryRunner.query(`ALTER TABLE promotional_credit_balances ADD COLUMN next_expire_time timestamptz`);
    // The sweep finds balances with something due.
    await queryRunner.query(
      `CREATE INDEX promotional_credit_balances_next_expire ON promotional_credit_balances (next_expire_time) WHERE next_expire_time IS NOT NULL`,
    );
    await queryRunner.query(`
      CREATE TABLE promotional_credit_lots (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL,
        customer_id text NOT NULL,
        currency_code text NOT NULL,
        seq bigint NOT NULL,
        amount bigint NOT NULL CHECK (amount > 0),
        remaining bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
        expire_time timestamptz,
        expired boolean NOT NULL DEFAULT false,
        credit_type text NOT NULL,
        create_time timestamptz NOT NULL,
        consumed_before_lots bigint NOT NULL DEFAULT 0 CHECK (consumed_before_lots >= 0),
        FOREIGN KEY (tenant_id, customer_id, currency_code) REFERENCES promotional_credit_balances,
        CONSTRAINT promotional_credit_lots_expired CHECK (NOT expired OR expire_time IS NOT NULL)
      )`);
    // Consumption order (soonest expiry first, never last, then oldest) over
    // lots with something left; also finds a balance's due lots.
    await queryRunner.query(`
      CREATE INDEX promotional_credit_lots_consumption
        ON promotional_credit_lots (tenant_id, customer_id, currency_code, expire_time, seq) WHERE remaining > 0`);
    // ListPromotionalCreditLots with include_empty walks every lot in that order.
    await queryRunner.query(`
      CREATE INDEX promotional_credit_lots_all ON promotional_credit_lots (tenant_id, customer_id, currency_code, expire_time, seq)`);

    await queryRunner.query(`
      INSERT INTO promotional_credit_lots
        (id, tenant_id, customer_id, currency_code, seq, amount, remaining, credit_type, create_time, consumed_before_lots)
      SELECT id, tenant_id, customer_id, currency_code, seq, amount, amount - lost, credit_type, create_time, lost
        FROM (
          SELECT e.*,
                 least(e.amount, greatest(0, d.deducted - (sum(e.amount) OVER w - e.amount))) AS lost
            FROM promotional_credits e
            JOIN (SELECT tenant_id, customer_id, currency_code,
                         coalesce(sum(amount) FILTER (WHERE type = 'DECREMENT'), 0) AS deducted
                    FROM promotional_credits GROUP BY tenant_id, customer_id, currency_code) d
              USING (tenant_id, customer_id, currency_code)
           WHERE e.type = 'INCREMENT'
          WINDOW w AS (PARTITION BY e.tenant_id, e.customer_id, e.currency_code ORDER BY e.seq)
        ) granted`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE promotional_credit_lots`);
    await queryRunner.query(`DROP INDEX promotional_credit_balances_next_expire`);
    await queryRunner.query(`ALTER TABLE promotional_credit_balances DROP COLUMN next_expire_time`);
    await queryRunner.query(`ALTER TABLE promotional_credits DROP COLUMN allocations, DROP COLUMN expire_time, DROP COLUMN origin`);
  }
}
