import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * REDEMPTION_CREATED stored by reference, as a ledger entry's event is: the
 * event names its redemption (`redemption_id`) and has no payload; the read
 * renders the redemption as it was created (src/events/event.repository.ts).
 * A redemption's row never changes, and at creation its status is known
 * from it (HELD when it has a hold_until, CONFIRMED otherwise; updateTime
 * its create_time), so the rendering is the payload that was stored before.
 * Building and storing that payload was a fifth of a code redemption's
 * PostgreSQL instructions and a ninth of a credit redemption's (callgrind,
 * statements of 32: 574,000 → 457,000 and 701,000 → 622,000; README).
 *
 * The constraint is added NOT VALID: every existing row has no
 * redemption_id and meets it, and new rows are checked; validating would
 * read the whole outbox under a lock for nothing. No foreign key (as
 * redemptions have none since 1765300000000): redemptions are never
 * deleted and the event is written in the redemption's statement;
 * `credits verify` checks it (redemption-audit.ts: EVENT_REDEMPTION_MISSING).
 *
 * `down` writes the payloads back (coupon_redemption_json, the same
 * rendering) before dropping the column, so nothing is lost.
 */
export class RedemptionEventsByReference1765400000000 implements MigrationInterface {
  name = 'RedemptionEventsByReference1765400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE events ADD COLUMN redemption_id uuid`);
    await queryRunner.query(
      `ALTER TABLE events ADD CONSTRAINT events_redemption_reference
         CHECK (redemption_id IS NULL OR (type = 'REDEMPTION_CREATED' AND payload_kind = 'redemption' AND payload IS NULL)) NOT VALID`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    // events is append-only (events_append_only refuses UPDATE): this is the one rewrite it ever gets.
    await queryRunner.query(`ALTER TABLE events DISABLE TRIGGER events_append_only`);
    await queryRunner.query(
      `UPDATE events e
          SET payload = coupon_redemption_json(r, l.credit_id, CASE WHEN r.hold_until IS NULL THEN 'CONFIRMED' ELSE 'HELD' END, r.create_time),
              redemption_id = NULL
         FROM coupon_redemptions r LEFT JOIN customer_credit_redemptions l ON l.redemption_id = r.id
        WHERE e.redemption_id IS NOT NULL AND r.id = e.redemption_id`,
    );
    await queryRunner.query(`ALTER TABLE events ENABLE TRIGGER events_append_only`);
    await queryRunner.query(`ALTER TABLE events DROP CONSTRAINT events_redemption_reference`);
    await queryRunner.query(`ALTER TABLE events DROP COLUMN redemption_id`);
  }
}
