import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The active holds that reserve nothing (allocations NULL: made before
 * migration 1765000000000, or by an older replica during a rolling deploy),
 * indexed by balance. Every write to a balance that holds anything first
 * asks whether it has one (promotional_credit_reserve_unreserved_if_any);
 * answered from promotional_credit_holds_active, that read every active
 * hold of the balance from the table to look at its allocations (the
 * bench's captures, of customers with 10-20 active holds each: about 9% of
 * their PostgreSQL time, in runs alternating with and without it). This index holds
 * only such holds (none, once the last legacy one is reserved), so the
 * question is one probe of an empty index, whatever the balance holds; no
 * other statement can use it (each needs both conditions). Holds are made
 * with their allocations, so their inserts never enter it, and the updates
 * that change `allocations` (reserving a legacy hold) or `status` were
 * already not HOT (status is in promotional_credit_holds_active's predicate).
 */
export class UnreservedHoldsIndex1765100000000 implements MigrationInterface {
  name = 'UnreservedHoldsIndex1765100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE INDEX promotional_credit_holds_unreserved ON promotional_credit_holds (tenant_id, customer_id, currency_code)
        WHERE status = 'ACTIVE' AND allocations IS NULL`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX promotional_credit_holds_unreserved`);
  }
}
