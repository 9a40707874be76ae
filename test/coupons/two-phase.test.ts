import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RedemptionStatus } from '../../gen/credits/v1/coupon_service';
import { CreditState } from '../../gen/credits/v1/credit_service';
import { DomainError } from '../../src/common/domain-error';
import { PageTokenCodec } from '../../src/common/page-token';
import { CouponsService } from '../../src/coupons/coupons.service';
import { CreditsService } from '../../src/credits/credits.service';
import { PlainRunner } from '../../src/db/unit-of-work';
import { couponEventSnapshots } from '../../src/grpc/coupon.mapper';
import { creditEventSnapshots } from '../../src/grpc/credit.mapper';
import { issueRequest, once, redeemCreditRequest } from '../credits/fixtures';
import { expectError } from '../support/status';
import { rwPrincipal } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';
import { allRedemptions, percentageCoupon, redeemRequest, sameTerms } from './fixtures';
import { inMs, waitUntilPast } from './footprint';

const { REDEMPTION_STATUS_HELD: HELD, REDEMPTION_STATUS_CONFIRMED: CONFIRMED, REDEMPTION_STATUS_CANCELED: CANCELED } = RedemptionStatus;

describe('two-phase redemptions', () => {
  const t = useTenantClients();
  /** The test tenant's read+write key, as a service sees its caller. */
  const principalOf = () => rwPrincipal(t.tenant);
  const hold = (code: string, customerId: string, ms = 60_000) => t.coupons.redeemCoupon(redeemRequest(code, customerId, { holdUntil: inMs(ms) }));

  it('holds a use that counts toward the limit, then confirms it', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
    const held = await hold(coupon.code, 'c1');
    expect(held.redemption!.status).to.equal(HELD);
    expect(held.redemption!.holdUntil).to.be.instanceOf(Date);
    expect(held.redemption!.updateTime).to.deep.equal(held.redemption!.createTime);
    expect(held.coupon!.redemptionCount).to.equal(1n);
    expect(held.coupon!.redeemed).to.equal(true);
    await expectError(t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c2')), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
    const validated = await t.coupons.validateCoupon(redeemRequest(coupon.code, 'c2'));
    expect(validated.reason).to.equal('COUPON_MAX_REDEMPTIONS_REACHED');

    const confirmed = await t.coupons.confirmCouponRedemption({ redemptionId: held.redemption!.id });
    expect(confirmed.redemption!.status).to.equal(CONFIRMED);
    expect(confirmed.redemption!.updateTime!.getTime()).to.be.at.least(held.redemption!.createTime!.getTime());
    expect(confirmed.coupon!.redemptionCount).to.equal(1n);
    const [listed] = await allRedemptions(t.coupons, coupon.id);
    expect(listed!.status).to.equal(CONFIRMED);
    expect(listed!.holdUntil).to.deep.equal(held.redemption!.holdUntil);
  });

  it('cancels a held or a confirmed redemption and gives the use back to the total and per-customer limits', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 2, maxRedemptionsPerCustomer: 1 }))).coupon!;
    const held = await hold(coupon.code, 'c1');
    const confirmed = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c2'));
    expect(confirmed.redemption!.status).to.equal(CONFIRMED);
    expect(confirmed.redemption!.holdUntil).to.equal(undefined);
    await expectError(hold(coupon.code, 'c1'), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');

    const canceled = await t.coupons.cancelCouponRedemption({ redemptionId: held.redemption!.id });
    expect(canceled.redemption!.status).to.equal(CANCELED);
    expect(canceled.coupon!.redemptionCount).to.equal(1n);
    // c1's use is back: c1 may redeem again (per-customer limit 1).
    await hold(coupon.code, 'c1');
    const second = await t.coupons.cancelCouponRedemption({ redemptionId: confirmed.redemption!.id });
    expect(second.redemption!.status).to.equal(CANCELED);
    expect(second.coupon!.redemptionCount).to.equal(1n);
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c2'));
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(2n);
  });

  it('refuses wrong transitions and unknown redemptions', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    const confirmed = (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c1'))).redemption!;
    const notHeld = await expectError(t.coupons.confirmCouponRedemption({ redemptionId: confirmed.id }), status.FAILED_PRECONDITION, 'REDEMPTION_NOT_HELD');
    expect(notHeld.metadata).to.include({ redemption_id: confirmed.id, status: 'CONFIRMED' });
    await t.coupons.cancelCouponRedemption({ redemptionId: confirmed.id });
    await expectError(t.coupons.cancelCouponRedemption({ redemptionId: confirmed.id }), status.FAILED_PRECONDITION, 'REDEMPTION_CANCELED');
    await expectError(t.coupons.confirmCouponRedemption({ redemptionId: confirmed.id }), status.FAILED_PRECONDITION, 'REDEMPTION_CANCELED');
    const unknown = '00000000-0000-4000-8000-000000000000';
    await expectError(t.coupons.confirmCouponRedemption({ redemptionId: unknown }), status.NOT_FOUND, 'REDEMPTION_NOT_FOUND');
    await expectError(t.coupons.cancelCouponRedemption({ redemptionId: unknown }), status.NOT_FOUND, 'REDEMPTION_NOT_FOUND');
    const bad = await expectError(t.coupons.cancelCouponRedemption({ redemptionId: 'nope' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(bad.fields)).to.deep.equal(['redemption_id']);
  });

  it('refuses a hold_until in the past or more than 7 days ahead', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    for (const holdUntil of [inMs(-1000), inMs(7 * 24 * 3600 * 1000 + 60_000)]) {
      const err = await expectError(t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c1', { holdUntil })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(err.fields)).to.deep.equal(['hold_until']);
    }
    expect(await allRedemptions(t.coupons, coupon.id)).to.have.length(0);
  });

  it('refuses a hold_until that passes while the call waits for the coupon, without counting it against the limit', async function () {
    this.timeout(20_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
    // Another transaction holds the coupon's row: both calls wait for it, the hold past its hold_until by then.
    const locker = t.server.dataSource.createQueryRunner();
    await locker.connect();
    await locker.startTransaction();
    let shortHold: Promise<unknown>;
    let confirmed: Promise<unknown>;
    try {
      await locker.query(`SELECT 1 FROM coupons WHERE id = $1 FOR UPDATE`, [coupon.id]);
      shortHold = t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c1', { holdUntil: inMs(300) }));
      confirmed = t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c2'));
      shortHold.catch(() => undefined);
      confirmed.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 800));
    } finally {
      await locker.commitTransaction();
      await locker.release();
    }
    const err = await expectError(shortHold, status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(err.fields)).to.deep.equal(['hold_until']);
    expect(err.fields['hold_until']).to.contain('had passed');
    // The lapsed hold took no use: the confirmed call got the only one.
    const redeemed = (await confirmed) as Awaited<ReturnType<typeof t.coupons.redeemCoupon>>;
    expect(redeemed.redemption!.status).to.equal(CONFIRMED);
    expect(redeemed.coupon!.redemptionCount).to.equal(1n);
    expect((await allRedemptions(t.coupons, coupon.id)).map((r) => r.customerId)).to.deep.equal(['c2']);
  });

  it('lets a hold lapse at hold_until: CANCELED at once, its use free, no transition allowed', async function () {
    this.timeout(20_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
    const held = (await hold(coupon.code, 'c1', 1500)).redemption!;
    await expectError(t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c2')), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
    await waitUntilPast(held.holdUntil!);
    // Every reader computes it from hold_until on, whether the expiry sweep has recorded it yet or not.
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(0n);
    const [lapsed] = await allRedemptions(t.coupons, coupon.id);
    expect(lapsed!.status).to.equal(CANCELED);
    expect(lapsed!.updateTime).to.deep.equal(held.holdUntil);
    const err = await expectError(t.coupons.confirmCouponRedemption({ redemptionId: held.id }), status.FAILED_PRECONDITION, 'REDEMPTION_CANCELED');
    expect(err.message).to.contain('lapsed');
    await expectError(t.coupons.cancelCouponRedemption({ redemptionId: held.id }), status.FAILED_PRECONDITION, 'REDEMPTION_CANCELED');
    const next = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c2'));
    expect(next.coupon!.redemptionCount).to.equal(1n);
  });

  it('judges a hold lapsed by the database clock on confirm, even from a server whose clock runs behind', async function () {
    this.timeout(20_000);
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
    const held = (await hold(coupon.code, 'c1', 500)).redemption!;
    await waitUntilPast(held.holdUntil!);
    // The lapsed hold's use went to c2.
    expect((await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c2'))).coupon!.redemptionCount).to.equal(1n);
    // A server whose clock is 5 s behind the database's still sees the hold as held by its own clock.
    const behind = new CouponsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), () => new Date(Date.now() - 5_000));
    const confirming = behind.confirm(principalOf(), { id: held.id, validateOnly: false }, new PlainRunner(t.server.dataSource), couponEventSnapshots);
    const refusal = await confirming.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refusal, 'the confirm is refused').to.be.instanceOf(DomainError);
    expect((refusal as DomainError).reason).to.equal('REDEMPTION_CANCELED');
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(1n);
  });

  it('keeps the terms of a coupon whose redemptions were all canceled frozen, and refuses to delete it', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    const held = (await hold(coupon.code, 'c1')).redemption!;
    await t.coupons.cancelCouponRedemption({ redemptionId: held.id });
    const after = (await t.coupons.getCoupon({ id: coupon.id })).coupon!;
    expect(after.redeemed).to.equal(true);
    expect(after.redemptionCount).to.equal(0n);
    await expectError(t.coupons.updateCoupon(sameTerms(after, { name: 'Renamed' })), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');
    await expectError(t.coupons.deleteCoupon({ id: coupon.id }), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');
    // enabled and metadata may still change.
    const updated = (await t.coupons.updateCoupon(sameTerms(after, { enabled: false, metadata: { note: 'leaked' } }))).coupon!;
    expect(updated).to.include({ enabled: false });
    expect(updated.metadata).to.deep.equal({ note: 'leaked' });
  });

  describe('of customer credits', () => {
    it('holds a single-use credit (REDEEMED while held), gives it back on cancel, and lets it be redeemed again', async () => {
      const coupon = (await t.coupons.createCoupon(once())).coupon!;
      const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'cust'))).credit!;
      const held = await t.credits.redeemCustomerCredit(redeemCreditRequest('cust', credit.id, { holdUntil: inMs(60_000) }));
      expect(held.redemption!.status).to.equal(HELD);
      expect(held.redemption!.customerCreditId).to.equal(credit.id);
      expect(held.credit).to.deep.include({ state: CreditState.CREDIT_STATE_REDEEMED, redemptionCount: 1n, usesRemaining: 0 });
      await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('cust', credit.id)), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');
      await expectError(
        t.credits.revokeCustomerCredit({ customerId: 'cust', creditId: credit.id }),
        status.FAILED_PRECONDITION,
        'CREDIT_ALREADY_REDEEMED',
      );

      await t.coupons.cancelCouponRedemption({ redemptionId: held.redemption!.id });
      const back = (await t.credits.getCustomerCredit({ customerId: 'cust', creditId: credit.id })).credit!;
      expect(back).to.deep.include({ state: CreditState.CREDIT_STATE_ACTIVE, redemptionCount: 0n, usesRemaining: 1 });
      expect(back.lastRedeemTime).to.be.instanceOf(Date);

      const again = await t.credits.redeemCustomerCredit(redeemCreditRequest('cust', credit.id));
      expect(again.redemption!.status).to.equal(CONFIRMED);
      expect(again.credit).to.deep.include({ state: CreditState.CREDIT_STATE_REDEEMED, redemptionCount: 1n });
    });

    it('refuses to revoke a held credit from a server whose clock runs ahead of the database, so the hold can be confirmed', async () => {
      const coupon = (await t.coupons.createCoupon(once())).coupon!;
      const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'ahead'))).credit!;
      const held = await t.credits.redeemCustomerCredit(redeemCreditRequest('ahead', credit.id, { holdUntil: inMs(3_000) }));
      // By its own clock, 5 s ahead, the hold has lapsed; by the database's it has not.
      const ahead = new CreditsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), () => new Date(Date.now() + 5_000));
      const revoking = ahead.revoke(principalOf(), { customerId: 'ahead', creditId: credit.id, validateOnly: false }, new PlainRunner(t.server.dataSource), creditEventSnapshots);
      const refusal = await revoking.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect((refusal as DomainError).reason, 'the held use counts').to.equal('CREDIT_ALREADY_REDEEMED');
      const confirmed = await t.coupons.confirmCouponRedemption({ redemptionId: held.redemption!.id });
      expect(confirmed.redemption!.status).to.equal(CONFIRMED);
    });

    it('refuses to issue a credit from a coupon expired by the database clock, from a server whose clock is behind', async function () {
      this.timeout(20_000);
      const coupon = (await t.coupons.createCoupon(once({ expireTime: inMs(1_000) }))).coupon!;
      await waitUntilPast(coupon.expireTime!);
      // By its own clock, 5 s behind, the coupon has not expired; by the database's it has.
      const behind = new CreditsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), () => new Date(Date.now() - 5_000));
      const issuing = behind.create(
        principalOf(),
        { couponId: coupon.id, validateOnly: false, customerId: 'behind', membershipId: '', expireTime: undefined, revenue: undefined, metadata: {} },
        new PlainRunner(t.server.dataSource),
        creditEventSnapshots,
      );
      const refusal = await issuing.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect((refusal as DomainError | undefined)?.reason, 'no credit from an expired coupon').to.equal('COUPON_EXPIRED');
      expect((await t.credits.listCustomerCredits({ customerId: 'behind', includeExpired: true, includeRedeemed: true, includeRevoked: true, pageSize: 0, pageToken: '', metadata: {} })).credits).to.deep.equal([]);
    });

    it('confirms a credit hold (the use stays), and a canceled confirmed use makes the credit ACTIVE again', async () => {
      const coupon = (await t.coupons.createCoupon(once({ maxRedemptions: 1 }))).coupon!;
      const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'cust'))).credit!;
      const held = await t.credits.redeemCustomerCredit(redeemCreditRequest('cust', credit.id, { holdUntil: inMs(60_000) }));
      const confirmed = await t.coupons.confirmCouponRedemption({ redemptionId: held.redemption!.id });
      expect(confirmed.redemption).to.deep.include({ status: CONFIRMED, customerCreditId: credit.id });
      expect(confirmed.coupon!.redemptionCount).to.equal(1n);
      expect((await t.credits.getCustomerCredit({ customerId: 'cust', creditId: credit.id })).credit).to.deep.include({
        state: CreditState.CREDIT_STATE_REDEEMED,
        redemptionCount: 1n,
      });
      await t.coupons.cancelCouponRedemption({ redemptionId: held.redemption!.id });
      expect((await t.credits.getCustomerCredit({ customerId: 'cust', creditId: credit.id })).credit).to.deep.include({
        state: CreditState.CREDIT_STATE_ACTIVE,
        redemptionCount: 0n,
      });
      expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.redemptionCount).to.equal(0n);
      // Every use given back: it may be revoked now.
      const revoked = (await t.credits.revokeCustomerCredit({ customerId: 'cust', creditId: credit.id })).credit!;
      expect(revoked.state).to.equal(CreditState.CREDIT_STATE_REVOKED);
    });

    it('frees a lapsed credit hold at once for the credit and its listing', async function () {
      this.timeout(20_000);
      const coupon = (await t.coupons.createCoupon(once())).coupon!;
      const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'cust'))).credit!;
      const held = await t.credits.redeemCustomerCredit(redeemCreditRequest('cust', credit.id, { holdUntil: inMs(1500) }));
      const active = await t.credits.listCustomerCredits({ customerId: 'cust' });
      expect(active.credits).to.have.length(0);
      await waitUntilPast(held.redemption!.holdUntil!);
      const listed = await t.credits.listCustomerCredits({ customerId: 'cust' });
      expect(listed.credits.map((c) => [c.id, c.state, c.redemptionCount])).to.deep.equal([[credit.id, CreditState.CREDIT_STATE_ACTIVE, 0n]]);
      await t.credits.redeemCustomerCredit(redeemCreditRequest('cust', credit.id));
    });
  });
});
