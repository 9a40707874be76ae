import type { EntityManager } from 'typeorm';
import type { CouponRedemptionEntity } from '../coupons/coupon-redemption.entity';
import { CouponRepository } from '../coupons/coupon.repository';
import { preparedQuery } from '../db/prepared-query';
import type { PromotionalCreditEntity } from '../promotional-credits/promotional-credit.entity';
import { ENTRY_COLUMNS, entryOfRow, holdOfJson, type EntryRow, type HoldJson, type HoldRecord } from '../promotional-credits/promotional-credit.repository';
import { RECENT_ENTRIES } from '../promotional-credits/recent-entries';
import type { Position } from './event-cursor';
import type { EventType } from './outbox';

/** An event as read back, its payload resolved (a ledger entry joined, a hold or a snapshot parsed). */
export interface EventRecord {
  at: Position;
  id: string;
  type: EventType;
  customerId: string | null;
  createTime: Date;
  payload:
    | { kind: 'promotional_credit'; entry: PromotionalCreditEntity }
    | { kind: 'hold'; hold: HoldRecord }
    | { kind: 'coupon' | 'redemption' | 'customer_credit'; json: unknown }
    /** A REDEMPTION_CREATED stored by reference: the redemption as it was created. */
    | { kind: 'created_redemption'; redemption: CouponRedemptionEntity };
}

export interface EventFilter {
  /** Only these types; undefined means every type. */
  types?: readonly EventType[] | undefined;
  /** Only this customer's events; undefined means every event. */
  customerId?: string | undefined;
}

/** One read of the outbox: the events, and where the reader stands. */
export interface EventBatch {
  events: EventRecord[];
  /**
   * The oldest transaction still running when the batch was read
   * (pg_snapshot_xmin): every event below it has been considered, so a reader
   * that got fewer events than it asked for may go on from (horizon, 0).
   */
  horizon: bigint;
  /**
   * When the page is not full: the xid of the tenant's next committed event
   * (that matches the filter) which is not handed out yet because an older
   * transaction is still running; undefined when there is none. It is
   * handed out once the horizon passes it.
   */
  waitingXid: bigint | undefined;
  /** The position is behind events already deleted by retention (CURSOR_EXPIRED). */
  expired: boolean;
}

interface EventRow {
  horizon: string;
  expired: boolean;
  event_xid: string | null;
  event_position: string | null;
  event_id: string;
  event_type: EventType;
  event_customer_id: string | null;
  event_create_time: Date;
  event_entry_id: string | null;
  payload_kind: 'promotional_credit' | 'hold' | 'coupon' | 'redemption' | 'customer_credit';
  payload: unknown;
  event_redemption_id: string | null;
}

/**
 * THE read of the outbox: the tenant's events strictly after $2/$3 in
 * (xid, position) order, handed out only below the horizon, the oldest
 * transaction still running when the statement's snapshot was taken. Every
 * transaction below it has ended and any that commits later has a larger
 * xid, so a reader that goes on from the last event it got never skips one
 * that commits late with a smaller position, and never sees one twice. It
 * asks for one row more than the page: a committed row at or above the
 * horizon is what the reader waits for (EventBatch.waitingXid); the btree
 * on (tenant_id, xid, position) walks from the cursor and stops there,
 * whatever the horizon (a bound on xid as well would not stop the walk).
 * The watermark that concerns the reader is the newest of its tenant's
 * for the types it reads (event_watermarks; and event_retention's legacy
 * one, from before those existed; its global pruned_xid/position, still
 * moved for replicas of the previous version, is not read): a cursor is
 * expired only if an event it would have read was deleted, so a quiet
 * tenant or a stream of a rare type keeps its cursor past the retention. The horizon, that watermark and the events
 * are read in ONE statement, one snapshot: a prune that commits meanwhile
 * cannot delete events between the watermark check and the read. A read that is not
 * after a cursor (`checkExpiry` false: the beginning) starts after the
 * watermark: retention deletes by create_time, so events of a transaction
 * that took its xid early may outlive newer-positioned deleted ones, below
 * the watermark; handed out, their cursors would read as expired on the
 * next page, for ever (found in review). An entry event names
 * its entry (the ledger writes the event with the entry); entries are
 * immutable, so the reader takes it as this process wrote it
 * (RECENT_ENTRIES) or reads it afterwards (ENTRIES_SQL). A REDEMPTION_CREATED
 * names its redemption the same way (stored by reference: coupon_redeem),
 * read afterwards by primary key (CouponRepository.redemptionsAsCreated):
 * rendered in the statement (coupon_redemption_created_json), it cost
 * PostgreSQL more per event read (140,000 instructions, callgrind) than
 * storing the payload had cost per redemption written.
 *
 * `meta` is one row whatever the statistics, the watermark a LATERAL
 * subquery with LIMIT 1: read as a plain `FROM event_retention`, a table
 * never analyzed (one row, rarely changed), the planner took it for 1,660
 * rows and the statement for 1,660 × the page, a cost past jit_above_cost,
 * so a PostgreSQL built with JIT (the usual packages) compiled the read
 * afresh at every execution: 10 ms instead of 0.6 for a page of 100
 * (test/events/read-plan.test.ts).
 */
export const READ_SQL = `
WITH meta AS (
  SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon,
         $7 AND w.passed AS expired,
         CASE WHEN NOT $7 AND w.passed THEN w.xid ELSE $2::xid8 END AS start_xid,
         CASE WHEN NOT $7 AND w.passed THEN w.position ELSE $3::bigint END AS start_position
    FROM (SELECT coalesce(($2::xid8, $3::bigint) < (n.xid, n.position), false) AS passed, n.xid, n.position
            FROM (SELECT 1) AS one
            LEFT JOIN LATERAL (
              SELECT r.legacy_pruned_xid AS xid, r.legacy_pruned_position AS position FROM event_retention r WHERE r.legacy_pruned_xid IS NOT NULL
              UNION ALL
              SELECT x.pruned_xid, x.pruned_position FROM event_watermarks x
               WHERE x.tenant_id = $1 AND ($4::text[] IS NULL OR x.type = ANY ($4::text[]))
              ORDER BY 1 DESC, 2 DESC
              LIMIT 1
            ) AS n ON true) AS w
)
SELECT m.horizon::text AS horizon, m.expired,
       ev.xid::text AS event_xid, ev.position::text AS event_position, ev.id AS event_id, ev.type AS event_type,
       ev.customer_id AS event_customer_id, ev.create_time AS event_create_time, ev.promotional_credit_id AS event_entry_id,
       ev.payload_kind, ev.payload, ev.redemption_id AS event_redemption_id
  FROM meta m
  LEFT JOIN LATERAL (
    SELECT * FROM events e
     WHERE e.tenant_id = $1 AND (e.xid, e.position) > (m.start_xid, m.start_position) AND NOT m.expired
       AND ($4::text[] IS NULL OR e.type = ANY ($4::text[])) AND ($5::text IS NULL OR e.customer_id = $5::text)
     ORDER BY e.xid, e.position
     LIMIT $6 + 1
  ) ev ON true
 ORDER BY ev.xid, ev.position`;

/** The entries of a read's entry events that this process did not write lately, by primary key. */
const ENTRIES_SQL = `SELECT ${ENTRY_COLUMNS} FROM promotional_credits e WHERE e.id = ANY ($1::uuid[])`;

export class EventRepository {
  constructor(private readonly manager: EntityManager) {}

  /**
   * Up to `limit` of the tenant's events after `after` that match `filter`,
   * in order, with where the reader stands (see EventBatch). `checkExpiry`:
   * whether `after` is a position the reader got from an earlier read (a
   * cursor), which retention may have passed; false for the beginning.
   */
  async readAfter(tenantId: string, after: Position, filter: EventFilter, limit: number, checkExpiry: boolean): Promise<EventBatch> {
    const { rows } = await preparedQuery<EventRow>(this.manager, 'events_read_after', READ_SQL, [
      tenantId,
      after.xid.toString(),
      after.position.toString(),
      filter.types ? [...filter.types] : null,
      filter.customerId ?? null,
      limit,
      checkExpiry,
    ]);
    const first = rows[0]!; // meta always gives one row
    const horizon = BigInt(first.horizon);
    const handedOut: EventRow[] = [];
    let waitingXid: bigint | undefined;
    for (const row of rows) {
      if (row.event_xid === null) continue;
      // Rows come in xid order: those below the horizon first, then at most one that waits.
      if (BigInt(row.event_xid) >= horizon) waitingXid ??= BigInt(row.event_xid);
      else if (handedOut.length < limit) handedOut.push(row);
    }
    const entries = await this.entriesOf(handedOut);
    const redemptions = await this.redemptionsOf(tenantId, handedOut);
    const events = handedOut.map((row) => eventOfRow(tenantId, row, entries, redemptions));
    return { events, horizon, waitingXid, expired: first.expired };
  }

  /** The entries the rows' entry events name: kept by this process, or read in one statement. */
  private async entriesOf(rows: readonly EventRow[]): Promise<ReadonlyMap<string, PromotionalCreditEntity>> {
    const entries = new Map<string, PromotionalCreditEntity>();
    const missing = new Set<string>();
    for (const { event_entry_id: id } of rows) {
      if (id === null || entries.has(id)) continue;
      const kept = RECENT_ENTRIES.get(id);
      if (kept) entries.set(id, kept);
      else missing.add(id);
    }
    if (missing.size > 0) {
      const { rows: read } = await preparedQuery<EntryRow>(this.manager, 'events_entries', ENTRIES_SQL, [[...missing]]);
      for (const row of read) entries.set(row.id, entryOfRow(row));
    }
    return entries;
  }

  /** The redemptions the rows' REDEMPTION_CREATED events name (stored by reference), as created; none read when there are none. */
  private async redemptionsOf(tenantId: string, rows: readonly EventRow[]): Promise<ReadonlyMap<string, CouponRedemptionEntity>> {
    const ids: string[] = [];
    for (const { event_redemption_id: id } of rows) if (id !== null) ids.push(id);
    return ids.length === 0 ? new Map() : new CouponRepository(this.manager).redemptionsAsCreated(tenantId, ids);
  }

  /** The horizon now: the oldest transaction still running (see READ_SQL). */
  async horizon(): Promise<bigint> {
    const { rows } = await preparedQuery<{ horizon: string }>(
      this.manager,
      'events_horizon',
      'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon',
      [],
    );
    return BigInt(rows[0]!.horizon);
  }

  /**
   * Who runs the transaction `xid` (the horizon: an xid8), on any database of
   * the PostgreSQL server: a session (pg_stat_activity, whose backend_xid is
   * the xid's low 32 bits) or a prepared transaction. Undefined when it has
   * ended meanwhile, or this role may not see it.
   */
  async transactionHolder(xid: bigint): Promise<TransactionHolder | undefined> {
    const { rows } = await preparedQuery<TransactionHolder>(
      this.manager,
      'events_transaction_holder',
      `SELECT a.pid, a.datname AS database, a.application_name, a.usename AS user_name, a.state, a.xact_start AS since
         FROM pg_stat_activity a WHERE a.backend_xid::text::bigint = $1::bigint % 4294967296
       UNION ALL
       SELECT NULL, p.database, 'prepared transaction ' || p.gid, p.owner::text, 'prepared', p.prepared
         FROM pg_prepared_xacts p WHERE p.transaction::text::bigint = $1::bigint % 4294967296
       LIMIT 1`,
      [xid.toString()],
    );
    return rows[0];
  }
}

/** A transaction that holds the event horizon back, as logged. */
export interface TransactionHolder {
  pid: number | null;
  database: string | null;
  application_name: string | null;
  user_name: string | null;
  state: string | null;
  since: Date | null;
}

function eventOfRow(
  tenantId: string,
  row: EventRow,
  entries: ReadonlyMap<string, PromotionalCreditEntity>,
  redemptions: ReadonlyMap<string, CouponRedemptionEntity>,
): EventRecord {
  let payload: EventRecord['payload'];
  if (row.event_redemption_id !== null) {
    const redemption = redemptions.get(row.event_redemption_id);
    if (!redemption) throw new Error(`event ${row.event_id} names a redemption that does not exist (${row.event_redemption_id})`);
    payload = { kind: 'created_redemption', redemption };
  } else if (row.payload_kind === 'promotional_credit') {
    const entry = entries.get(row.event_entry_id!);
    if (!entry) throw new Error(`event ${row.event_id} names a ledger entry that does not exist`);
    payload = { kind: 'promotional_credit', entry };
  } else if (row.payload_kind === 'hold') {
    payload = { kind: 'hold', hold: holdOfJson(tenantId, row.payload as HoldJson) };
  } else {
    if (row.payload === null) throw new Error(`event ${row.event_id} has no payload`);
    payload = { kind: row.payload_kind, json: row.payload };
  }
  return {
    at: { xid: BigInt(row.event_xid!), position: BigInt(row.event_position!) },
    id: row.event_id,
    type: row.event_type,
    customerId: row.event_customer_id,
    createTime: row.event_create_time,
    payload,
  };
}
