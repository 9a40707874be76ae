import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Coupon, CouponRedemption, CouponType, Frequency } from '../../gen/credits/v1/coupon_service';
import { CreditState, CustomerCredit } from '../../gen/credits/v1/credit_service';
import { EventType, type Event } from '../../gen/credits/v1/event_service';
import { HoldStatus } from '../../gen/credits/v1/promotional_credit_service';
import { loadConfig } from '../../src/config';
import { createDataSource } from '../../src/db/data-source';
import { appendEvents, type OutboxEvent } from '../../src/events/outbox';
import { RECENT_ENTRIES } from '../../src/promotional-credits/recent-entries';
import { testDatabaseUrl } from '../support/database';
import { eventsClient, listAll, storedEventIds, type EventsClient } from '../support/events';
import { apiKeyInterceptor, startTestServer } from '../support/server';
import { decodeError, expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const T = EventType;
const base = { currencyCode: 'USD', description: 'events test' };

describe('EventService.ListEvents', () => {
  const t = useTenantClients();
  let events: EventsClient;
  beforeEach(() => {
    events = eventsClient(t.server.address, t.tenant.readKey);
  });
  afterEach(() => events.close());

  it('answers every ledger entry and hold change of the tenant as an event, in commit order, with the entry or hold as it was', async () => {
    const added = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c1', amount: 1000n });
    const { hold } = await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId: 'c1', amount: 400n });
    const captured = await t.promotionalCredits.capturePromotionalCreditHold({ holdId: hold!.id, amount: 100n, description: 'checkout' });
    const deducted = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c1' }); // all 900 left available (the capture released the rest): depleted

    const { events: all } = await listAll(events);
    expect(all.map((e) => e.id), 'the outbox order').to.deep.equal(await storedEventIds(t.server.dataSource, t.tenant.id));
    expect(all.map((e) => [T[e.type], e.customerId])).to.deep.equal([
      ['EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED', 'c1'],
      ['EVENT_TYPE_HOLD_CREATED', 'c1'],
      ['EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED', 'c1'],
      ['EVENT_TYPE_HOLD_CAPTURED', 'c1'],
      ['EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED', 'c1'],
      ['EVENT_TYPE_BALANCE_DEPLETED', 'c1'],
    ]);
    // Entries: the entry itself, as GetPromotionalCredit answers it.
    expect(all[0]!.promotionalCredit).to.deep.equal(added.promotionalCredit);
    expect(all[2]!.promotionalCredit).to.deep.equal(captured.promotionalCredit);
    expect(all[4]!.promotionalCredit).to.deep.equal(deducted.promotionalCredit);
    expect(all[5]!.promotionalCredit, 'depleted by the deduct').to.deep.equal(deducted.promotionalCredit);
    // Holds: as they were at each change (the capture's status, not today's).
    expect(all[1]!.hold).to.deep.equal(hold);
    expect(all[3]!.hold).to.deep.equal(captured.hold);
    expect(all[3]!.hold!.status).to.equal(HoldStatus.HOLD_STATUS_CAPTURED);
    for (const e of all) {
      expect(e.createTime).to.be.instanceOf(Date);
      expect(e.cursor).to.match(/^[A-Za-z0-9_-]{34}$/);
      const set = [e.promotionalCredit, e.hold, e.coupon, e.redemption, e.customerCredit].filter((p) => p !== undefined);
      expect(set, 'exactly one payload').to.have.length(1);
    }
    expect(new Set(all.map((e) => e.cursor)).size, 'cursors are distinct').to.equal(all.length);
    // This process wrote the entries and kept them (RECENT_ENTRIES); a
    // process that did not reads them from the ledger: the same events.
    RECENT_ENTRIES.clear();
    expect((await listAll(events)).events, 'entries read back from the ledger').to.deep.equal(all);
  });

  it('answers coupon, redemption and customer credit snapshots from their proto JSON, exact beyond 2^53', async () => {
    const coupon = Coupon.fromPartial({
      id: '6a2b2f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b',
      code: 'WELCOME10',
      name: 'Welcome',
      type: CouponType.COUPON_TYPE_FIXED_AMOUNT,
      fixedAmount: { amount: 9007199254740993n, currencyCode: 'USD' },
      frequency: Frequency.FREQUENCY_LIMITED,
      frequencyInterval: 3,
      limitedToPlans: ['pro'],
      enabled: true,
      createTime: new Date('2030-01-02T03:04:05.678Z'),
      updateTime: new Date('2030-01-02T03:04:05.678Z'),
      redemptionCount: 9007199254740993n,
    });
    const redemption = CouponRedemption.fromPartial({
      id: '7a2b2f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b',
      couponId: coupon.id,
      customerId: 'c2',
      discount: { amount: 250n, currencyCode: 'USD' },
      doneBy: 'rw-key',
      createTime: new Date('2030-01-02T03:04:06Z'),
    });
    const credit = CustomerCredit.fromPartial({
      id: '8a2b2f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b',
      customerId: 'c2',
      couponId: coupon.id,
      state: CreditState.CREDIT_STATE_ACTIVE,
      multiUse: true,
      usesRemaining: 3,
      createTime: new Date('2030-01-02T03:04:07Z'),
    });
    const written: OutboxEvent[] = [
      { tenantId: t.tenant.id, type: 'COUPON_CREATED', customerId: null, payload: { kind: 'coupon', json: Coupon.toJSON(coupon) } },
      { tenantId: t.tenant.id, type: 'REDEMPTION_CREATED', customerId: 'c2', payload: { kind: 'redemption', json: CouponRedemption.toJSON(redemption) } },
      { tenantId: t.tenant.id, type: 'CUSTOMER_CREDIT_CREATED', customerId: 'c2', payload: { kind: 'customer_credit', json: CustomerCredit.toJSON(credit) } },
    ];
    await t.server.dataSource.transaction((manager) => appendEvents(manager, written));

    const { events: all } = await listAll(events);
    expect(all.map((e) => [T[e.type], e.customerId])).to.deep.equal([
      ['EVENT_TYPE_COUPON_CREATED', ''],
      ['EVENT_TYPE_REDEMPTION_CREATED', 'c2'],
      ['EVENT_TYPE_CUSTOMER_CREDIT_CREATED', 'c2'],
    ]);
    expect(all[0]!.coupon).to.deep.equal(coupon);
    expect(all[1]!.redemption).to.deep.equal(redemption);
    expect(all[2]!.customerCredit).to.deep.equal(credit);
  });

  it('writes no event for a refused or validate_only change, and none when the transaction rolls back', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c1', amount: 10n, validateOnly: true });
    await expectError(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c1', amount: 5n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
    await t.server.dataSource
      .transaction(async (manager) => {
        await appendEvents(manager, [{ tenantId: t.tenant.id, type: 'COUPON_DELETED', customerId: null, payload: { kind: 'coupon', json: {} } }]);
        throw new Error('roll back');
      })
      .catch(() => {});
    expect((await listAll(events)).events).to.deep.equal([]);
  });

  it('pages through the events with next_cursor, which stays put when nothing is new', async () => {
    for (let i = 0; i < 5; i++) await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: `c${i}`, amount: 10n });
    const first = await events.listEvents({ pageSize: 2 });
    const second = await events.listEvents({ pageSize: 2, afterCursor: first.nextCursor });
    const third = await events.listEvents({ pageSize: 2, afterCursor: second.nextCursor });
    const fourth = await events.listEvents({ pageSize: 2, afterCursor: third.nextCursor });
    expect([first, second, third, fourth].map((p) => p.events.map((e) => e.customerId))).to.deep.equal([['c0', 'c1'], ['c2', 'c3'], ['c4'], []]);
    expect(first.nextCursor).to.equal(first.events[1]!.cursor);
    expect(third.nextCursor).to.equal(third.events[0]!.cursor);
    expect(fourth.nextCursor, 'nothing new: the cursor given').to.equal(third.nextCursor);
    expect((await events.listEvents({})).events, 'page_size 0 means 10').to.have.length(5);
    const empty = await events.listEvents({ afterCursor: '' , types: [T.EVENT_TYPE_COUPON_CREATED] });
    expect([empty.events, empty.nextCursor], 'nothing from the beginning: an empty cursor').to.deep.equal([[], '']);
  });

  it('filters by types and by customer without changing the cursors', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'a', amount: 10n });
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'b', amount: 10n });
    await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'a', amount: 10n });
    await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId: 'b', amount: 10n });
    const { events: all } = await listAll(events);
    const pick = (keep: (e: Event) => boolean) => all.filter(keep).map((e) => e.id);
    const ids = async (request: Parameters<typeof listAll>[1]) => (await listAll(events, request)).events.map((e) => e.id);

    expect(await ids({ customerId: 'a' })).to.deep.equal(pick((e) => e.customerId === 'a'));
    expect(await ids({ types: [T.EVENT_TYPE_BALANCE_DEPLETED] })).to.deep.equal(pick((e) => e.type === T.EVENT_TYPE_BALANCE_DEPLETED)).and.have.length(2);
    expect(await ids({ types: [T.EVENT_TYPE_HOLD_CREATED, T.EVENT_TYPE_BALANCE_DEPLETED], customerId: 'b' })).to.deep.equal(
      pick((e) => e.customerId === 'b' && (e.type === T.EVENT_TYPE_HOLD_CREATED || e.type === T.EVENT_TYPE_BALANCE_DEPLETED)),
    );
    // A filtered reader resumes from a cursor of an unfiltered one, and the other way round.
    const afterFirst = await listAll(events, { afterCursor: all[0]!.cursor, customerId: 'a' });
    expect(afterFirst.events.map((e) => e.id)).to.deep.equal(pick((e) => e.customerId === 'a' && e !== all[0]));
    expect((await listAll(events, { afterCursor: afterFirst.nextCursor })).events.map((e) => e.id)).to.deep.equal(
      all.slice(all.findIndex((e) => e.cursor === afterFirst.nextCursor) + 1).map((e) => e.id),
    );
  });

  it("shows a tenant only its own events, whatever cursor or customer it asks for; version-2 cursors refuse another tenant's key", async () => {
    const other = await newTenant(t.server.dataSource);
    const otherEvents = eventsClient(t.server.address, other.readKey);
    // A server handing out version-2 cursors (CREDITS_EVENT_CURSOR_VERSION=2) beside the shared one (version 1), as in a rolling deploy.
    const bound = await startTestServer({ eventCursorVersion: 2 });
    const mineOnBound = eventsClient(bound.address, t.tenant.readKey);
    const otherOnBound = eventsClient(bound.address, other.readKey);
    try {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'shared', amount: 10n });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'shared', amount: 20n });
      const { events: theirs } = await listAll(otherEvents);
      expect(theirs).to.deep.equal([]);
      const mine = (await listAll(events)).events;
      expect((await listAll(otherEvents, { afterCursor: '', customerId: 'shared' })).events).to.deep.equal([]);
      // A version-1 cursor names a place in the one order, the same for every tenant, on any server: never this tenant's events.
      expect((await otherEvents.listEvents({ afterCursor: mine[0]!.cursor })).events.filter((e) => e.customerId === 'shared')).to.deep.equal([]);
      expect((await listAll(otherOnBound, { afterCursor: mine[0]!.cursor })).events).to.deep.equal([]);

      // Version 2 names its tenant: read by another tenant it was a silent jump past this tenant's earlier events.
      const boundPage = await mineOnBound.listEvents({ pageSize: 1 });
      const cursor = boundPage.nextCursor;
      expect(cursor).to.not.equal(mine[0]!.cursor);
      for (const client of [otherOnBound, otherEvents]) {
        const error = await expectError(client.listEvents({ afterCursor: cursor }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
        expect(error.fields['after_cursor']).to.contain('this tenant');
        const streamed = await client.stream({ afterCursor: cursor }).finished(5_000);
        expect([streamed?.code, streamed?.details]).to.deep.equal([status.INVALID_ARGUMENT, error.message]);
      }
      // Either version is read by either server for its own tenant: a stream resumes wherever it reconnects.
      expect((await events.listEvents({ afterCursor: cursor })).events.map((e) => e.id)).to.deep.equal([mine[1]!.id]);
      expect((await mineOnBound.listEvents({ afterCursor: mine[0]!.cursor })).events.map((e) => e.id)).to.deep.equal([mine[1]!.id]);
    } finally {
      otherEvents.close();
      mineOnBound.close();
      otherOnBound.close();
      await bound.close();
    }
  });

  it('refuses a malformed cursor, an unknown type, a bad customer id and a negative page size at once (INVALID_ARGUMENT)', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 10n });
    const [event] = (await listAll(events)).events;
    const cursor = event!.cursor;
    // One character changed (the MAC catches it), a truncated copy, and junk.
    const altered = `${cursor.slice(0, 10)}${cursor[10] === 'A' ? 'B' : 'A'}${cursor.slice(11)}`;
    for (const bad of [altered, cursor.slice(0, -1), 'not-a-cursor', `${cursor}=`]) {
      const error = await expectError(events.listEvents({ afterCursor: bad }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(error.fields), bad).to.deep.equal(['after_cursor']);
    }
    const error = await expectError(
      events.listEvents({ afterCursor: 'x', pageSize: -1, types: [T.EVENT_TYPE_UNSPECIFIED, T.EVENT_TYPE_HOLD_CREATED, 99 as EventType], customerId: 'bad id' }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(error.fields).sort()).to.deep.equal(['after_cursor', 'customer_id', 'page_size', 'types[0]', 'types[2]']);
    expect(error.fields['types[0]']).to.include('other than EVENT_TYPE_UNSPECIFIED');
    expect(error.fields['types[2]']).to.include('an unknown number was sent');
  });

  it('answers bytes that are no request with INVALID_ARGUMENT, on both RPCs', async () => {
    const raw = new Client(t.server.address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(t.tenant.readKey)] });
    const junk = Buffer.from([0x0a, 0xff, 0xff]); // field 1, a length longer than the message
    const identity = (b: Buffer) => b;
    try {
      const unaryError = await new Promise<ServiceError | null>((resolve) =>
        raw.makeUnaryRequest('/credits.v1.EventService/ListEvents', identity, identity, junk, new Metadata(), {}, (err) => resolve(err)),
      );
      const streamError = await new Promise<ServiceError>((resolve) => {
        const call = raw.makeServerStreamRequest('/credits.v1.EventService/StreamEvents', identity, identity, junk, new Metadata(), {});
        call.on('error', resolve);
        call.on('data', () => {});
      });
      for (const error of [unaryError!, streamError]) expect([status[error.code], decodeError(error).reason]).to.deep.equal(['INVALID_ARGUMENT', 'VALIDATION_FAILED']);
    } finally {
      raw.close();
    }
  });

  it('writes no event on a connection opened with CREDITS_EVENTS=off (the benchmark switch), through either writer', async () => {
    expect(loadConfig({ CREDITS_EVENTS: 'off' }).eventsOff).to.equal(true);
    expect(loadConfig({}).eventsOff).to.equal(false);
    expect(() => loadConfig({ CREDITS_EVENTS: 'no' })).to.throw(/CREDITS_EVENTS must be on or off/);
    const quiet = createDataSource({ url: await testDatabaseUrl(), poolSize: 1, connectTimeoutMs: 5_000, eventsOff: true });
    await quiet.initialize();
    try {
      await quiet.transaction((manager) =>
        appendEvents(manager, [{ tenantId: t.tenant.id, type: 'COUPON_CREATED', customerId: null, payload: { kind: 'coupon', json: {} } }]),
      );
      const items = [{ op: 'ADD', tenant_id: t.tenant.id, customer_id: 'quiet', currency_code: 'USD', amount: '5', description: 'quiet', credit_type: 'GENERAL', reference: '', done_by: 'test', metadata: {}, validate_only: false, with_others: false }];
      const [applied] = (await quiet.query(`SELECT outcome FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify(items)])) as Array<{ outcome: string }>;
      expect(applied!.outcome).to.equal('written');
    } finally {
      await quiet.destroy();
    }
    expect((await listAll(events)).events, 'no event from either writer').to.deep.equal([]);
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'quiet', amount: 1n });
    expect((await listAll(events)).events.map((e) => e.customerId), 'other connections still write them').to.deep.equal(['quiet']);
  });

  it('needs a key with the read scope', async () => {
    const writer = eventsClient(t.server.address, t.tenant.writeKey);
    const nobody = eventsClient(t.server.address, undefined);
    try {
      await expectError(writer.listEvents({}), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
      await expectError(nobody.listEvents({}), status.UNAUTHENTICATED, 'API_KEY_MISSING');
      await expectError(writer.stream({}).finished(5_000).then((err) => Promise.reject(err)), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
    } finally {
      writer.close();
      nobody.close();
    }
  });
});
