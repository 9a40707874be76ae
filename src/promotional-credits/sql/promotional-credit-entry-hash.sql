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
-- planned again at every call (about half a millisecond, as much as the rest
-- of an Add); versions 1 and 2 made it PL/pgSQL, whose plans are kept, and
-- built the netstrings inline: credits_netstring (a SQL function) was not inlined
-- there but planned and run by the SQL-function executor at every use, 18
-- times per entry and 2 more per allocation, which cost a fifth of an Add's
-- instructions and more of a Deduct's.
--
-- Version 3 (this) is one SQL expression that PostgreSQL inlines into the
-- statement that calls it, planned once with that statement: a SQL function
-- is inlined when its body is a single SELECT of an expression (no FROM, no
-- subquery), no more volatile than it is declared (STABLE: concat, extract
-- and uuid || text are), and each argument used more than once is cheap (a
-- column or a variable, as at both callers in promotional-credit-apply.sql;
-- an argument that is a volatile or costly expression would make PostgreSQL
-- run the function unplanned at each call, the slow way above). The
-- allocations and the metadata, which need a query, are PL/pgSQL helpers
-- called only when there are some. Counted with callgrind (PostgreSQL 15,
-- single-user backend, 24 statements of 32 items less 4): 621,800 -> 606,500
-- instructions an Add (-2.5%), 1,085,600 -> 1,077,300 a Deduct (-0.8%); the
-- PL/pgSQL call was 67,000 an Add, most of it the hashing itself.
--
-- In a UTF8 database a text's bytes are its UTF-8 bytes, so octet_length
-- gives what octet_length(convert_to(…, 'UTF8')) would without a copy per
-- field; the service refuses other encodings (below). (Not `text::bytea`:
-- that cast reads backslashes as escapes.) Same signature, same output as
-- version 2 (20,000 random entries, NULLs, non-ASCII text, allocations,
-- metadata and the extreme instants included, hashed by both; and
-- test/promotional-credits/entry-hash.test.ts against the reference
-- implementation).

DO $check$
BEGIN
  IF current_setting('server_encoding') <> 'UTF8' THEN
    RAISE EXCEPTION 'credits needs a database in the UTF8 encoding; this one is in %', current_setting('server_encoding')
      USING HINT = 'Create it with CREATE DATABASE … ENCODING ''UTF8'' (and a matching locale or TEMPLATE template0).';
  END IF;
END
$check$;

-- The allocations' netstring (each allocation's netstring(lot id) and
-- netstring(amount), in order, as one netstring); called only when there
-- are some. PL/pgSQL, so its query's plan is kept for the session.
CREATE OR REPLACE FUNCTION promotional_credit_entry_hash_allocations(allocations jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  allocated text;
BEGIN
  SELECT coalesce(string_agg(octet_length(a.lot_id) || ':' || a.lot_id || ',' || octet_length(a.amount) || ':' || a.amount || ',', '' ORDER BY a.n), '')
    INTO allocated
    FROM (SELECT coalesce(x.value->>'lot_id', '') AS lot_id, coalesce(x.value->>'amount', '') AS amount, x.n
            FROM jsonb_array_elements(allocations) WITH ORDINALITY AS x (value, n)) AS a;
  RETURN octet_length(allocated) || ':' || allocated || ',';
END
$fn$;

-- The metadata's netstring (each pair's netstring(key) and netstring(value),
-- keys in byte order, as one netstring); called only when there is some.
CREATE OR REPLACE FUNCTION promotional_credit_entry_hash_pairs(metadata jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  pairs text;
BEGIN
  SELECT coalesce(string_agg(octet_length(m.key) || ':' || m.key || ',' || octet_length(m.value) || ':' || m.value || ',', '' ORDER BY m.key COLLATE "C"), '')
    INTO pairs
    FROM (SELECT x.key, coalesce(x.value, '') AS value FROM jsonb_each_text(metadata) AS x) AS m;
  RETURN octet_length(pairs) || ':' || pairs || ',';
END
$fn$;

-- One expression, so that PostgreSQL inlines it into the statement that
-- calls it (a SQL function whose body is a single SELECT of an expression,
-- no more volatile than declared: STABLE, since concat, extract and
-- uuid || text are) and evaluates it with the statement's own expression
-- machinery, planned once with that statement. A netstring's text appears
-- twice (its length and itself); the two microsecond counts are computed
-- twice for that, which costs less than the PL/pgSQL call they replace.
CREATE OR REPLACE FUNCTION promotional_credit_entry_hash(
  previous_hash text, id uuid, tenant_id uuid, customer_id text, currency_code text, type text, origin text,
  amount bigint, closing_balance bigint, description text, credit_type text, reference text, done_by text,
  create_time timestamptz, expire_time timestamptz, reverses_id uuid, allocations jsonb, metadata jsonb
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
  SELECT encode(sha256(convert_to(concat(
    coalesce(octet_length(previous_hash), 0), ':', previous_hash, ',',
    CASE WHEN id IS NULL THEN '0:,' ELSE '36:' || id || ',' END,
    CASE WHEN tenant_id IS NULL THEN '0:,' ELSE '36:' || tenant_id || ',' END,
    coalesce(octet_length(customer_id), 0), ':', customer_id, ',',
    coalesce(octet_length(currency_code), 0), ':', currency_code, ',',
    coalesce(octet_length(type), 0), ':', type, ',',
    coalesce(octet_length(origin), 0), ':', origin, ',',
    coalesce(octet_length(amount::text), 0), ':', amount, ',',
    coalesce(octet_length(closing_balance::text), 0), ':', closing_balance, ',',
    coalesce(octet_length(description), 0), ':', description, ',',
    coalesce(octet_length(credit_type), 0), ':', credit_type, ',',
    coalesce(octet_length(reference), 0), ':', reference, ',',
    coalesce(octet_length(done_by), 0), ':', done_by, ',',
    coalesce(octet_length((extract(epoch FROM create_time) * 1000000)::bigint::text), 0), ':', (extract(epoch FROM create_time) * 1000000)::bigint, ',',
    coalesce(octet_length((extract(epoch FROM expire_time) * 1000000)::bigint::text), 0), ':', (extract(epoch FROM expire_time) * 1000000)::bigint, ',',
    CASE WHEN reverses_id IS NULL THEN '0:,' ELSE '36:' || reverses_id || ',' END,
    CASE WHEN allocations IS NOT NULL AND jsonb_array_length(allocations) > 0 THEN promotional_credit_entry_hash_allocations(allocations) ELSE '0:,' END,
    CASE WHEN metadata IS NOT NULL AND metadata <> '{}'::jsonb THEN promotional_credit_entry_hash_pairs(metadata) ELSE '0:,' END
  ), 'UTF8')), 'hex')
$fn$;
