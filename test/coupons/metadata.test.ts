import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CouponRepository } from '../../src/coupons/coupon.repository';
import { REDEMPTIONS, type RedemptionItem } from '../../src/coupons/redeem-coupon';
import { issueRequest, lifetime, listRequest, redeemCreditRequest } from '../credits/fixtures';
import { walkPages } from '../support/pages';
import { expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { percentageCoupon, redeemRequest, sameTerms } from './fixtures';

describe('metadata on coupons, customer credits and redemptions', () => {
  const t = useTenantClients();
  const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k.${i}-_`, 'v'.repeat(500)]));

  it('stores and returns metadata as given on coupons, credits and redemptions', async () => {
    const coupon = (await t.coupons.createCoupon(lifetime({ metadata: many }))).coupon!;
    expect(coupon.metadata).to.deep.equal(many);
    expect((await t.coupons.getCoupon({ id: coupon.id })).coupon!.metadata).to.deep.equal(many);
    const credit = (await t.credits.createCustomerCredit(issueRequest(coupon.id, 'c', { metadata: { tier: 'gold', empty: '' } }))).credit!;
    expect(credit.metadata).to.deep.equal({ tier: 'gold', empty: '' });
    const [batched] = (await t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: [{ customerId: 'c', metadata: { tier: 'silver' } }] })).credits;
    expect(batched!.metadata).to.deep.equal({ tier: 'silver' });
    const viaCredit = (await t.credits.redeemCustomerCredit(redeemCreditRequest('c', credit.id, { metadata: { order: 'o-1' } }))).redemption!;
    expect(viaCredit.metadata).to.deep.equal({ order: 'o-1' });
    // Keys are ASCII only: the whole request is refused.
    await expectError(t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c', { metadata: { order: 'o-2', 'ünï': 'x' } })), status.INVALID_ARGUMENT);
    const ok = (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c', { metadata: { order: 'o-2', note: 'Ω ✓' } }))).redemption!;
    expect(ok.metadata).to.deep.equal({ order: 'o-2', note: 'Ω ✓' });
    const listed = (await t.coupons.listCouponRedemptions({ couponId: coupon.id })).redemptions;
    expect(listed.map((r) => r.metadata)).to.deep.equal([{ order: 'o-2', note: 'Ω ✓' }, { order: 'o-1' }]);
  });

  it('refuses metadata past its limits, naming every bad pair, and writes nothing', async () => {
    const tooMany = { ...many, extra: 'x' };
    const err = await expectError(t.coupons.createCoupon(percentageCoupon({ metadata: tooMany })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(err.fields)).to.deep.equal(['metadata']);
    const bad = { 'bad key': 'x', ['k'.repeat(41)]: 'x', long: 'v'.repeat(501), ctl: 'a\u0001b' };
    const coupon = (await t.coupons.createCoupon(lifetime())).coupon!;
    const onRedeem = await expectError(t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c', { metadata: bad })), status.INVALID_ARGUMENT);
    expect(Object.keys(onRedeem.fields).sort()).to.deep.equal(['metadata["bad key"]', 'metadata["ctl"]', 'metadata["long"]', `metadata["${'k'.repeat(41)}"]`].sort());
    const onBatch = await expectError(
      t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits: [{ customerId: 'a' }, { customerId: 'b', metadata: { 'bad key': '' } }] }),
      status.INVALID_ARGUMENT,
    );
    expect(Object.keys(onBatch.fields)).to.deep.equal(['credits[1].metadata["bad key"]']);
    const onUpdate = await expectError(t.coupons.updateCoupon(sameTerms(coupon, { metadata: tooMany })), status.INVALID_ARGUMENT);
    expect(Object.keys(onUpdate.fields)).to.deep.equal(['metadata']);
    await expectError(t.coupons.listCouponRedemptions({ metadata: { 'bad key': 'x' } }), status.INVALID_ARGUMENT);
    expect((await t.coupons.listCouponRedemptions({})).redemptions).to.have.length(0);
    expect((await t.credits.listCustomerCredits(listRequest('a'))).credits).to.have.length(0);
  });

  it('filters ListCouponRedemptions and ListCustomerCredits on every given pair, across pages, with tokens bound to the filter', async () => {
    const coupon = (await t.coupons.createCoupon(lifetime())).coupon!;
    for (let i = 0; i < 12; i++) {
      const metadata = { shop: i % 2 === 0 ? 'eu' : 'us', batch: String(i % 3) };
      await t.coupons.redeemCoupon(redeemRequest(coupon.code, `c${i}`, { metadata }));
      await t.credits.createCustomerCredit(issueRequest(coupon.id, 'same', { metadata }));
    }
    const redemptions = await walkPages(
      (pageToken) => t.coupons.listCouponRedemptions({ pageSize: 2, pageToken, metadata: { shop: 'eu', batch: '0' } }),
      (page) => page.redemptions,
    );
    expect(redemptions.map((r) => r.customerId)).to.deep.equal(['c6', 'c0']);
    const credits = await walkPages(
      (pageToken) => t.credits.listCustomerCredits(listRequest('same', { pageSize: 1, pageToken, metadata: { batch: '1' } })),
      (page) => page.credits,
    );
    expect(credits.map((c) => c.metadata)).to.deep.equal([
      { shop: 'eu', batch: '1' },
      { shop: 'us', batch: '1' },
      { shop: 'eu', batch: '1' },
      { shop: 'us', batch: '1' },
    ]);
    expect((await t.coupons.listCouponRedemptions({ metadata: { shop: 'mars' } })).redemptions).to.deep.equal([]);
    // A token of one filter is refused with another.
    const first = await t.coupons.listCouponRedemptions({ pageSize: 1, metadata: { shop: 'eu' } });
    await expectError(t.coupons.listCouponRedemptions({ pageSize: 1, pageToken: first.nextPageToken, metadata: { shop: 'us' } }), status.INVALID_ARGUMENT);
    // ... but the order the pairs were sent in does not matter.
    const both = await t.coupons.listCouponRedemptions({ pageSize: 1, metadata: { shop: 'eu', batch: '0' } });
    await t.coupons.listCouponRedemptions({ pageSize: 1, pageToken: both.nextPageToken, metadata: { batch: '0', shop: 'eu' } });
  });

  // A one-pair filter is found through coupon_redemptions_metadata (GIN,
  // containment); asked in a way the index cannot answer (or the index
  // made partial without the filter saying `metadata <> '{}'`: 4,000 rows
  // read), it walks the tenant's redemptions.
  it("serves a one-pair filter of ListCouponRedemptions from the metadata index, not from the tenant's redemptions", async function () {
    this.timeout(60_000);
    const coupon = (await t.coupons.createCoupon(lifetime())).coupon!;
    const item = (customerId: string, metadata: Record<string, string>): RedemptionItem => ({
      tenantId: t.tenant.id,
      target: { code: coupon.code },
      request: { customerId, planId: undefined, productId: undefined, amount: undefined, holdUntil: undefined, metadata },
      doneBy: 'index-test',
      validateOnly: false,
    });
    for (let start = 0; start < 2_000; start += 500) {
      await REDEMPTIONS.runAll(
        t.server.dataSource.manager,
        Array.from({ length: 500 }, (_, k) => item(`m-${start + k}`, { order_id: `${t.tenant.id}/${start + k}` })),
      );
      await REDEMPTIONS.runAll(t.server.dataSource.manager, Array.from({ length: 500 }, (_, k) => item(`e-${start + k}`, {})));
    }
    // (Values unique to the tenant: the index is every tenant's, and this
    // database keeps other runs' rows.)
    await t.server.dataSource.query(`ANALYZE coupon_redemptions`);

    const { found, read } = await t.server.dataSource.transaction(async (manager) => {
      const rowsRead = async () => {
        const [row]: Array<{ seq_tup_read: string; idx_tup_fetch: string }> = await manager.query(
          `SELECT seq_tup_read, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relid = 'coupon_redemptions'::regclass`,
        );
        return Number(row!.seq_tup_read) + Number(row!.idx_tup_fetch);
      };
      const before = await rowsRead();
      const page = await new CouponRepository(manager).listRedemptions(t.tenant.id, { metadata: { order_id: `${t.tenant.id}/5` } }, undefined, 11, new Date());
      return { found: page, read: (await rowsRead()) - before };
    });
    expect(found.map((r) => r.customerId)).to.deep.equal(['m-5']);
    expect(read, 'rows of coupon_redemptions read for a filter matching one of 4,000').to.be.at.most(2);
  });
});
