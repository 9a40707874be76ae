import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreditState, type BatchCreateCustomerCreditsEntry } from '../../gen/credits/v1/credit_service';
import { recordStatements } from '../support/statements';
import { expectError } from '../support/status';
import { creditContext, limited, listRequest, once, withIdempotencyKey } from './fixtures';

const entry = (customerId: string, overrides: Partial<BatchCreateCustomerCreditsEntry> = {}): BatchCreateCustomerCreditsEntry => ({
  customerId,
  membershipId: '',
  metadata: {},
  ...overrides,
});

describe('CreditService: BatchCreateCustomerCredits', () => {
  const t = creditContext();

  async function creditsOfCoupon(couponId: string): Promise<number> {
    const rows: Array<{ n: string }> = await t.server.dataSource.query(`SELECT count(*) AS n FROM customer_credits WHERE coupon_id = $1`, [couponId]);
    return Number(rows[0]!.n);
  }

  it('issues every entry from one coupon, in request order, each with its own fields', async () => {
    const couponExpiry = new Date(Date.now() + 86_400_000);
    const coupon = await t.coupon(limited(2, { expireTime: couponExpiry }));
    const soon = new Date(Date.now() + 3_600_000);
    const res = await t.credits.batchCreateCustomerCredits({
      couponId: coupon.id,
      credits: [
        entry('alice', { membershipId: 'gold', revenue: { amount: 100n, currencyCode: 'USD' } }),
        entry('bob', { expireTime: soon }),
        entry('alice', { revenue: { amount: 9007199254740993n, currencyCode: '' } }),
      ],
    });
    expect(res.credits.map((c) => [c.customerId, c.membershipId, c.expireTime, c.revenue])).to.deep.equal([
      ['alice', 'gold', couponExpiry, { amount: 100n, currencyCode: 'USD' }],
      ['bob', undefined, soon, undefined],
      ['alice', undefined, couponExpiry, { amount: 9007199254740993n, currencyCode: 'USD' }],
    ]);
    for (const c of res.credits) {
      expect(c).to.deep.include({ couponId: coupon.id, state: CreditState.CREDIT_STATE_ACTIVE, multiUse: true, usesRemaining: 2, redemptionCount: 0n });
    }
    expect(new Set(res.credits.map((c) => c.id)).size).to.equal(3);
    const alices = await t.credits.listCustomerCredits(listRequest('alice'));
    expect(alices.credits.map((c) => c.id)).to.deep.equal([res.credits[2]!.id, res.credits[0]!.id]);
    expect(alices.credits[0]).to.deep.equal(res.credits[2]);
  });

  it('issues 500 credits with ONE insert statement', async function () {
    this.timeout(30_000);
    const coupon = await t.coupon(once());
    const credits = Array.from({ length: 500 }, (_, i) =>
      entry(`member-${i}`, { membershipId: `m-${i % 7}`, revenue: i % 2 === 0 ? { amount: BigInt(i), currencyCode: 'USD' } : undefined }),
    );
    const recorder = recordStatements(t.server.dataSource);
    let res;
    try {
      res = await t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits });
    } finally {
      recorder.stop();
    }
    expect(res.credits).to.have.length(500);
    expect(res.credits.map((c) => c.customerId)).to.deep.equal(credits.map((c) => c.customerId));
    expect(res.credits[4]!.revenue).to.deep.equal({ amount: 4n, currencyCode: 'USD' });
    expect(res.credits[5]!.revenue).to.equal(undefined);
    expect(await creditsOfCoupon(coupon.id)).to.equal(500);

    const statements = recorder.recorded.map((s) => s.sql);
    const touchingCredits = statements.filter((sql) => /customer_credits/.test(sql));
    expect(touchingCredits, statements.join('\n---\n')).to.have.length(1);
    expect(touchingCredits[0]).to.match(/^\s*INSERT INTO customer_credits/);
    // The whole call is a handful of statements (auth, BEGIN, coupon, INSERT, COMMIT), not one per credit.
    // The recorder sees the whole process: background sweeps (expired holds;
    // lapsed redemptions, eight statements: seen with the call's seven, 16 in
    // all) may fall in the window. Far below one per credit either way.
    expect(statements.length, statements.join('\n---\n')).to.be.below(32);
  });

  it('issues every credit of 28 parallel 500-credit batches exactly once, keyed and keyless, more than the pool holds', async function () {
    // Keyless batches queue for a share of the inserts; keyed ones run inside
    // their idempotency transaction (24 of them hold more connections than
    // the pool's 20): none may wait on the other for ever, and none may lose
    // or mix up a credit.
    this.timeout(120_000);
    const coupon = await t.coupon(once());
    const batches = Array.from({ length: 28 }, (_, b) => Array.from({ length: 500 }, (_, i) => entry(`b${b}-c${i}`, { membershipId: `m${b}` })));
    const responses = await Promise.all(
      batches.map((credits, b) =>
        b % 7 === 0
          ? t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits })
          : t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits }, withIdempotencyKey(`batch-${coupon.id}-${b}`)),
      ),
    );
    responses.forEach((res, b) => {
      expect(res.credits.map((c) => c.customerId)).to.deep.equal(batches[b]!.map((c) => c.customerId));
      expect(new Set(res.credits.map((c) => c.membershipId))).to.deep.equal(new Set([`m${b}`]));
    });
    expect(new Set(responses.flatMap((res) => res.credits.map((c) => c.id))).size).to.equal(28 * 500);
    expect(await creditsOfCoupon(coupon.id)).to.equal(28 * 500);
  });

  it('writes nothing when one entry is bad, and names it', async () => {
    const coupon = await t.coupon(once());
    const credits = Array.from({ length: 10 }, (_, i) => entry(`c-${i}`));
    credits[3] = entry('not valid!');
    credits[7] = entry('c-7', { revenue: { amount: -1n, currencyCode: 'USD' } });
    const err = await expectError(t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(err.fields)).to.deep.equal(['credits[3].customer_id', 'credits[7].revenue.amount']);
    expect(err.message).to.contain('credits[3].customer_id');
    expect(await creditsOfCoupon(coupon.id)).to.equal(0);
  });

  it("writes nothing when one entry's expire_time is later than the coupon's, and names it", async () => {
    const couponExpiry = new Date(Date.now() + 3_600_000);
    const coupon = await t.coupon(once({ expireTime: couponExpiry }));
    const credits = [entry('a'), entry('b', { expireTime: new Date(couponExpiry.getTime() + 1_000) }), entry('c', { expireTime: couponExpiry })];
    const err = await expectError(t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(err.fields)).to.deep.equal(['credits[1].expire_time']);
    expect(await creditsOfCoupon(coupon.id)).to.equal(0);
  });

  it("lists an entry's expire_time the coupon refuses with every other bad field at once, and before the coupon's own refusal", async () => {
    const couponExpiry = new Date(Date.now() + 3_600_000);
    const coupon = await t.coupon(once({ expireTime: couponExpiry }));
    const credits = [entry('a', { expireTime: new Date(couponExpiry.getTime() + 1_000) }), entry('bad id!')];
    const err = await expectError(t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(err.fields)).to.deep.equal(['credits[1].customer_id', 'credits[0].expire_time']);
    const create = await expectError(
      t.credits.createCustomerCredit({ ...entry('c', { expireTime: new Date(couponExpiry.getTime() + 1_000) }), couponId: coupon.id, membershipId: 'bad id!' }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(create.fields)).to.deep.equal(['membership_id', 'expire_time']);
    // A bad request is answered as such before what the coupon's state refuses, or its absence.
    await t.coupons.updateCoupon({ ...coupon, enabled: false });
    const disabled = await expectError(t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: [entry('bad id!')] }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(disabled.fields)).to.deep.equal(['credits[0].customer_id']);
    // An expiry the coupon refuses is such a bad field too, alone or with others.
    const late = { expireTime: new Date(couponExpiry.getTime() + 1_000) };
    const lateOnly = await expectError(t.credits.createCustomerCredit({ ...entry('c', late), couponId: coupon.id }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(lateOnly.fields)).to.deep.equal(['expire_time']);
    const lateAndBad = await expectError(
      t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: [entry('bad id!'), entry('d', late)] }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(lateAndBad.fields)).to.deep.equal(['credits[0].customer_id', 'credits[1].expire_time']);
    const unknown = await expectError(
      t.credits.batchCreateCustomerCredits({ couponId: '00000000-0000-4000-8000-000000000000', credits: [entry('bad id!')] }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(unknown.fields)).to.deep.equal(['credits[0].customer_id']);
    expect(await creditsOfCoupon(coupon.id)).to.equal(0);
  });

  it('takes 1 to 500 entries', async () => {
    const coupon = await t.coupon(once());
    const none = await expectError(t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: [] }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(none.fields)).to.deep.equal(['credits']);
    const tooMany = Array.from({ length: 501 }, (_, i) => entry(`c-${i}`));
    const over = await expectError(t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: tooMany }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(over.fields['credits']).to.contain('got 501');
    expect(await creditsOfCoupon(coupon.id)).to.equal(0);
  });

  it('checks the coupon once for the whole batch: unknown, disabled', async () => {
    await expectError(
      t.credits.batchCreateCustomerCredits({ couponId: '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b', credits: [entry('a')] }),
      status.NOT_FOUND,
      'COUPON_NOT_FOUND',
    );
    const disabled = await t.coupon(once({ enabled: false }));
    await expectError(t.credits.batchCreateCustomerCredits({ couponId: disabled.id, credits: [entry('a'), entry('b')] }), status.FAILED_PRECONDITION, 'COUPON_DISABLED');
    expect(await creditsOfCoupon(disabled.id)).to.equal(0);
  });
});
