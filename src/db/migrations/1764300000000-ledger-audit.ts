import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Corrections and audit on the ledger:
 * - `reverses_id`: a reversal names the entry it reverses; a unique index
 *   makes "reversed at most once" the database's rule, whatever races.
 * - `metadata`: the caller's key/value pairs, filterable through a GIN index
 *   (one pair finds its entries without reading a tenant's whole ledger).
 * - `hash`: a SHA-256 chain per balance, tamper evidence. The canonical
 *   encoding is `promotional_credit_entry_hash` below, documented in the
 *   proto comment of PromotionalCredit.hash; it is part of the data's
 *   meaning, so it lives here, in history, and never changes (a new format
 *   would be a new function). Existing entries are hashed here, chain by
 *   chain in ledger order (with the append-only trigger held off for that
 *   one update), and each balance keeps its last hash in `last_hash`.
 */
export class LedgerAudit1764300000000 implements MigrationInterface {
  name = 'LedgerAudit1764300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE promotional_credits
        ADD COLUMN reverses_id uuid,
        ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN hash text`);
    await queryRunner.query(`CREATE UNIQUE INDEX promotional_credits_reversed_once ON promotional_credits (reverses_id) WHERE reverses_id IS NOT NULL`);
    await queryRunner.query(`CREATE INDEX promotional_credits_metadata ON promotional_credits USING gin (metadata jsonb_path_ops)`);
    await queryRunner.query(`ALTER TABLE promotional_credit_balances ADD COLUMN last_hash text`);

    // netstring (D. J. Bernstein): "<length in UTF-8 bytes>:<text>," — unambiguous for any text.
    await queryRunner.query(`
      CREATE FUNCTION credits_netstring(value text) RETURNS text
      LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT octet_length(convert_to(coalesce(value, ''), 'UTF8'))::text || ':' || coalesce(value, '') || ','
      $fn$`);
    await queryRunner.query(`
      CREATE FUNCTION promotional_credit_entry_hash(
        previous_hash text, id uuid, tenant_id uuid, customer_id text, currency_code text, type text, origin text,
        amount bigint, closing_balance bigint, description text, credit_type text, reference text, done_by text,
        create_time timestamptz, expire_time timestamptz, reverses_id uuid, allocations jsonb, metadata jsonb
      ) RETURNS text
      LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT encode(sha256(convert_to(
            credits_netstring(previous_hash)
          || credits_netstring(id::text)
          || credits_netstring(tenant_id::text)
          || credits_netstring(customer_id)
          || credits_netstring(currency_code)
          || credits_netstring(type)
          || credits_netstring(origin)
          || credits_netstring(amount::text)
          || credits_netstring(closing_balance::text)
          || credits_netstring(description)
          || credits_netstring(credit_type)
          || credits_netstring(reference)
          || credits_netstring(done_by)
          || credits_netstring((extract(epoch FROM create_time) * 1000000)::bigint::text)
          || credits_netstring((extract(epoch FROM expire_time) * 1000000)::bigint::text)
          || credits_netstring(reverses_id::text)
          || credits_netstring((SELECT string_agg(credits_netstring(a.value->>'lot_id') || credits_netstring(a.value->>'amount'), '' ORDER BY a.n)
                                  FROM jsonb_array_elements(allocations) WITH ORDINALITY AS a (value, n)))
          || credits_netstring((SELECT string_agg(credits_netstring(m.key) || credits_netstring(m.value), '' ORDER BY m.key COLLATE "C")
                                  FROM jsonb_each_text(metadata) AS m))
        , 'UTF8')), 'hex')
      $fn$`);

    await queryRunner.query(`ALTER TABLE promotional_credits DISABLE TRIGGER promotional_credits_append_only`);
    await queryRunner.query(`
      DO $do$
      DECLARE
        e record;
        previous text;
        key text := NULL;
      BEGIN
        FOR e IN SELECT * FROM promotional_credits ORDER BY tenant_id, customer_id, currency_code, seq LOOP
          IF key IS DISTINCT FROM e.tenant_id || '/' || e.customer_id || '/' || e.currency_code THEN
            key := e.tenant_id || '/' || e.customer_id || '/' || e.currency_code;
            previous := '';
          END IF;
          previous := promotional_credit_entry_hash(previous, e.id, e.tenant_id, e.customer_id, e.currency_code, e.type, e.origin,
            e.amount, e.closing_balance, e.description, e.credit_type, e.reference, e.done_by, e.create_time, e.expire_time,
            e.reverses_id, e.allocations, e.metadata);
          UPDATE promotional_credits SET hash = previous WHERE id = e.id;
        END LOOP;
      END
      $do$`);
    await queryRunner.query(`ALTER TABLE promotional_credits ENABLE TRIGGER promotional_credits_append_only`);
    await queryRunner.query(`
      UPDATE promotional_credit_balances b SET last_hash = l.hash
        FROM (SELECT DISTINCT ON (tenant_id, customer_id, currency_code) tenant_id, customer_id, currency_code, hash
                FROM promotional_credits ORDER BY tenant_id, customer_id, currency_code, seq DESC) l
       WHERE (b.tenant_id, b.customer_id, b.currency_code) = (l.tenant_id, l.customer_id, l.currency_code)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE promotional_credit_balances DROP COLUMN last_hash`);
    // The SQL definition promotional_credit_entry_hash took this function
    // over; Events' down took the definitions out (dropSqlDefinitions).
    await queryRunner.query(`DROP FUNCTION IF EXISTS promotional_credit_entry_hash(text, uuid, uuid, text, text, text, text, bigint, bigint, text, text, text, text, timestamptz, timestamptz, uuid, jsonb, jsonb)`);
    await queryRunner.query(`DROP FUNCTION credits_netstring(text)`);
    await queryRunner.query(`ALTER TABLE promotional_credits DROP COLUMN hash, DROP COLUMN metadata, DROP COLUMN reverses_id`);
  }
}
