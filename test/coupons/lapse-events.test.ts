import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { CouponRedemption, RedemptionStatus } from '../../gen/credits/v1/coupon_service';
import { CreditState } from '../../gen/credits/v1/credit_service';
import { EventType, type Event } from '../../gen/credits/v1/event_service';
import { PageTokenCodec } from '../../src/common/page-token';
import { redemptionEvent } from '../../src/coupons/coupon-events';
import { CouponRepository } from '../../src/coupons/coupon.repository';
import { CouponsService } from '../../src/coupons/coupons.service';
import { verifyRedemptions } from '../../src/coupons/redemption-audit';
import { appendEvents } from '../../src/events/outbox';
import { couponEventSnapshots } from '../../src/grpc/coupon.mapper';
import { issueRequest, once, redeemCreditRequest, sleep } from '../credits/fixtures';
import { deadlocksIn } from '../support/database';
import { eventsClient, listAll, type EventsClient } from '../support/events';
import { withScratchServer } from '../support/scratch-server';
import { coupons, credits } from '../support/server';
import { decodeError, expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { allRedemptions, percentageCoupon, redeemRequest, sameTerms } from './fixtures';
import { eventsOf, inMs, waitUntilPast } from './footprint';

const { REDEMPTION_STATUS_CONFIRMED: CONFIRMED, REDEMPTION_STATUS_CANCELED: CANCELED } = RedemptionStatus;
/** A CouponsService of this process, for its recordLapsedHolds: the expiry sweep's part for redemptions, run by the test itself. */
const lapseSweeper = (dataSource: DataSource) => new CouponsService(dataSource, new PageTokenCodec(Buffer.alloc(32)));
/** Longer than two sweep intervals of every process (the suites sweep every second). */
const SWEEPS_AGAIN_MS = 2_500;

/**
 * A hold that passes hold_until unconfirmed reads CANCELED at once (nothing
 * waits for a sweep); the expiry sweep of every process then records it,
 * once, with the REDEMPTION_CANCELED event an explicit cancel writes.
 */
describe('lapsed redemption holds: recorded by the expiry sweep, one REDEMPTION_CANCELED each (two server processes)', () => {
  const t = useTenantClients({ replica: true });
  const on = (i: number) => (i % 2 === 0 ? t.coupons : t.replica.coupons);
  let events: EventsClient;
  beforeEach(() => {
    events = eventsClient(t.server.address, t.tenant.readKey);
  });
  afterEach(async () => {
    events.close();
    expect(await verifyRedemptions(t.server.dataSource.manager, { tenantId: t.tenant.id })).to.deep.equal([]);
  });

  /** The tenant's REDEMPTION_CANCELED events, through ListEvents. */
  const canceledEvents = async (): Promise<Event[]> => (await listAll(events, { types: [EventType.EVENT_TYPE_REDEMPTION_CANCELED] })).events;

  /** Waits until there are at least `count` REDEMPTION_CANCELED events (a sweep runs every second), then answers them. */
  async function untilCanceledEvents(count: number): Promise<Event[]> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const found = await canceledEvents();
      if (found.length >= count || Date.now() > deadline) return found;
      await sleep(200);
    }
  }

  /** Event count per redemption id. */
  const perRedemption = (found: Event[]) => {
    const counts = new Map<string, number>();
    for (const e of found) counts.set(e.redemption!.id, (counts.get(e.redemption!.id) ?? 0) + 1);
    return counts;
  };

  /** The stored state rows of redemptions: status and whether update_time is hold_until. */
  async function stateRows(ids: string[]): Promise<Map<string, { status: string; atHoldUntil: boolean }>> {
    const rows: Array<{ redemption_id: string; status: string; at_hold_until: boolean }> = await t.server.dataSource.query(
      `SELECT redemption_id, status, update_time = hold_until AS at_hold_until FROM coupon_redemption_states WHERE redemption_id = ANY ($1::uuid[])`,
      [ids],
    );
    return new Map(rows.map((r) => [r.redemption_id, { status: r.status, atHoldUntil: r.at_hold_until }]));
  }

  it('writes exactly one REDEMPTION_CANCELED per lapsed hold (coupon and credit), shaped as an explicit cancel, with the state stored at hold_until', async function () {
    this.timeout(90_000);
    const metadata = { order: 'o-1' };
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 10 }))).coupon!;
    const creditCoupon = (await t.coupons.createCoupon(once())).coupon!;
    const credits = await Promise.all(['k0', 'k1'].map(async (customer) => (await t.credits.createCustomerCredit(issueRequest(creditCoupon.id, customer))).credit!));
    const holdUntil = inMs(2_000);
    const couponHolds = await Promise.all(
      Array.from({ length: 6 }, async (_, i) =>
        (await on(i).redeemCoupon(redeemRequest(coupon.code, `c${i}`, { holdUntil, metadata, amount: { amount: 1999n, currencyCode: 'USD' } }))).redemption!,
      ),
    );
    const creditHolds = await Promise.all(
      credits.map(async (credit, i) =>
        (await (i % 2 === 0 ? t.credits : t.replica.credits).redeemCustomerCredit(redeemCreditRequest(credit.customerId, credit.id, { holdUntil, metadata })))
          .redemption!,
      ),
    );
    // Before the lapse: one confirmed (no cancel event ever), one canceled by the caller (its own event).
    const [confirmed, explicit, ...lapsing] = couponHolds;
    await t.coupons.confirmCouponRedemption({ redemptionId: confirmed!.id });
    const explicitlyCanceled = (await t.replica.coupons.cancelCouponRedemption({ redemptionId: explicit!.id })).redemption!;
    const lapsed = [...lapsing, ...creditHolds];

    await waitUntilPast(holdUntil);
    const found = await untilCanceledEvents(1 + lapsed.length);
    // Both processes keep sweeping: no event comes twice.
    await sleep(SWEEPS_AGAIN_MS);
    const after = await canceledEvents();
    expect(after.map((e) => e.id), 'no event after the first of each').to.deep.equal(found.map((e) => e.id));
    const counts = perRedemption(after);
    expect([...counts.keys()].sort()).to.deep.equal([explicit!, ...lapsed].map((r) => r.id).sort());
    expect([...counts.values()].every((n) => n === 1), 'one event per redemption').to.equal(true);

    // Each lapse's event carries the redemption as it now reads: CANCELED as of its hold_until.
    const listed = new Map<string, CouponRedemption>();
    for (const id of [coupon.id, creditCoupon.id]) for (const r of await allRedemptions(t.coupons, id)) listed.set(r.id, r);
    for (const held of lapsed) {
      const event = after.find((e) => e.redemption!.id === held.id)!;
      expect(event.customerId).to.equal(held.customerId);
      expect(event.redemption).to.deep.equal({ ...held, status: CANCELED, updateTime: held.holdUntil });
      expect(event.redemption).to.deep.equal(listed.get(held.id));
    }
    expect(after.find((e) => e.redemption!.id === explicit!.id)!.redemption).to.deep.equal(explicitlyCanceled);
    // The same JSON fields as an explicit cancel's payload.
    const stored = (await eventsOf(t.server.dataSource, t.tenant.id)).filter((e) => e.type === 'REDEMPTION_CANCELED');
    const fieldsOf = (id: string) => Object.keys(stored.find((e) => e.payload.id === id)!.payload).sort();
    for (const held of lapsing) expect(fieldsOf(held.id)).to.deep.equal(fieldsOf(explicit!.id));

    // Stored as an explicit cancel stores it, at hold_until.
    const rows = await stateRows(lapsed.map((r) => r.id));
    for (const held of lapsed) expect(rows.get(held.id)).to.deep.equal({ status: 'CANCELED', atHoldUntil: true });
    // Confirm and Cancel answer as before it was recorded.
    for (const held of [lapsing[0]!, creditHolds[1]!]) {
      const refused = await expectError(t.replica.coupons.confirmCouponRedemption({ redemptionId: held.id }), status.FAILED_PRECONDITION, 'REDEMPTION_CANCELED');
      expect(refused.message).to.contain('lapsed');
      await expectError(t.coupons.cancelCouponRedemption({ redemptionId: held.id }), status.FAILED_PRECONDITION, 'REDEMPTION_CANCELED');
    }
    // Counts: only the confirmed use counts; the credits' uses are back.
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);
    for (const credit of credits) {
      const back = (await t.credits.getCustomerCredit({ customerId: credit.customerId, creditId: credit.id })).credit!;
      expect(back).to.deep.include({ state: CreditState.CREDIT_STATE_ACTIVE, redemptionCount: 0n, usesRemaining: 1 });
    }
    expect(listed.get(confirmed!.id)!.status).to.equal(CONFIRMED);
  });

  it('records each lapse once while sweeps of both processes and three more queue on the coupon behind a confirm that read HELD before hold_until', async function () {
    this.timeout(90_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    const holdUntil = inMs(3_000);
    const holds = await Promise.all(Array.from({ length: 10 }, async (_, i) => (await on(i).redeemCoupon(redeemRequest(coupon.code, `c${i}`, { holdUntil }))).redemption!));
    const [confirmedLate, refusedLate, ...rest] = holds;
    // ConfirmCouponRedemption's steps (CouponsService.transition), paused between reading the status and writing it: it
    // takes the coupon's lock and reads HELD before hold_until, and writes CONFIRMED only once hold_until has passed.
    const locker = t.server.dataSource.createQueryRunner();
    await locker.connect();
    const sweeps: Array<Promise<number>> = [];
    let confirm: Promise<unknown> | undefined;
    try {
      await locker.startTransaction();
      const repo = new CouponRepository(locker.manager);
      await repo.lockCoupon(t.tenant.id, { id: coupon.id });
      const current = (await repo.findRedemption(t.tenant.id, confirmedLate!.id, new Date()))!;
      expect(current.status, 'read before hold_until').to.equal('HELD');
      await waitUntilPast(holdUntil);
      const service = lapseSweeper(t.server.dataSource);
      // Patient sweeps (a sweep waits a second by default, then gives the run up): these queue behind the confirm.
      for (let i = 0; i < 3; i++) sweeps.push(service.recordLapsedHolds(couponEventSnapshots, { lockTimeoutMs: 60_000 }));
      confirm = t.replica.coupons.confirmCouponRedemption({ redemptionId: refusedLate!.id }).then(
        () => 'OK',
        (err: ServiceError) => decodeError(err),
      );
      // At least these three sweeps wait for the lock at once (the processes' own may too).
      const deadline = Date.now() + 30_000;
      let waiting = 0;
      while (Date.now() < deadline) {
        const [row] = await t.server.dataSource.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT id FROM coupons WHERE id = ANY%'`,
        );
        waiting = row.n;
        if (waiting >= 3) break;
        await sleep(50);
      }
      expect(waiting, 'sweeps waiting on the coupon').to.be.at.least(3);
      await sleep(SWEEPS_AGAIN_MS); // and the processes' sweeps come by
      const updateTime = await repo.setRedemptionStatus(current, 'CONFIRMED', 1);
      const confirmed = Object.assign(current, { status: 'CONFIRMED' as const, updateTime });
      await appendEvents(locker.manager, [redemptionEvent('REDEMPTION_CONFIRMED', confirmed, couponEventSnapshots)]);
      await locker.commitTransaction();
    } finally {
      if (locker.isTransactionActive) await locker.rollbackTransaction();
      await locker.release();
    }
    const recorded = (await Promise.all(sweeps)).reduce((a, b) => a + b, 0);
    expect(recorded, 'the direct sweeps recorded each lapse at most once').to.be.at.most(rest.length + 1);
    // The confirm that came after hold_until is refused as before, whichever got the lock first.
    const refused = (await confirm) as { reason: string; message: string };
    expect(refused.reason).to.equal('REDEMPTION_CANCELED');
    expect(refused.message).to.contain('lapsed');

    const lapsed = [refusedLate!, ...rest];
    const found = await untilCanceledEvents(lapsed.length);
    await sleep(SWEEPS_AGAIN_MS);
    const after = await canceledEvents();
    expect(after.map((e) => e.id)).to.deep.equal(found.map((e) => e.id));
    const counts = perRedemption(after);
    expect([...counts.keys()].sort(), 'the confirmed one is not canceled').to.deep.equal(lapsed.map((r) => r.id).sort());
    expect([...counts.values()].every((n) => n === 1), 'one event per redemption').to.equal(true);
    for (const e of after) expect(e.redemption!.updateTime).to.deep.equal(holdUntil);
    const listed = new Map((await allRedemptions(t.coupons, coupon.id)).map((r) => [r.id, r.status]));
    expect(listed.get(confirmedLate!.id)).to.equal(CONFIRMED);
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);
  });

  it('passes by a coupon a stuck transaction keeps locked (after a second) and records the other lapses; a later run records its lapse once', async function () {
    this.timeout(60_000);
    const coupons = await Promise.all([0, 1].map(async () => (await t.coupons.createCoupon(percentageCoupon())).coupon!));
    const holdUntil = inMs(1_500);
    const holds = await Promise.all(coupons.map(async (c, i) => (await t.coupons.redeemCoupon(redeemRequest(c.code, `stuck${i}`, { holdUntil }))).redemption!));
    const stuck = t.server.dataSource.createQueryRunner();
    await stuck.connect();
    try {
      await stuck.startTransaction();
      // Locked before the holds lapse, so that no process's sweep records them first.
      await new CouponRepository(stuck.manager).lockCoupon(t.tenant.id, { id: coupons[1]!.id });
      await waitUntilPast(holdUntil);
      const service = lapseSweeper(t.server.dataSource);
      const outcome = await service.recordLapsedHolds(couponEventSnapshots).then(
        (recorded) => `recorded ${recorded}`,
        (err: { code?: string; driverError?: { code?: string } }) => `failed ${err.driverError?.code ?? err.code}`,
      );
      // Before: the whole run failed (55P03) and wrote nothing, run after run (the processes' sweeps too), for as long as
      // the coupon stayed locked. Now the free coupon's lapse is recorded, by this run or a process's sweep around it.
      expect(outcome).to.match(/^recorded [01]$/);
      const statuses = async () => {
        const states = await stateRows(holds.map((h) => h.id));
        return [states.get(holds[0]!.id)?.status, states.get(holds[1]!.id)?.status];
      };
      let seen = await statuses();
      for (let i = 0; i < 100 && seen[0] !== 'CANCELED'; i++) seen = await sleep(100).then(statuses);
      expect(seen, "the free coupon's lapse recorded, the locked one's left").to.deep.equal(['CANCELED', 'HELD']);
      await stuck.commitTransaction();
    } finally {
      if (stuck.isTransactionActive) await stuck.rollbackTransaction();
      await stuck.release();
    }
    const found = await untilCanceledEvents(2);
    expect(Object.fromEntries(perRedemption(found))).to.deep.equal(Object.fromEntries(holds.map((h) => [h.id, 1])));
  });

  it('races confirms and cancels against the lapse and the sweeps: each redemption ends in one state, with at most one cancellation and its event', async function () {
    this.timeout(90_000);
    const n = 40;
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: n }))).coupon!;
    const holdUntil = inMs(4_000);
    const holds = await Promise.all(Array.from({ length: n }, async (_, i) => (await on(i).redeemCoupon(redeemRequest(coupon.code, `c${i}`, { holdUntil }))).redemption!));
    const service = lapseSweeper(t.server.dataSource);
    const at = (offsetMs: number) => sleep(Math.max(0, holdUntil.getTime() + offsetMs - Date.now()));
    // A confirm or a cancel of each hold, one every 40 ms from 1.2 s before hold_until on (they queue on the coupon's lock
    // and take a while on a busy machine: some come before the lapse, some after), on both processes, with sweeps of this
    // process every 20 ms from just before it, besides the processes' own.
    const outcome = (call: Promise<{ redemption?: CouponRedemption }>) =>
      call.then(
        (r) => ({ ok: true as const, redemption: r.redemption! }),
        (err: ServiceError) => ({ ok: false as const, error: decodeError(err) }),
      );
    const calls = holds.map((held, i) =>
      at(-1200 + 40 * i).then(() =>
        outcome(i % 2 === 0 ? on(i >> 1).confirmCouponRedemption({ redemptionId: held.id }) : on(i >> 1).cancelCouponRedemption({ redemptionId: held.id })),
      ),
    );
    const sweeps = Array.from({ length: 24 }, (_, k) => -40 + 20 * k).map((offset) => at(offset).then(() => service.recordLapsedHolds(couponEventSnapshots)));
    const outcomes = await Promise.all(calls);
    await Promise.all(sweeps);

    const confirmedIds = new Set<string>();
    const explicitlyCanceled = new Map<string, CouponRedemption>();
    outcomes.forEach((o, i) => {
      if (o.ok) (i % 2 === 0 ? confirmedIds.add(holds[i]!.id) : explicitlyCanceled.set(holds[i]!.id, o.redemption));
      else {
        // Refused only because the hold had lapsed, with the answer a lapsed hold always got.
        expect(o.error.reason, o.error.message).to.equal('REDEMPTION_CANCELED');
        expect(o.error.message).to.contain('lapsed');
      }
    });
    const expectedEvents = n - confirmedIds.size;
    const found = await untilCanceledEvents(expectedEvents);
    await sleep(SWEEPS_AGAIN_MS);
    const after = await canceledEvents();
    expect(after.map((e) => e.id)).to.deep.equal(found.map((e) => e.id));
    const counts = perRedemption(after);
    expect(after).to.have.length(expectedEvents);
    const listed = new Map((await allRedemptions(t.coupons, coupon.id)).map((r) => [r.id, r]));
    for (const held of holds) {
      const now = listed.get(held.id)!;
      if (confirmedIds.has(held.id)) {
        expect(now.status).to.equal(CONFIRMED);
        expect(counts.has(held.id), 'a confirmed hold is never canceled').to.equal(false);
        continue;
      }
      expect(now.status).to.equal(CANCELED);
      expect(counts.get(held.id), `events of ${held.id}`).to.equal(1);
      const event = after.find((e) => e.redemption!.id === held.id)!;
      expect(event.redemption).to.deep.equal(now);
      const byCaller = explicitlyCanceled.get(held.id);
      if (byCaller) expect(now).to.deep.equal(byCaller);
      else expect(now.updateTime).to.deep.equal(holdUntil);
    }
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(BigInt(confirmedIds.size));
  });

  // Calls that record lapses themselves (coupon_redeem, RevokeCustomerCredit
  // after its credit's lock, UpdateCoupon) beside the sweeps and Confirm and
  // Cancel, all on one coupon's credits, on both processes, some revoked and
  // redeemed at once: nothing deadlocks (each takes credits before coupons),
  // each lapse is recorded once, and a revoke or redemption the lapse
  // allowed is accepted.
  it('races revokes, redemptions, updates, confirms and cancels on one coupon after its holds lapsed, with the sweeps: no deadlock, each lapse recorded once', async function () {
    this.timeout(90_000);
    const deadlocks = () => deadlocksIn(t.server.dataSource);
    const coupon = (await t.coupons.createCoupon(once({ maxRedemptions: 30 }))).coupon!;
    const credits = (
      await t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: Array.from({ length: 24 }, (_, i) => ({ customerId: `k${i}`, membershipId: '' })) })
    ).credits;
    const lapsing = credits.slice(0, 12);
    const kept = credits.slice(12, 18);
    const fresh = credits.slice(18);
    const holdUntil = inMs(2_000);
    const redeem = (i: number, credit: (typeof credits)[number], hold?: Date) =>
      (i % 2 === 0 ? t.credits : t.replica.credits).redeemCustomerCredit(redeemCreditRequest(credit.customerId, credit.id, hold ? { holdUntil: hold } : {}));
    const lapsed = await Promise.all(lapsing.map(async (credit, i) => (await redeem(i, credit, holdUntil)).redemption!));
    const held = await Promise.all(kept.map(async (credit, i) => (await redeem(i, credit, inMs(60_000))).redemption!));
    await waitUntilPast(holdUntil);
    const before = await deadlocks();

    // The lapses gave the credits their use back: half revoked and redeemed at once (one of the two wins), half redeemed again.
    const contested = lapsing.slice(0, 6).map((credit, i) => [
      (i % 2 === 0 ? t.credits : t.replica.credits).revokeCustomerCredit({ customerId: credit.customerId, creditId: credit.id }),
      redeem(i + 1, credit),
    ]);
    const results = await Promise.allSettled([
      ...lapsing.slice(6).map((credit, i) => redeem(i, credit)),
      ...held.map((r, i) => (i % 2 === 0 ? on(i).confirmCouponRedemption({ redemptionId: r.id }) : on(i).cancelCouponRedemption({ redemptionId: r.id }))),
      ...fresh.map((credit, i) => redeem(i, credit)),
      t.coupons.getCoupon({ id: coupon.id }).then(({ coupon: c }) => t.replica.coupons.updateCoupon(sameTerms(c!, { metadata: { raced: 'yes' } }))),
      lapseSweeper(t.server.dataSource).recordLapsedHolds(couponEventSnapshots),
    ]);
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [decodeError(r.reason as ServiceError)] : []));
    expect(failed, 'calls that failed').to.deep.equal([]);
    let redeemedAgain = 0;
    for (const pair of contested) {
      const [revoked, redeemed] = (await Promise.allSettled(pair)).map((r) => (r.status === 'fulfilled' ? 'OK' : decodeError(r.reason as ServiceError).reason));
      expect([
        ['OK', 'CREDIT_REVOKED'],
        ['CREDIT_ALREADY_REDEEMED', 'OK'],
      ]).to.deep.include([revoked, redeemed]);
      if (redeemed === 'OK') redeemedAgain++;
    }
    // A server process's connection reports its deadlocks to the statistics within a second of going idle.
    await sleep(1_500);
    expect((await deadlocks()) - before, 'deadlocks in the database (a group retries its own unseen)').to.equal(0);

    const canceled = perRedemption(await untilCanceledEvents(lapsed.length + 3));
    expect(Object.fromEntries(canceled)).to.deep.equal(Object.fromEntries([...lapsed, ...held.filter((_, i) => i % 2 === 1)].map((r) => [r.id, 1])));
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount, 'confirmed: 3 held, 6 and those contested redeemed again, 6 fresh').to.equal(
      BigInt(15 + redeemedAgain),
    );
    expect(await verifyRedemptions(t.server.dataSource.manager, { tenantId: t.tenant.id })).to.deep.equal([]);
  });
});

/**
 * A redemption that a lapse made room for (the coupon's cap, a credit's
 * uses), and a COUPON_UPDATED or CUSTOMER_CREDIT_REVOKED whose counts leave
 * the lapsed hold out, come after that lapse's REDEMPTION_CANCELED in the
 * event stream, whenever the sweep runs: the call records the lapsed holds
 * of its coupon first (coupon_record_lapses). On a database of its own with
 * a server that does not sweep, so that no sweep records the lapses first:
 * before, the stream read REDEMPTION_CREATED of the new redemption, then
 * nothing for the lapsed hold until a sweep ran, a cap or a credit's uses
 * exceeded on the way.
 */
describe('lapsed redemption holds: recorded before a redemption or an update of their coupon or a revoke of their credit, with no sweep running', function () {
  this.timeout(60_000);

  it("writes a lapse's REDEMPTION_CANCELED before the REDEMPTION_CREATED that took its place and the COUPON_UPDATED or CUSTOMER_CREDIT_REVOKED that counts it out, as the sweep renders it, once", async function () {
    await withScratchServer(
      this,
      'lapse_order',
      async ({ dataSource, address, tenant }) => {
        const couponsClient = coupons(address, tenant.rwKey);
        const creditsClient = credits(address, tenant.rwKey);
        const events = eventsClient(address, tenant.readKey);
        try {
          const capped = (await couponsClient.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
          const creditCoupon = (await couponsClient.createCoupon(once())).coupon!;
          const credit = (await creditsClient.createCustomerCredit(issueRequest(creditCoupon.id, 'k0'))).credit!;
          const revokedCoupon = (await couponsClient.createCoupon(once())).coupon!;
          const revokedCredit = (await creditsClient.createCustomerCredit(issueRequest(revokedCoupon.id, 'k1'))).credit!;
          const holdUntil = inMs(2_500);
          // Every field of the payload set, so that each is rendered: plan, product, amount, discount, metadata, credit.
          const fields = { holdUntil, planId: 'plan-1', productId: 'product-1', metadata: { order: 'o-1' }, amount: { amount: 1999n, currencyCode: 'USD' } };
          const couponHold = (await couponsClient.redeemCoupon(redeemRequest(capped.code, 'c0', fields))).redemption!;
          const creditHold = (await creditsClient.redeemCustomerCredit(redeemCreditRequest('k0', credit.id, fields))).redemption!;
          await expectError(couponsClient.redeemCoupon(redeemRequest(capped.code, 'c1')), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
          // UpdateCoupon's COUPON_UPDATED carries the coupon's redemption_count, which leaves a lapsed hold out.
          const updated = (await couponsClient.createCoupon(percentageCoupon())).coupon!;
          const updatedHold = (await couponsClient.redeemCoupon(redeemRequest(updated.code, 'c2', { holdUntil }))).redemption!;
          // RevokeCustomerCredit's CUSTOMER_CREDIT_REVOKED: refused while a hold counts, accepted once it lapsed.
          const revokedHold = (await creditsClient.redeemCustomerCredit(redeemCreditRequest('k1', revokedCredit.id, { holdUntil }))).redemption!;
          await expectError(creditsClient.revokeCustomerCredit({ customerId: 'k1', creditId: revokedCredit.id }), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');

          await waitUntilPast(holdUntil);
          // Room made by the lapses alone: the cap of one, the credit's one use.
          const taken = (await couponsClient.redeemCoupon(redeemRequest(capped.code, 'c1'))).redemption!;
          const again = (await creditsClient.redeemCustomerCredit(redeemCreditRequest('k0', credit.id))).redemption!;
          const disabled = (await couponsClient.updateCoupon(sameTerms((await couponsClient.getCoupon({ id: updated.id })).coupon!, { enabled: false }))).coupon!;
          expect(disabled.redemptionCount, "the updated coupon's count, without its lapsed hold").to.equal(0n);
          // validate_only records nothing: the lapse stays for the revoke itself.
          await creditsClient.revokeCustomerCredit({ customerId: 'k1', creditId: revokedCredit.id, validateOnly: true });
          const storedStatus = async (id: string) =>
            ((await dataSource.query(`SELECT status FROM coupon_redemption_states WHERE redemption_id = $1`, [id])) as Array<{ status: string }>)[0]!.status;
          expect(await storedStatus(revokedHold.id), 'after a validate_only revoke').to.equal('HELD');
          await creditsClient.revokeCustomerCredit({ customerId: 'k1', creditId: revokedCredit.id });

          const found = (await listAll(events)).events.filter(
            (e) => e.redemption !== undefined || e.type === EventType.EVENT_TYPE_COUPON_UPDATED || e.type === EventType.EVENT_TYPE_CUSTOMER_CREDIT_REVOKED,
          );
          const stream = found.map((e) => `${EventType[e.type]} ${e.redemption?.id ?? e.coupon?.id ?? e.customerCredit!.id}`);
          const created = (id: string) => `${EventType[EventType.EVENT_TYPE_REDEMPTION_CREATED]} ${id}`;
          const canceled = (id: string) => `${EventType[EventType.EVENT_TYPE_REDEMPTION_CANCELED]} ${id}`;
          expect(stream).to.deep.equal([
            created(couponHold.id),
            created(creditHold.id),
            created(updatedHold.id),
            created(revokedHold.id),
            canceled(couponHold.id),
            created(taken.id),
            canceled(creditHold.id),
            created(again.id),
            canceled(updatedHold.id),
            `${EventType[EventType.EVENT_TYPE_COUPON_UPDATED]} ${updated.id}`,
            canceled(revokedHold.id),
            `${EventType[EventType.EVENT_TYPE_CUSTOMER_CREDIT_REVOKED]} ${revokedCredit.id}`,
          ]);
          expect(found.find((e) => e.type === EventType.EVENT_TYPE_COUPON_UPDATED)!.coupon!.redemptionCount).to.equal(0n);
          expect(found.at(-1)!.customerCredit!.redemptionCount).to.equal(0n);

          // Each lapse's event carries the redemption as it now reads, rendered in SQL as TypeScript renders it for the sweep.
          const listed = new Map<string, CouponRedemption>();
          for (const id of [capped.id, creditCoupon.id]) for (const r of await allRedemptions(couponsClient, id)) listed.set(r.id, r);
          const stored = (await eventsOf(dataSource, tenant.id)).filter((e) => e.type === 'REDEMPTION_CANCELED');
          for (const held of [couponHold, creditHold]) {
            expect(found.find((e) => e.type === EventType.EVENT_TYPE_REDEMPTION_CANCELED && e.redemption!.id === held.id)!.redemption).to.deep.equal({
              ...held,
              status: CANCELED,
              updateTime: held.holdUntil,
            });
            const payload = stored.find((e) => e.payload.id === held.id)!.payload;
            // What couponEventSnapshots.redemption makes of the redemption as the API reads it.
            expect(payload, 'the stored payload').to.deep.equal(CouponRedemption.toJSON(listed.get(held.id)!));
          }
          const states: Array<{ status: string; at_hold_until: boolean }> = await dataSource.query(
            `SELECT status, update_time = hold_until AS at_hold_until FROM coupon_redemption_states WHERE redemption_id = ANY ($1::uuid[])`,
            [[couponHold.id, creditHold.id, updatedHold.id, revokedHold.id]],
          );
          expect(states, 'stored as the sweep stores a lapse').to.deep.equal([
            { status: 'CANCELED', at_hold_until: true },
            { status: 'CANCELED', at_hold_until: true },
            { status: 'CANCELED', at_hold_until: true },
            { status: 'CANCELED', at_hold_until: true },
          ]);

          // The sweep finds nothing left to record: one event per lapse.
          const service = lapseSweeper(dataSource);
          expect(await service.recordLapsedHolds(couponEventSnapshots)).to.equal(0);
          expect((await eventsOf(dataSource, tenant.id)).filter((e) => e.type === 'REDEMPTION_CANCELED')).to.have.length(4);
          expect(await verifyRedemptions(dataSource.manager, { tenantId: tenant.id })).to.deep.equal([]);
        } finally {
          couponsClient.close();
          creditsClient.close();
          events.close();
        }
      },
      { sweeps: false },
    );
  });
});
