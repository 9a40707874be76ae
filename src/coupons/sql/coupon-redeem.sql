-- THE write path of redemptions: RedeemCoupon and RedeemCustomerCredit.
--
-- coupon_redeem(tenant, requests) records many redemptions of one tenant in
-- ONE statement (group commit, as promotional_credit_apply does for the
-- ledger). It locks every customer credit named (id order), then every
-- coupon (id order; credits before coupons, the order every path takes),
-- reads the instant once the locks are held, counts what counts at that
-- instant ONCE per coupon and credit (confirmed uses plus held ones whose
-- hold_until is later; canceled and lapsed never), then walks the requests
-- in the given order. Each is decided in the contract's order:
--   HOLD_UNTIL_PASSED (hold_until, in the future when the call was checked,
--     had passed by the time the locks were held: the hold would be lapsed
--     from the start; the caller is told it as a bad hold_until)
--   CREDIT_NOT_FOUND, CREDIT_REVOKED, CREDIT_ALREADY_REDEEMED, CREDIT_EXPIRED
--     (credit requests only; the credit's coupon is the one redeemed)
--   COUPON_NOT_FOUND, COUPON_DISABLED, COUPON_EXPIRED, COUPON_NOT_APPLICABLE,
--   COUPON_MAX_REDEMPTIONS_REACHED, COUPON_CUSTOMER_LIMIT_REACHED
-- and an accepted one counts at once for the requests after it (the total,
-- the customer's and the credit's uses), so caps hold exactly however many
-- requests share the statement and however many statements race. The
-- lapsed holds of the coupons redeemed are recorded first (their events
-- before the new ones; see coupon_record_lapses), then the accepted ones
-- are written set-wise: redemptions, state rows (held),
-- credit links, REDEMPTION_CREATED events (by reference to the
-- redemption: see the writes), one counter update per coupon
-- and one for the credits. Credits and coupons are found by index lookups
-- of the ids and codes named (test/credits/redeem-footprint.test.ts), never
-- by a scan of the tenant's rows.
--
-- The rules live here for redemptions; ValidateCoupon (no lock, no write)
-- restates the coupon's in TypeScript (coupon-redemption.rules.ts), and
-- test/coupons/rules-agree.test.ts runs both on the same cases.
--
-- `requests` is a JSON array; item i is
--   {code | credit_id, customer_id, plan_id, product_id, amount, currency_code,
--    hold_until, metadata, done_by, validate_only, event, id, event_id}
-- amount as a JSON string (exact beyond 2^53); hold_until an ISO instant or
-- null (confirmed at once); validate_only: decided and answered like the
-- others, written and counted never; event (sent only by replicas of the
-- versions before REDEMPTION_CREATED was stored by reference): the event's
-- payload without what only this statement knows (id, couponId, discount,
-- createTime, updateTime), which are added here in the same JSON form
-- (proto JSON: int64 as strings, a zero amount left out, instants in
-- milliseconds with a Z); stored as the payload, not by reference, for
-- their readers. A redemption's create_time is kept to the
-- millisecond, so its payload and every later read of it agree. id and
-- event_id: the ids of the redemption (a UUIDv7) and of its
-- REDEMPTION_CREATED event (a v4), made by the service (uuid-v7.ts,
-- randomUUID), used if the request is accepted; made here when absent,
-- as for a replica of a rolling deploy that predates them. Made here,
-- they were a fifteenth of the statement (pgbench, one client, 32 code
-- requests: 0.2 ms of 3.1): credits_uuid_v7() costs 4 µs and
-- gen_random_uuid() 2 µs, nearly all of it OpenSSL's generator asking
-- getpid() for every id; Node draws its random bytes in batches.
--
-- One row per item, in the given order: reason (NULL: accepted), the
-- redemption's id, seq, create_time and discount, the coupon's id (c_id)
-- with its counts after the item (c_confirmed: confirmed uses, c_live: uses
-- that count), the customer's uses of it before the item (customer_uses,
-- when the coupon has a per-customer limit), and for credit requests the
-- credit's columns with its counts after the item. With repeat_terms false
-- the coupon's other columns (its terms, c_seq to c_update_time but the
-- counts) come on the first row of that coupon only, NULL on the rest: a
-- group of 31 redemptions of one coupon sent and parsed them 31 times, a
-- third of the statement's output (CouponRepository.redeem copies them to
-- the rest). The default, every row, is what replicas of a rolling deploy
-- that predate the parameter read.

DROP FUNCTION IF EXISTS coupon_redeem(uuid, jsonb);
DROP FUNCTION IF EXISTS coupon_redeem(uuid, jsonb, boolean);
DROP FUNCTION IF EXISTS coupon_record_lapses(uuid, uuid[], timestamptz, boolean);
DROP FUNCTION IF EXISTS coupon_redemption_created_json(coupon_redemptions, uuid);
DROP FUNCTION IF EXISTS coupon_redemption_json(coupon_redemptions, uuid, text, timestamptz);
DROP FUNCTION IF EXISTS coupon_json_time(timestamptz);

-- An instant as the transport's JSON writes it (Date.toISOString: UTC,
-- whole milliseconds, a Z); NULL stays NULL.
CREATE FUNCTION coupon_json_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$fn$;

-- A redemption as the API shows it: CouponRedemption's proto JSON, field
-- for field as CouponEventSnapshots.redemption renders it in TypeScript
-- (defaults left out, int64 as strings, instants in milliseconds with a Z;
-- test/coupons/lapse-events.test.ts compares the two), with the status and
-- update_time given (its state row's, or what it becomes).
CREATE FUNCTION coupon_redemption_json(r coupon_redemptions, credit_id uuid, status text, update_time timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
  SELECT jsonb_strip_nulls(jsonb_build_object(
    'id', r.id, 'couponId', r.coupon_id, 'customerId', nullif(r.customer_id, ''),
    'planId', nullif(r.plan_id, ''), 'productId', nullif(r.product_id, ''),
    'amount', CASE WHEN r.amount IS NOT NULL AND r.currency_code IS NOT NULL
                   THEN jsonb_build_object('amount', CASE WHEN r.amount <> 0 THEN r.amount::text END, 'currencyCode', nullif(r.currency_code, '')) END,
    'discount', CASE WHEN r.discount IS NOT NULL AND r.currency_code IS NOT NULL
                     THEN jsonb_build_object('amount', CASE WHEN r.discount <> 0 THEN r.discount::text END, 'currencyCode', nullif(r.currency_code, '')) END,
    'doneBy', nullif(r.done_by, ''),
    'createTime', coupon_json_time(r.create_time),
    'status', 'REDEMPTION_STATUS_' || status,
    'holdUntil', coupon_json_time(r.hold_until),
    'customerCreditId', credit_id,
    'metadata', CASE WHEN r.metadata <> '{}' THEN r.metadata END,
    'updateTime', coupon_json_time(update_time)))
$fn$;

-- A redemption as its REDEMPTION_CREATED event shows it: as it was
-- recorded, HELD if it has a hold_until (else CONFIRMED), updated when
-- created. Its row never changes (its state row does), so this is, at any
-- later time, the payload the event once stored. The event read renders an
-- event stored by reference the same way in TypeScript
-- (CouponRepository.redemptionsAsCreated; rendered with this function in
-- the read statement, an event read cost PostgreSQL 140,000 instructions
-- more); this is what a session at credits.redemption_event_snapshots = on
-- stores (test/coupons/created-event-by-reference.test.ts compares the
-- ways).
CREATE FUNCTION coupon_redemption_created_json(r coupon_redemptions, credit_id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
  SELECT coupon_redemption_json(r, credit_id, CASE WHEN r.hold_until IS NULL THEN 'CONFIRMED' ELSE 'HELD' END, r.create_time)
$fn$;

-- Records the lapse of the held redemptions of `coupon_ids` (the caller
-- holds their locks) whose hold_until is at or before `at`, as the expiry
-- sweep records them (CouponsService.recordLapsedHolds): CANCELED as of
-- hold_until, with a REDEMPTION_CANCELED event each, in the order they
-- lapsed. coupon_redeem records them before what it writes (and
-- UpdateCoupon and RevokeCustomerCredit before their events, through
-- CouponRepository.recordLapses): a redemption that a lapse made room for
-- (the coupon's cap, the customer's limit, a credit's uses), or a count
-- that leaves it out, then comes after that lapse in the event stream, not
-- before it, whenever the sweep runs. Answers how many it recorded.
CREATE FUNCTION coupon_record_lapses(tenant uuid, coupon_ids uuid[], at timestamptz, events_on boolean) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
  recorded integer;
BEGIN
  WITH lapsed AS (
    UPDATE coupon_redemption_states AS s SET status = 'CANCELED', update_time = s.hold_until
     WHERE s.tenant_id = tenant AND s.coupon_id = ANY (coupon_ids) AND s.status = 'HELD' AND s.hold_until <= at
    RETURNING s.redemption_id, s.customer_credit_id, s.hold_until
  ), written AS (
    INSERT INTO events (tenant_id, type, customer_id, payload_kind, payload)
    SELECT tenant, 'REDEMPTION_CANCELED', r.customer_id, 'redemption', coupon_redemption_json(r, l.customer_credit_id, 'CANCELED', l.hold_until)
      FROM lapsed AS l JOIN coupon_redemptions AS r ON r.id = l.redemption_id
     -- `r.id = ANY` gives the planner the index path: under the generic
     -- plan (guessing ~100 lapsed) it hashed a scan of every redemption of
     -- every tenant below some 35,000 (review: 5 ms at 21,000).
     WHERE events_on AND r.id = ANY (ARRAY(SELECT x.redemption_id FROM lapsed AS x))
     ORDER BY l.hold_until, r.seq
  )
  SELECT count(*) INTO recorded FROM lapsed;
  RETURN recorded;
END
$fn$;

CREATE FUNCTION coupon_redeem(tenant uuid, requests jsonb, repeat_terms boolean DEFAULT true)
RETURNS TABLE (
  item integer, reason text,
  redemption_id uuid, redemption_seq bigint, redemption_time timestamptz, discount bigint, customer_uses bigint,
  c_id uuid, c_seq bigint, c_code text, c_name text, c_type text, c_percentage integer, c_fixed_amount bigint,
  c_fixed_currency_code text, c_frequency text, c_frequency_interval integer, c_max_redemptions integer,
  c_max_redemptions_per_customer integer, c_expire_time timestamptz, c_limited_to_plans text[], c_excluded_from_plans text[],
  c_limited_to_products text[], c_excluded_from_products text[], c_enabled boolean, c_confirmed bigint, c_live bigint,
  c_redeemed boolean, c_metadata jsonb, c_create_time timestamptz, c_update_time timestamptz,
  cr_id uuid, cr_seq bigint, cr_customer_id text, cr_coupon_id uuid, cr_membership_id text, cr_uses_total integer,
  cr_multi_use boolean, cr_confirmed bigint, cr_live bigint, cr_expire_time timestamptz, cr_revenue_amount bigint,
  cr_revenue_currency_code text, cr_create_time timestamptz, cr_revoke_time timestamptz, cr_last_redeem_time timestamptz,
  cr_metadata jsonb)
-- Generic plans for every statement inside, planned once per connection. A
-- PL/pgSQL statement with parameters is otherwise planned afresh at every
-- call for as long as its custom plans look cheaper than the generic one,
-- as several here did: planning was about a third of a one-request call
-- (pgbench, one client, on the bench's database: 1 request 1.38 → 1.01 ms,
-- 16 code requests 2.75 → 2.34 ms, 16 credit requests 4.00 → 3.46 ms).
-- Every row here is found by key, so no plan depends on the values
-- (test/credits/redeem-footprint.test.ts reads under generic plans).
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
#variable_conflict use_column
DECLARE
  size integer := jsonb_array_length(requests);
  req jsonb;
  at timestamptz;
  events_on boolean := current_setting('credits.events', true) IS DISTINCT FROM 'off';
  snapshots_on boolean := current_setting('credits.redemption_event_snapshots', true) IS NOT DISTINCT FROM 'on';
  -- Locked rows and their counts, by position in these arrays.
  cps coupons[];
  cp coupons;
  cp_confirmed bigint[];
  cp_live bigint[];
  cp_added bigint[];
  cp_redeemed boolean[];
  cp_terms boolean[];
  crs customer_credits[];
  cr customer_credits;
  cr_confirmed_n bigint[];
  cr_live_n bigint[];
  cr_added bigint[];
  cr_last timestamptz[];
  -- Per (coupon, customer): uses that count, keyed coupon_id || '/' || customer_id.
  per_customer jsonb := '{}';
  -- Per item.
  ci integer[];
  ki integer[];
  o_reason text[];
  o_id uuid[];
  o_time timestamptz[];
  o_discount bigint[];
  o_cust bigint[];
  o_c_confirmed bigint[];
  o_c_live bigint[];
  o_c_redeemed boolean[];
  o_cr_confirmed bigint[];
  o_cr_live bigint[];
  o_cr_last timestamptz[];
  o_terms integer[];
  -- Accepted, to write.
  w_n integer[] := '{}';
  seqs jsonb;
  n integer;
  i integer;
  k integer;
  why text;
  amt bigint;
  hold timestamptz;
  cust_key text;
  cust_n bigint;
  disc bigint;
  t timestamptz;
BEGIN
  IF size = 0 THEN RETURN; END IF;
  ci := array_fill(0, ARRAY[size]);
  ki := array_fill(0, ARRAY[size]);
  o_reason := array_fill(NULL::text, ARRAY[size]);
  o_id := array_fill(NULL::uuid, ARRAY[size]);
  o_time := array_fill(NULL::timestamptz, ARRAY[size]);
  o_discount := array_fill(NULL::bigint, ARRAY[size]);
  o_cust := array_fill(NULL::bigint, ARRAY[size]);
  o_c_confirmed := array_fill(NULL::bigint, ARRAY[size]);
  o_c_live := array_fill(NULL::bigint, ARRAY[size]);
  o_c_redeemed := array_fill(NULL::boolean, ARRAY[size]);
  o_cr_confirmed := array_fill(NULL::bigint, ARRAY[size]);
  o_cr_live := array_fill(NULL::bigint, ARRAY[size]);
  o_cr_last := array_fill(NULL::timestamptz, ARRAY[size]);
  o_terms := array_fill(0, ARRAY[size]);

  -- Locks: credits, then coupons, each in id order, so that concurrent
  -- statements (of any replica) and the transitions (credit, then coupon)
  -- cannot deadlock. Rows are found with `= ANY (array)`, index lookups: an
  -- `IN (subquery)` here was planned as a scan of every credit (and coupon)
  -- of the tenant, 3.7 ms per statement at 10,000 credits. The tenant is a
  -- filter on the rows found by id, written so that no index takes it
  -- (IS NOT DISTINCT FROM; tenant_id is never null): as `tenant_id =`, a
  -- generic plan that guessed a dozen rows per tenant combined the tenant's
  -- index entries with the ids' (a BitmapAnd reading every coupon of a
  -- tenant with 300, test/credits/redeem-footprint.test.ts).
  -- The rows are aggregated as what they are (`c`, a customer_credits):
  -- aggregated as the subquery's anonymous records, each array was
  -- converted to the variable's type through text, element by element
  -- (callgrind: 39,000 instructions per credit, 4% of a redemption).
  SELECT coalesce(array_agg(l.c ORDER BY (l.c).id), '{}') INTO crs FROM (
    SELECT c FROM customer_credits c
     WHERE c.id = ANY (ARRAY(SELECT (r->>'credit_id')::uuid FROM jsonb_array_elements(requests) r WHERE r->>'credit_id' IS NOT NULL))
       AND c.tenant_id IS NOT DISTINCT FROM tenant
     ORDER BY c.id FOR UPDATE) l;
  -- Coupons by id alone: the credits' coupons and those the codes name
  -- (found by the (tenant_id, lower(code)) index first, one lookup per
  -- code). An OR of the two in one condition was planned as a walk of the
  -- tenant's coupons; so was `lower(code) = ANY (codes)` once the planner
  -- guessed a few coupons per tenant (many tenants): it read the tenant's
  -- rows by tenant_id and filtered the codes. A code changed meanwhile is
  -- caught by the walk, which matches the locked row's code: that request
  -- is COUPON_NOT_FOUND, as if it had come after.
  SELECT coalesce(array_agg(l.c ORDER BY (l.c).id), '{}') INTO cps FROM (
    SELECT c FROM coupons c
     WHERE c.id = ANY (ARRAY(
             SELECT (x).coupon_id FROM unnest(crs) x
              UNION
             SELECT k.id
               FROM (SELECT DISTINCT lower(r->>'code') AS code FROM jsonb_array_elements(requests) r WHERE r->>'code' IS NOT NULL) q
              CROSS JOIN LATERAL (SELECT k.id FROM coupons k WHERE k.tenant_id = tenant AND lower(k.code) = q.code LIMIT 1) k))
       AND c.tenant_id IS NOT DISTINCT FROM tenant
     ORDER BY c.id FOR UPDATE) l;
  -- The instant, read once every lock is held: a request that waited for a
  -- lock must not redeem what expired meanwhile, nor count a lapsed hold.
  at := clock_timestamp();

  cp_confirmed := array_fill(0::bigint, ARRAY[greatest(cardinality(cps), 1)]);
  cp_live := cp_confirmed;
  cp_added := cp_confirmed;
  cp_redeemed := array_fill(false, ARRAY[greatest(cardinality(cps), 1)]);
  cp_terms := cp_redeemed;
  FOR i IN 1 .. cardinality(cps) LOOP
    cp := cps[i];
    cp_confirmed[i] := cp.redemption_count;
    cp_live[i] := cp.redemption_count + (SELECT count(*) FROM coupon_redemption_states s
                                          WHERE s.tenant_id = tenant AND s.coupon_id = cp.id AND s.status = 'HELD' AND s.hold_until > at);
    cp_redeemed[i] := cp.redeemed;
  END LOOP;
  cr_confirmed_n := array_fill(0::bigint, ARRAY[greatest(cardinality(crs), 1)]);
  cr_live_n := cr_confirmed_n;
  cr_added := cr_confirmed_n;
  cr_last := array_fill(NULL::timestamptz, ARRAY[greatest(cardinality(crs), 1)]);
  IF cardinality(crs) > 0 THEN
    SELECT array_agg(x.redemption_count ORDER BY x.ordinality),
           array_agg(x.redemption_count + (SELECT count(*) FROM coupon_redemption_states s
                                            WHERE s.tenant_id = tenant AND s.customer_credit_id = x.id AND s.status = 'HELD' AND s.hold_until > at)
                     ORDER BY x.ordinality),
           array_agg(x.last_redeem_time ORDER BY x.ordinality)
      INTO cr_confirmed_n, cr_live_n, cr_last
      FROM unnest(crs) WITH ORDINALITY AS x;

    -- Which credit (and so which coupon) each credit request names: one
    -- join, by id and customer (another customer's is not found). Ids are
    -- unique: a request joins one credit at most.
    SELECT array_agg(coalesce(kc.k, 0) ORDER BY r.n), array_agg(coalesce(cc.i, 0) ORDER BY r.n)
      INTO ki, ci
      FROM jsonb_array_elements(requests) WITH ORDINALITY AS r (req, n)
      LEFT JOIN (SELECT x.id, x.customer_id, x.coupon_id, x.ordinality::integer AS k FROM unnest(crs) WITH ORDINALITY AS x) kc
        ON kc.id = (r.req->>'credit_id')::uuid AND kc.customer_id = r.req->>'customer_id'
      LEFT JOIN (SELECT x.id, x.ordinality::integer AS i FROM unnest(cps) WITH ORDINALITY AS x) cc
        ON cc.id = kc.coupon_id;
  END IF;

  -- Which coupon each code request names (codes are unique per tenant; a
  -- group holds few coupons).
  FOR n IN 1 .. size LOOP
    req := requests -> (n - 1);
    IF req->>'credit_id' IS NULL THEN
      FOR i IN 1 .. cardinality(cps) LOOP
        IF lower((cps[i]).code) = lower(req->>'code') THEN ci[n] := i; END IF;
      END LOOP;
    END IF;
  END LOOP;

  -- The customers' uses of coupons with a per-customer limit, counted once per pair.
  SELECT coalesce(jsonb_object_agg(p.coupon_id::text || '/' || p.customer_id,
           (SELECT count(*) FROM coupon_redemptions r LEFT JOIN coupon_redemption_states s ON s.redemption_id = r.id
             WHERE r.tenant_id = tenant AND r.coupon_id = p.coupon_id AND r.customer_id = p.customer_id
               AND (s.status IS NULL OR s.status = 'CONFIRMED' OR (s.status = 'HELD' AND s.hold_until > at)))), '{}')
    INTO per_customer
    FROM (SELECT DISTINCT (cps[ci[x]]).id AS coupon_id, requests -> (x - 1) ->> 'customer_id' AS customer_id
            FROM generate_series(1, size) x
           WHERE ci[x] > 0 AND (cps[ci[x]]).max_redemptions_per_customer IS NOT NULL) p;

  -- The walk, in the given order.
  FOR n IN 1 .. size LOOP
    req := requests -> (n - 1);
    why := NULL;
    i := ci[n];
    k := ki[n];
    -- The row that carries the coupon's terms: its first (every one with repeat_terms).
    IF i > 0 AND (repeat_terms OR NOT cp_terms[i]) THEN
      o_terms[n] := i;
      cp_terms[i] := true;
    END IF;
    hold := (req->>'hold_until')::timestamptz;
    t := date_trunc('milliseconds', clock_timestamp());
    IF hold IS NOT NULL AND hold <= clock_timestamp() THEN
      why := 'HOLD_UNTIL_PASSED';
    ELSIF req->>'credit_id' IS NOT NULL THEN
      IF k = 0 THEN
        why := 'CREDIT_NOT_FOUND';
      ELSE
        cr := crs[k];
        IF cr.revoke_time IS NOT NULL THEN why := 'CREDIT_REVOKED';
        ELSIF cr.uses_total IS NOT NULL AND cr_live_n[k] >= cr.uses_total THEN why := 'CREDIT_ALREADY_REDEEMED';
        ELSIF cr.expire_time IS NOT NULL AND cr.expire_time <= at THEN why := 'CREDIT_EXPIRED';
        END IF;
      END IF;
    END IF;
    IF why IS NULL AND i = 0 THEN why := 'COUPON_NOT_FOUND'; END IF;
    amt := (req->>'amount')::bigint;
    cust_n := NULL;
    IF why IS NULL THEN
      cp := cps[i];
      IF cp.max_redemptions_per_customer IS NOT NULL THEN
        cust_key := cp.id::text || '/' || (req->>'customer_id');
        cust_n := coalesce((per_customer ->> cust_key)::bigint, 0);
      END IF;
      IF NOT cp.enabled THEN why := 'COUPON_DISABLED';
      ELSIF cp.expire_time IS NOT NULL AND cp.expire_time <= at THEN why := 'COUPON_EXPIRED';
      ELSIF (cardinality(cp.limited_to_plans) > 0 AND (req->>'plan_id' IS NULL OR NOT (req->>'plan_id' = ANY (cp.limited_to_plans))))
         OR (req->>'plan_id' IS NOT NULL AND req->>'plan_id' = ANY (cp.excluded_from_plans))
         OR (cardinality(cp.limited_to_products) > 0 AND (req->>'product_id' IS NULL OR NOT (req->>'product_id' = ANY (cp.limited_to_products))))
         OR (req->>'product_id' IS NOT NULL AND req->>'product_id' = ANY (cp.excluded_from_products))
         OR (cp.type = 'FIXED_AMOUNT' AND amt IS NOT NULL AND req->>'currency_code' IS DISTINCT FROM cp.fixed_currency_code) THEN
        why := 'COUPON_NOT_APPLICABLE';
      ELSIF cp.max_redemptions IS NOT NULL AND cp_live[i] >= cp.max_redemptions THEN why := 'COUPON_MAX_REDEMPTIONS_REACHED';
      ELSIF cust_n IS NOT NULL AND cust_n >= cp.max_redemptions_per_customer THEN why := 'COUPON_CUSTOMER_LIMIT_REACHED';
      END IF;
    END IF;
    o_reason[n] := why;
    o_cust[n] := cust_n;

    IF why IS NULL THEN
      -- The discount, exactly: a percentage rounds half up (numeric, no
      -- overflow); a fixed amount is capped at the amount.
      disc := CASE WHEN amt IS NULL THEN NULL
                   WHEN cp.type = 'PERCENTAGE' THEN div(amt::numeric * cp.percentage + 50, 100)::bigint
                   ELSE least(cp.fixed_amount, amt) END;
      o_discount[n] := disc;
      o_time[n] := t;
      IF (req->>'validate_only')::boolean THEN
        -- Answered as if written; counted for no one.
        o_id[n] := NULL;
        o_c_live[n] := cp_live[i] + 1;
        o_c_confirmed[n] := cp_confirmed[i] + CASE WHEN hold IS NULL THEN 1 ELSE 0 END;
        o_c_redeemed[n] := true;
        IF k > 0 THEN
          o_cr_live[n] := cr_live_n[k] + 1;
          o_cr_confirmed[n] := cr_confirmed_n[k] + CASE WHEN hold IS NULL THEN 1 ELSE 0 END;
          o_cr_last[n] := t;
        END IF;
      ELSE
        o_id[n] := coalesce((req->>'id')::uuid, credits_uuid_v7());
        w_n := w_n || n;
        cp_live[i] := cp_live[i] + 1;
        cp_redeemed[i] := true;
        IF hold IS NULL THEN
          cp_confirmed[i] := cp_confirmed[i] + 1;
          cp_added[i] := cp_added[i] + 1;
        END IF;
        IF cust_n IS NOT NULL THEN per_customer := jsonb_set(per_customer, ARRAY[cust_key], to_jsonb(cust_n + 1)); END IF;
        o_c_live[n] := cp_live[i];
        o_c_confirmed[n] := cp_confirmed[i];
        o_c_redeemed[n] := true;
        IF k > 0 THEN
          cr_live_n[k] := cr_live_n[k] + 1;
          IF hold IS NULL THEN
            cr_confirmed_n[k] := cr_confirmed_n[k] + 1;
            cr_added[k] := cr_added[k] + 1;
          END IF;
          cr_last[k] := t;
          o_cr_live[n] := cr_live_n[k];
          o_cr_confirmed[n] := cr_confirmed_n[k];
          o_cr_last[n] := t;
        END IF;
      END IF;
    ELSE
      IF i > 0 THEN
        o_c_live[n] := cp_live[i];
        o_c_confirmed[n] := cp_confirmed[i];
        o_c_redeemed[n] := cp_redeemed[i];
      END IF;
      IF k > 0 THEN
        o_cr_live[n] := cr_live_n[k];
        o_cr_confirmed[n] := cr_confirmed_n[k];
        o_cr_last[n] := cr_last[k];
      END IF;
    END IF;
  END LOOP;

  -- The writes, set-wise: one statement per table.
  IF cardinality(w_n) > 0 THEN
    -- First the lapses of the coupons redeemed (the walk counted them out
    -- already): their REDEMPTION_CANCELED events before the
    -- REDEMPTION_CREATED ones that may rely on them.
    PERFORM coupon_record_lapses(tenant, ARRAY(SELECT DISTINCT (cps[ci[x]]).id FROM unnest(w_n) AS x), at, events_on);

    WITH inserted AS (
      INSERT INTO coupon_redemptions
        (id, tenant_id, coupon_id, customer_id, plan_id, product_id, amount, discount, currency_code, done_by, create_time, hold_until, metadata)
      SELECT o_id[x], tenant, (cps[ci[x]]).id, r ->> 'customer_id', r ->> 'plan_id', r ->> 'product_id', (r ->> 'amount')::bigint,
             o_discount[x], CASE WHEN r ->> 'amount' IS NULL THEN NULL ELSE r ->> 'currency_code' END, r ->> 'done_by', o_time[x],
             (r ->> 'hold_until')::timestamptz, coalesce(r -> 'metadata', '{}')
        -- The item's request read out of the array once per row, not once per column.
        FROM unnest(w_n) WITH ORDINALITY AS w (x, o), LATERAL jsonb_array_element(requests, x - 1) AS r
       ORDER BY w.o
      RETURNING id, seq
    )
    SELECT jsonb_object_agg(id::text, seq) INTO seqs FROM inserted;

    INSERT INTO coupon_redemption_states (redemption_id, tenant_id, coupon_id, customer_credit_id, status, hold_until, update_time)
    SELECT o_id[x], tenant, (cps[ci[x]]).id, CASE WHEN ki[x] > 0 THEN (crs[ki[x]]).id END, 'HELD', (r ->> 'hold_until')::timestamptz, o_time[x]
      FROM unnest(w_n) AS x, LATERAL jsonb_array_element(requests, x - 1) AS r
     WHERE r ->> 'hold_until' IS NOT NULL;

    INSERT INTO customer_credit_redemptions (redemption_id, tenant_id, credit_id, revenue_amount, revenue_currency_code)
    SELECT o_id[x], tenant, (crs[ki[x]]).id, (crs[ki[x]]).revenue_amount, (crs[ki[x]]).revenue_currency_code
      FROM unnest(w_n) AS x WHERE ki[x] > 0;

    -- REDEMPTION_CREATED by reference (redemption_id, no payload; the read
    -- renders the redemption as created), unless the request
    -- brings its snapshot (`event`, a replica of a version before
    -- references) or the session asks for snapshots
    -- (credits.redemption_event_snapshots = on, while replicas that cannot
    -- read references still serve streams).
    IF events_on THEN
      INSERT INTO events (id, tenant_id, type, customer_id, payload_kind, payload, redemption_id)
      SELECT coalesce((r ->> 'event_id')::uuid, gen_random_uuid()), tenant, 'REDEMPTION_CREATED', r ->> 'customer_id', 'redemption',
             CASE WHEN brought THEN
                    (r -> 'event')
                      || jsonb_build_object('id', o_id[x], 'couponId', (cps[ci[x]]).id, 'createTime', made, 'updateTime', made)
                      || CASE WHEN o_discount[x] IS NULL THEN '{}'::jsonb
                              ELSE jsonb_build_object('discount', jsonb_strip_nulls(jsonb_build_object(
                                     'amount', CASE WHEN o_discount[x] <> 0 THEN o_discount[x]::text END,
                                     'currencyCode', r ->> 'currency_code'))) END
                  WHEN snapshots_on THEN
                    (SELECT coupon_redemption_created_json(d, CASE WHEN ki[x] > 0 THEN (crs[ki[x]]).id END) FROM coupon_redemptions d WHERE d.id = o_id[x])
             END,
             CASE WHEN brought OR snapshots_on THEN NULL ELSE o_id[x] END
        FROM unnest(w_n) WITH ORDINALITY AS w (x, o), LATERAL jsonb_array_element(requests, x - 1) AS r,
             LATERAL coupon_json_time(o_time[x]) AS made, LATERAL (SELECT jsonb_typeof(r -> 'event') = 'object') AS e (brought)
       ORDER BY w.o;
    END IF;

    FOR i IN 1 .. cardinality(cps) LOOP
      IF cp_redeemed[i] AND (cp_added[i] > 0 OR NOT (cps[i]).redeemed) THEN
        UPDATE coupons SET redemption_count = redemption_count + cp_added[i], redeemed = true
         WHERE id = (cps[i]).id AND tenant_id IS NOT DISTINCT FROM tenant;
      END IF;
    END LOOP;
    -- `c.id = ANY` gives the planner the index path: joined to the
    -- positions alone it hashed a scan of every credit (6 ms at 10,000).
    -- A credit redeemed here has new uses (added) or a new hold (its
    -- last_redeem_time moved); never told by the time alone: a statement in
    -- the same millisecond as the credit's last redemption moves nothing
    -- (review: its uses were not counted, and the credit redeemed past its
    -- limit).
    -- `uses_total = c.uses_total` writes the value the row has, for
    -- PostgreSQL 18: an UPDATE that sets none of the columns a stored
    -- generated column (multi_use) reads prepares that column's expression
    -- again for every row it writes (parsed from the catalog's text:
    -- 21,000 instructions a row, 2.4% of a group of 32 credit
    -- redemptions); setting one of them prepares it once per statement.
    -- PostgreSQL 15 prepared it once either way.
    IF cardinality(crs) > 0 THEN
      UPDATE customer_credits c SET redemption_count = c.redemption_count + u.added, last_redeem_time = u.last, uses_total = c.uses_total
        FROM (SELECT (crs[g.pos]).id AS id, cr_added[g.pos] AS added, cr_last[g.pos] AS last
                FROM generate_series(1, cardinality(crs)) AS g (pos)
               WHERE cr_added[g.pos] > 0 OR cr_last[g.pos] IS DISTINCT FROM (crs[g.pos]).last_redeem_time) u
       WHERE c.id = u.id AND c.id = ANY (ARRAY(SELECT (x).id FROM unnest(crs) x)) AND c.tenant_id IS NOT DISTINCT FROM tenant;
    END IF;
  END IF;

  -- The answer, one row per item in the given order, with the coupon's
  -- (and credit's) columns from the locked rows and the counts after the
  -- item. One query: assigning ~50 output columns per item in PL/pgSQL cost
  -- more than the rest of the walk. Columns of a domain type are cast to the
  -- base type the result declares (RETURN QUERY wants the very same types).
  -- cps[o_terms[n]]: the coupon whose terms the row carries (cps[0] is
  -- NULL, so are its fields).
  RETURN QUERY
    SELECT x.n, o_reason[x.n], o_id[x.n], (seqs ->> o_id[x.n]::text)::bigint, o_time[x.n], o_discount[x.n], o_cust[x.n],
           (cps[ci[x.n]]).id, (cps[o_terms[x.n]]).seq, (cps[o_terms[x.n]]).code::text, (cps[o_terms[x.n]]).name::text, (cps[o_terms[x.n]]).type::text,
           (cps[o_terms[x.n]]).percentage::integer, (cps[o_terms[x.n]]).fixed_amount::bigint, (cps[o_terms[x.n]]).fixed_currency_code::text, (cps[o_terms[x.n]]).frequency::text,
           (cps[o_terms[x.n]]).frequency_interval::integer, (cps[o_terms[x.n]]).max_redemptions::integer, (cps[o_terms[x.n]]).max_redemptions_per_customer::integer,
           (cps[o_terms[x.n]]).expire_time, (cps[o_terms[x.n]]).limited_to_plans, (cps[o_terms[x.n]]).excluded_from_plans,
           (cps[o_terms[x.n]]).limited_to_products, (cps[o_terms[x.n]]).excluded_from_products, (cps[o_terms[x.n]]).enabled,
           o_c_confirmed[x.n], o_c_live[x.n], o_c_redeemed[x.n], (cps[o_terms[x.n]]).metadata, (cps[o_terms[x.n]]).create_time,
           (cps[o_terms[x.n]]).update_time,
           (crs[ki[x.n]]).id, (crs[ki[x.n]]).seq, (crs[ki[x.n]]).customer_id::text, (crs[ki[x.n]]).coupon_id, (crs[ki[x.n]]).membership_id::text,
           (crs[ki[x.n]]).uses_total, (crs[ki[x.n]]).multi_use, o_cr_confirmed[x.n], o_cr_live[x.n], (crs[ki[x.n]]).expire_time,
           (crs[ki[x.n]]).revenue_amount::bigint, (crs[ki[x.n]]).revenue_currency_code::text, (crs[ki[x.n]]).create_time,
           (crs[ki[x.n]]).revoke_time, o_cr_last[x.n], (crs[ki[x.n]]).metadata
      FROM generate_series(1, size) AS x (n)
     ORDER BY x.n;
END
$fn$;
