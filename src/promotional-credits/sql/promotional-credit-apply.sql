-- THE write path of the promotional credit ledger.
--
-- Every balance change goes through promotional_credit_apply (calls, alone or
-- many in one statement: group commit) or promotional_credit_sweep (expiry in
-- the background). Both lock the balance row first and compute every change
-- from that locked row, here in SQL, never from a value the caller read
-- earlier. Below them, three steps are the only code that touches a balance:
--   promotional_credit_settle  expirations due (holds, then lots), written
--                              before any other change to the balance, as
--                              promotional_credit_due reckons them
--   promotional_credit_take    draws (or a hold reserves) an amount of the
--                              credits no hold reserves, from the lots in
--                              consumption order: soonest expire_time
--                              first, never last, then oldest first
--   promotional_credit_unhold  ends a hold's reservations: what a capture
--                              draws leaves its lots, the rest is free
--   promotional_credit_post    writes one ledger entry: closing balance, hash
--                              chain, its lot (INCREMENT), its events
-- and one shortcut of apply's: promotional_credit_add_many writes a group of
-- ADDs that need none of the steps above but the last as one INSERT per
-- table (what post would write for each, in one statement), and hands any
-- other group back to be applied item by item.
--
-- apply's `writes` is a JSON array; item i is
--   {op, tenant_id, customer_id, currency_code, amount, description,
--    credit_type, reference, done_by, with_others, expire_time, metadata,
--    target_id, validate_only, id, event_id}
-- with op one of
--   ADD         amount > 0: INCREMENT opening a lot (expiring at expire_time)
--   DEDUCT      amount > 0: DECREMENT from the available amount
--   DEDUCT_ALL  DECREMENT of the whole available amount (nothing when zero)
--   SET         amount = the target: one INCREMENT (a lot, expire_time) or
--               DECREMENT (from the available amount) for the difference
--   REVERSE     target_id = an entry: its opposite (see promotional_credit_reverse)
--   HOLD        amount > 0 reserved from the available amount until expire_time:
--               particular credits, the first in consumption order of the
--               lots that exist then (the hold's allocations, the lots'
--               `reserved`). Nothing else draws them; past their lot's
--               expiry they stay until the hold ends
--   CAPTURE     target_id = an active hold: DECREMENT of amount (NULL: all of
--               it), drawn from the credits it reserved; the rest is released
--   RELEASE     target_id = an active hold: released
--   SETTLE      only the expirations due
-- REVERSE, CAPTURE and RELEASE may leave customer_id and currency_code out:
-- their target's are read here (its balance never changes), so the API
-- needs no read of its own before the write. A target not found leaves the
-- item without a balance: it locks nothing and is refused NOT_FOUND.
-- Amounts travel as JSON strings (exact beyond 2^53). validate_only: the item
-- runs in a subtransaction that is rolled back; it answers what it would have
-- done (its entry's id included, which is then never used). id and
-- event_id (ADD): the ids of its entry (a UUIDv7, its lot's too) and of its
-- PROMOTIONAL_CREDIT_CREATED event (a v4), made by the service, taken by
-- promotional_credit_add_many; absent (or written one by one) they are made
-- here. credits_uuid_v7() costs 4 µs and gen_random_uuid() 2 µs, nearly
-- all of it OpenSSL's generator asking getpid() for every id; Node draws
-- its random bytes in batches.
--
-- One row per item, in balance-key order (item = its place in `writes`):
--   outcome    'written' (entry_* set: the entry as stored, its closing
--              balance included), 'unchanged' (nothing to write; for
--              HOLD/RELEASE: done, no entry) or 'refused' (nothing written;
--              reason says why)
--   reason     INSUFFICIENT_BALANCE, BALANCE_LIMIT_EXCEEDED, NOT_FOUND,
--              NOT_REVERSIBLE, ALREADY_REVERSED, NOTHING_TO_REVERSE,
--              HOLD_NOT_ACTIVE, CAPTURE_EXCEEDS_HOLD, EXPIRE_TIME_PASSED
--              (ADD, SET, HOLD: an expire_time not after the write's
--              instant; the API refuses it, whatever SET's direction,
--              against its own clock a few milliseconds earlier)
--   balance, held  the balance and its active holds after the item (as they
--              stand when refused); NULL when the customer has no balance in
--              that currency. Not always the entry's closing balance: a
--              reversal or a capture may be followed by expirations it
--              made due (settled in the same item)
--   hold       the hold (HOLD, CAPTURE, RELEASE, and HOLD_NOT_ACTIVE), as JSON
--   others     with_others: the customer's balances in the other currencies
--
-- Items are applied in balance-key order (tenant, customer, currency, then
-- their order in `writes`), so that concurrent batches lock rows in one
-- order and cannot deadlock. Callers send them sorted that way (bytewise,
-- as COLLATE "C": the keys are ASCII), which add_many's one-pass locking
-- relies on; the items whose balance is read from their target take their
-- place among them here.

-- Everything below is (re)created as one: drop what an earlier text made, whatever its signatures.
DO $drop$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname = current_schema()
       AND p.proname IN ('promotional_credit_apply', 'promotional_credit_apply_one', 'promotional_credit_sweep', 'promotional_credit_settle',
                         'promotional_credit_take', 'promotional_credit_post', 'promotional_credit_hold_json', 'promotional_credit_event',
                         'promotional_credit_balance_at', 'promotional_credit_balances_as_of', 'promotional_credit_balances_as_of_final',
                         'promotional_credit_creation_lock_class',
                         'promotional_credit_flush_events', 'promotional_credit_due', 'promotional_credit_unhold',
                         'promotional_credit_reserve_unreserved', 'promotional_credit_reserve_unreserved_if_any',
                         'promotional_credit_add_many')
  LOOP
    EXECUTE 'DROP FUNCTION ' || f;
  END LOOP;
END
$drop$;
DROP TYPE IF EXISTS promotional_credit_outcome;
DROP TYPE IF EXISTS promotional_credit_due_part;

CREATE TYPE promotional_credit_outcome AS (
  outcome text, reason text,
  entry_id uuid, entry_seq bigint, entry_time timestamptz, entry_type text, entry_origin text, entry_amount bigint,
  entry_expire_time timestamptz, entry_allocations jsonb, entry_hash text, entry_reverses_id uuid,
  entry_description text, entry_credit_type text, entry_reference text, entry_metadata jsonb,
  customer_id text, currency_code text, balance bigint, held bigint, hold jsonb,
  events events[], entry_closing_balance bigint);

-- Credits of one lot that left the balance at one instant (left_at).
-- kept: credits a hold kept past the lot's end (never available since);
-- revoked: the lot's credit was reversed (its end was the reversal).
CREATE TYPE promotional_credit_due_part AS (lot_id uuid, credit_type text, left_at timestamptz, amount bigint, kept boolean, revoked boolean);

-- A hold as JSON for the caller and for events; amounts as strings. STABLE,
-- not IMMUTABLE: its times are rendered in the session's time zone, and
-- PostgreSQL inlines a SQL function only when it is no less volatile than
-- its body; declared IMMUTABLE it was planned afresh at every call (a
-- seventh of a capture's instructions).
CREATE FUNCTION promotional_credit_hold_json(h promotional_credit_holds) RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
  SELECT jsonb_build_object('id', h.id, 'seq', h.seq::text, 'customer_id', h.customer_id, 'currency_code', h.currency_code,
    'amount', h.amount::text, 'captured_amount', h.captured_amount::text, 'status', h.status,
    'description', h.description, 'reference', h.reference, 'metadata', h.metadata, 'done_by', h.done_by,
    'capture_id', h.capture_id, 'expire_time', h.expire_time, 'create_time', h.create_time, 'update_time', h.update_time)
$fn$;

-- An event of the balance's customer, for the outbox. The functions below
-- gather a statement's events and promotional_credit_flush_events writes
-- them with one INSERT at its end (in the order gathered): one statement
-- and one firing of the outbox's NOTIFY trigger per call of
-- promotional_credit_apply, however many items and events it has.
CREATE FUNCTION promotional_credit_event(b promotional_credit_balances, event_type text, entry_id uuid, hold jsonb, at timestamptz,
                                         event_id uuid DEFAULT NULL) RETURNS events
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  ev events;
BEGIN
  ev.id := event_id; -- NULL: promotional_credit_flush_events makes one
  ev.tenant_id := b.tenant_id;
  ev.type := event_type;
  ev.customer_id := b.customer_id;
  ev.create_time := at;
  ev.payload_kind := CASE WHEN entry_id IS NOT NULL THEN 'promotional_credit' ELSE 'hold' END;
  ev.promotional_credit_id := entry_id;
  ev.payload := CASE WHEN entry_id IS NULL THEN hold END;
  RETURN ev;
END
$fn$;

-- Writes gathered events into the outbox (same transaction), in order.
-- `credits.events = off` (a session setting) skips them: the benchmark's switch.
CREATE FUNCTION promotional_credit_flush_events(pending events[]) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF cardinality(pending) > 0 AND current_setting('credits.events', true) IS DISTINCT FROM 'off' THEN
    INSERT INTO events (id, tenant_id, type, customer_id, create_time, payload_kind, promotional_credit_id, payload)
    SELECT coalesce(u.id, gen_random_uuid()), u.tenant_id, u.type, u.customer_id, u.create_time, u.payload_kind, u.promotional_credit_id, u.payload
      FROM unnest(pending) WITH ORDINALITY AS u
     ORDER BY u.ordinality;
  END IF;
END
$fn$;

-- Writes one entry on the locked balance `b` (amount, held and last_hash as
-- they stand; held is written as b has it, which lets a capture release its
-- hold in the same UPDATE), moves the balance to its closing amount, extends the hash
-- chain, opens the entry's lot when asked, and adds its events to
-- `events`: BALANCE_DEPLETED when the available amount goes from above zero
-- to zero (`was_available`: what was available before, when b's held is no
-- longer what it was, as after a capture released its hold; by default
-- b.amount - b.held). The only INSERT into promotional_credits. Answers the entry (e).
CREATE FUNCTION promotional_credit_post(
  b promotional_credit_balances, entry_type text, entry_origin text, entry_amount bigint,
  description text, credit_type text, reference text, done_by text, metadata jsonb,
  expire_time timestamptz, reverses_id uuid, allocations jsonb, opens_lot boolean, at timestamptz,
  INOUT events events[], was_available bigint DEFAULT NULL, OUT e promotional_credits
)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
BEGIN
  e.id := credits_uuid_v7();
  e.tenant_id := b.tenant_id;
  e.customer_id := b.customer_id;
  e.currency_code := b.currency_code;
  e.type := entry_type;
  e.origin := entry_origin;
  e.amount := entry_amount;
  e.closing_balance := CASE WHEN entry_type = 'INCREMENT' THEN b.amount + entry_amount ELSE b.amount - entry_amount END;
  e.description := description;
  e.credit_type := credit_type;
  e.reference := coalesce(reference, '');
  e.done_by := done_by;
  e.create_time := at;
  e.expire_time := expire_time;
  e.reverses_id := reverses_id;
  e.allocations := allocations;
  e.metadata := coalesce(metadata, '{}');
  e.hash := promotional_credit_entry_hash(b.last_hash, e.id, e.tenant_id, e.customer_id, e.currency_code, e.type, e.origin,
    e.amount, e.closing_balance, e.description, e.credit_type, e.reference, e.done_by, e.create_time, e.expire_time,
    e.reverses_id, e.allocations, e.metadata);
  INSERT INTO promotional_credits AS x
    (id, tenant_id, customer_id, currency_code, type, origin, amount, closing_balance, description, credit_type, reference,
     done_by, create_time, expire_time, reverses_id, allocations, metadata, hash)
  VALUES (e.id, e.tenant_id, e.customer_id, e.currency_code, e.type, e.origin, e.amount, e.closing_balance, e.description,
          e.credit_type, e.reference, e.done_by, e.create_time, e.expire_time, e.reverses_id, e.allocations, e.metadata, e.hash)
  RETURNING x.seq INTO e.seq;
  UPDATE promotional_credit_balances AS x
     SET amount = e.closing_balance, held = b.held, last_hash = e.hash, update_time = at,
         next_expire_time = CASE WHEN opens_lot AND expire_time IS NOT NULL THEN least(x.next_expire_time, expire_time) ELSE x.next_expire_time END
   WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code;
  IF opens_lot THEN
    INSERT INTO promotional_credit_lots (id, tenant_id, customer_id, currency_code, seq, amount, remaining, expire_time, credit_type, create_time)
    VALUES (e.id, e.tenant_id, e.customer_id, e.currency_code, e.seq, e.amount, e.amount, expire_time, e.credit_type, at);
  END IF;
  events := events || promotional_credit_event(b, 'PROMOTIONAL_CREDIT_CREATED', e.id, NULL, at);
  IF coalesce(was_available, b.amount - b.held) > 0 AND e.closing_balance - b.held = 0 THEN
    events := events || promotional_credit_event(b, 'BALANCE_DEPLETED', e.id, NULL, at);
  END IF;
END
$fn$;

-- Draws `amount` from the credits of the locked balance that no hold
-- reserves, in consumption order, from lots that have not expired by `at`;
-- answers the allocations [{lot_id, amount}]. `reserve`: a hold reserves
-- them (the lots' `reserved` rises) instead of drawing them (`remaining`
-- falls). The caller has checked that the amount is available (amount -
-- held: what no hold reserves of the unexpired lots, once settled).
CREATE FUNCTION promotional_credit_take(b promotional_credit_balances, amount bigint, at timestamptz, reserve boolean) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
  lot record;
  part bigint;
  left_to_take bigint := amount;
  allocations jsonb := '[]';
BEGIN
  FOR lot IN
    SELECT l.id, l.remaining - l.reserved AS free FROM promotional_credit_lots AS l
     WHERE l.tenant_id = b.tenant_id AND l.customer_id = b.customer_id AND l.currency_code = b.currency_code AND l.open
       AND (l.expire_time IS NULL OR l.expire_time > at) AND l.revoke_time IS NULL AND l.remaining > l.reserved
     ORDER BY l.expire_time, l.seq
  LOOP
    EXIT WHEN left_to_take = 0;
    part := least(lot.free, left_to_take);
    IF reserve THEN
      UPDATE promotional_credit_lots AS l SET reserved = l.reserved + part WHERE l.id = lot.id;
    ELSE
      UPDATE promotional_credit_lots AS l SET remaining = l.remaining - part WHERE l.id = lot.id;
    END IF;
    allocations := allocations || jsonb_build_object('lot_id', lot.id, 'amount', part::text);
    left_to_take := left_to_take - part;
  END LOOP;
  IF left_to_take <> 0 THEN
    RAISE EXCEPTION 'promotional_credit_take: the lots of % % % have less than % free', b.tenant_id, b.customer_id, b.currency_code, amount;
  END IF;
  RETURN allocations;
END
$fn$;

-- Ends the reservations of the hold `h` (captured, released or expired):
-- draws `amount` of what it reserved, in consumption order (a capture; 0
-- otherwise), and frees the rest. Answers the allocations drawn. What it
-- frees of a lot past its expiry is then due (promotional_credit_due).
CREATE FUNCTION promotional_credit_unhold(h promotional_credit_holds, amount bigint) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
  r record;
  part bigint;
  left_to_take bigint := amount;
  allocations jsonb := '[]';
BEGIN
  FOR r IN
    SELECT l.id, (a.value->>'amount')::bigint AS reserved
      FROM jsonb_array_elements(coalesce(h.allocations, '[]')) AS a (value)
      JOIN promotional_credit_lots AS l ON l.id = (a.value->>'lot_id')::uuid
     ORDER BY l.expire_time, l.seq
  LOOP
    part := least(r.reserved, left_to_take);
    UPDATE promotional_credit_lots AS l SET remaining = l.remaining - part, reserved = l.reserved - r.reserved WHERE l.id = r.id;
    IF part > 0 THEN
      allocations := allocations || jsonb_build_object('lot_id', r.id, 'amount', part::text);
      left_to_take := left_to_take - part;
    END IF;
  END LOOP;
  IF left_to_take <> 0 THEN
    RAISE EXCEPTION 'promotional_credit_unhold: hold % reserved less than %', h.id, amount;
  END IF;
  RETURN allocations;
END
$fn$;

-- Reserves credits for the active holds of the locked balance `b` that
-- reserved none: holds made before definition version 13 (when a hold was
-- reckoned, whenever asked, as the first credits in consumption order),
-- and any an older replica's call in flight made while this definition was
-- applied. In the order they were made, each from the lots that existed
-- and had not expired when it was made, in consumption order, as it would
-- have reserved then; only if deductions since drew those (the old
-- reckoning let them) from the other lots. Called before anything reads
-- reservations to settle: by every write (promotional_credit_apply_one)
-- and by the sweep.
CREATE FUNCTION promotional_credit_reserve_unreserved(b promotional_credit_balances) RETURNS void
LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
  h record;
  lot record;
  part bigint;
  left_to_take bigint;
  allocations jsonb;
BEGIN
  FOR h IN
    SELECT y.id, y.amount, y.create_time FROM promotional_credit_holds AS y
     WHERE y.tenant_id = b.tenant_id AND y.customer_id = b.customer_id AND y.currency_code = b.currency_code
       AND y.status = 'ACTIVE' AND y.allocations IS NULL
     ORDER BY y.create_time, y.seq
  LOOP
    left_to_take := h.amount;
    allocations := '[]';
    FOR lot IN
      SELECT l.id, l.remaining - l.reserved AS free FROM promotional_credit_lots AS l
       WHERE l.tenant_id = b.tenant_id AND l.customer_id = b.customer_id AND l.currency_code = b.currency_code
         AND l.open AND l.remaining > l.reserved
       ORDER BY NOT (l.create_time <= h.create_time AND (l.expire_time IS NULL OR l.expire_time > h.create_time)), l.expire_time, l.seq
    LOOP
      EXIT WHEN left_to_take = 0;
      part := least(lot.free, left_to_take);
      UPDATE promotional_credit_lots AS l SET reserved = l.reserved + part WHERE l.id = lot.id;
      allocations := allocations || jsonb_build_object('lot_id', lot.id, 'amount', part::text);
      left_to_take := left_to_take - part;
    END LOOP;
    UPDATE promotional_credit_holds AS y SET allocations = allocations WHERE y.id = h.id;
  END LOOP;
END
$fn$;

-- The same, when some active hold of `b` reserves nothing (an index probe;
-- callers skip it for a balance that holds nothing).
CREATE FUNCTION promotional_credit_reserve_unreserved_if_any(b promotional_credit_balances) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF b.held > 0 AND EXISTS (SELECT 1 FROM promotional_credit_holds AS x
                             WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code
                               AND x.status = 'ACTIVE' AND x.allocations IS NULL) THEN
    PERFORM promotional_credit_reserve_unreserved(b);
  END IF;
END
$fn$;

-- What settling the balance `b` at `at` expires, without writing anything:
-- one row per lot and instant at which some of it left the balance, in the
-- order settling writes them. Between two writes of a balance (each
-- settles first) only time changes it: lots reach their expire_time and
-- holds theirs. What is left of a lot past its expiry leaves then, except
-- what active holds that outlast that instant reserved of it; that leaves
-- when each such hold expires, if it has by `at`. A lot settled before (it
-- keeps only what holds reserve) leaves at `at` what no active hold
-- reserves any more: a release or capture has just freed it. A hold
-- reserves credits of the lots that exist when it is made, so it never
-- keeps a lot made after it. Whenever settling runs, the same credits leave
-- at the same instants, and a read at `at` (now or in the past, before
-- anything settled: promotional_credit_balance_at,
-- promotional_credit_balances_as_of) sees what settling then would write.
-- Expects `b` to be the row as it stands (holds as stored: ACTIVE until
-- settled). One pass over the balance's due lots and active holds.
CREATE FUNCTION promotional_credit_due(b promotional_credit_balances, at timestamptz) RETURNS SETOF promotional_credit_due_part
LANGUAGE sql STABLE AS $fn$
  WITH due_lots AS (
    -- A lot ends at its expire_time, or when its credit was reversed.
    SELECT l.id, l.credit_type, l.expire_time, l.seq, l.remaining, l.expired, least(l.expire_time, l.revoke_time) AS ends,
           l.revoke_time IS NOT NULL AS revoked
      FROM promotional_credit_lots AS l
     WHERE l.tenant_id = b.tenant_id AND l.customer_id = b.customer_id AND l.currency_code = b.currency_code
       AND l.open AND least(l.expire_time, l.revoke_time) <= at
  ), kept AS (
    -- What each active hold reserved of those lots, and until when.
    SELECT (a.value->>'lot_id')::uuid AS lot_id, (a.value->>'amount')::bigint AS amount, y.expire_time AS until
      FROM promotional_credit_holds AS y, jsonb_array_elements(y.allocations) AS a (value)
     WHERE y.tenant_id = b.tenant_id AND y.customer_id = b.customer_id AND y.currency_code = b.currency_code
       AND y.status = 'ACTIVE'
  ), parts AS (
    -- What no hold keeps past the lot's expiry (a lot settled before: what
    -- no active hold reserves now) leaves at its expiry (or now).
    SELECT l.id, l.credit_type, l.expire_time, l.seq,
           CASE WHEN l.expired THEN at ELSE l.ends END AS left_at,
           l.remaining - coalesce(sum(k.amount) FILTER (WHERE l.expired OR k.until > l.ends), 0) AS amount,
           l.expired AS kept, l.revoked
      FROM due_lots AS l LEFT JOIN kept AS k ON k.lot_id = l.id
     GROUP BY l.id, l.credit_type, l.expire_time, l.seq, l.remaining, l.expired, l.ends, l.revoked
    UNION ALL
    -- What a hold kept past the lot's end leaves when the hold expires.
    SELECT l.id, l.credit_type, l.expire_time, l.seq, k.until, k.amount, true, l.revoked
      FROM due_lots AS l JOIN kept AS k ON k.lot_id = l.id
     WHERE k.until <= at AND (l.expired OR k.until > l.ends)
  )
  -- At one instant, what holds kept leaves first: it was not available, and
  -- the entries after it are then judged by what was (BALANCE_DEPLETED).
  SELECT p.id, p.credit_type, p.left_at, sum(p.amount)::bigint, p.kept, p.revoked
    FROM parts AS p
   WHERE p.amount > 0
   GROUP BY p.id, p.credit_type, p.left_at, p.expire_time, p.seq, p.kept, p.revoked
   ORDER BY p.left_at, p.kept DESC, p.expire_time, p.seq
$fn$;

-- Writes what is due on the locked balance at `at`, before anything else
-- changes it: holds past their expire_time become EXPIRED (their credits
-- stop being held), then what promotional_credit_due reckons has left the
-- lots past their expire_time leaves the balance, one EXPIRATION entry per
-- lot and instant, its expire_time the instant its credits left (so a
-- balance as of an earlier instant can tell what had left by then, however
-- late the entry is written). What active holds reserved of a lot stays in
-- it past its expiry (drawn by those holds' captures alone); run again (a
-- release, a capture), it expires what no hold reserves any more. A lot cut
-- short by the reversal of its credit (promotional_credit_apply_one) leaves
-- the same way, its entries saying so.
-- Answers the balance row as it is afterwards (b), and adds the events to `events`.
CREATE FUNCTION promotional_credit_settle(INOUT b promotional_credit_balances, at timestamptz, INOUT events events[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
  h promotional_credit_holds;
  due promotional_credit_due_part[];
  d promotional_credit_due_part;
  p record;
  ev events;
  lapsed_at timestamptz[] := '{}';  -- the holds that lapse here (sorted by expire_time below)
  lapsed_amount bigint[] := '{}';
  i integer := 1;
  bx promotional_credit_balances;
BEGIN
  -- Reckoned before the holds past their expire_time are marked below: until then they kept credits.
  due := ARRAY(SELECT u FROM promotional_credit_due(b, at) AS u);

  FOR h IN
    UPDATE promotional_credit_holds AS x SET status = 'EXPIRED', update_time = x.expire_time
     WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code
       AND x.status = 'ACTIVE' AND x.expire_time <= at
    RETURNING x.*
  LOOP
    b.held := b.held - h.amount;
    lapsed_at := lapsed_at || h.expire_time;
    lapsed_amount := lapsed_amount || h.amount;
    PERFORM promotional_credit_unhold(h, 0);
    events := events || promotional_credit_event(b, 'HOLD_EXPIRED', NULL, promotional_credit_hold_json(h), at);
  END LOOP;
  UPDATE promotional_credit_balances AS x SET held = b.held
   WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code;
  SELECT coalesce(array_agg(u.t ORDER BY u.t), '{}'), coalesce(array_agg(u.a ORDER BY u.t), '{}')
    INTO lapsed_at, lapsed_amount
    FROM unnest(lapsed_at, lapsed_amount) AS u (t, a);
  -- Each entry is told what was held at its instant (left_at), holds
  -- lapsing later still held then: a lot that expired while a hold still
  -- stood took what was available (BALANCE_DEPLETED), whatever settles it
  -- after the hold lapsed too. Written to the row as b has it (post).
  bx := b;
  bx.held := b.held + coalesce((SELECT sum(a) FROM unnest(lapsed_amount) AS a), 0);

  FOREACH d IN ARRAY due LOOP
    WHILE i <= cardinality(lapsed_at) AND lapsed_at[i] <= d.left_at LOOP
      bx.held := bx.held - lapsed_amount[i];
      i := i + 1;
    END LOOP;
    bx.amount := b.amount;
    bx.last_hash := b.last_hash;
    p := promotional_credit_post(bx, 'DECREMENT', 'EXPIRATION', d.amount,
      CASE WHEN d.revoked
           THEN 'Reversed: what holds kept of lot ' || d.lot_id || ' when its credit was reversed'
           ELSE 'Expired: what was left of lot ' || d.lot_id END,
      d.credit_type, '', '(expiry)', '{}', d.left_at, NULL,
      jsonb_build_array(jsonb_build_object('lot_id', d.lot_id, 'amount', d.amount::text)), false, at, '{}',
      -- Credits a hold kept were never available again: their leaving takes nothing available (no BALANCE_DEPLETED).
      CASE WHEN d.kept THEN bx.amount - d.amount - bx.held END);
    -- Appended one by one: PL/pgSQL grows `events` in place; handed to
    -- post and back, it was copied whole at every entry (1,800 expirations
    -- under 1,200 lapsed holds took 4 ms each, 7.6 s in all).
    FOREACH ev IN ARRAY p.events LOOP
      events := events || ev;
    END LOOP;
    b.amount := (p.e).closing_balance;
    b.last_hash := (p.e).hash;
  END LOOP;
  IF cardinality(due) > 0 AND bx.held <> b.held THEN
    UPDATE promotional_credit_balances AS x SET held = b.held
     WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code;
  END IF;
  UPDATE promotional_credit_lots AS l
     SET remaining = l.remaining - coalesce(u.amount, 0), expired = true
    FROM (SELECT x.id, g.amount
            FROM promotional_credit_lots AS x
            LEFT JOIN (SELECT y.lot_id, sum(y.amount) AS amount FROM unnest(due) AS y GROUP BY y.lot_id) AS g ON g.lot_id = x.id
           WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code
             AND x.open AND least(x.expire_time, x.revoke_time) <= at) AS u
   WHERE l.id = u.id;

  b.next_expire_time := least(
    (SELECT min(l.expire_time) FROM promotional_credit_lots AS l
      WHERE l.tenant_id = b.tenant_id AND l.customer_id = b.customer_id AND l.currency_code = b.currency_code
        AND l.open AND l.expire_time > at AND l.revoke_time IS NULL),
    (SELECT min(x.expire_time) FROM promotional_credit_holds AS x
      WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code
        AND x.status = 'ACTIVE'));
  UPDATE promotional_credit_balances AS x SET next_expire_time = b.next_expire_time
   WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code;
END
$fn$;

-- One item of promotional_credit_apply (see the top of this file).
CREATE FUNCTION promotional_credit_apply_one(w jsonb, at timestamptz) RETURNS promotional_credit_outcome
LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
  r promotional_credit_outcome;
  b promotional_credit_balances;
  found_balance boolean;
  created boolean := false;
  op text := w->>'op';
  tenant uuid := (w->>'tenant_id')::uuid;
  customer text := w->>'customer_id';
  currency text := w->>'currency_code';
  amount bigint := (w->>'amount')::bigint;
  expire_time timestamptz := (w->>'expire_time')::timestamptz;
  target uuid := (w->>'target_id')::uuid;
  target_entry promotional_credits;
  h promotional_credit_holds;
  e promotional_credits;
  allocations jsonb;
  lot promotional_credit_lots;
  part bigint;
  events events[] := '{}';
  p record;
  s record;
  returned record;
  live jsonb;
  back bigint;
BEGIN
  r.customer_id := customer;
  r.currency_code := currency;
  r.outcome := 'written';
  -- An expire_time already past (the API checked it against its own clock,
  -- a few milliseconds earlier) is refused before anything is written, a
  -- new customer's balance row included; and again below at the write's
  -- own instant. Stored, the credits (or the hold) would have ended before
  -- they began.
  IF op IN ('ADD', 'SET', 'HOLD') AND expire_time <= clock_timestamp() THEN
    r.outcome := 'refused';
    r.reason := 'EXPIRE_TIME_PASSED';
    RETURN r;
  END IF;

  SELECT * INTO b FROM promotional_credit_balances AS x
   WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency
     FOR UPDATE;
  found_balance := FOUND;
  IF NOT found_balance AND (op = 'ADD' OR (op = 'SET' AND amount > 0)) THEN
    -- The customer's first write in this currency: its balance row is seen by
    -- no one until this transaction commits, so no reader can wait for its
    -- lock; it holds the customer's creation lock instead, which readers as
    -- of an instant wait for (promotional_credit_balances_as_of_final).
    PERFORM pg_advisory_xact_lock_shared(promotional_credit_creation_lock_class(), hashtext(tenant::text || '/' || customer));
    INSERT INTO promotional_credit_balances (tenant_id, customer_id, currency_code, amount)
    VALUES (tenant, customer, currency, 0) ON CONFLICT DO NOTHING
    RETURNING true INTO created;
    created := coalesce(created, false);
    SELECT * INTO b FROM promotional_credit_balances AS x
     WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency
       FOR UPDATE;
    found_balance := true;
  END IF;
  IF NOT found_balance THEN
    -- Nothing to settle, take from, reverse or release: the customer never held this currency.
    r.outcome := CASE WHEN op IN ('DEDUCT_ALL', 'SET', 'SETTLE') THEN 'unchanged' ELSE 'refused' END;
    r.reason := CASE WHEN op IN ('DEDUCT', 'HOLD') THEN 'INSUFFICIENT_BALANCE' WHEN op IN ('DEDUCT_ALL', 'SET', 'SETTLE') THEN NULL ELSE 'NOT_FOUND' END;
    RETURN r;
  END IF;
  -- The item's instant, read once the row is locked, never before the
  -- balance's last write: read before the lock, a call that waited for it
  -- was dated before the writes it waited for (its hold counted as made
  -- before a lot expired that those writes had settled; as_of put its
  -- entry before entries it follows).
  at := date_trunc('milliseconds', greatest(clock_timestamp(), b.update_time));
  IF b.held > 0 THEN
    PERFORM promotional_credit_reserve_unreserved_if_any(b);
  END IF;
  IF b.next_expire_time <= at THEN
    s := promotional_credit_settle(b, at, events);
    b := s.b;
    events := s.events;
  END IF;

  IF op IN ('ADD', 'SET', 'HOLD') AND expire_time <= at THEN
    r.outcome := 'refused';
    r.reason := 'EXPIRE_TIME_PASSED';

  ELSIF op = 'ADD' THEN
    IF b.amount > 9223372036854775807 - amount THEN
      r.outcome := 'refused';
      r.reason := 'BALANCE_LIMIT_EXCEEDED';
    ELSE
      p := promotional_credit_post(b, 'INCREMENT', 'ADD', amount, w->>'description', w->>'credit_type', w->>'reference',
        w->>'done_by', w->'metadata', expire_time, NULL, NULL, true, at, events);
      e := p.e;
      events := p.events;
    END IF;

  ELSIF op IN ('DEDUCT', 'DEDUCT_ALL') THEN
    IF op = 'DEDUCT_ALL' THEN amount := b.amount - b.held; END IF;
    IF op = 'DEDUCT_ALL' AND amount = 0 THEN
      r.outcome := 'unchanged';
    ELSIF b.amount - b.held < amount THEN
      r.outcome := 'refused';
      r.reason := 'INSUFFICIENT_BALANCE';
    ELSE
      allocations := promotional_credit_take(b, amount, at, false);
      p := promotional_credit_post(b, 'DECREMENT', 'DEDUCT', amount, w->>'description', w->>'credit_type', w->>'reference',
        w->>'done_by', w->'metadata', NULL, NULL, allocations, false, at, events);
      e := p.e;
      events := p.events;
    END IF;

  ELSIF op = 'SET' THEN
    IF amount = b.amount THEN
      r.outcome := 'unchanged';
    ELSIF amount > b.amount THEN
      p := promotional_credit_post(b, 'INCREMENT', 'SET', amount - b.amount, w->>'description', w->>'credit_type', w->>'reference',
        w->>'done_by', w->'metadata', expire_time, NULL, NULL, true, at, events);
      e := p.e;
      events := p.events;
    ELSIF amount < b.held THEN
      r.outcome := 'refused';
      r.reason := 'INSUFFICIENT_BALANCE';
    ELSE
      allocations := promotional_credit_take(b, b.amount - amount, at, false);
      p := promotional_credit_post(b, 'DECREMENT', 'SET', b.amount - amount, w->>'description', w->>'credit_type', w->>'reference',
        w->>'done_by', w->'metadata', NULL, NULL, allocations, false, at, events);
      e := p.e;
      events := p.events;
    END IF;

  ELSIF op = 'REVERSE' THEN
    SELECT * INTO target_entry FROM promotional_credits AS x
     WHERE x.id = target AND x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency;
    IF NOT FOUND THEN
      r.outcome := 'refused';
      r.reason := 'NOT_FOUND';
    ELSIF target_entry.origin IN ('EXPIRATION', 'REVERSAL') THEN
      r.outcome := 'refused';
      r.reason := 'NOT_REVERSIBLE';
    ELSIF EXISTS (SELECT 1 FROM promotional_credits AS x WHERE x.reverses_id = target) THEN
      r.outcome := 'refused';
      r.reason := 'ALREADY_REVERSED';
    ELSIF target_entry.type = 'INCREMENT' THEN
      -- What is left of its lot leaves the balance: what no hold reserves
      -- now, what holds reserve when they end (a capture spends it; a
      -- release or the hold's expiry frees it, and it leaves then, as
      -- settling writes a lot's expiry: the lot's revoke_time is this
      -- instant, its expire_time and place in consumption order stay, so a
      -- capture draws its hold's credits in the order it would have).
      -- Nothing of a lot past its expiry (settled above): what is
      -- left of it is what holds reserve, and it leaves when they end anyway.
      -- A lot wholly reserved is refused (nothing would leave now).
      SELECT * INTO lot FROM promotional_credit_lots AS l WHERE l.id = target;
      part := CASE WHEN lot.expired OR lot.expire_time <= at THEN 0 ELSE coalesce(lot.remaining - lot.reserved, 0) END;
      IF part <= 0 THEN
        r.outcome := 'refused';
        r.reason := 'NOTHING_TO_REVERSE';
      ELSE
        UPDATE promotional_credit_lots AS l
           SET remaining = l.remaining - part,
               revoke_time = at,
               expired = l.reserved > 0
         WHERE l.id = target;
        p := promotional_credit_post(b, 'DECREMENT', 'REVERSAL', part, w->>'description', target_entry.credit_type, w->>'reference',
          w->>'done_by', w->'metadata', NULL, target, jsonb_build_array(jsonb_build_object('lot_id', target, 'amount', part::text)), false, at, events);
        e := p.e;
        events := p.events;
      END IF;
    ELSIF target_entry.allocations IS NULL THEN
      -- A deduction written before lots existed: its credits come back as a lot of their own.
      IF b.amount > 9223372036854775807 - target_entry.amount THEN
        r.outcome := 'refused';
        r.reason := 'BALANCE_LIMIT_EXCEEDED';
      ELSE
        p := promotional_credit_post(b, 'INCREMENT', 'REVERSAL', target_entry.amount, w->>'description', target_entry.credit_type,
          w->>'reference', w->>'done_by', w->'metadata', NULL, target, NULL, true, at, events);
        e := p.e;
        events := p.events;
      END IF;
    ELSE
      -- Not what came from a lot whose own credit was reversed since: that
      -- grant was taken back, so its credits are not given back (returned,
      -- they made the outcome depend on the order of the two reversals:
      -- grant then deduction left the deduction's part in the balance).
      SELECT coalesce(jsonb_agg(a.value ORDER BY a.n), '[]'), coalesce(sum((a.value->>'amount')::bigint), 0)
        INTO live, back
        FROM jsonb_array_elements(target_entry.allocations) WITH ORDINALITY AS a (value, n)
       WHERE NOT EXISTS (SELECT 1 FROM promotional_credits AS x WHERE x.reverses_id = (a.value->>'lot_id')::uuid);
      IF back = 0 THEN
        r.outcome := 'refused';
        r.reason := 'NOTHING_TO_REVERSE';
      ELSIF b.amount > 9223372036854775807 - back THEN
        -- What comes back, not what was deducted (review: a deduction half of
        -- whose credits came from a grant reversed since was refused near
        -- the limit, though only the other half would come back).
        r.outcome := 'refused';
        r.reason := 'BALANCE_LIMIT_EXCEEDED';
      ELSE
        target_entry.allocations := live;
        -- Back into the lots they came from, each with its own expire_time. A
        -- part whose lot has expired meanwhile was spent, not held, when the
        -- lot expired: no hold keeps it, it expires at once (an EXPIRATION
        -- entry of its own, shaped as settling writes them, its expire_time
        -- now: the credits were in the balance from the reversal's entry to
        -- this one), and the lot's remaining (what holds keep of it) does not
        -- change.
        UPDATE promotional_credit_lots AS l SET remaining = l.remaining + (a.value->>'amount')::bigint
          FROM jsonb_array_elements(target_entry.allocations) AS a (value)
         WHERE l.id = (a.value->>'lot_id')::uuid AND (l.expire_time IS NULL OR l.expire_time > at);
        p := promotional_credit_post(b, 'INCREMENT', 'REVERSAL', back, w->>'description', target_entry.credit_type,
          w->>'reference', w->>'done_by', w->'metadata', NULL, target, target_entry.allocations, false, at, events);
        e := p.e;
        events := p.events;
        b.amount := e.closing_balance;
        b.last_hash := e.hash;
        FOR returned IN
          SELECT l.id, l.credit_type, l.expire_time, (a.value->>'amount')::bigint AS part
            FROM jsonb_array_elements(target_entry.allocations) AS a (value)
            JOIN promotional_credit_lots AS l ON l.id = (a.value->>'lot_id')::uuid
           WHERE l.expire_time <= at
           ORDER BY l.expire_time, l.seq
        LOOP
          p := promotional_credit_post(b, 'DECREMENT', 'EXPIRATION', returned.part,
            'Expired: returned to lot ' || returned.id || ' after it expired', returned.credit_type, '', '(expiry)', '{}',
            at, NULL, jsonb_build_array(jsonb_build_object('lot_id', returned.id, 'amount', returned.part::text)),
            false, at, p.events, b.amount - returned.part - b.held);
          events := p.events;
          b.amount := (p.e).closing_balance;
          b.last_hash := (p.e).hash;
        END LOOP;
        UPDATE promotional_credit_balances AS x
           SET next_expire_time = least(x.next_expire_time,
                 (SELECT min(l.expire_time) FROM promotional_credit_lots AS l
                    JOIN jsonb_array_elements(target_entry.allocations) AS a (value) ON l.id = (a.value->>'lot_id')::uuid
                   WHERE l.expire_time > at))
         WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency
        RETURNING x.* INTO b;
      END IF;
    END IF;

  ELSIF op = 'HOLD' THEN
    IF b.amount - b.held < amount THEN
      r.outcome := 'refused';
      r.reason := 'INSUFFICIENT_BALANCE';
    ELSE
      allocations := promotional_credit_take(b, amount, at, true);
      INSERT INTO promotional_credit_holds AS x
        (tenant_id, customer_id, currency_code, amount, status, description, reference, metadata, done_by, expire_time, create_time, update_time,
         allocations)
      VALUES (tenant, customer, currency, amount, 'ACTIVE', w->>'description', coalesce(w->>'reference', ''), coalesce(w->'metadata', '{}'),
              w->>'done_by', expire_time, at, at, allocations)
      RETURNING x.* INTO h;
      UPDATE promotional_credit_balances AS x SET held = x.held + amount, next_expire_time = least(x.next_expire_time, expire_time), update_time = at
       WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency;
      r.hold := promotional_credit_hold_json(h);
      events := events || promotional_credit_event(b, 'HOLD_CREATED', NULL, r.hold, at);
      IF b.amount - b.held - amount = 0 THEN
        events := events || promotional_credit_event(b, 'BALANCE_DEPLETED', NULL, r.hold, at);
      END IF;
      b.held := b.held + amount;
      r.outcome := 'unchanged';
    END IF;

  ELSIF op IN ('CAPTURE', 'RELEASE') THEN
    -- No row lock of its own: every change to a hold is made under its
    -- balance's lock, held here (a FOR UPDATE would only add a WAL record).
    SELECT * INTO h FROM promotional_credit_holds AS x
     WHERE x.id = target AND x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency;
    IF NOT FOUND THEN
      r.outcome := 'refused';
      r.reason := 'NOT_FOUND';
    ELSIF h.status <> 'ACTIVE' THEN
      r.outcome := 'refused';
      r.reason := 'HOLD_NOT_ACTIVE';
    ELSIF op = 'CAPTURE' AND amount > h.amount THEN
      r.outcome := 'refused';
      r.reason := 'CAPTURE_EXCEEDS_HOLD';
    ELSE
      -- The hold's credits stop being held; what is captured leaves the
      -- balance (a capture's entry writes both in one UPDATE: see post).
      b.held := b.held - h.amount;
      IF op = 'RELEASE' THEN
        UPDATE promotional_credit_balances AS x SET held = b.held, update_time = at
         WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency;
        PERFORM promotional_credit_unhold(h, 0);
      END IF;
      IF op = 'CAPTURE' THEN
        amount := coalesce(amount, h.amount);
        allocations := promotional_credit_unhold(h, amount);
        p := promotional_credit_post(b, 'DECREMENT', 'HOLD_CAPTURE', amount, coalesce(nullif(w->>'description', ''), h.description), 'GENERAL',
          h.reference, w->>'done_by', h.metadata, NULL, NULL, allocations, false, at, events, b.amount - b.held - h.amount);
        e := p.e;
        events := p.events;
        UPDATE promotional_credit_holds AS x SET status = 'CAPTURED', captured_amount = amount, capture_id = e.id, update_time = at
         WHERE x.id = h.id RETURNING x.* INTO h;
        r.hold := promotional_credit_hold_json(h);
        events := events || promotional_credit_event(b, 'HOLD_CAPTURED', NULL, r.hold, at);
        b.amount := e.closing_balance;
        b.last_hash := e.hash;
      ELSE
        UPDATE promotional_credit_holds AS x SET status = 'RELEASED', update_time = at WHERE x.id = h.id RETURNING x.* INTO h;
        r.hold := promotional_credit_hold_json(h);
        events := events || promotional_credit_event(b, 'HOLD_RELEASED', NULL, r.hold, at);
        r.outcome := 'unchanged';
      END IF;
      b.update_time := at;
      -- Credits the hold kept past their lot's expiry and did not draw
      -- leave now (b is the row as written: its held, and for a capture its
      -- amount and hash).
      IF EXISTS (SELECT 1 FROM promotional_credit_lots AS l
                  WHERE l.tenant_id = tenant AND l.customer_id = customer AND l.currency_code = currency
                    AND l.open AND least(l.expire_time, l.revoke_time) <= at) THEN
        s := promotional_credit_settle(b, at, events);
        b := s.b;
        events := s.events;
      END IF;
    END IF;
    IF h.id IS NOT NULL AND r.hold IS NULL THEN r.hold := promotional_credit_hold_json(h); END IF;

  ELSIF op = 'SETTLE' THEN
    r.outcome := 'unchanged';

  ELSE
    RAISE EXCEPTION 'promotional_credit_apply: unknown op %', op;
  END IF;

  IF e.id IS NOT NULL THEN
    r.entry_id := e.id;
    r.entry_seq := e.seq;
    r.entry_time := e.create_time;
    r.entry_type := e.type;
    r.entry_origin := e.origin;
    r.entry_amount := e.amount;
    r.entry_expire_time := e.expire_time;
    r.entry_allocations := e.allocations;
    r.entry_hash := e.hash;
    r.entry_reverses_id := e.reverses_id;
    r.entry_description := e.description;
    r.entry_credit_type := e.credit_type;
    r.entry_reference := e.reference;
    r.entry_metadata := e.metadata;
    r.entry_closing_balance := e.closing_balance;
  ELSIF r.outcome = 'written' THEN
    r.outcome := 'unchanged';
  END IF;
  IF op = 'REVERSE' THEN
    -- A reversal may settle again after its entry: read the row as it now is.
    SELECT x.amount, x.held INTO r.balance, r.held FROM promotional_credit_balances AS x
     WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency;
  ELSIF op IN ('HOLD', 'CAPTURE', 'RELEASE') THEN
    -- b follows every write of these (held, a capture's entry, a settle after it).
    r.balance := b.amount;
    r.held := b.held;
  ELSE
    -- The locked row as settled, moved by the entry if one was written.
    r.balance := coalesce(e.closing_balance, b.amount);
    r.held := b.held;
  END IF;
  IF created AND r.outcome = 'refused' THEN
    -- Nothing was written (an expire_time passed while the row was being
    -- locked): the balance row this item made goes too, as the customer never
    -- held this currency.
    DELETE FROM promotional_credit_balances AS x
     WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.currency_code = currency;
    r.balance := NULL;
    r.held := NULL;
  END IF;
  r.events := events;
  RETURN r;
END
$fn$;

-- The balance as readers see it at `at` without writing: what settling
-- would leave (holds past expiry no longer held; what promotional_credit_due
-- reckons has left the lots past expiry gone, the rest kept for the holds
-- that still need it). Exact for a settled balance at no cost.
CREATE FUNCTION promotional_credit_balance_at(b promotional_credit_balances, at timestamptz, OUT amount bigint, OUT held bigint)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  IF b.next_expire_time IS NULL OR b.next_expire_time > at THEN
    amount := b.amount;
    held := b.held;
    RETURN;
  END IF;
  held := b.held - coalesce((SELECT sum(x.amount) FROM promotional_credit_holds AS x
                              WHERE x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code
                                AND x.status = 'ACTIVE' AND x.expire_time <= at), 0);
  amount := b.amount - coalesce((SELECT sum(d.amount) FROM promotional_credit_due(b, at) AS d), 0);
END
$fn$;

-- A group of ADDs in one statement per table instead of four per item: the
-- same entries, lots, balances, events and outcomes promotional_credit_apply_one
-- would write for them one by one, at about a third less of PostgreSQL's
-- time per Add (each statement's executor start, constraint checks built and
-- plpgsql steps were most of an Add's cost, not the rows). Only for a
-- group it can write exactly as the items would be one by one; anything
-- else answers NULL having written nothing, and promotional_credit_apply
-- takes the items one by one. In three steps:
--   1. Before any lock, from the items alone: every item an ADD of a
--      positive amount to be written (not validate_only), with no
--      expire_time already past, of another balance; and when an item
--      answers the customer's other currencies (with_others), no two items
--      of one customer (those balances would include the later item's
--      write).
--   2. The rows locked in the items' order, as one by one, each item's
--      instant read once its row is locked; then every balance there (a
--      first write in a currency inserts its row, one by one), and, read
--      after the locks (a later snapshot than the locking statement's),
--      nothing to settle (next_expire_time after the instant), no hold
--      awaiting its reservations (promotional_credit_reserve_unreserved),
--      an expire_time after the instant and room below the limit. Failing
--      these, the locks are given back (a subtransaction rolled back)
--      before one by one takes each at its item: holding the later items'
--      rows while one by one inserts an earlier item's row, which waits for
--      any other insert of it, could close a deadlock cycle that one by
--      one alone cannot. (Step 1 also looked each balance up before any
--      lock, to go one by one at once when one was missing: every group
--      read its balances twice, about 4% of its PostgreSQL instructions,
--      0.9 of 23.5 M for 32 Adds, to spare first writes a locking
--      statement; a missing row takes no lock and waits for none.)
--   3. The entries (their hashes), lots and balances written, one INSERT or
--      UPDATE per table, in step 2's subtransaction; the outcomes answered
--      with their events.
CREATE FUNCTION promotional_credit_add_many(writes jsonb) RETURNS promotional_credit_outcome[]
LANGUAGE plpgsql AS $fn$
DECLARE
  items integer := jsonb_array_length(writes);
  fits boolean;
  bs promotional_credit_balances[];
  ats timestamptz[];
  outcomes promotional_credit_outcome[];
BEGIN
  SELECT count(*) = items AND bool_and(g.fits) AND count(DISTINCT g.balance) = items
         AND (NOT bool_or(g.with_others) OR count(DISTINCT g.customer) = items)
    INTO fits
    FROM (SELECT coalesce(x.v->>'op' = 'ADD' AND NOT coalesce((x.v->>'validate_only')::boolean, false)
                          AND (x.v->>'amount')::bigint > 0
                          AND NOT coalesce((x.v->>'expire_time')::timestamptz <= clock_timestamp(), false), false) AS fits,
                 ((x.v->>'tenant_id')::uuid, x.v->>'customer_id', x.v->>'currency_code') AS balance,
                 ((x.v->>'tenant_id')::uuid, x.v->>'customer_id') AS customer,
                 coalesce((x.v->>'with_others')::boolean, false) AS with_others
            FROM jsonb_array_elements(writes) AS x (v)) AS g;
  IF NOT coalesce(fits, false) THEN
    RETURN NULL;
  END IF;

  -- In a subtransaction: a group that does not fit gives its row locks
  -- back before it goes one by one, which takes each lock at its item. A
  -- group that fits is written in the same subtransaction: a row that one
  -- transaction id locks and another updates (a subtransaction and its
  -- parent are two) has its old version's xmax made a MultiXact of both, so
  -- written after the block every Add made a MultiXact (WAL, SLRU pages,
  -- and multixact ids that anti-wraparound vacuums must freeze).
  BEGIN
    SELECT bool_and((l.b).tenant_id IS NOT NULL
                    AND ((l.b).next_expire_time IS NULL OR (l.b).next_expire_time > l.at)
                    AND (l.expire_time IS NULL OR l.expire_time > l.at)
                    AND (l.b).amount <= 9223372036854775807 - l.amount),
           array_agg(l.b ORDER BY l.n), array_agg(l.at ORDER BY l.n)
      INTO fits, bs, ats
      FROM (SELECT w.n, k.b, date_trunc('milliseconds', greatest(clock_timestamp(), (k.b).update_time)) AS at,
                   (w.v->>'amount')::bigint AS amount, (w.v->>'expire_time')::timestamptz AS expire_time
              FROM jsonb_array_elements(writes) WITH ORDINALITY AS w (v, n)
              LEFT JOIN LATERAL (SELECT x AS b FROM promotional_credit_balances AS x
                                  WHERE x.tenant_id = (w.v->>'tenant_id')::uuid AND x.customer_id = w.v->>'customer_id'
                                    AND x.currency_code = w.v->>'currency_code'
                                    FOR UPDATE) AS k ON true) AS l;
    IF NOT coalesce(fits, false) OR EXISTS (SELECT 1 FROM unnest(bs) AS b JOIN promotional_credit_holds AS x
                              ON x.tenant_id = b.tenant_id AND x.customer_id = b.customer_id AND x.currency_code = b.currency_code
                           WHERE b.held > 0 AND x.status = 'ACTIVE' AND x.allocations IS NULL) THEN
      RAISE EXCEPTION 'the group does not fit' USING ERRCODE = 'CRADD';
    END IF;

    WITH q AS (
      -- unnest, not the JSON: estimated at 10 rows, not 100, the balances are
      -- updated by their key (at 1,000 a hash join read them all).
      SELECT u.ordinality AS n, u.tenant_id, u.customer_id, u.currency_code, u.amount AS opening,
             u.held, u.last_hash, ats[u.ordinality] AS at, writes -> (u.ordinality::integer - 1) AS v
        FROM unnest(bs) WITH ORDINALITY AS u
    ), p AS MATERIALIZED (
      SELECT q.n, coalesce((q.v->>'id')::uuid, credits_uuid_v7()) AS id, q.tenant_id, q.customer_id, q.currency_code, q.held, q.last_hash, q.at,
             (q.v->>'amount')::bigint AS amount, q.opening + (q.v->>'amount')::bigint AS closing,
             q.v->>'description' AS description, q.v->>'credit_type' AS credit_type, coalesce(q.v->>'reference', '') AS reference,
             q.v->>'done_by' AS done_by, (q.v->>'expire_time')::timestamptz AS expire_time, coalesce(q.v->'metadata', '{}') AS metadata,
             (q.v->>'event_id')::uuid AS event_id
        FROM q
    ), e AS MATERIALIZED (
      SELECT p.*, promotional_credit_entry_hash(p.last_hash, p.id, p.tenant_id, p.customer_id, p.currency_code, 'INCREMENT', 'ADD',
               p.amount, p.closing, p.description, p.credit_type, p.reference, p.done_by, p.at, p.expire_time, NULL, NULL, p.metadata) AS hash
        FROM p
    ), entries AS (
      INSERT INTO promotional_credits AS x
        (id, tenant_id, customer_id, currency_code, type, origin, amount, closing_balance, description, credit_type, reference,
         done_by, create_time, expire_time, reverses_id, allocations, metadata, hash)
      SELECT e.id, e.tenant_id, e.customer_id, e.currency_code, 'INCREMENT', 'ADD', e.amount, e.closing, e.description, e.credit_type,
             e.reference, e.done_by, e.at, e.expire_time, NULL, NULL, e.metadata, e.hash
        FROM e ORDER BY e.n
      RETURNING x.id, x.seq
    ), balances AS (
      UPDATE promotional_credit_balances AS x
         SET amount = e.closing, last_hash = e.hash, update_time = e.at,
             next_expire_time = CASE WHEN e.expire_time IS NOT NULL THEN least(x.next_expire_time, e.expire_time) ELSE x.next_expire_time END
        FROM e
       WHERE x.tenant_id = e.tenant_id AND x.customer_id = e.customer_id AND x.currency_code = e.currency_code
    ), lots AS (
      INSERT INTO promotional_credit_lots (id, tenant_id, customer_id, currency_code, seq, amount, remaining, expire_time, credit_type, create_time)
      SELECT e.id, e.tenant_id, e.customer_id, e.currency_code, entries.seq, e.amount, e.amount, e.expire_time, e.credit_type, e.at
        FROM e JOIN entries ON entries.id = e.id ORDER BY e.n
    )
    SELECT array_agg(ROW('written', NULL, e.id, entries.seq, e.at, 'INCREMENT', 'ADD', e.amount, e.expire_time, NULL, e.hash, NULL,
                         e.description, e.credit_type, e.reference, e.metadata, e.customer_id, e.currency_code, e.closing, e.held, NULL,
                         ARRAY[promotional_credit_event(bs[e.n], 'PROMOTIONAL_CREDIT_CREATED', e.id, NULL, e.at, e.event_id)],
                         e.closing)::promotional_credit_outcome ORDER BY e.n)
      INTO outcomes
      FROM e JOIN entries ON entries.id = e.id;
  EXCEPTION WHEN SQLSTATE 'CRADD' THEN
    RETURN NULL;
  END;
  RETURN outcomes;
END
$fn$;

-- Generic plans for every statement it runs (plan_cache_mode, for the
-- call only). PL/pgSQL keeps a plan per statement and session; under
-- `auto` PostgreSQL plans a statement again for its parameters' values on
-- a session's first 5 executions, and then on every execution whose plan
-- it estimates cheaper than the generic one. On a database of 10,000
-- balances (debug_print_plan), a group of one Add was planned again on
-- every call: add_many's statement of INSERTs and UPDATE, its unnest of
-- the locked balances estimated at 1 row for the values and at 10 in the
-- generic plan, which runs it no worse. Counted with callgrind on a
-- single-user PostgreSQL 18 backend (the embedded binaries) over 10,000
-- balances, instructions per statement: 1 Add 4.53 M -> 2.62 M (-42%),
-- 4 Adds 6.61 M -> 4.73 M (-28%), 16 Adds 13.40-13.50 M -> 13.31-13.38 M,
-- 1 Deduct 2.66 M -> 2.57 M, 16 Deducts 21.91-21.96 M -> 21.82-21.86 M.
-- coupon_redeem has run its statements so since session 7.
CREATE FUNCTION promotional_credit_apply(writes jsonb)
RETURNS TABLE (item integer, outcome text, reason text,
               entry_id uuid, entry_seq bigint, entry_time timestamptz, entry_type text, entry_origin text, entry_amount bigint,
               entry_expire_time timestamptz, entry_allocations jsonb, entry_hash text, entry_reverses_id uuid,
               entry_description text, entry_credit_type text, entry_reference text, entry_metadata jsonb,
               customer_id text, currency_code text, balance bigint, held bigint, hold jsonb, others json,
               entry_closing_balance bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
  w jsonb;
  r promotional_credit_outcome;
  at timestamptz;
  pending events[] := '{}';
  added promotional_credit_outcome[] := promotional_credit_add_many(writes);
BEGIN
  FOR w, item IN
    SELECT CASE WHEN t.customer_id IS NULL THEN x.v
                ELSE x.v || jsonb_build_object('customer_id', t.customer_id, 'currency_code', t.currency_code) END,
           x.n::integer
      FROM jsonb_array_elements(writes) WITH ORDINALITY AS x (v, n)
      -- A one-time filter per item: an item that names its balance reads nothing.
      LEFT JOIN LATERAL (SELECT h.customer_id, h.currency_code FROM promotional_credit_holds AS h
                          WHERE x.v->>'customer_id' IS NULL AND x.v->>'op' IN ('CAPTURE', 'RELEASE')
                            AND h.id = (x.v->>'target_id')::uuid AND h.tenant_id = (x.v->>'tenant_id')::uuid
                         UNION ALL
                         SELECT c.customer_id, c.currency_code FROM promotional_credits AS c
                          WHERE x.v->>'customer_id' IS NULL AND x.v->>'op' = 'REVERSE'
                            AND c.id = (x.v->>'target_id')::uuid AND c.tenant_id = (x.v->>'tenant_id')::uuid) AS t ON true
     ORDER BY (x.v->>'tenant_id')::uuid, coalesce(t.customer_id, x.v->>'customer_id') COLLATE "C",
              coalesce(t.currency_code, x.v->>'currency_code') COLLATE "C", x.n
  LOOP
    -- Whole milliseconds, the precision every time is answered with: an
    -- entry's hash (over create_time) can then be recomputed from the entry
    -- as the API answers it. The item's own instant is read again once its
    -- balance row is locked (promotional_credit_apply_one).
    at := date_trunc('milliseconds', clock_timestamp());
    IF added IS NOT NULL THEN
      r := added[item];
      pending := pending || r.events;
    ELSIF (w->>'validate_only')::boolean THEN
      BEGIN
        r := promotional_credit_apply_one(w, at);
        RAISE EXCEPTION 'validate only' USING ERRCODE = 'CRVAL';
      EXCEPTION WHEN SQLSTATE 'CRVAL' THEN
        NULL; -- everything the item wrote is rolled back; r keeps what it answered
      END;
    ELSE
      r := promotional_credit_apply_one(w, at);
      pending := pending || r.events;
    END IF;
    outcome := r.outcome; reason := r.reason;
    entry_id := r.entry_id; entry_seq := r.entry_seq; entry_time := r.entry_time; entry_type := r.entry_type;
    entry_origin := r.entry_origin; entry_amount := r.entry_amount; entry_expire_time := r.entry_expire_time;
    entry_allocations := r.entry_allocations; entry_hash := r.entry_hash; entry_reverses_id := r.entry_reverses_id;
    entry_description := r.entry_description; entry_credit_type := r.entry_credit_type; entry_reference := r.entry_reference;
    entry_metadata := r.entry_metadata; entry_closing_balance := r.entry_closing_balance;
    customer_id := r.customer_id; currency_code := r.currency_code; balance := r.balance; held := r.held; hold := r.hold;
    others := NULL;
    IF (w->>'with_others')::boolean THEN
      -- The other currencies as of now, after the item (which may have
      -- waited for its row lock): read as of the instant before, they
      -- counted credits that expired during the wait (found in review).
      at := date_trunc('milliseconds', clock_timestamp());
      SELECT coalesce(json_agg(json_build_object('c', o.currency_code, 'a', v.amount::text, 'h', v.held::text) ORDER BY o.currency_code), '[]')
        INTO others
        FROM promotional_credit_balances AS o, promotional_credit_balance_at(o, at) AS v
       WHERE o.tenant_id = (w->>'tenant_id')::uuid AND o.customer_id = r.customer_id AND o.currency_code <> r.currency_code;
    END IF;
    RETURN NEXT;
  END LOOP;
  PERFORM promotional_credit_flush_events(pending);
END
$fn$;

-- Background expiry: settles up to `max_balances` balances with something
-- due, skipping rows another transaction holds (a replica sweeping at the
-- same time, or a call writing it, which settles it itself). Each is
-- settled under its row lock and from its lots as they stand, so however
-- many replicas sweep at once, each lot expires exactly once. The loop's
-- query only finds the balances due (in due order, as it goes); each is
-- locked in the subtransaction that settles it, so that one transaction
-- id locks and writes it: locked by the sweep and written by its
-- subtransaction (definitions up to 24), every settled balance's old
-- version got a MultiXact of the two, which later lockers looked up and
-- vacuum had to freeze. A balance a replica or a call has locked, or has
-- settled since the query found it, is skipped and not counted. Each is
-- dated at its turn, after its row is locked, as every other change is
-- dated after its lock (see promotional_credit_balances_as_of_final):
-- dated at the sweep's start, a balance reached later got entries dated
-- before an instant whose as-of read had already been answered. Answers
-- how many balances it settled.
CREATE FUNCTION promotional_credit_sweep(max_balances integer) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
  due record;
  b promotional_credit_balances;
  -- Which balances are due: those due when the sweep began.
  at timestamptz := date_trunc('milliseconds', clock_timestamp());
  locked_at timestamptz;
  settled integer := 0;
  -- Settled and failed: the balances this sweep took, at most max_balances.
  taken integer := 0;
  s record;
BEGIN
  FOR due IN
    SELECT x.tenant_id, x.customer_id, x.currency_code FROM promotional_credit_balances AS x
     WHERE x.next_expire_time <= at
     ORDER BY x.next_expire_time
  LOOP
    EXIT WHEN taken >= max_balances;
    -- One balance that cannot be settled (an error) must not stop the
    -- others: it is left for the writes to it, which settle it first.
    BEGIN
      SELECT * INTO b FROM promotional_credit_balances AS x
       WHERE x.tenant_id = due.tenant_id AND x.customer_id = due.customer_id AND x.currency_code = due.currency_code
         AND x.next_expire_time <= at
         FOR UPDATE SKIP LOCKED;
      IF FOUND THEN
        taken := taken + 1;
        locked_at := date_trunc('milliseconds', clock_timestamp());
        PERFORM promotional_credit_reserve_unreserved_if_any(b);
        -- Never before the balance's last write (the clock read back).
        s := promotional_credit_settle(b, date_trunc('milliseconds', greatest(locked_at, b.update_time)), '{}');
        PERFORM promotional_credit_flush_events(s.events);
        settled := settled + 1;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'expiry sweep: balance (%, %, %) not settled: % (SQLSTATE %)', due.tenant_id, due.customer_id, due.currency_code, SQLERRM, SQLSTATE;
    END;
  END LOOP;
  RETURN settled;
END
$fn$;

-- The advisory lock class (first key) of the customers' creation locks, the
-- second key being hashtext(tenant_id || '/' || customer_id): a first write
-- in a currency holds it (shared) from before its entry is dated until it
-- commits. Two keys: apart from the one-key locks of idempotency and
-- migrations.
CREATE FUNCTION promotional_credit_creation_lock_class() RETURNS integer
LANGUAGE sql IMMUTABLE AS $fn$ SELECT 1635017 $fn$;

-- A customer's balances as of `at` (promotional_credit_balances_as_of) once no
-- change in flight can alter them. A change (an entry, a hold, a capture) is
-- dated when its balance row is locked, and seen when its transaction
-- commits: read in between, a later commit would put it into an instant
-- already answered. So this waits until every later change is dated after
-- `at` (the clock past its millisecond), then for the changes in flight on
-- the customer's balances: first changes in a currency (their creation
-- lock), then the others (their rows' locks: every change takes its
-- balance's FOR UPDATE first, which FOR SHARE waits for, in the rows'
-- queue: changes that come later wait for this read, not the other way).
-- It holds none of those locks while it waits for another, nor after (each is
-- taken in a subtransaction rolled back at once, the creation lock tested
-- without queueing): a change that waits for one may hold other rows. Not
-- FOR KEY SHARE (definitions 14 and 15): a change's updates of the row
-- (not of its key) do not conflict with it, so PostgreSQL locked the
-- versions a change in flight had updated as it followed the row's update
-- chain, and waited for the change at a newer version while holding them;
-- a change locking the row then waited for this read: a deadlock (review:
-- 7 in 9 runs of 12 writers and 8 such reads on one balance over two
-- servers, a read answering INTERNAL; none in 9 with FOR SHARE, which
-- waits for a change in flight before it locks any version). It
-- does hold its pooled connection while it waits: the service runs a few of
-- these at once, never enough to take the connections a change in flight
-- needs to commit (review: readers filled the pool and stalled every call).
-- The reading statement that follows has a snapshot of its own, taken after
-- those commits.
CREATE FUNCTION promotional_credit_balances_as_of_final(tenant uuid, customer text, at timestamptz)
RETURNS TABLE (currency_code text, amount bigint, held bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_variable
DECLARE
  creating_key integer := hashtext(tenant::text || '/' || customer);
  free boolean;
  currency text;
BEGIN
  WHILE clock_timestamp() < date_trunc('milliseconds', at) + interval '1 millisecond' LOOP
    PERFORM pg_sleep(0.001);
  END LOOP;
  LOOP
    BEGIN
      free := pg_try_advisory_xact_lock(promotional_credit_creation_lock_class(), creating_key);
      RAISE SQLSTATE 'P0001' USING MESSAGE = 'let go';
    EXCEPTION WHEN raise_exception THEN
      NULL;
    END;
    EXIT WHEN free;
    PERFORM pg_sleep(0.001);
  END LOOP;
  FOR currency IN SELECT b.currency_code FROM promotional_credit_balances AS b WHERE b.tenant_id = tenant AND b.customer_id = customer LOOP
    BEGIN
      PERFORM 1 FROM promotional_credit_balances AS b
        WHERE b.tenant_id = tenant AND b.customer_id = customer AND b.currency_code = currency
          FOR SHARE;
      RAISE SQLSTATE 'P0001' USING MESSAGE = 'let go';
    EXCEPTION WHEN raise_exception THEN
      NULL;
    END;
  END LOOP;
  RETURN QUERY SELECT x.currency_code, x.amount, x.held FROM promotional_credit_balances_as_of(tenant, customer, at) AS x;
END
$fn$;

-- Balances of a customer as they were at `at` (in the past): the closing
-- balance of each currency's last entry written by then, less what had
-- left the balance by then without an entry yet. That is (1) the
-- EXPIRATION entries written after `at` whose credits left by then (their
-- expire_time: when their credits left; no entry can come between that
-- instant and the EXPIRATION entry, a write settles first), and (2) what
-- no write has settled yet that had left by then (promotional_credit_due
-- up to `at`: lots past their expire_time, less what the holds still
-- active then kept of them). (2) is needed only while nothing has settled
-- the balance since `at` (next_expire_time <= at; a write or sweep after
-- it writes (1) instead), when the balance's lots and holds are still as
-- they were at `at`. Entries written before definition version 6 say when
-- their lot expired, even for credits a hold kept longer: as of an instant
-- between the two, such credits are left out. The old expirations of a
-- reversal's part that went back into an expired lot are told by their
-- description (written only here): theirs left at their create_time (read
-- by their expire_time they made as-of balances negative).
CREATE FUNCTION promotional_credit_balances_as_of(tenant uuid, customer text, at timestamptz)
RETURNS TABLE (currency_code text, amount bigint, held bigint)
LANGUAGE sql STABLE AS $fn$
  WITH last_entries AS (
    SELECT DISTINCT ON (e.currency_code) e.currency_code, e.closing_balance
      FROM promotional_credits AS e
     WHERE e.tenant_id = tenant AND e.customer_id = customer AND e.create_time <= at
     ORDER BY e.currency_code, e.seq DESC
  ), held_then AS (
    SELECT x.currency_code, sum(x.amount) AS held
      FROM promotional_credit_holds AS x
     WHERE x.tenant_id = tenant AND x.customer_id = customer AND x.create_time <= at AND x.expire_time > at
       AND (x.status = 'ACTIVE' OR x.update_time > at)
     GROUP BY x.currency_code
  ), written_later AS (
    SELECT e.currency_code, sum(e.amount) AS expired
      FROM promotional_credits AS e
     WHERE e.tenant_id = tenant AND e.customer_id = customer AND e.origin = 'EXPIRATION'
       AND e.create_time > at
       AND CASE WHEN e.description LIKE 'Expired: returned to lot %' THEN e.create_time ELSE e.expire_time END <= at
     GROUP BY e.currency_code
  ), unsettled AS (
    SELECT b.currency_code, sum(d.amount) AS due
      FROM promotional_credit_balances AS b
     CROSS JOIN LATERAL promotional_credit_due(b, at) AS d
     WHERE b.tenant_id = tenant AND b.customer_id = customer AND b.next_expire_time <= at
     GROUP BY b.currency_code
  )
  SELECT le.currency_code,
         le.closing_balance - coalesce(wl.expired, 0) - coalesce(u.due, 0),
         coalesce(ht.held, 0)
    FROM last_entries le
    LEFT JOIN held_then ht USING (currency_code)
    LEFT JOIN written_later wl USING (currency_code)
    LEFT JOIN unsettled u USING (currency_code)
   ORDER BY le.currency_code
$fn$;

-- Holds made before this definition reserve their credits now, each under
-- its balance's lock (a write that finds one the next time does the same).
DO $reserve$
DECLARE
  b promotional_credit_balances;
BEGIN
  FOR b IN SELECT * FROM promotional_credit_balances AS x WHERE x.held > 0 FOR UPDATE LOOP
    PERFORM promotional_credit_reserve_unreserved(b);
  END LOOP;
END
$reserve$;
