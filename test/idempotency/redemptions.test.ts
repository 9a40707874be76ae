import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreateCouponResponse, RedeemCouponResponse } from '../../gen/credits/v1/coupon_service';
import { BatchCreateCustomerCreditsResponse, RedeemCustomerCreditResponse } from '../../gen/credits/v1/credit_service';
import { allRedemptions, percentageCoupon, redeemRequest } from '../coupons/fixtures';
import { issueRequest, lifetime, limited, listRequest, redeemCreditRequest, withIdempotencyKey } from '../credits/fixtures';
import { decodeError, expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';

const PARALLEL = 50;

/** What a message type offers to turn a response into its wire bytes. */
interface Encoder<T> {
  encode(message: T): { finish(): Uint8Array };
}

const bytesOf = <T>(type: Encoder<T>, message: T): Buffer => Buffer.from(type.encode(message).finish());

/**
 * Sends `call` `count` times at once, alternating between the in-process
 * server and the replica process; checks that every answer is either OK or
 * ABORTED IDEMPOTENCY_KEY_IN_USE, that at least one is OK and that all OK
 * answers are byte-identical. Answers those bytes.
 */
async function sameKeyInParallel<T>(type: Encoder<T>, count: number, call: (i: number) => Promise<T>): Promise<Buffer> {
  const results = await Promise.allSettled(Array.from({ length: count }, (_, i) => call(i)));
  const ok: T[] = [];
  for (const r of results) {
    if (r.status === 'fulfilled') ok.push(r.value);
    else {
      const err = decodeError(r.reason as ServiceError);
      expect([status[err.code], err.reason], err.message).to.deep.equal(['ABORTED', 'IDEMPOTENCY_KEY_IN_USE']);
    }
  }
  expect(ok.length, 'at least the call that ran answers OK').to.be.greaterThan(0);
  const first = bytesOf(type, ok[0]!);
  for (const response of ok) expect(bytesOf(type, response).equals(first), 'every OK answer is the same bytes').to.equal(true);
  return first;
}

/**
 * Exactly once for coupon and credit writes: the same call sent 50 times at
 * once with one idempotency-key, spread over two server processes on one
 * database, takes effect once; every answer is the one stored response (or
 * "in flight"); a later replay is the same bytes; another request under the
 * key is refused and changes nothing.
 */
describe('idempotency keys: coupon and credit writes', function () {
  this.timeout(120_000);
  const t = useTenantClients({ replica: true });
  /** Even calls go to the in-process server, odd ones to the replica process. */
  const couponsOn = (i: number) => (i % 2 === 0 ? t.coupons : t.replica.coupons);
  const creditsOn = (i: number) => (i % 2 === 0 ? t.credits : t.replica.credits);

  it('records one redemption for RedeemCoupon sent 50 times in parallel with one key, and replays it byte for byte', async () => {
    // No limits: a second application would show as a second redemption.
    const coupon = (await couponsOn(0).createCoupon(lifetime())).coupon!;
    const request = redeemRequest(coupon.code, 'cust-1', { amount: { amount: 1999n, currencyCode: 'USD' } });
    const bytes = await sameKeyInParallel(RedeemCouponResponse, PARALLEL, (i) => couponsOn(i).redeemCoupon(request, withIdempotencyKey('checkout-1')));

    const stored = (await couponsOn(0).getCoupon({ id: coupon.id })).coupon!;
    expect(stored.redemptionCount).to.equal(1n);
    const listed = await allRedemptions(couponsOn(1), coupon.id);
    expect(listed).to.have.length(1);
    const answered = RedeemCouponResponse.decode(bytes);
    expect(listed[0]!.id).to.equal(answered.redemption!.id);
    expect(answered.redemption!.discount).to.deep.equal({ amount: 200n, currencyCode: 'USD' });

    // Later retries, on either server, are replays of the same bytes.
    for (const i of [0, 1]) {
      const replay = await couponsOn(i).redeemCoupon(request, withIdempotencyKey('checkout-1'));
      expect(bytesOf(RedeemCouponResponse, replay).equals(bytes), `replay on server ${i}`).to.equal(true);
    }

    // Another amount or another customer under the same key is refused and writes nothing.
    for (const changed of [
      redeemRequest(coupon.code, 'cust-1', { amount: { amount: 2000n, currencyCode: 'USD' } }),
      redeemRequest(coupon.code, 'cust-2', { amount: { amount: 1999n, currencyCode: 'USD' } }),
      redeemRequest(coupon.code, 'cust-1'),
    ]) {
      const err = await expectError(couponsOn(1).redeemCoupon(changed, withIdempotencyKey('checkout-1')), status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED');
      expect(err.fields).to.have.property('idempotency-key');
    }
    expect((await couponsOn(0).getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);
    expect(await allRedemptions(couponsOn(0), coupon.id)).to.have.length(1);
  });

  for (const [frequency, couponRequest, usesAfter] of [
    ['LIMITED', () => limited(3), 2],
    ['LIFETIME', () => lifetime(), undefined],
  ] as const) {
    it(`uses a multi-use (${frequency}) credit once for RedeemCustomerCredit sent 50 times in parallel with one key`, async () => {
      const coupon = (await couponsOn(0).createCoupon(couponRequest())).coupon!;
      const credit = (await creditsOn(0).createCustomerCredit(issueRequest(coupon.id, 'c1', { revenue: { amount: 700n, currencyCode: 'USD' } }))).credit!;
      expect(credit.multiUse).to.equal(true);
      const request = redeemCreditRequest('c1', credit.id, { planId: 'gold', amount: { amount: 1000n, currencyCode: 'USD' } });
      const bytes = await sameKeyInParallel(RedeemCustomerCreditResponse, PARALLEL, (i) =>
        creditsOn(i).redeemCustomerCredit(request, withIdempotencyKey('use-1')),
      );

      const after = (await creditsOn(1).getCustomerCredit({ customerId: 'c1', creditId: credit.id })).credit!;
      expect(after.redemptionCount, 'the credit was used once').to.equal(1n);
      expect(after.usesRemaining).to.equal(usesAfter);
      expect((await couponsOn(0).getCoupon({ id: coupon.id })).coupon!.redemptionCount, 'one coupon redemption').to.equal(1n);
      const listed = await allRedemptions(couponsOn(0), coupon.id);
      const answered = RedeemCustomerCreditResponse.decode(bytes);
      expect(listed.map((r) => r.id)).to.deep.equal([answered.redemption!.id]);
      expect(answered.revenue).to.deep.equal({ amount: 700n, currencyCode: 'USD' });

      for (const i of [0, 1]) {
        const replay = await creditsOn(i).redeemCustomerCredit(request, withIdempotencyKey('use-1'));
        expect(bytesOf(RedeemCustomerCreditResponse, replay).equals(bytes), `replay on server ${i}`).to.equal(true);
      }

      const other = (await creditsOn(0).createCustomerCredit(issueRequest(coupon.id, 'c2'))).credit!;
      for (const changed of [
        redeemCreditRequest('c1', credit.id, { planId: 'gold', amount: { amount: 1001n, currencyCode: 'USD' } }),
        redeemCreditRequest('c2', other.id, { planId: 'gold', amount: { amount: 1000n, currencyCode: 'USD' } }),
        redeemCreditRequest('c1', credit.id, { planId: 'silver', amount: { amount: 1000n, currencyCode: 'USD' } }),
      ]) {
        const err = await expectError(creditsOn(1).redeemCustomerCredit(changed, withIdempotencyKey('use-1')), status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED');
        expect(err.fields).to.have.property('idempotency-key');
      }
      expect((await creditsOn(0).getCustomerCredit({ customerId: 'c1', creditId: credit.id })).credit!.redemptionCount).to.equal(1n);
      expect((await creditsOn(0).getCustomerCredit({ customerId: 'c2', creditId: other.id })).credit!.redemptionCount).to.equal(0n);
      expect((await couponsOn(1).getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);

      // A new key is a new use: the credit really is multi-use.
      const next = await creditsOn(1).redeemCustomerCredit(request, withIdempotencyKey('use-2'));
      expect(next.credit!.redemptionCount).to.equal(2n);
    });
  }

  it('creates one coupon for CreateCoupon sent in parallel and replayed with one key', async () => {
    const request = percentageCoupon({ maxRedemptions: 10 });
    const bytes = await sameKeyInParallel(CreateCouponResponse, 20, (i) => couponsOn(i).createCoupon(request, withIdempotencyKey('new-coupon')));
    const replay = await couponsOn(1).createCoupon(request, withIdempotencyKey('new-coupon'));
    expect(bytesOf(CreateCouponResponse, replay).equals(bytes)).to.equal(true);

    const page = await couponsOn(0).listCoupons({ pageSize: 100, pageToken: '', codePrefix: '' });
    expect(page.coupons.map((c) => c.id)).to.deep.equal([CreateCouponResponse.decode(bytes).coupon!.id]);
    // Without the key the same request is a new one: its code is taken.
    await expectError(couponsOn(0).createCoupon(request), status.ALREADY_EXISTS, 'COUPON_CODE_ALREADY_EXISTS');
    await expectError(couponsOn(0).createCoupon({ ...request, name: 'Other' }, withIdempotencyKey('new-coupon')), status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED');
    expect((await couponsOn(1).listCoupons({ pageSize: 100, pageToken: '', codePrefix: '' })).coupons).to.have.length(1);
  });

  it('issues a batch once for BatchCreateCustomerCredits sent in parallel and replayed with one key', async () => {
    const coupon = (await couponsOn(0).createCoupon(lifetime())).coupon!;
    const entry = (customerId: string) => ({ customerId, membershipId: '', revenue: { amount: 100n, currencyCode: 'USD' } });
    const request = { couponId: coupon.id, credits: [entry('a'), entry('b'), entry('a')] };
    const bytes = await sameKeyInParallel(BatchCreateCustomerCreditsResponse, 20, (i) =>
      creditsOn(i).batchCreateCustomerCredits(request, withIdempotencyKey('cycle-1')),
    );
    const replay = await creditsOn(0).batchCreateCustomerCredits(request, withIdempotencyKey('cycle-1'));
    expect(bytesOf(BatchCreateCustomerCreditsResponse, replay).equals(bytes)).to.equal(true);

    const issued = BatchCreateCustomerCreditsResponse.decode(bytes).credits;
    const countOfCoupon = async () => {
      const rows: Array<{ n: string }> = await t.server.dataSource.query(
        `SELECT count(*) AS n FROM customer_credits WHERE tenant_id = $1 AND coupon_id = $2`,
        [t.tenant.id, coupon.id],
      );
      return rows[0]!.n;
    };
    expect(await countOfCoupon()).to.equal('3');
    const ofA = await creditsOn(1).listCustomerCredits(listRequest('a'));
    expect(ofA.credits.map((c) => c.id).sort()).to.deep.equal(issued.filter((c) => c.customerId === 'a').map((c) => c.id).sort());

    const changed = { couponId: coupon.id, credits: [entry('a'), entry('b')] };
    await expectError(creditsOn(1).batchCreateCustomerCredits(changed, withIdempotencyKey('cycle-1')), status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED');
    expect(await countOfCoupon()).to.equal('3');
  });
});
