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
 * event_retention's watermark stays what it was: events deleted before this
 * migration have no watermark of their own, so a cursor behind it is still
 * expired; prunes no longer move it.
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
    await queryRunner.query(`COMMENT ON COLUMN event_retention.pruned_xid IS 'newest event deleted before event_watermarks existed (no longer moved)'`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE event_watermarks`);
    await queryRunner.query(`COMMENT ON COLUMN event_retention.pruned_xid IS NULL`);
  }
}
