import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { Coupon } from '../../gen/credits/v1/coupon_service';
import { REDEMPTIONS, type RedemptionItem, type RedemptionResult } from '../../src/coupons/redeem-coupon';
import { verifyRedemptions } from '../../src/coupons/redemption-audit';
import { PlainRunner } from '../../src/db/unit-of-work';
import { issueRequest, once, redeemCreditRequest } from '../credits/fixtures';
import { decodeError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { allRedemptions, percentageCoupon, redeemRequest, uniqueCode } from './fixtures';
import { inMs, waitUntilPast } from './footprint';

/** One call of the mix: what it is, and what it may answer (OK or its one refusal). */
interface MixedCall {
  coupon: string;
  customerId: string;
  run(): Promise<{ count?: bigint }>;
  /** The refusal it must get when it gets one; OK is allowed only when `mayRedeem`. */
  refusal: string;
  mayRedeem: boolean;
}

describe('RedeemCoupon and RedeemCustomerCredit: 240 mixed parallel redemptions over two server processes', () => {
  const t = useTenantClients({ replica: true });

  afterEach(async () => {
    expect(await verifyRedemptions(t.server.dataSource.manager, { tenantId: t.tenant.id })).to.deep.equal([]);
  });

  it('keeps every cap exact and gives every call its own reason, whichever calls share a statement', async function () {
    this.timeout(180_000);
    const create = async (overrides: Parameters<typeof percentageCoupon>[0]) => (await t.coupons.createCoupon(percentageCoupon(overrides))).coupon!;
    const disabled = await create({ enabled: false });
    const gold = await create({ limitedToPlans: ['gold'], maxRedemptions: 10 });
    const perCustomer = await create({ maxRedemptionsPerCustomer: 2 });
    const total = await create({ maxRedemptions: 7, maxRedemptionsPerCustomer: 3 });
    const onePerCustomer = await create({ maxRedemptions: 10, maxRedemptionsPerCustomer: 1 });
    const withHolds = await create({ maxRedemptions: 8 });
    const expiring = await create({ expireTime: inMs(1500) });
    const creditCoupon = (await t.coupons.createCoupon(once())).coupon!;
    const credit = (await t.credits.createCustomerCredit(issueRequest(creditCoupon.id, 'credit-holder'))).credit!;

    // withHolds: 4 held (count), 2 held then canceled (never count), 2 held
    // then confirmed (count), 1 held that lapses (counts no more): 6 of 8 used.
    const hold = (customer: string, ms: number) => t.coupons.redeemCoupon(redeemRequest(withHolds.code, customer, { holdUntil: inMs(ms) }));
    const held = await Promise.all(Array.from({ length: 8 }, (_, i) => hold(`pre-${i}`, 600_000)));
    await Promise.all(held.slice(4, 6).map(({ redemption }) => t.coupons.cancelCouponRedemption({ redemptionId: redemption!.id })));
    const lapsing = await hold('pre-lapsing', 1200);
    await Promise.all(held.slice(6, 8).map(({ redemption }) => t.replica.coupons.confirmCouponRedemption({ redemptionId: redemption!.id })));
    await waitUntilPast(lapsing.redemption!.holdUntil!);
    await waitUntilPast(expiring.expireTime!);

    const calls: MixedCall[] = [];
    const add = (n: number, make: (k: number) => Omit<MixedCall, 'run'> & { request: ReturnType<typeof redeemRequest> }) => {
      for (let k = 0; k < n; k++) {
        const { request, ...call } = make(k);
        const i = calls.length;
        calls.push({
          ...call,
          run: async () => {
            const client = i % 2 === 0 ? t.coupons : t.replica.coupons;
            const { coupon } = await client.redeemCoupon(request);
            return { count: coupon!.redemptionCount };
          },
        });
      }
    };
    const couponCall = (coupon: Coupon, customerId: string, refusal: string, mayRedeem: boolean, overrides: Parameters<typeof redeemRequest>[2] = {}) => ({
      coupon: coupon.code,
      customerId,
      refusal,
      mayRedeem,
      request: redeemRequest(coupon.code, customerId, overrides),
    });
    add(20, (k) => couponCall(disabled, `d-${k}`, 'COUPON_DISABLED', false));
    add(20, (k) => couponCall(gold, `s-${k}`, 'COUPON_NOT_APPLICABLE', false, { planId: 'silver' }));
    add(20, (k) => couponCall(gold, `g-${k}`, 'COUPON_MAX_REDEMPTIONS_REACHED', true, { planId: 'gold', amount: { amount: 1999n, currencyCode: 'USD' } }));
    add(30, (k) => couponCall(perCustomer, `p-${k % 6}`, 'COUPON_CUSTOMER_LIMIT_REACHED', true));
    add(50, (k) => couponCall(total, `t-${k}`, 'COUPON_MAX_REDEMPTIONS_REACHED', true, k % 3 === 0 ? { holdUntil: inMs(600_000) } : {}));
    add(20, (k) => couponCall(onePerCustomer, `o-${k % 5}`, 'COUPON_CUSTOMER_LIMIT_REACHED', true));
    add(40, (k) => couponCall(withHolds, `h-${k}`, 'COUPON_MAX_REDEMPTIONS_REACHED', true));
    add(20, (k) => couponCall(expiring, `e-${k}`, 'COUPON_EXPIRED', false));
    add(10, (k) => ({ coupon: 'unknown', customerId: `u-${k}`, refusal: 'COUPON_NOT_FOUND', mayRedeem: false, request: redeemRequest(uniqueCode('NOPE'), `u-${k}`) }));
    for (let k = 0; k < 10; k++) {
      const i = calls.length;
      calls.push({
        coupon: creditCoupon.code,
        customerId: 'credit-holder',
        refusal: 'CREDIT_ALREADY_REDEEMED',
        mayRedeem: true,
        run: async () => {
          const client = i % 2 === 0 ? t.credits : t.replica.credits;
          await client.redeemCustomerCredit(redeemCreditRequest('credit-holder', credit.id));
          return {};
        },
      });
    }
    expect(calls).to.have.length(240);
    // Shuffled, so that every statement mixes coupons, limits and credits.
    const order = calls.map((_, i) => i).sort(() => Math.random() - 0.5);
    const settled = new Array<PromiseSettledResult<{ count?: bigint }>>(calls.length);
    await Promise.all(order.map(async (i) => (settled[i] = (await Promise.allSettled([calls[i]!.run()]))[0]!)));

    const ok = new Map<string, number>();
    const okByCustomer = new Map<string, number>();
    const counts = new Map<string, bigint[]>();
    settled.forEach((result, i) => {
      const call = calls[i]!;
      if (result.status === 'fulfilled') {
        expect(call.mayRedeem, `call ${i} on ${call.coupon} redeemed`).to.equal(true);
        ok.set(call.coupon, (ok.get(call.coupon) ?? 0) + 1);
        okByCustomer.set(`${call.coupon}/${call.customerId}`, (okByCustomer.get(`${call.coupon}/${call.customerId}`) ?? 0) + 1);
        if (result.value.count !== undefined) counts.set(call.coupon, [...(counts.get(call.coupon) ?? []), result.value.count]);
      } else {
        expect(decodeError(result.reason as ServiceError).reason, `call ${i} on ${call.coupon} by ${call.customerId}`).to.equal(call.refusal);
      }
    });
    // Caps, exactly.
    expect(ok.get(disabled.code) ?? 0).to.equal(0);
    expect(ok.get(gold.code)).to.equal(10);
    expect(ok.get(perCustomer.code)).to.equal(12);
    for (let c = 0; c < 6; c++) expect(okByCustomer.get(`${perCustomer.code}/p-${c}`)).to.equal(2);
    expect(ok.get(total.code)).to.equal(7);
    expect(ok.get(onePerCustomer.code)).to.equal(5);
    for (let c = 0; c < 5; c++) expect(okByCustomer.get(`${onePerCustomer.code}/o-${c}`)).to.equal(1);
    expect(ok.get(withHolds.code)).to.equal(2);
    expect(ok.get(creditCoupon.code)).to.equal(1);
    // Each redemption was counted once, in turn: the answers' counts are the cap's steps.
    const steps = (from: number, n: number) => Array.from({ length: n }, (_, k) => BigInt(from + k)).sort();
    expect([...counts.get(gold.code)!].sort()).to.deep.equal(steps(1, 10));
    expect([...counts.get(total.code)!].sort()).to.deep.equal(steps(1, 7));
    expect([...counts.get(withHolds.code)!].sort()).to.deep.equal(steps(7, 2));

    // redemption_count = the redemptions that count.
    const live = async (coupon: Coupon) => (await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount;
    expect(await live(gold)).to.equal(10n);
    expect(await live(perCustomer)).to.equal(12n);
    expect(await live(total)).to.equal(7n);
    expect(await live(onePerCustomer)).to.equal(5n);
    expect(await live(withHolds)).to.equal(8n);
    expect(await live(creditCoupon)).to.equal(1n);
    expect(await allRedemptions(t.coupons, gold.id)).to.have.length(10);
    expect(await allRedemptions(t.coupons, total.id)).to.have.length(7);
    // 9 before the mix (2 canceled, 1 lapsed) and 2 in it.
    expect(await allRedemptions(t.coupons, withHolds.id)).to.have.length(11);
    const [stored] = (await t.server.dataSource.query(`SELECT redemption_count::text AS n FROM coupons WHERE tenant_id = $1 AND id = $2`, [
      t.tenant.id,
      total.id,
    ])) as Array<{ n: string }>;
    // Confirmed ones only in the column: the held third of the total coupon's calls are not.
    const heldInTotal = (await allRedemptions(t.coupons, total.id)).filter((r) => r.holdUntil !== undefined).length;
    expect(BigInt(stored!.n)).to.equal(BigInt(7 - heldInTotal));
    const after = (await t.credits.getCustomerCredit({ customerId: 'credit-holder', creditId: credit.id })).credit!;
    expect(after.usesRemaining).to.equal(0);
  });

  it('runs a group with a member that fails inside the statement again member by member: the others redeem, only it fails', async function () {
    this.timeout(60_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 10 }))).coupon!;
    // One group at a time: everything submitted in this turn of the event loop shares one statement.
    const runner = new PlainRunner(t.server.dataSource, { maxGroups: 1, maxGroupSize: 32 });
    const item = (customerId: string, planId?: string): RedemptionItem => ({
      tenantId: t.tenant.id,
      target: { code: coupon.code },
      // A plan id the transport would refuse: the INSERT's CHECK fails, and with it the statement.
      request: { customerId, planId, productId: undefined, amount: undefined, holdUntil: undefined, metadata: {} },
      doneBy: 'group-test',
      validateOnly: false,
    });
    const submitted = [item('a'), item('b'), item('bad', 'not a valid plan id!'), item('c'), item('d')].map((i) => runner.submit(REDEMPTIONS, i));
    const results = await Promise.allSettled(submitted);
    const outcome = (r: PromiseSettledResult<RedemptionResult>) =>
      r.status === 'rejected' ? 'failed' : 'redemption' in r.value ? 'redeemed' : r.value.refused;
    expect(results.map(outcome)).to.deep.equal(['redeemed', 'redeemed', 'failed', 'redeemed', 'redeemed']);
    expect((results[2] as PromiseRejectedResult).reason).to.have.property('code', '23514');
    const recorded = await allRedemptions(t.coupons, coupon.id);
    expect(recorded.map((r) => r.customerId).sort()).to.deep.equal(['a', 'b', 'c', 'd']);
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(4n);
  });
});
