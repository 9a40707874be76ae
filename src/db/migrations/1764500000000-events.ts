import type { MigrationInterface, QueryRunner } from 'typeorm';
import { dropSqlDefinitions } from '../sql-definitions';

/**
 * The outbox: one row per event, written in the same transaction as the
 * change it tells of, so an event exists if and only if its change committed.
 *
 * Order: (xid, position). `position` comes from a sequence, taken when the
 * row is written, and transactions commit in any order, so "everything after
 * position N" could skip a row that commits later with a smaller N. Readers
 * therefore only read rows whose transaction id is below the oldest
 * transaction still running (pg_snapshot_xmin of the current snapshot): every
 * such transaction has ended, and any transaction that commits later has a
 * larger xid, so it sorts after everything already read. Gap-free, no
 * repeats, no lock on the write path; the price is that a reader waits for
 * the oldest open writing transaction (see src/events/).
 *
 * Payload: a ledger entry's events name the entry (entries are immutable, so
 * reading it later gives what it was); others keep a JSON snapshot of the
 * resource as it was after the change.
 *
 * Append-only: UPDATE is refused; DELETE only of rows older than the
 * retention the servers were configured with (`event_retention`, which also
 * keeps the newest (xid, position) ever deleted, so that a reader's cursor
 * behind it is known to have missed events). A statement-level trigger
 * NOTIFYs `credits_events` with the tenant ids of the new rows, delivered at
 * commit, so streams wake up without polling.
 */
export class Events1764500000000 implements MigrationInterface {
  name = 'Events1764500000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE events (
        xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        position bigint GENERATED ALWAYS AS IDENTITY,
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL,
        type text NOT NULL CHECK (type IN (
          'PROMOTIONAL_CREDIT_CREATED', 'BALANCE_DEPLETED', 'HOLD_CREATED', 'HOLD_CAPTURED', 'HOLD_RELEASED', 'HOLD_EXPIRED',
          'COUPON_CREATED', 'COUPON_UPDATED', 'COUPON_DELETED', 'REDEMPTION_CREATED', 'REDEMPTION_CONFIRMED', 'REDEMPTION_CANCELED',
          'CUSTOMER_CREDIT_CREATED', 'CUSTOMER_CREDIT_REVOKED')),
        customer_id text,
        create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
        promotional_credit_id uuid,
        payload_kind text NOT NULL CHECK (payload_kind IN ('promotional_credit', 'hold', 'coupon', 'redemption', 'customer_credit')),
        payload jsonb,
        PRIMARY KEY (xid, position),
        CONSTRAINT events_payload CHECK ((payload_kind = 'promotional_credit') = (promotional_credit_id IS NOT NULL AND payload IS NULL))
      )`);
    await queryRunner.query(`CREATE INDEX events_tenant_order ON events (tenant_id, xid, position)`);
    await queryRunner.query(`CREATE INDEX events_create_time ON events (create_time)`);
    await queryRunner.query(`
      CREATE TABLE event_retention (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        hours integer NOT NULL CHECK (hours >= 1),
        pruned_xid xid8,
        pruned_position bigint
      )`);
    await queryRunner.query(`INSERT INTO event_retention (hours) VALUES (168)`);
    await queryRunner.query(`
      CREATE FUNCTION events_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP = 'DELETE' AND OLD.create_time < clock_timestamp() - make_interval(hours => (SELECT hours FROM event_retention)) THEN
          RETURN OLD;
        END IF;
        RAISE EXCEPTION 'events is append-only: % is refused (rows leave only once older than the retention)', TG_OP
          USING ERRCODE = 'restrict_violation';
      END
      $fn$`);
    await queryRunner.query(`CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION events_guard()`);
    await queryRunner.query(`CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()`);
    await queryRunner.query(`
      CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM pg_notify('credits_events', t.tenant_id::text) FROM (SELECT DISTINCT tenant_id FROM inserted) t;
        RETURN NULL;
      END
      $fn$`);
    await queryRunner.query(
      `CREATE TRIGGER events_notify AFTER INSERT ON events REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION events_notify()`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    // The write path's functions take events (a row type): they go first.
    await dropSqlDefinitions(queryRunner);
    await queryRunner.query(`DROP TABLE events`);
    await queryRunner.query(`DROP TABLE event_retention`);
    await queryRunner.query(`DROP FUNCTION events_notify()`);
    await queryRunner.query(`DROP FUNCTION events_guard()`);
  }
}
