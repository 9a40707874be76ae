import type { DataSource } from 'typeorm';

/**
 * Everything a tenant has in the tables coupons and credits write (rows,
 * counters and a digest of every mutable row), the events and the
 * idempotency records: equal before and after a call means it wrote nothing.
 */
export async function footprint(dataSource: DataSource, tenantId: string): Promise<Record<string, string>> {
  const [row] = (await dataSource.query(
    `SELECT (SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY c.id), '')) FROM coupons c WHERE c.tenant_id = $1) AS coupons,
            (SELECT count(*) FROM coupon_redemptions WHERE tenant_id = $1) AS redemptions,
            (SELECT md5(coalesce(string_agg(s::text, ',' ORDER BY s.redemption_id), '')) FROM coupon_redemption_states s WHERE s.tenant_id = $1) AS states,
            (SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY c.id), '')) FROM customer_credits c WHERE c.tenant_id = $1) AS credits,
            (SELECT count(*) FROM customer_credit_redemptions WHERE tenant_id = $1) AS credit_redemptions,
            (SELECT count(*) FROM events WHERE tenant_id = $1) AS events,
            (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1) AS idempotency_keys`,
    [tenantId],
  )) as Array<Record<string, string>>;
  return row!;
}

export interface StoredEvent {
  type: string;
  customer_id: string | null;
  payload_kind: string;
  payload: Record<string, unknown>;
}

/**
 * The tenant's events in cursor order, straight from the table, with the
 * payload a REDEMPTION_CREATED stored by reference would have stored (its
 * SQL rendering, coupon_redemption_created_json; the event read renders it
 * in TypeScript, and created-event-by-reference.test.ts compares the two).
 */
export async function eventsOf(dataSource: DataSource, tenantId: string): Promise<StoredEvent[]> {
  return dataSource.query(
    `SELECT e.type, e.customer_id, e.payload_kind,
            coalesce(e.payload, (SELECT coupon_redemption_created_json(r, l.credit_id)
                                   FROM coupon_redemptions r LEFT JOIN customer_credit_redemptions l ON l.redemption_id = r.id
                                  WHERE r.id = e.redemption_id)) AS payload
       FROM events e WHERE e.tenant_id = $1 ORDER BY e.xid, e.position`,
    [tenantId],
  );
}

/** The instant `ms` milliseconds from now. */
export const inMs = (ms: number) => new Date(Date.now() + ms);

/** Waits until `time` has passed (and a little more, for the other process's clock reading). */
export async function waitUntilPast(time: Date): Promise<void> {
  const wait = time.getTime() - Date.now() + 50;
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}
