import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RedemptionStatus, type RedeemCouponResponse } from '../../gen/credits/v1/coupon_service';
import { issueRequest, once, redeemCreditRequest } from '../credits/fixtures';
import { decodeError, tally } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { verifyRedemptions } from '../../src/coupons/redemption-audit';
import { allRedemptions, percentageCoupon, redeemRequest } from './fixtures';
import { inMs, waitUntilPast } from './footprint';

describe('two-phase redemptions under concurrency (two server processes)', () => {
  const t = useTenantClients({ replica: true });
  /** Even calls go to the in-process server, odd ones to the replica process. */
  const on = (i: number) => (i % 2 === 0 ? t.coupons : t.replica.coupons);
  const onCredits = (i: number) => (i % 2 === 0 ? t.credits : t.replica.credits);
  const held = (results: PromiseSettledResult<RedeemCouponResponse>[]) =>
    results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.redemption!] : []));

  afterEach(async () => {
    expect(await verifyRedemptions(t.server.dataSource.manager, { tenantId: t.tenant.id })).to.deep.equal([]);
  });

  it('holds exactly 5 of 200 parallel holds of a max_redemptions 5 coupon; after cancelling two, exactly 2 of 200 more', async function () {
    this.timeout(120_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 5 }))).coupon!;
    const holdUntil = inMs(10 * 60_000);
    const first = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, `a-${i}`, { holdUntil }))));
    expect(tally(first)).to.deep.equal({ OK: 5, COUPON_MAX_REDEMPTIONS_REACHED: 195 });
    const holds = held(first);
    expect(holds.every((r) => r.status === RedemptionStatus.REDEMPTION_STATUS_HELD)).to.equal(true);
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(5n);

    await Promise.all([
      t.coupons.cancelCouponRedemption({ redemptionId: holds[0]!.id }),
      t.replica.coupons.cancelCouponRedemption({ redemptionId: holds[1]!.id }),
    ]);
    const second = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, `b-${i}`, { holdUntil }))));
    expect(tally(second)).to.deep.equal({ OK: 2, COUPON_MAX_REDEMPTIONS_REACHED: 198 });
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(5n);
    const statuses = (await allRedemptions(t.coupons, coupon.id)).map((r) => RedemptionStatus[r.status]).sort();
    expect(statuses).to.deep.equal([...Array(2).fill('REDEMPTION_STATUS_CANCELED'), ...Array(5).fill('REDEMPTION_STATUS_HELD')]);
  });

  it('holds exactly 2 of 50 parallel holds by one customer of a per-customer-2 coupon; one cancel lets exactly one more in', async function () {
    this.timeout(120_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptionsPerCustomer: 2 }))).coupon!;
    const holdUntil = inMs(10 * 60_000);
    const first = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, 'same', { holdUntil }))));
    expect(tally(first)).to.deep.equal({ OK: 2, COUPON_CUSTOMER_LIMIT_REACHED: 48 });
    await t.replica.coupons.cancelCouponRedemption({ redemptionId: held(first)[0]!.id });
    const second = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, 'same', { holdUntil }))));
    expect(tally(second)).to.deep.equal({ OK: 1, COUPON_CUSTOMER_LIMIT_REACHED: 49 });
    // Other customers are not held back by that customer's limit.
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'other', { holdUntil }));
  });

  it('races confirms and cancels of the same holds: each redemption ends in exactly one state, the count matches', async function () {
    this.timeout(120_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 20 }))).coupon!;
    const holds = await Promise.all(Array.from({ length: 20 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, `c-${i}`, { holdUntil: inMs(600_000) }))));
    const racing = holds.flatMap(({ redemption }, i) => [
      on(i).confirmCouponRedemption({ redemptionId: redemption!.id }),
      on(i + 1).cancelCouponRedemption({ redemptionId: redemption!.id }),
    ]);
    const outcomes = await Promise.allSettled(racing);
    const reasons = outcomes.map((o) => (o.status === 'fulfilled' ? 'OK' : decodeError(o.reason as ServiceError).reason));
    // Per redemption: a confirm then a cancel (both OK), or a cancel first (the confirm refused).
    for (let i = 0; i < 20; i++) {
      expect([
        ['OK', 'OK'],
        ['REDEMPTION_CANCELED', 'OK'],
      ]).to.deep.include([reasons[2 * i], reasons[2 * i + 1]]);
    }
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(0n);
  });

  it("gives a lapsed hold's use to exactly one of 40 callers racing right after hold_until", async function () {
    this.timeout(60_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
    const lapsing = (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'first', { holdUntil: inMs(1500) }))).redemption!;
    const early = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, `early-${i}`))));
    expect(tally(early)).to.deep.equal({ COUPON_MAX_REDEMPTIONS_REACHED: 10 });
    await waitUntilPast(lapsing.holdUntil!);
    const late = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => on(i).redeemCoupon(redeemRequest(coupon.code, `late-${i}`))));
    expect(tally(late)).to.deep.equal({ OK: 1, COUPON_MAX_REDEMPTIONS_REACHED: 39 });
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);
  });

  it('lets exactly one of 30 parallel holds of a single-use credit in; cancelled, exactly one of 30 more', async function () {
    this.timeout(60_000);
    const coupon = (await t.coupons.createCoupon(once())).coupon!;
    const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'cust'))).credit!;
    const request = () => redeemCreditRequest('cust', credit.id, { holdUntil: inMs(600_000) });
    const first = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => onCredits(i).redeemCustomerCredit(request())));
    expect(tally(first)).to.deep.equal({ OK: 1, CREDIT_ALREADY_REDEEMED: 29 });
    const winner = first.find((r) => r.status === 'fulfilled')!;
    await t.replica.coupons.cancelCouponRedemption({ redemptionId: (winner as PromiseFulfilledResult<{ redemption?: { id: string } }>).value.redemption!.id });
    const second = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => onCredits(i).redeemCustomerCredit(request())));
    expect(tally(second)).to.deep.equal({ OK: 1, CREDIT_ALREADY_REDEEMED: 29 });
  });

  it('never lets validate_only redemptions racing among real ones change the outcome', async function () {
    this.timeout(120_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 5 }))).coupon!;
    const calls = Array.from({ length: 200 }, (_, i) =>
      on(i).redeemCoupon(redeemRequest(coupon.code, `v-${i}`, { validateOnly: i % 2 === 1, holdUntil: i % 4 === 0 ? inMs(600_000) : undefined })),
    );
    const results = await Promise.allSettled(calls);
    const real = results.filter((_, i) => i % 2 === 0);
    const rehearsed = results.filter((_, i) => i % 2 === 1);
    expect(tally(real)).to.deep.equal({ OK: 5, COUPON_MAX_REDEMPTIONS_REACHED: 95 });
    // Each rehearsal answered what it would have at its instant, and wrote nothing.
    expect(Object.keys(tally(rehearsed)).every((k) => k === 'OK' || k === 'COUPON_MAX_REDEMPTIONS_REACHED')).to.equal(true);
    for (const r of rehearsed) if (r.status === 'fulfilled') expect(r.value.redemption!.id).to.equal('');
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(5n);
    const recorded = await allRedemptions(t.coupons, coupon.id);
    expect(recorded.map((r) => r.customerId).every((c) => Number(c.slice(2)) % 2 === 0)).to.equal(true);
    expect(recorded).to.have.length(5);
  });
});
