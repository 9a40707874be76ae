import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Retention watermarks per tenant and event type: the newest (xid, position)
 * retention deleted of that tenant's events of that type. A reader's cursor
 * has missed events only if one of the tenant's events of the types it reads
 * was deleted after it; with one watermark for every tenant (migration
 * 1764500000000's event_retention.pruned_xid/pruned_position), a quiet
 * tenant's cursor, or that of a stream reading a rare type, read as expired
 * once any other tenant's week-old events were pruned, though nothing it
 * would have read was gone.
 *
 * Events deleted before this migration have no watermark of their own: a
 * copy of event_retention's global watermark as it stands now
 * (legacy_pruned_xid/position, never moved again) keeps a cursor behind
 * them expired. Prunes go on moving the global one too, for replicas of the
 * previous version during a rolling deploy, which read only that (without
 * it they would skip pruned events instead of answering CURSOR_EXPIRED;
 * found in review); this version never reads it.
 */
export class EventWatermarks1764900000000 implements MigrationInterface {
  name = 'EventWatermarks1764900000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE event_watermarks (
        tenant_id uuid NOT NULL,
        type text NOT NULL,
        pruned_xid xid8 NOT NULL,
        pruned_position bigint NOT NULL,
        PRIMARY KEY (tenant_id, type)
      )`);
    await queryRunner.query(`ALTER TABLE event_retention ADD COLUMN legacy_pruned_xid xid8, ADD COLUMN legacy_pruned_position bigint`);
    await queryRunner.query(`UPDATE event_retention SET legacy_pruned_xid = pruned_xid, legacy_pruned_position = pruned_position`);
    await queryRunner.query(
      `COMMENT ON COLUMN event_retention.legacy_pruned_xid IS 'newest event deleted before event_watermarks existed (never moved again)'`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE event_watermarks`);
    await queryRunner.query(`ALTER TABLE event_retention DROP COLUMN legacy_pruned_xid, DROP COLUMN legacy_pruned_position`);
  }
}
