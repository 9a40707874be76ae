import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CouponType, Frequency, type Coupon } from '../../gen/credits/v1/coupon_service';
import { coupons } from '../support/server';
import { expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { walkPages } from '../support/pages';
import { useTenantClients } from '../support/tenant-clients';
import { fixedCoupon, percentageCoupon, redeemRequest, sameTerms, uniqueCode } from './fixtures';

describe('CouponService coupons', () => {
  const t = useTenantClients();

  it('creates a percentage coupon and reads it back by id and by code ignoring case', async () => {
    const code = uniqueCode('Spring-');
    const before = Date.now();
    const { coupon } = await t.coupons.createCoupon(
      percentageCoupon({ code, name: 'Spring sale', percentage: 15, limitedToPlans: ['pro', 'basic', 'pro'], excludedFromProducts: ['addon:x'] }),
    );
    const c = coupon!;
    expect(c.id).to.match(/^[0-9a-f-]{36}$/);
    expect(c).to.deep.include({
      code,
      name: 'Spring sale',
      type: CouponType.COUPON_TYPE_PERCENTAGE,
      percentage: 15,
      fixedAmount: undefined,
      frequency: Frequency.FREQUENCY_ONCE,
      frequencyInterval: undefined,
      maxRedemptions: undefined,
      maxRedemptionsPerCustomer: undefined,
      expireTime: undefined,
      enabled: true,
      redeemed: false,
      redemptionCount: 0n,
    });
    expect(c.limitedToPlans).to.deep.equal(['basic', 'pro']);
    expect(c.excludedFromPlans).to.deep.equal([]);
    expect(c.excludedFromProducts).to.deep.equal(['addon:x']);
    expect(c.createTime!.getTime()).to.be.within(before - 5_000, Date.now() + 5_000);
    expect(c.updateTime!.getTime()).to.equal(c.createTime!.getTime());

    expect((await t.coupons.getCoupon({ id: c.id })).coupon).to.deep.equal(c);
    expect((await t.coupons.getCoupon({ code: code.toLowerCase() })).coupon).to.deep.equal(c);
    expect((await t.coupons.getCoupon({ code: code.toUpperCase() })).coupon).to.deep.equal(c);
  });

  it('creates a fixed-amount coupon with limits, expiry and the default currency', async () => {
    const expireTime = new Date(Date.now() + 86_400_000);
    const { coupon } = await t.coupons.createCoupon(
      fixedCoupon({
        fixedAmount: { amount: 9007199254740993n, currencyCode: '' },
        frequency: Frequency.FREQUENCY_LIMITED,
        frequencyInterval: 3,
        maxRedemptions: 100,
        maxRedemptionsPerCustomer: 2,
        expireTime,
        enabled: false,
      }),
    );
    expect(coupon).to.deep.include({
      type: CouponType.COUPON_TYPE_FIXED_AMOUNT,
      percentage: undefined,
      fixedAmount: { amount: 9007199254740993n, currencyCode: 'USD' },
      frequency: Frequency.FREQUENCY_LIMITED,
      frequencyInterval: 3,
      maxRedemptions: 100,
      maxRedemptionsPerCustomer: 2,
      enabled: false,
    });
    expect(coupon!.expireTime!.getTime()).to.equal(expireTime.getTime());
    const got = await t.coupons.getCoupon({ id: coupon!.id });
    expect(got.coupon!.fixedAmount!.amount).to.equal(9007199254740993n);
  });

  describe('validation lists every bad field at once', () => {
    it('on a percentage coupon', async () => {
      const err = await expectError(
        t.coupons.createCoupon(
          percentageCoupon({
            code: '',
            name: 'x'.repeat(256),
            percentage: 101,
            fixedAmount: { amount: 100n, currencyCode: 'USD' },
            frequency: Frequency.FREQUENCY_LIMITED,
            maxRedemptions: 0,
            maxRedemptionsPerCustomer: -1,
            expireTime: new Date(Date.now() - 1000),
            limitedToPlans: ['p1', 'bad id!'],
            excludedFromPlans: ['p1'],
            limitedToProducts: ['x'],
            excludedFromProducts: ['x', 'y'],
          }),
        ),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(err.fields).sort()).to.deep.equal(
        [
          'code',
          'name',
          'percentage',
          'fixed_amount',
          'frequency_interval',
          'max_redemptions',
          'max_redemptions_per_customer',
          'expire_time',
          'limited_to_plans[1]',
          'limited_to_plans',
          'excluded_from_plans',
          'limited_to_products',
          'excluded_from_products',
        ].sort(),
      );
      expect(err.fields['fixed_amount']).to.contain('absent');
      expect(err.fields['excluded_from_plans']).to.contain('"p1"');
    });

    it('on a fixed-amount coupon', async () => {
      const err = await expectError(
        t.coupons.createCoupon(fixedCoupon({ code: 'A'.repeat(51), percentage: 50, fixedAmount: { amount: 0n, currencyCode: 'usd' }, frequencyInterval: 3 })),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(err.fields).sort()).to.deep.equal(
        ['code', 'percentage', 'fixed_amount.amount', 'fixed_amount.currency_code', 'frequency_interval'].sort(),
      );
      expect(err.fields['percentage']).to.contain('absent');

      const negative = await expectError(
        t.coupons.createCoupon(fixedCoupon({ code: 'SAVE 10', fixedAmount: { amount: -5n, currencyCode: 'XXX' }, frequency: Frequency.FREQUENCY_LIFETIME, frequencyInterval: 1 })),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(negative.fields).sort()).to.deep.equal(['code', 'fixed_amount.amount', 'fixed_amount.currency_code', 'frequency_interval']);

      const missing = await expectError(t.coupons.createCoupon(fixedCoupon({ fixedAmount: undefined })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(missing.fields)).to.deep.equal(['fixed_amount']);
    });

    it('on missing type, frequency and percentage', async () => {
      const unset = await expectError(
        t.coupons.createCoupon(percentageCoupon({ type: CouponType.COUPON_TYPE_UNSPECIFIED, frequency: Frequency.FREQUENCY_UNSPECIFIED, percentage: 0 })),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(unset.fields).sort()).to.deep.equal(['frequency', 'percentage', 'type']);
      const noPercentage = await expectError(t.coupons.createCoupon(percentageCoupon({ percentage: undefined })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(noPercentage.fields)).to.deep.equal(['percentage']);
      const unknownEnum = await expectError(
        t.coupons.createCoupon(percentageCoupon({ type: 9 as CouponType, frequency: 9 as Frequency })),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(unknownEnum.fields).sort()).to.deep.equal(['frequency', 'type']);
    });

    it('accepts the limits of each field', async () => {
      const { coupon } = await t.coupons.createCoupon(
        percentageCoupon({
          code: uniqueCode('X').padEnd(50, 'x'),
          name: 'n'.repeat(255),
          percentage: 100,
          maxRedemptions: 1,
          maxRedemptionsPerCustomer: 2147483647,
        }),
      );
      expect(coupon!.code).to.have.length(50);
      expect((await t.coupons.createCoupon(percentageCoupon({ percentage: 1, frequency: Frequency.FREQUENCY_LIMITED, frequencyInterval: 1 }))).coupon!.percentage).to.equal(1);
    });
  });

  it('refuses a code already used in the tenant, ignoring case, on create and on update', async () => {
    const code = uniqueCode('Dup-');
    await t.coupons.createCoupon(percentageCoupon({ code }));
    const err = await expectError(t.coupons.createCoupon(fixedCoupon({ code: code.toLowerCase() })), status.ALREADY_EXISTS, 'COUPON_CODE_ALREADY_EXISTS');
    expect(err.metadata).to.include({ code: code.toLowerCase() });

    const other = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    await expectError(t.coupons.updateCoupon(sameTerms(other, { code: code.toUpperCase() })), status.ALREADY_EXISTS, 'COUPON_CODE_ALREADY_EXISTS');
    // Changing only the case of its own code is fine.
    const recased = await t.coupons.updateCoupon(sameTerms(other, { code: other.code.toLowerCase() }));
    expect(recased.coupon!.code).to.equal(other.code.toLowerCase());
  });

  it('answers NOT_FOUND for unknown ids and codes and INVALID_ARGUMENT for bad lookups', async () => {
    await expectError(t.coupons.getCoupon({ id: '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b' }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    await expectError(t.coupons.getCoupon({ code: 'NOPE' }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    expect(Object.keys((await expectError(t.coupons.getCoupon({}), status.INVALID_ARGUMENT, 'VALIDATION_FAILED')).fields)).to.deep.equal(['id']);
    await expectError(t.coupons.getCoupon({ id: 'not-a-uuid' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    await expectError(t.coupons.getCoupon({ code: 'no spaces' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    const missing = percentageCoupon();
    await expectError(t.coupons.updateCoupon({ ...missing, id: '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b' }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    await expectError(t.coupons.deleteCoupon({ id: '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b' }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    await expectError(t.coupons.deleteCoupon({ id: 'x' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
  });

  it('names the missing coupon in COUPON_NOT_FOUND metadata as coupon_id (or code), in the coupon and the credit RPCs alike', async () => {
    const id = '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b';
    expect((await expectError(t.coupons.getCoupon({ id }), status.NOT_FOUND, 'COUPON_NOT_FOUND')).metadata).to.deep.equal({ coupon_id: id });
    expect((await expectError(t.coupons.deleteCoupon({ id }), status.NOT_FOUND, 'COUPON_NOT_FOUND')).metadata).to.deep.equal({ coupon_id: id });
    expect((await expectError(t.coupons.getCoupon({ code: 'NOPE' }), status.NOT_FOUND, 'COUPON_NOT_FOUND')).metadata).to.deep.equal({ code: 'NOPE' });
    const err = await expectError(t.credits.createCustomerCredit({ couponId: id, customerId: 'c', membershipId: '' }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    expect(err.metadata).to.deep.equal({ coupon_id: id });
  });

  it('replaces every writable field on update (PUT) and writes nothing when nothing changes', async () => {
    const created = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 10, limitedToPlans: ['a'] }))).coupon!;
    const unchanged = (await t.coupons.updateCoupon(sameTerms(created, { limitedToPlans: ['a', 'a'] }))).coupon!;
    expect(unchanged).to.deep.equal(created);

    const expireTime = new Date(Date.now() + 3_600_000);
    const code = uniqueCode('New-');
    const updated = (
      await t.coupons.updateCoupon({
        id: created.id,
        code,
        name: 'Now fixed',
        type: CouponType.COUPON_TYPE_FIXED_AMOUNT,
        fixedAmount: { amount: 250n, currencyCode: 'EUR' },
        frequency: Frequency.FREQUENCY_LIFETIME,
        maxRedemptionsPerCustomer: 1,
        expireTime,
        limitedToPlans: [],
        excludedFromPlans: ['free'],
        limitedToProducts: ['p2', 'p1'],
        excludedFromProducts: [],
      })
    ).coupon!;
    expect(updated).to.deep.include({
      id: created.id,
      code,
      name: 'Now fixed',
      type: CouponType.COUPON_TYPE_FIXED_AMOUNT,
      percentage: undefined,
      fixedAmount: { amount: 250n, currencyCode: 'EUR' },
      frequency: Frequency.FREQUENCY_LIFETIME,
      maxRedemptions: undefined,
      maxRedemptionsPerCustomer: 1,
      enabled: true,
      redeemed: false,
    });
    expect(updated.limitedToPlans).to.deep.equal([]);
    expect(updated.excludedFromPlans).to.deep.equal(['free']);
    expect(updated.limitedToProducts).to.deep.equal(['p1', 'p2']);
    expect(updated.expireTime!.getTime()).to.equal(expireTime.getTime());
    expect(updated.createTime).to.deep.equal(created.createTime);
    expect(updated.updateTime!.getTime()).to.be.greaterThan(created.updateTime!.getTime());
    expect((await t.coupons.getCoupon({ id: created.id })).coupon).to.deep.equal(updated);

    const err = await expectError(
      t.coupons.updateCoupon(sameTerms(updated, { id: 'nope', percentage: 5, maxRedemptions: 0 })),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(err.fields).sort()).to.deep.equal(['id', 'max_redemptions', 'percentage']);
    await expectError(
      t.coupons.updateCoupon(sameTerms(updated, { expireTime: new Date(Date.now() - 60_000) })),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    // A passed expiry with another bad field: both at once, also when no coupon has that id.
    const passed = { name: '', expireTime: new Date(Date.now() - 60_000) };
    const both = await expectError(t.coupons.updateCoupon(sameTerms(updated, passed)), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(both.fields).sort()).to.deep.equal(['expire_time', 'name']);
    const unknown = await expectError(
      t.coupons.updateCoupon(sameTerms(updated, { ...passed, id: '00000000-0000-4000-8000-000000000000' })),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(unknown.fields).sort()).to.deep.equal(['expire_time', 'name']);
    expect((await t.coupons.getCoupon({ id: created.id })).coupon).to.deep.equal(updated);
  });

  it('deletes a coupon that was never redeemed and frees its code', async () => {
    const created = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    expect(await t.coupons.deleteCoupon({ id: created.id })).to.deep.equal({});
    await expectError(t.coupons.getCoupon({ id: created.id }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    await expectError(t.coupons.deleteCoupon({ id: created.id }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
    const again = (await t.coupons.createCoupon(percentageCoupon({ code: created.code }))).coupon!;
    expect(again.id).to.not.equal(created.id);
  });

  it('freezes a redeemed coupon: update and delete are refused, disabling and re-enabling work', async () => {
    const created = (await t.coupons.createCoupon(percentageCoupon({ limitedToPlans: ['a', 'b'], maxRedemptions: 3 }))).coupon!;
    await t.coupons.redeemCoupon(redeemRequest(created.code, 'cust-1', { planId: 'a' }));
    const redeemed = (await t.coupons.getCoupon({ id: created.id })).coupon!;
    expect(redeemed).to.deep.include({ redeemed: true, redemptionCount: 1n });

    for (const change of [
      { name: 'Renamed' },
      { code: uniqueCode() },
      { percentage: 20 },
      { maxRedemptions: undefined },
      { maxRedemptions: 4 },
      { maxRedemptionsPerCustomer: 1 },
      { expireTime: new Date(Date.now() + 60_000) },
      { limitedToPlans: ['a'] },
      { excludedFromProducts: ['z'] },
      { frequency: Frequency.FREQUENCY_LIFETIME },
    ]) {
      const err = await expectError(t.coupons.updateCoupon(sameTerms(redeemed, change)), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');
      expect(err.message).to.contain('only enabled and metadata may change');
    }
    const both = await expectError(t.coupons.updateCoupon(sameTerms(redeemed, { name: 'Renamed', enabled: false })), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');
    expect(both.metadata['changed_fields']).to.equal('name');
    await expectError(t.coupons.deleteCoupon({ id: created.id }), status.FAILED_PRECONDITION, 'COUPON_REDEEMED');

    // Disabling (with the same terms, lists in any order) stays possible.
    const disabled = (await t.coupons.updateCoupon(sameTerms(redeemed, { enabled: false, limitedToPlans: ['b', 'a'] }))).coupon!;
    expect(disabled).to.deep.include({ enabled: false, redemptionCount: 1n, name: redeemed.name });
    await expectError(t.coupons.redeemCoupon(redeemRequest(created.code, 'cust-2', { planId: 'a' })), status.FAILED_PRECONDITION, 'COUPON_DISABLED');
    const enabled = (await t.coupons.updateCoupon(sameTerms(redeemed, { enabled: undefined }))).coupon!;
    expect(enabled.enabled).to.equal(true);
    await t.coupons.redeemCoupon(redeemRequest(created.code, 'cust-2', { planId: 'b' }));
  });

  it('keeps tenants apart: another tenant’s coupon is NOT_FOUND and its codes do not collide', async () => {
    const mine = (await t.coupons.createCoupon(percentageCoupon())).coupon!;
    const other = await newTenant(t.server.dataSource);
    const theirs = coupons(t.server.address, other.rwKey);
    try {
      await expectError(theirs.getCoupon({ id: mine.id }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      await expectError(theirs.getCoupon({ code: mine.code }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      await expectError(theirs.updateCoupon(sameTerms(mine, { enabled: false })), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      await expectError(theirs.deleteCoupon({ id: mine.id }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      await expectError(theirs.redeemCoupon(redeemRequest(mine.code, 'c')), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      await expectError(theirs.validateCoupon(redeemRequest(mine.code, 'c')), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      await expectError(theirs.listCouponRedemptions({ pageSize: 0, pageToken: '', couponId: mine.id, customerId: '' }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      expect((await theirs.listCoupons({ pageSize: 0, pageToken: '', codePrefix: '' })).coupons).to.deep.equal([]);

      // The same code (in another case) is free in the other tenant, and each code names its own tenant's coupon.
      const same = (await theirs.createCoupon(fixedCoupon({ code: mine.code.toLowerCase() }))).coupon!;
      expect((await theirs.getCoupon({ code: mine.code })).coupon!.id).to.equal(same.id);
      expect((await t.coupons.getCoupon({ code: mine.code })).coupon!.id).to.equal(mine.id);
      await expectError(t.coupons.getCoupon({ id: same.id }), status.NOT_FOUND, 'COUPON_NOT_FOUND');
      // Their page token is not ours.
      await theirs.createCoupon(fixedCoupon());
      const page = await theirs.listCoupons({ pageSize: 1, pageToken: '', codePrefix: '' });
      await expectError(t.coupons.listCoupons({ pageSize: 1, pageToken: page.nextPageToken, codePrefix: '' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    } finally {
      theirs.close();
    }
  });

  it('needs the write scope to create and the read scope to read', async () => {
    const reader = coupons(t.server.address, t.tenant.readKey);
    const writer = coupons(t.server.address, t.tenant.writeKey);
    try {
      await expectError(reader.createCoupon(percentageCoupon()), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
      const created = (await writer.createCoupon(percentageCoupon())).coupon!;
      expect((await reader.getCoupon({ id: created.id })).coupon!.id).to.equal(created.id);
      await expectError(writer.getCoupon({ id: created.id }), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
      await expectError(reader.redeemCoupon(redeemRequest(created.code, 'c')), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
    } finally {
      reader.close();
      writer.close();
    }
  });

  describe('ListCoupons', () => {
    function walk(request: { enabled?: boolean; codePrefix: string }, pageSize: number): Promise<Coupon[]> {
      return walkPages(
        (pageToken) => t.coupons.listCoupons({ ...request, pageSize, pageToken }),
        (page) => {
          expect(page.coupons.length).to.be.at.most(pageSize === 0 ? 10 : pageSize);
          return page.coupons;
        },
      );
    }

    it('filters by enabled and by code prefix ignoring case, newest first, across pages', async () => {
      const made: Coupon[] = [];
      for (let i = 0; i < 7; i++) {
        const code = i < 5 ? `Summer_${i}` : `Winter-${i}`;
        made.push((await t.coupons.createCoupon(percentageCoupon({ code, enabled: i % 2 === 0 }))).coupon!);
      }
      const newestFirst = [...made].reverse();
      const ids = (list: Coupon[]) => list.map((c) => c.id);

      expect(ids(await walk({ codePrefix: '' }, 2))).to.deep.equal(ids(newestFirst));
      expect(ids(await walk({ codePrefix: '' }, 0))).to.deep.equal(ids(newestFirst));
      expect(ids(await walk({ codePrefix: 'summer_' }, 2))).to.deep.equal(ids(newestFirst.filter((c) => c.code.startsWith('Summer'))));
      expect(ids(await walk({ codePrefix: 'SUMMER_' }, 100))).to.have.length(5);
      // `_` is literal, not a LIKE wildcard.
      expect(await walk({ codePrefix: 'Summe_' }, 10)).to.deep.equal([]);
      expect(ids(await walk({ enabled: false, codePrefix: '' }, 1))).to.deep.equal(ids(newestFirst.filter((c) => !c.enabled)));
      expect(ids(await walk({ enabled: true, codePrefix: 'win' }, 1))).to.deep.equal(ids(newestFirst.filter((c) => c.enabled && c.code.startsWith('Winter'))));
    });

    it('sees every coupon that existed when a walk began exactly once while coupons are created', async () => {
      const before: string[] = [];
      for (let i = 0; i < 5; i++) before.push((await t.coupons.createCoupon(percentageCoupon())).coupon!.id);
      const seen: string[] = [];
      let pageToken = '';
      do {
        const page = await t.coupons.listCoupons({ pageSize: 2, pageToken, codePrefix: '' });
        seen.push(...page.coupons.map((c) => c.id));
        pageToken = page.nextPageToken;
        await t.coupons.createCoupon(percentageCoupon());
      } while (pageToken !== '');
      expect(seen).to.deep.equal([...before].reverse());
    });

    it('rejects bad page sizes, prefixes and tokens', async () => {
      await t.coupons.createCoupon(percentageCoupon({ code: uniqueCode('a') }));
      await t.coupons.createCoupon(percentageCoupon({ code: uniqueCode('a') }));
      const err = await expectError(t.coupons.listCoupons({ pageSize: -1, pageToken: '', codePrefix: 'a b' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(err.fields).sort()).to.deep.equal(['code_prefix', 'page_size']);
      const page = await t.coupons.listCoupons({ pageSize: 1, pageToken: '', codePrefix: 'A' });
      expect(page.nextPageToken).to.not.equal('');
      const other = await expectError(t.coupons.listCoupons({ pageSize: 1, pageToken: page.nextPageToken, codePrefix: 'B' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(other.fields['page_token']).to.contain('different filters');
      // The prefix is matched ignoring case, so the same prefix in another case is the same filter.
      await t.coupons.listCoupons({ pageSize: 1, pageToken: page.nextPageToken, codePrefix: 'a' });
      await expectError(t.coupons.listCoupons({ pageSize: 1, pageToken: page.nextPageToken, enabled: true, codePrefix: 'A' }), status.INVALID_ARGUMENT);
      await expectError(t.coupons.listCoupons({ pageSize: 1, pageToken: `${page.nextPageToken}x`, codePrefix: 'A' }), status.INVALID_ARGUMENT);
    });
  });
});
