-- promotional_credit_entry_hash: the hash of one ledger entry, chained to the
-- previous entry of its balance. The encoding is fixed for good (it is part
-- of the data's meaning; see PromotionalCredit.hash in the proto and
-- src/promotional-credits/entry-hash.ts, the reference implementation):
-- the SHA-256, in lowercase hex, of the concatenation of netstrings
-- ("<length in UTF-8 bytes>:<text>,") of the previous hash, id, tenant id,
-- customer id, currency, type, origin, amount, closing balance, description,
-- credit type, reference, done_by, create_time and expire_time (whole
-- microseconds since the epoch), reverses_id, the allocations (netstring(lot
-- id) netstring(amount) each, in order, as one netstring) and the metadata
-- (netstring(key) netstring(value) each, keys in byte order, as one
-- netstring); absent values are empty text.
--
-- Migration 1764300000000 created it as a SQL function, which PostgreSQL
-- plans again at every call (about half a millisecond, as much as the rest of
-- an Add); this is the same function in PL/pgSQL, whose plans are kept, and
-- it skips the allocation and metadata queries when there are none. Same
-- signature, same output (test/promotional-credits/corrections.test.ts
-- recomputes hashes with the reference implementation).

CREATE OR REPLACE FUNCTION promotional_credit_entry_hash(
  previous_hash text, id uuid, tenant_id uuid, customer_id text, currency_code text, type text, origin text,
  amount bigint, closing_balance bigint, description text, credit_type text, reference text, done_by text,
  create_time timestamptz, expire_time timestamptz, reverses_id uuid, allocations jsonb, metadata jsonb
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  allocated text := '';
  pairs text := '';
BEGIN
  IF allocations IS NOT NULL AND jsonb_array_length(allocations) > 0 THEN
    SELECT string_agg(credits_netstring(a.value->>'lot_id') || credits_netstring(a.value->>'amount'), '' ORDER BY a.n)
      INTO allocated FROM jsonb_array_elements(allocations) WITH ORDINALITY AS a (value, n);
  END IF;
  IF metadata IS NOT NULL AND metadata <> '{}'::jsonb THEN
    SELECT string_agg(credits_netstring(m.key) || credits_netstring(m.value), '' ORDER BY m.key COLLATE "C")
      INTO pairs FROM jsonb_each_text(metadata) AS m;
  END IF;
  RETURN encode(sha256(convert_to(
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
    || credits_netstring(allocated)
    || credits_netstring(pairs)
  , 'UTF8')), 'hex');
END
$fn$;
