import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The ledger and the redemptions are append-only in the database itself: a
 * trigger refuses UPDATE, DELETE and TRUNCATE of `promotional_credits` and
 * `coupon_redemptions`, whoever sends them. Corrections are new rows.
 *
 * Also the bookkeeping of SQL functions kept beside their code (see
 * src/db/sql-definitions.ts); the batch function this replaces is dropped by
 * its new definition.
 */
export class AppendOnlyLedger1764100000000 implements MigrationInterface {
  name = 'AppendOnlyLedger1764100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION refuse_append_only_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        RAISE EXCEPTION '% is append-only: % is refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
      END
      $fn$`);
    for (const table of ['promotional_credits', 'coupon_redemptions']) {
      await queryRunner.query(
        `CREATE TRIGGER ${table}_append_only BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()`,
      );
      await queryRunner.query(
        `CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()`,
      );
    }
    await queryRunner.query(`
      CREATE TABLE sql_definitions (
        name text PRIMARY KEY,
        version integer NOT NULL,
        sha256 text NOT NULL,
        apply_time timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE sql_definitions`);
    for (const table of ['promotional_credits', 'coupon_redemptions']) {
      await queryRunner.query(`DROP TRIGGER ${table}_no_truncate ON ${table}`);
      await queryRunner.query(`DROP TRIGGER ${table}_append_only ON ${table}`);
    }
    await queryRunner.query(`DROP FUNCTION refuse_append_only_change()`);
  }
}
