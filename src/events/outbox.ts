import type { EntityManager } from 'typeorm';

/** Every kind of event (EventService's EventType without its prefix). */
export type EventType =
  | 'PROMOTIONAL_CREDIT_CREATED'
  | 'BALANCE_DEPLETED'
  | 'HOLD_CREATED'
  | 'HOLD_CAPTURED'
  | 'HOLD_RELEASED'
  | 'HOLD_EXPIRED'
  | 'COUPON_CREATED'
  | 'COUPON_UPDATED'
  | 'COUPON_DELETED'
  | 'REDEMPTION_CREATED'
  | 'REDEMPTION_CONFIRMED'
  | 'REDEMPTION_CANCELED'
  | 'CUSTOMER_CREDIT_CREATED'
  | 'CUSTOMER_CREDIT_REVOKED';

/**
 * What an event carries. The ledger's own events are written by its SQL
 * write path (promotional_credit_event and promotional_credit_flush_events in
 * src/promotional-credits/sql/promotional-credit-apply.sql): a ledger entry
 * by id, a hold as promotional_credit_hold_json. Coupons, redemptions and
 * customer credits are snapshots written here: the proto message's JSON form
 * (ts-proto `toJSON`, int64 as strings), read back with `fromJSON`.
 */
export type EventPayload =
  | { kind: 'coupon'; json: unknown }
  | { kind: 'redemption'; json: unknown }
  | { kind: 'customer_credit'; json: unknown };

export interface OutboxEvent {
  tenantId: string;
  type: EventType;
  /** The customer the event is about; null for coupon events. */
  customerId: string | null;
  payload: EventPayload;
}

/**
 * Writes events into the outbox (table `events`) in the caller's
 * transaction, so that they exist if and only if the change commits: call it
 * with the EntityManager of the transaction that makes the change. Readers
 * see them in one gap-free order (see migration 1764500000000).
 *
 * The session setting `credits.events = off` (the benchmark's switch, as in
 * the ledger's SQL) skips them.
 */
export async function appendEvents(manager: EntityManager, events: readonly OutboxEvent[]): Promise<void> {
  if (events.length === 0) return;
  await manager.query(
    `INSERT INTO events (tenant_id, type, customer_id, payload_kind, payload)
     SELECT t.tenant_id, t.type, t.customer_id, t.payload_kind, t.payload
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[]) AS t (tenant_id, type, customer_id, payload_kind, payload)
      WHERE current_setting('credits.events', true) IS DISTINCT FROM 'off'`,
    [
      events.map((e) => e.tenantId),
      events.map((e) => e.type),
      events.map((e) => e.customerId),
      events.map((e) => e.payload.kind),
      events.map((e) => JSON.stringify(e.payload.json)),
    ],
  );
}
