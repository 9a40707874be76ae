import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CouponRedemption } from '../../gen/credits/v1/coupon_service';
import { EventType } from '../../gen/credits/v1/event_service';
import type { CouponRedemptionEntity } from '../../src/coupons/coupon-redemption.entity';
import type { RedeemRequestJson, RedeemRow } from '../../src/coupons/coupon.repository';
import { createDataSource } from '../../src/db/data-source';
import { EventRepository } from '../../src/events/event.repository';
import { couponEventSnapshots } from '../../src/grpc/coupon.mapper';
import { creditContext, lifetime, redeemCreditRequest } from '../credits/fixtures';
import { testDatabaseUrl } from '../support/database';
import { eventsClient, listAll } from '../support/events';
import { withScratchServer } from '../support/scratch-server';
import { expectError } from '../support/status';
import { fixedCoupon, percentageCoupon, redeemRequest, redeemRequestJson } from './fixtures';
import { inMs } from './footprint';

/*
 * REDEMPTION_CREATED is stored by reference (events.redemption_id, no
 * payload: coupon_redeem) and rendered by the event read from the
 * redemption (CouponRepository.redemptionsAsCreated). What a reader gets
 * must be what the call answered; that is what the SQL rendering
 * (coupon_redemption_created_json) gives; and that is what a replica of the
 * previous version (its request brings the snapshot, `event`) or a session
 * asking for snapshots (CREDITS_REDEMPTION_EVENT_SNAPSHOTS=on) stores, text
 * for text. Compared on redemptions that set every field the payload has,
 * and leave each out.
 */
describe('REDEMPTION_CREATED by reference', () => {
  const t = creditContext();
  const HELD_FOR_MS = 600_000;

  /** Coupons and a credit, and the requests that between them set every field (and leave each out). */
  async function shapes() {
    const percent = await t.coupon(percentageCoupon({ name: 'Ten percent' }));
    const fixed = await t.coupon(fixedCoupon({ name: 'Five off' }));
    const creditCoupon = await t.coupon(lifetime({ name: 'Credits' }));
    const credit = await t.issue(creditCoupon.id, 'cust-credit');
    const everything = { planId: 'plan-1', productId: 'product-1', metadata: { order: 'o-1', channel: 'web' }, amount: { amount: 1999n, currencyCode: 'USD' } };
    return { percent, fixed, creditCoupon, credit, everything };
  }

  /** The stored rows of the REDEMPTION_CREATED events of these redemptions, with the SQL rendering of each (coupon_redemption_created_json). */
  async function storedEvents(redemptionIds: string[]) {
    return (await t.server.dataSource.query(
      `SELECT r.id AS redemption_id, e.redemption_id AS reference, e.payload::text AS stored,
              coupon_redemption_created_json(r, l.credit_id)::text AS rendered
         FROM coupon_redemptions r
         LEFT JOIN customer_credit_redemptions l ON l.redemption_id = r.id
         JOIN events e ON e.tenant_id = r.tenant_id AND e.type = 'REDEMPTION_CREATED'
                      AND (e.redemption_id = r.id OR e.payload ->> 'id' = r.id::text)
        WHERE r.tenant_id = $1 AND r.id = ANY ($2::uuid[])`,
      [t.tenant.id, redemptionIds],
    )) as Array<{ redemption_id: string; reference: string | null; stored: string | null; rendered: string }>;
  }

  it('stores a reference, and every reader gets the redemption as the call answered it, field for field', async () => {
    const { percent, fixed, credit, everything } = await shapes();
    const answered = [
      (await t.coupons.redeemCoupon(redeemRequest(percent.code, 'cust-bare'))).redemption!,
      (await t.coupons.redeemCoupon(redeemRequest(percent.code, 'cust-all', everything))).redemption!,
      (await t.coupons.redeemCoupon(redeemRequest(percent.code, 'cust-held', { ...everything, holdUntil: inMs(HELD_FOR_MS) }))).redemption!,
      // 10% of 4 rounds to 0: a zero discount, left out of the JSON as the transport leaves it out.
      (await t.coupons.redeemCoupon(redeemRequest(percent.code, 'cust-zero', { amount: { amount: 4n, currencyCode: 'USD' } }))).redemption!,
      (await t.coupons.redeemCoupon(redeemRequest(fixed.code, 'cust-fixed', { amount: { amount: 300n, currencyCode: 'USD' } }))).redemption!,
      (await t.credits.redeemCustomerCredit(redeemCreditRequest('cust-credit', credit.id, { ...everything, holdUntil: inMs(HELD_FOR_MS) }))).redemption!,
    ];
    expect(answered[3]!.discount).to.deep.equal({ amount: 0n, currencyCode: 'USD' });

    const stored = await storedEvents(answered.map((r) => r.id));
    expect(stored.map((row) => [row.reference, row.stored]).sort(), 'by reference, no payload').to.deep.equal(
      answered.map((r) => [r.id, null]).sort(),
    );
    // The SQL rendering (what the other ways store, below) is the transport's JSON of the answer.
    const renderedInSql = new Map(stored.map((row) => [row.redemption_id, JSON.parse(row.rendered) as unknown]));
    for (const redemption of answered) expect(renderedInSql.get(redemption.id), redemption.customerId).to.deep.equal(CouponRedemption.toJSON(redemption));

    const events = eventsClient(t.server.address, t.tenant.readKey);
    try {
      const created = (await listAll(events, { types: [EventType.EVENT_TYPE_REDEMPTION_CREATED] })).events;
      expect(created.map((e) => e.redemption)).to.deep.equal(answered);
      expect(created.map((e) => e.customerId)).to.deep.equal(answered.map((r) => r.customerId));
      // The stream reads the same way (its catch-up is the same read).
      const stream = events.stream({ types: [EventType.EVENT_TYPE_REDEMPTION_CREATED] });
      try {
        const streamed = await stream.until((got) => got.length >= answered.length, 10_000);
        expect(streamed.map((e) => e.redemption)).to.deep.equal(answered);
      } finally {
        stream.cancel();
      }
    } finally {
      events.close();
    }

    // Redemptions confirmed and canceled later: their REDEMPTION_CREATED still show them as created (HELD).
    await t.coupons.confirmCouponRedemption({ redemptionId: answered[2]!.id });
    await t.coupons.cancelCouponRedemption({ redemptionId: answered[5]!.id });
    const events2 = eventsClient(t.server.address, t.tenant.readKey);
    try {
      const created = (await listAll(events2, { types: [EventType.EVENT_TYPE_REDEMPTION_CREATED] })).events;
      expect(created.map((e) => e.redemption)).to.deep.equal(answered);
    } finally {
      events2.close();
    }
    for (const row of await storedEvents([answered[2]!.id, answered[5]!.id])) {
      expect(JSON.parse(row.rendered), 'in SQL too').to.deep.equal(CouponRedemption.toJSON(answered.find((r) => r.id === row.redemption_id)!));
    }
  });

  it("stores, text for text, the payload the SQL rendering gives when a request brings its snapshot (the previous version's) or the session asks for snapshots", async () => {
    const { percent, fixed, credit, everything } = await shapes();
    const json = (customerId: string, fields: typeof everything | Record<string, never>, holdUntil?: Date) => ({
      customer_id: customerId,
      plan_id: 'planId' in fields ? fields.planId : null,
      product_id: 'productId' in fields ? fields.productId : null,
      amount: 'amount' in fields ? fields.amount.amount.toString() : null,
      currency_code: 'amount' in fields ? fields.amount.currencyCode : null,
      hold_until: holdUntil?.toISOString() ?? null,
      metadata: 'metadata' in fields ? fields.metadata : {},
    });
    const requests = (prefix: string) => [
      redeemRequestJson({ code: percent.code }, `${prefix}-bare`),
      redeemRequestJson({ code: percent.code }, `${prefix}-all`, json(`${prefix}-all`, everything)),
      redeemRequestJson({ code: percent.code }, `${prefix}-held`, json(`${prefix}-held`, everything, inMs(HELD_FOR_MS))),
      redeemRequestJson({ code: fixed.code }, `${prefix}-fixed`, json(`${prefix}-fixed`, { ...everything, amount: { amount: 300n, currencyCode: 'USD' } })),
      redeemRequestJson({ credit_id: credit.id }, 'cust-credit', json('cust-credit', everything, inMs(HELD_FOR_MS))),
    ];
    const redeem = async (query: (sql: string, params: unknown[]) => Promise<RedeemRow[]>, group: RedeemRequestJson[]) => {
      const rows = await query(`SELECT * FROM coupon_redeem($1::uuid, $2::jsonb, false)`, [t.tenant.id, JSON.stringify(group)]);
      expect(rows.map((row) => row.reason)).to.deep.equal(group.map(() => null));
      return rows.map((row) => row.redemption_id!);
    };

    // A replica of the previous version: each request brings the payload
    // but for what the statement adds, as its requestJson made it.
    const older = requests('older').map((request) => Object.assign(request, { event: previousVersionEvent(request) }));
    const olderIds = await redeem((sql, params) => t.server.dataSource.query(sql, params), older);

    // A server at CREDITS_REDEMPTION_EVENT_SNAPSHOTS=on: its sessions carry the setting.
    const snapshotting = createDataSource({ url: await testDatabaseUrl(), poolSize: 1, connectTimeoutMs: 5_000, redemptionEventSnapshots: true });
    await snapshotting.initialize();
    let snapshotIds: string[];
    try {
      const credit2 = await t.issue(credit.couponId, 'cust-credit');
      const group = requests('snap');
      group[4] = Object.assign(group[4]!, { credit_id: credit2.id });
      snapshotIds = await redeem((sql, params) => snapshotting.query(sql, params), group);
    } finally {
      await snapshotting.destroy();
    }

    for (const [label, ids] of [
      ['older replica', olderIds],
      ['snapshots on', snapshotIds],
    ] as const) {
      const stored = await storedEvents(ids);
      expect(stored, label).to.have.length(ids.length);
      for (const row of stored) {
        expect(row.reference, `${label}: stored, not by reference`).to.equal(null);
        expect(row.stored, `${label}: ${row.redemption_id}`).to.equal(row.rendered);
      }
    }
  });

  // On a scratch database: the broken event is committed (events are
  // append-only), and `credits verify` over the shared one must stay clean.
  it('refuses a reference on anything but a REDEMPTION_CREATED without payload, and fails a read (INTERNAL) at one whose redemption does not exist', async function () {
    this.timeout(60_000);
    await withScratchServer(this, 'event_reference', async ({ dataSource, address, tenant }) => {
      const ghost = '00000000-0000-4000-8000-0000000000ee';
      const insert = (type: string, payload: string | null) =>
        dataSource.query(
          `INSERT INTO events (tenant_id, type, customer_id, payload_kind, payload, redemption_id) VALUES ($1, $2, 'ghost', 'redemption', $3::jsonb, $4)`,
          [tenant.id, type, payload, ghost],
        );
      for (const [type, payload] of [
        ['REDEMPTION_CONFIRMED', null],
        ['REDEMPTION_CREATED', '{}'],
      ] as const) {
        let refused: unknown;
        await insert(type, payload).catch((err: unknown) => (refused = err));
        expect(String(refused), `${type} ${payload}`).to.match(/events_redemption_reference/);
      }
      await insert('REDEMPTION_CREATED', null);
      const events = eventsClient(address, tenant.readKey);
      try {
        const failed = await expectError(events.listEvents({ pageSize: 10 }), status.INTERNAL);
        expect(failed.message).to.not.include(ghost); // an internal error's detail is logged, not answered
        const stream = events.stream({});
        const error = await stream.finished(10_000);
        expect(error && status[error.code]).to.equal('INTERNAL');
      } finally {
        events.close();
      }
      let readError: unknown;
      await new EventRepository(dataSource.manager).readAfter(tenant.id, { xid: 0n, position: 0n }, {}, 10, false).catch((err: unknown) => (readError = err));
      expect(String(readError)).to.match(/^Error: event [0-9a-f-]{36} names a redemption that does not exist \(00000000-0000-4000-8000-0000000000ee\)$/);
    });
  });
});

/** What requestJson sent as `event` before REDEMPTION_CREATED was stored by reference (the statement adds id, couponId, discount and the times). */
function previousVersionEvent(request: RedeemRequestJson): unknown {
  const redemption: CouponRedemptionEntity = {
    id: '',
    seq: 0n,
    tenantId: '',
    couponId: '',
    customerId: request.customer_id,
    planId: request.plan_id,
    productId: request.product_id,
    amount: request.amount === null ? null : BigInt(request.amount),
    discount: null,
    currencyCode: request.currency_code,
    doneBy: request.done_by,
    createTime: new Date(0),
    holdUntil: request.hold_until === null ? null : new Date(request.hold_until),
    metadata: request.metadata,
    customerCreditId: request.credit_id ?? null,
    status: request.hold_until === null ? 'CONFIRMED' : 'HELD',
    updateTime: new Date(0),
  };
  return couponEventSnapshots.redemption(redemption);
}
