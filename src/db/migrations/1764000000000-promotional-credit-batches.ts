import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * promotional_credit_apply: applies a batch of balance changes in one
 * statement, so that one commit (and one round trip) serves many calls.
 *
 * Item i is an INCREMENT (an upsert guarded against int64 overflow) or a
 * DECREMENT (an update guarded by `amount >= delta`), followed, when the
 * guard held, by its ledger entry written with the new balance while the
 * row is locked. A guard that fails writes nothing for that item and
 * answers the balance as it stands; the other items still apply. Items are
 * applied in the order given (callers sort them by balance key, so that
 * concurrent batches lock rows in one order), and several items on one
 * balance chain their closing balances in that order. `with_others[i]` asks
 * for the customer's balances in the other currencies after item i.
 */
export class PromotionalCreditBatches1764000000000 implements MigrationInterface {
  name = 'PromotionalCreditBatches1764000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION promotional_credit_apply(
        tenant_ids uuid[], customer_ids text[], currency_codes text[], types text[], amounts bigint[],
        descriptions text[], credit_types text[], references_ text[], done_bys text[], with_others boolean[]
      ) RETURNS TABLE (item integer, id uuid, seq bigint, create_time timestamptz, balance bigint, written boolean, others json)
      LANGUAGE plpgsql AS $fn$
      #variable_conflict error
      BEGIN
        FOR i IN 1 .. coalesce(array_length(customer_ids, 1), 0) LOOP
          item := i;
          id := NULL;
          seq := NULL;
          create_time := NULL;
          others := NULL;
          IF types[i] = 'INCREMENT' THEN
            INSERT INTO promotional_credit_balances AS b (tenant_id, customer_id, currency_code, amount)
            VALUES (tenant_ids[i], customer_ids[i], currency_codes[i], amounts[i])
            ON CONFLICT (tenant_id, customer_id, currency_code)
            DO UPDATE SET amount = b.amount + EXCLUDED.amount, update_time = clock_timestamp()
               WHERE b.amount <= 9223372036854775807 - EXCLUDED.amount
            RETURNING b.amount INTO balance;
          ELSIF types[i] = 'DECREMENT' THEN
            UPDATE promotional_credit_balances AS b
               SET amount = b.amount - amounts[i], update_time = clock_timestamp()
             WHERE b.tenant_id = tenant_ids[i] AND b.customer_id = customer_ids[i]
               AND b.currency_code = currency_codes[i] AND b.amount >= amounts[i]
            RETURNING b.amount INTO balance;
          ELSE
            RAISE EXCEPTION 'promotional_credit_apply: unknown type %', types[i];
          END IF;
          written := FOUND;
          IF written THEN
            INSERT INTO promotional_credits AS e
              (tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)
            VALUES (tenant_ids[i], customer_ids[i], currency_codes[i], types[i], amounts[i], descriptions[i],
                    credit_types[i], references_[i], balance, done_bys[i])
            RETURNING e.id, e.seq, e.create_time INTO id, seq, create_time;
          ELSE
            SELECT coalesce(max(b.amount), 0) INTO balance FROM promotional_credit_balances AS b
             WHERE b.tenant_id = tenant_ids[i] AND b.customer_id = customer_ids[i] AND b.currency_code = currency_codes[i];
          END IF;
          IF with_others[i] THEN
            SELECT coalesce(json_agg(json_build_object('c', o.currency_code, 'a', o.amount::text)), '[]') INTO others
              FROM promotional_credit_balances AS o
             WHERE o.tenant_id = tenant_ids[i] AND o.customer_id = customer_ids[i] AND o.currency_code <> currency_codes[i];
          END IF;
          RETURN NEXT;
        END LOOP;
      END
      $fn$`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    // The SQL definition promotional_credit_apply replaced this function
    // (its text drops every earlier signature), and Events' down took the
    // definitions out (dropSqlDefinitions).
    await queryRunner.query(`DROP FUNCTION IF EXISTS promotional_credit_apply(uuid[], text[], text[], text[], bigint[], text[], text[], text[], text[], boolean[])`);
  }
}
