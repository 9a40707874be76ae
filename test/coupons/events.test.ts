import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Coupon, CouponRedemption } from '../../gen/credits/v1/coupon_service';
import { CustomerCredit } from '../../gen/credits/v1/credit_service';
import { issueRequest, once, redeemCreditRequest } from '../credits/fixtures';
import { expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { percentageCoupon, redeemRequest, sameTerms } from './fixtures';
import { eventsOf, inMs, type StoredEvent } from './footprint';

describe('events of coupons, redemptions and customer credits (outbox)', () => {
  const t = useTenantClients();
  let seen = 0;
  beforeEach(() => void (seen = 0));

  /** The events written since the last call. */
  async function newEvents(): Promise<StoredEvent[]> {
    const all = await eventsOf(t.server.dataSource, t.tenant.id);
    const fresh = all.slice(seen);
    seen = all.length;
    return fresh;
  }

  it('writes exactly one event per change of a coupon, with the coupon as the API shows it', async () => {
    const created = (await t.coupons.createCoupon(percentageCoupon({ metadata: { campaign: 'spring' } }))).coupon!;
    const [onCreate, ...more] = await newEvents();
    expect(more).to.deep.equal([]);
    expect(onCreate).to.deep.include({ type: 'COUPON_CREATED', customer_id: null, payload_kind: 'coupon' });
    expect(Coupon.fromJSON(onCreate!.payload)).to.deep.equal(created);

    const updated = (await t.coupons.updateCoupon(sameTerms(created, { name: 'Renamed' }))).coupon!;
    const [onUpdate, ...more2] = await newEvents();
    expect(more2).to.deep.equal([]);
    expect(onUpdate!.type).to.equal('COUPON_UPDATED');
    expect(Coupon.fromJSON(onUpdate!.payload)).to.deep.equal(updated);
    // An update that changes nothing writes nothing.
    await t.coupons.updateCoupon(sameTerms(updated));
    expect(await newEvents()).to.deep.equal([]);

    await t.coupons.deleteCoupon({ id: created.id });
    const [onDelete, ...more3] = await newEvents();
    expect(more3).to.deep.equal([]);
    expect(onDelete!.type).to.equal('COUPON_DELETED');
    expect(Coupon.fromJSON(onDelete!.payload).id).to.equal(created.id);
  });

  it('writes REDEMPTION_CREATED, _CONFIRMED and _CANCELED with the redemption and its customer', async () => {
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 1 }))).coupon!;
    await newEvents();
    const held = (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'cust-1', { holdUntil: inMs(600_000), metadata: { order: 'o1' } }))).redemption!;
    const confirmed = (await t.coupons.confirmCouponRedemption({ redemptionId: held.id })).redemption!;
    const canceled = (await t.coupons.cancelCouponRedemption({ redemptionId: held.id })).redemption!;
    const events = await newEvents();
    expect(events.map((e) => [e.type, e.customer_id, e.payload_kind])).to.deep.equal([
      ['REDEMPTION_CREATED', 'cust-1', 'redemption'],
      ['REDEMPTION_CONFIRMED', 'cust-1', 'redemption'],
      ['REDEMPTION_CANCELED', 'cust-1', 'redemption'],
    ]);
    expect(events.map((e) => CouponRedemption.fromJSON(e.payload))).to.deep.equal([held, confirmed, canceled]);
  });

  it('writes CUSTOMER_CREDIT_CREATED per credit, _REVOKED, and REDEMPTION_CREATED for a credit redemption', async () => {
    const coupon = (await t.coupons.createCoupon(once())).coupon!;
    await newEvents();
    const [a, b] = (await t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: [{ customerId: 'a' }, { customerId: 'b' }] })).credits;
    const issued = await newEvents();
    expect(issued.map((e) => [e.type, e.customer_id, e.payload_kind])).to.deep.equal([
      ['CUSTOMER_CREDIT_CREATED', 'a', 'customer_credit'],
      ['CUSTOMER_CREDIT_CREATED', 'b', 'customer_credit'],
    ]);
    expect(issued.map((e) => CustomerCredit.fromJSON(e.payload))).to.deep.equal([a, b]);

    const revoked = (await t.credits.revokeCustomerCredit({ customerId: 'a', creditId: a!.id })).credit!;
    const [onRevoke] = await newEvents();
    expect(onRevoke).to.deep.include({ type: 'CUSTOMER_CREDIT_REVOKED', customer_id: 'a' });
    expect(CustomerCredit.fromJSON(onRevoke!.payload)).to.deep.equal(revoked);

    const { redemption } = await t.credits.redeemCustomerCredit(redeemCreditRequest('b', b!.id));
    const [onRedeem, ...more] = await newEvents();
    expect(more).to.deep.equal([]);
    expect(onRedeem).to.deep.include({ type: 'REDEMPTION_CREATED', customer_id: 'b' });
    expect(CouponRedemption.fromJSON(onRedeem!.payload)).to.deep.equal(redemption);
  });

  it('writes no event for a refused change', async () => {
    const coupon = (await t.coupons.createCoupon(once({ maxRedemptions: 1 }))).coupon!;
    const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'c'))).credit!;
    const { redemption } = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c'));
    await newEvents();
    await expectError(t.coupons.createCoupon(percentageCoupon({ code: coupon.code })), status.ALREADY_EXISTS);
    await expectError(t.coupons.updateCoupon(sameTerms(coupon, { name: 'x' })), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');
    await expectError(t.coupons.deleteCoupon({ id: coupon.id }), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');
    await expectError(t.coupons.redeemCoupon(redeemRequest(coupon.code, 'd')), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
    await expectError(t.coupons.confirmCouponRedemption({ redemptionId: redemption!.id }), status.FAILED_PRECONDITION, 'REDEMPTION_NOT_HELD');
    await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id)), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
    await expectError(t.credits.createCustomerCredit(issueRequest(coupon.id, 'e')), status.FAILED_PRECONDITION, 'COUPON_MAX_REDEMPTIONS_REACHED');
    await t.coupons.cancelCouponRedemption({ redemptionId: redemption!.id });
    await newEvents();
    await expectError(t.coupons.cancelCouponRedemption({ redemptionId: redemption!.id }), status.FAILED_PRECONDITION, 'REDEMPTION_CANCELED');
    await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id));
    await newEvents();
    await expectError(t.credits.revokeCustomerCredit({ customerId: 'c', creditId: credit.id }), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');
    expect(await newEvents()).to.deep.equal([]);
  });
});
