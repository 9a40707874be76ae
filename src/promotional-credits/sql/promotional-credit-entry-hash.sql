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
-- an Add); this is the same function in PL/pgSQL, whose plans are kept. It
-- skips the allocation and metadata queries when there are none, and builds
-- the netstrings inline: credits_netstring (a SQL function) was not inlined
-- here but planned and run by the SQL-function executor at every use, 18
-- times per entry and 2 more per allocation, which cost a fifth of an Add's
-- instructions and more of a Deduct's. In a UTF8
-- database a text's bytes are its UTF-8 bytes, so octet_length gives what
-- octet_length(convert_to(…, 'UTF8')) would without a copy per field; the
-- service refuses other encodings (below). (Not `text::bytea`: that cast
-- reads backslashes as escapes.) Same signature, same output
-- (test/promotional-credits/corrections.test.ts recomputes hashes with the
-- reference implementation, non-ASCII text included).

DO $check$
BEGIN
  IF current_setting('server_encoding') <> 'UTF8' THEN
    RAISE EXCEPTION 'credits needs a database in the UTF8 encoding; this one is in %', current_setting('server_encoding')
      USING HINT = 'Create it with CREATE DATABASE … ENCODING ''UTF8'' (and a matching locale or TEMPLATE template0).';
  END IF;
END
$check$;

CREATE OR REPLACE FUNCTION promotional_credit_entry_hash(
  previous_hash text, id uuid, tenant_id uuid, customer_id text, currency_code text, type text, origin text,
  amount bigint, closing_balance bigint, description text, credit_type text, reference text, done_by text,
  create_time timestamptz, expire_time timestamptz, reverses_id uuid, allocations jsonb, metadata jsonb
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  allocated text := '';
  pairs text := '';
  amount_text text := coalesce(amount::text, '');
  closing_text text := coalesce(closing_balance::text, '');
  created text := coalesce((extract(epoch FROM create_time) * 1000000)::bigint::text, '');
  expires text := coalesce((extract(epoch FROM expire_time) * 1000000)::bigint::text, '');
BEGIN
  IF allocations IS NOT NULL AND jsonb_array_length(allocations) > 0 THEN
    SELECT string_agg(octet_length(a.lot_id) || ':' || a.lot_id || ',' || octet_length(a.amount) || ':' || a.amount || ',', '' ORDER BY a.n)
      INTO allocated
      FROM (SELECT coalesce(x.value->>'lot_id', '') AS lot_id, coalesce(x.value->>'amount', '') AS amount, x.n
              FROM jsonb_array_elements(allocations) WITH ORDINALITY AS x (value, n)) AS a;
  END IF;
  IF metadata IS NOT NULL AND metadata <> '{}'::jsonb THEN
    SELECT string_agg(octet_length(m.key) || ':' || m.key || ',' || octet_length(m.value) || ':' || m.value || ',', '' ORDER BY m.key COLLATE "C")
      INTO pairs
      FROM (SELECT x.key, coalesce(x.value, '') AS value FROM jsonb_each_text(metadata) AS x) AS m;
  END IF;
  previous_hash := coalesce(previous_hash, '');
  customer_id := coalesce(customer_id, '');
  currency_code := coalesce(currency_code, '');
  type := coalesce(type, '');
  origin := coalesce(origin, '');
  description := coalesce(description, '');
  credit_type := coalesce(credit_type, '');
  reference := coalesce(reference, '');
  done_by := coalesce(done_by, '');
  RETURN encode(sha256(convert_to(concat(
    octet_length(previous_hash), ':', previous_hash, ',',
    CASE WHEN id IS NULL THEN '0:,' ELSE '36:' || id || ',' END,
    CASE WHEN tenant_id IS NULL THEN '0:,' ELSE '36:' || tenant_id || ',' END,
    octet_length(customer_id), ':', customer_id, ',',
    octet_length(currency_code), ':', currency_code, ',',
    octet_length(type), ':', type, ',',
    octet_length(origin), ':', origin, ',',
    octet_length(amount_text), ':', amount_text, ',',
    octet_length(closing_text), ':', closing_text, ',',
    octet_length(description), ':', description, ',',
    octet_length(credit_type), ':', credit_type, ',',
    octet_length(reference), ':', reference, ',',
    octet_length(done_by), ':', done_by, ',',
    octet_length(created), ':', created, ',',
    octet_length(expires), ':', expires, ',',
    CASE WHEN reverses_id IS NULL THEN '0:,' ELSE '36:' || reverses_id || ',' END,
    octet_length(allocated), ':', allocated, ',',
    octet_length(pairs), ':', pairs, ','
  ), 'UTF8')), 'hex');
END
$fn$;
