import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { loadConfig } from '../../src/config';
import { pruneEvents } from '../../src/events/event-retention';
import { EventType } from '../../gen/credits/v1/event_service';
import { eventsClient, listAll, type EventsClient } from '../support/events';
import { decodeError, expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: 'USD', description: 'retention test' };
/**
 * The retention these tests prune by, and their old events' ages: shorter
 * than the servers' own (168 h), so that a server's background prune, which
 * may run at any time, never deletes an event a test counts on deleting
 * itself (the deleted count, or one event less, came out short then).
 */
const TEST_RETENTION_HOURS = 48;
const OLD_HOURS = 60;
const YOUNG_HOURS = 20;

describe('events: retention', function () {
  this.timeout(60_000);
  const t = useTenantClients();
  let events: EventsClient;
  beforeEach(() => {
    events = eventsClient(t.server.address, t.tenant.readKey);
  });
  afterEach(() => events.close());

  /** Events of this tenant written `hoursAgo` (the outbox takes any create_time on INSERT; only UPDATE and DELETE are guarded). */
  const backdated = (customers: string[], hoursAgo: number) =>
    t.server.dataSource.query(
      `INSERT INTO events (tenant_id, type, customer_id, create_time, payload_kind, payload)
       SELECT $1, 'CUSTOMER_CREDIT_CREATED', c, now() - make_interval(hours => $3), 'customer_credit', jsonb_build_object('customerId', c)
         FROM unnest($2::text[]) AS c`,
      [t.tenant.id, customers, hoursAgo],
    );

  it('reads CREDITS_EVENT_RETENTION_HOURS, 168 by default', () => {
    expect(loadConfig({}).eventRetentionHours).to.equal(168);
    expect(loadConfig({ CREDITS_EVENT_RETENTION_HOURS: '24' }).eventRetentionHours).to.equal(24);
    expect(() => loadConfig({ CREDITS_EVENT_RETENTION_HOURS: '0' })).to.throw(/CREDITS_EVENT_RETENTION_HOURS/);
  });

  it('deletes events past the retention in batches, refuses a younger one, and answers CURSOR_EXPIRED for a cursor behind what was deleted', async () => {
    // 250 old events: three batches of 100.
    await backdated(Array.from({ length: 250 }, (_, i) => `old${i}`), OLD_HOURS);
    await backdated(['kept'], YOUNG_HOURS);
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'young', amount: 10n });
    const { events: before } = await listAll(events);
    expect(before.map((e) => e.customerId).slice(-2)).to.deep.equal(['kept', 'young']);
    const lastOld = before[249]!;

    // The trigger lets no one delete a young event, whatever the SQL.
    let refused: unknown;
    await t.server.dataSource.query(`DELETE FROM events WHERE tenant_id = $1 AND customer_id = 'young'`, [t.tenant.id]).catch((err: unknown) => (refused = err));
    expect((refused as { code?: string }).code, 'append-only: DELETE of a young event').to.equal('23001');

    // Two replicas pruning at once take turns; together they delete each old event once.
    const limits = { batch: 100, maxBatches: 1_000 };
    const deleted = await Promise.all([pruneEvents(t.server.dataSource, TEST_RETENTION_HOURS, limits), pruneEvents(t.server.dataSource, TEST_RETENTION_HOURS, limits)]);
    expect(deleted[0] + deleted[1]).to.be.at.least(250);
    const [{ n }] = (await t.server.dataSource.query(`SELECT count(*)::int AS n FROM events WHERE tenant_id = $1`, [t.tenant.id])) as Array<{ n: number }>;
    expect(n).to.equal(2);

    // From the beginning: the oldest retained event.
    expect((await listAll(events)).events.map((e) => e.customerId)).to.deep.equal(['kept', 'young']);
    // From the last deleted event: nothing was missed, so it still reads...
    expect((await listAll(events, { afterCursor: lastOld.cursor })).events.map((e) => e.customerId)).to.deep.equal(['kept', 'young']);
    // ...but from any cursor before it, events are gone: CURSOR_EXPIRED, for a list and for a stream.
    for (const cursor of [before[0]!.cursor, before[248]!.cursor]) {
      await expectError(events.listEvents({ afterCursor: cursor }), status.FAILED_PRECONDITION, 'CURSOR_EXPIRED');
      const error = decodeError((await events.stream({ afterCursor: cursor }).finished(5_000))!);
      expect([status[error.code], error.reason]).to.deep.equal(['FAILED_PRECONDITION', 'CURSOR_EXPIRED']);
    }
  });

  it("keeps a cursor when retention deletes only other tenants' events or events of types the reader does not read", async () => {
    const kept = () => t.server.dataSource.query(`SELECT count(*)::int AS n FROM events WHERE tenant_id = $1`, [t.tenant.id]);
    await backdated(['quiet'], YOUNG_HOURS);
    const { events: before } = await listAll(events);
    const quiet = before.at(-1)!;
    expect(quiet.customerId).to.equal('quiet');
    // After it in the order, deleted by retention: another tenant's event, and one of this tenant's of another type.
    await t.server.dataSource.query(
      `INSERT INTO events (tenant_id, type, customer_id, create_time, payload_kind, payload)
       VALUES (gen_random_uuid(), 'CUSTOMER_CREDIT_CREATED', 'other-tenant', now() - make_interval(hours => $2), 'customer_credit', '{}'),
              ($1, 'COUPON_DELETED', NULL, now() - make_interval(hours => $2), 'coupon', '{}')`,
      [t.tenant.id, OLD_HOURS],
    );
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'later', amount: 10n });
    const [{ n: beforePrune }] = (await kept()) as Array<{ n: number }>;
    await pruneEvents(t.server.dataSource, TEST_RETENTION_HOURS);
    const [{ n: afterPrune }] = (await kept()) as Array<{ n: number }>;
    expect(afterPrune, 'the coupon event was deleted').to.equal(beforePrune - 1);

    // Nothing of the types it reads was deleted after it: it reads on (before: CURSOR_EXPIRED, the other tenant's prune passed it).
    const entries = [EventType.EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED, EventType.EVENT_TYPE_CUSTOMER_CREDIT_CREATED];
    const read = await listAll(events, { afterCursor: quiet.cursor, types: entries });
    expect(read.events.map((e) => [e.customerId, e.type])).to.deep.equal([['later', EventType.EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED]]);
    const streamed = events.stream({ afterCursor: quiet.cursor, types: entries });
    try {
      const [first] = await streamed.until((received) => received.length > 0, 5_000);
      expect(first!.customerId).to.equal('later');
    } finally {
      streamed.cancel();
    }
    // A reader of the deleted event's type, or of every type, missed it: CURSOR_EXPIRED.
    await expectError(events.listEvents({ afterCursor: quiet.cursor, types: [EventType.EVENT_TYPE_COUPON_DELETED] }), status.FAILED_PRECONDITION, 'CURSOR_EXPIRED');
    await expectError(events.listEvents({ afterCursor: quiet.cursor }), status.FAILED_PRECONDITION, 'CURSOR_EXPIRED');
    // Replicas of the previous version read only the global watermark (during a rolling deploy): it still
    // moves, so they answer CURSOR_EXPIRED for this cursor rather than skip the deleted events.
    const [{ passed }] = (await t.server.dataSource.query(
      `SELECT (e.xid, e.position) < (r.pruned_xid, r.pruned_position) AS passed FROM events e, event_retention r WHERE e.id = $1`,
      [quiet.id],
    )) as Array<{ passed: boolean }>;
    expect(passed, 'the global watermark passed the cursor').to.equal(true);
  });

  it('starts a read from the beginning after the newest deleted event, even when younger events sit before it in the order', async () => {
    // Transaction `early` takes its xid first and writes last: its events are
    // younger than `late`'s, yet before them in the order. Retention deletes
    // `late`'s (older) event: `early`'s stay, below the watermark.
    const early = t.server.dataSource.createQueryRunner();
    await early.connect();
    try {
      await early.startTransaction();
      await early.query(`SELECT pg_current_xact_id()`);
      await backdated(['late-old'], 200);
      await early.query(
        `INSERT INTO events (tenant_id, type, customer_id, create_time, payload_kind, payload)
         SELECT $1, 'CUSTOMER_CREDIT_CREATED', c, now() - make_interval(hours => 100), 'customer_credit', jsonb_build_object('customerId', c)
           FROM unnest($2::text[]) AS c`,
        [t.tenant.id, ['early-1', 'early-2']],
      );
      await early.commitTransaction();
    } finally {
      await early.release();
    }
    await pruneEvents(t.server.dataSource, 168);
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'after-prune', amount: 10n });
    // Page by page from the beginning: no cursor handed out is behind the
    // watermark (before: early-1, then CURSOR_EXPIRED on the second page).
    const { events: read } = await listAll(events, { pageSize: 1 });
    expect(read.map((e) => e.customerId)).to.deep.equal(['after-prune']);
    const streamed = events.stream({});
    try {
      const [first] = await streamed.until((received) => received.length > 0, 5_000);
      expect(first!.customerId).to.equal('after-prune');
    } finally {
      streamed.cancel();
    }
  });
});
