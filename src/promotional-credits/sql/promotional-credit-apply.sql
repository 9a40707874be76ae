-- promotional_credit_apply: THE write path of the promotional credit ledger.
-- Every balance change (Add, Deduct with or without an amount, Set) goes
-- through it, alone or many in one statement (group commit), and computes
-- from the balance row it has locked, here in SQL: never from a value read
-- earlier by the caller.
--
-- `writes` is a JSON array; item i is
--   {op, tenant_id, customer_id, currency_code, amount, description,
--    credit_type, reference, done_by, with_others}
-- with op one of
--   ADD         amount > 0: INCREMENT; refused past the largest bigint.
--   DEDUCT      amount > 0: DECREMENT; refused when the balance is smaller.
--   DEDUCT_ALL  (amount ignored) DECREMENT of the whole balance; nothing to
--               write when it is zero.
--   SET         amount = the target (>= 0): one INCREMENT or DECREMENT for
--               the difference; nothing to write when already there.
-- Amounts travel as JSON strings (exact beyond 2^53).
--
-- One row per item, in the given order:
--   outcome  'written' (entry_* set), 'unchanged' (nothing to write) or
--            'refused' (the guard did not hold: nothing written)
--   balance  the balance after the item (as it stands when not written);
--            NULL when the customer has no balance in that currency
--   others   with_others: the customer's balances in the other currencies
--
-- Items are applied in the given order; callers sort them by balance key so
-- that concurrent batches lock rows in one order and cannot deadlock, and
-- several items on one balance chain their closing balances in that order.
-- Each item takes its balance row's lock (held to the end of the caller's
-- transaction) before it reads or writes the balance.

DROP FUNCTION IF EXISTS promotional_credit_apply(uuid[], text[], text[], text[], bigint[], text[], text[], text[], text[], boolean[]);
DROP FUNCTION IF EXISTS promotional_credit_apply(jsonb);

CREATE FUNCTION promotional_credit_apply(writes jsonb)
RETURNS TABLE (item integer, outcome text, entry_id uuid, entry_seq bigint, entry_time timestamptz, entry_type text, entry_amount bigint,
               balance bigint, others json)
LANGUAGE plpgsql AS $fn$
#variable_conflict error
DECLARE
  w record;
  locked bigint;
  target bigint;
BEGIN
  item := 0;
  FOR w IN
    SELECT * FROM jsonb_to_recordset(writes) AS x(op text, tenant_id uuid, customer_id text, currency_code text, amount bigint,
                                                  description text, credit_type text, reference text, done_by text, with_others boolean)
  LOOP
    item := item + 1;
    outcome := 'written';
    entry_id := NULL;
    entry_seq := NULL;
    entry_time := NULL;
    others := NULL;

    IF w.op = 'ADD' THEN
      entry_type := 'INCREMENT';
      entry_amount := w.amount;
      -- Upsert: creates the balance on the first credit; the lock is the row's.
      INSERT INTO promotional_credit_balances AS b (tenant_id, customer_id, currency_code, amount)
      VALUES (w.tenant_id, w.customer_id, w.currency_code, w.amount)
      ON CONFLICT (tenant_id, customer_id, currency_code)
      DO UPDATE SET amount = b.amount + EXCLUDED.amount, update_time = clock_timestamp()
         WHERE b.amount <= 9223372036854775807 - EXCLUDED.amount
      RETURNING b.amount INTO balance;
      IF NOT FOUND THEN outcome := 'refused'; END IF;

    ELSIF w.op = 'DEDUCT' THEN
      entry_type := 'DECREMENT';
      entry_amount := w.amount;
      UPDATE promotional_credit_balances AS b
         SET amount = b.amount - w.amount, update_time = clock_timestamp()
       WHERE b.tenant_id = w.tenant_id AND b.customer_id = w.customer_id AND b.currency_code = w.currency_code
         AND b.amount >= w.amount
      RETURNING b.amount INTO balance;
      IF NOT FOUND THEN outcome := 'refused'; END IF;

    ELSIF w.op IN ('DEDUCT_ALL', 'SET') THEN
      target := CASE WHEN w.op = 'SET' THEN w.amount ELSE 0 END;
      IF target > 0 THEN
        INSERT INTO promotional_credit_balances (tenant_id, customer_id, currency_code, amount)
        VALUES (w.tenant_id, w.customer_id, w.currency_code, 0)
        ON CONFLICT (tenant_id, customer_id, currency_code) DO NOTHING;
      END IF;
      SELECT b.amount INTO locked FROM promotional_credit_balances AS b
       WHERE b.tenant_id = w.tenant_id AND b.customer_id = w.customer_id AND b.currency_code = w.currency_code
         FOR UPDATE;
      IF coalesce(locked, 0) = target THEN
        outcome := 'unchanged';
        entry_type := NULL;
        entry_amount := NULL;
        balance := locked;
      ELSE
        entry_type := CASE WHEN target > locked THEN 'INCREMENT' ELSE 'DECREMENT' END;
        entry_amount := abs(target - locked);
        UPDATE promotional_credit_balances AS b
           SET amount = b.amount + (target - locked), update_time = clock_timestamp()
         WHERE b.tenant_id = w.tenant_id AND b.customer_id = w.customer_id AND b.currency_code = w.currency_code
        RETURNING b.amount INTO balance;
      END IF;

    ELSE
      RAISE EXCEPTION 'promotional_credit_apply: unknown op %', w.op;
    END IF;

    IF outcome = 'written' THEN
      INSERT INTO promotional_credits AS e
        (tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)
      VALUES (w.tenant_id, w.customer_id, w.currency_code, entry_type, entry_amount, w.description,
              w.credit_type, w.reference, balance, w.done_by)
      RETURNING e.id, e.seq, e.create_time INTO entry_id, entry_seq, entry_time;
    ELSIF outcome = 'refused' THEN
      SELECT max(b.amount) INTO balance FROM promotional_credit_balances AS b
       WHERE b.tenant_id = w.tenant_id AND b.customer_id = w.customer_id AND b.currency_code = w.currency_code;
    END IF;

    IF w.with_others THEN
      SELECT coalesce(json_agg(json_build_object('c', o.currency_code, 'a', o.amount::text)), '[]') INTO others
        FROM promotional_credit_balances AS o
       WHERE o.tenant_id = w.tenant_id AND o.customer_id = w.customer_id AND o.currency_code <> w.currency_code;
    END IF;
    RETURN NEXT;
  END LOOP;
END
$fn$;
