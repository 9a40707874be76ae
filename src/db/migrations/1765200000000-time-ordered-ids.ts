import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The tables whose id columns default to a time-ordered id. Holds and
 * coupons take their ids from the default; entries, lots and redemptions
 * get theirs from credits_uuid_v7() in apply.sql and coupon-redeem.sql, and
 * customer credits from the service (uuidV7), so for those the default is
 * for whoever inserts by hand.
 */
const TIME_ORDERED_TABLES = ['promotional_credits', 'promotional_credit_holds', 'coupons', 'coupon_redemptions', 'customer_credits'];

/**
 * Ids made from now on are UUIDv7 (RFC 9562: the Unix time in milliseconds
 * first, then 12 bits of the microseconds within it, then 62 random bits),
 * not random v4 ones. A random id lands anywhere in its table's primary key
 * index, so once the index outgrows memory each insert reads and dirties a
 * page of its own, and the first change of a page after a checkpoint writes
 * the whole page to the WAL again. A time-ordered one lands in the last
 * pages, which every insert shares. In a database grown to 1.2 M entries,
 * promotional_credit_apply with 16 ADDs per call ran 20% more calls per
 * second and wrote a quarter less WAL (pgbench, 4 clients, three runs each
 * way, alternating, each after a CHECKPOINT); an entry's id goes into two
 * such indexes (its lot has the same id). Ids stay as unguessable as
 * callers need (62 random bits) and now tell when they were made, which
 * create_time says anyway. Existing ids are kept: they are in hashes,
 * events and callers' records. PostgreSQL 18 has uuidv7(); this is the
 * same layout for 15 to 17, one text for every version. The 12 bits after
 * the version keep the ids of one millisecond in order to the microsecond
 * (ids of the same microsecond, or of two backends at once, are in random
 * order; uuidv7() of PostgreSQL 18 also orders one backend's ids within a
 * microsecond), so they too land at the index's end: a million ids made in
 * one statement built a primary key of 30 MB, against 43 MB with random
 * bits there and 38 MB for v4 ids. PL/pgSQL, not SQL: it costs about 2.2 µs
 * more per id than gen_random_uuid(), the SQL variants tried 3.8 and 4.3 µs
 * (one that reads the clock once and uses it twice is not inlined).
 *
 * down() puts the v4 defaults back but keeps the function: apply.sql and
 * coupon-redeem.sql call it, and an older binary does not install its own
 * text again while sql_definitions records these versions, so dropping it
 * would fail every write after a revert. The ALTERs take an ACCESS
 * EXCLUSIVE lock on each table for a catalog change only (no rewrite),
 * like the other migrations' ALTERs; they wait behind long transactions,
 * and a write that already holds one of these tables and wants another can
 * deadlock with them: PostgreSQL aborts one side (the start fails and the
 * next start migrates, or the call answers ABORTED, which clients retry).
 */
export class TimeOrderedIds1765200000000 implements MigrationInterface {
  name = 'TimeOrderedIds1765200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE OR REPLACE FUNCTION credits_uuid_v7() RETURNS uuid
      LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $fn$
      DECLARE
        us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
      BEGIN
        -- 48 bits of milliseconds; 0111 (the version) and 12 bits of the
        -- microseconds within the millisecond (1/4096 ms steps); then the
        -- variant and random bits of a v4 id.
        RETURN encode(substring(int8send(us / 1000) FROM 3)
                      || substring(int4send(28672 + ((us % 1000) * 4096 / 1000)::integer) FROM 3)
                      || substring(uuid_send(gen_random_uuid()) FROM 9), 'hex')::uuid;
      END
      $fn$`);
    await queryRunner.query(`COMMENT ON FUNCTION credits_uuid_v7() IS 'A UUIDv7 (RFC 9562): milliseconds since the epoch, 12 bits of the microseconds within, 62 random bits'`);
    for (const table of TIME_ORDERED_TABLES) {
      await queryRunner.query(`ALTER TABLE ${table} ALTER COLUMN id SET DEFAULT credits_uuid_v7()`);
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of TIME_ORDERED_TABLES) {
      await queryRunner.query(`ALTER TABLE ${table} ALTER COLUMN id SET DEFAULT gen_random_uuid()`);
    }
  }
}
