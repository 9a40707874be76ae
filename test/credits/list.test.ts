import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreditState, type CustomerCredit, type ListCustomerCreditsRequest } from '../../gen/credits/v1/credit_service';
import { credits } from '../support/server';
import { walkPages } from '../support/pages';
import { expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { creditContext, lifetime, limited, listRequest, once, redeemCreditRequest, sleep, type CreditClient } from './fixtures';

type Flags = Pick<ListCustomerCreditsRequest, 'includeRedeemed' | 'includeExpired' | 'includeRevoked' | 'multiUse'>;

function walk(client: CreditClient, request: ListCustomerCreditsRequest): Promise<CustomerCredit[]> {
  return walkPages(
    (pageToken) => client.listCustomerCredits({ ...request, pageToken }),
    (page) => {
      expect(page.credits.length).to.be.at.most(request.pageSize || 10);
      return page.credits;
    },
  );
}

describe('CreditService: ListCustomerCredits', () => {
  const t = creditContext();

  it('filters by state and multi_use in every combination, newest first, with states computed at the time of the call', async function () {
    this.timeout(30_000);
    const [onceCoupon, twoCoupon, threeCoupon, lifetimeCoupon] = [
      await t.coupon(once()),
      await t.coupon(limited(2)),
      await t.coupon(limited(3)),
      await t.coupon(lifetime()),
    ];
    const customer = 'member-7';
    const redeem = (credit: CustomerCredit) => t.credits.redeemCustomerCredit(redeemCreditRequest(customer, credit.id));
    const revoke = (credit: CustomerCredit) => t.credits.revokeCustomerCredit({ customerId: customer, creditId: credit.id });
    const soon = () => new Date(Date.now() + 1_500);

    // Each state with a single-use and a multi-use credit; expected: [credit, state, multiUse] in creation order.
    const made: Array<{ id: string; state: CreditState; multiUse: boolean }> = [];
    const add = (credit: CustomerCredit, state: CreditState) => made.push({ id: credit.id, state, multiUse: credit.multiUse });

    const expiringSingle = await t.issue(onceCoupon.id, customer, { expireTime: soon() });
    add(expiringSingle, CreditState.CREDIT_STATE_EXPIRED);
    const expiringMulti = await t.issue(threeCoupon.id, customer, { expireTime: soon() });
    await redeem(expiringMulti); // partly used, then expires: EXPIRED
    add(expiringMulti, CreditState.CREDIT_STATE_EXPIRED);
    add(await t.issue(onceCoupon.id, customer), CreditState.CREDIT_STATE_ACTIVE);
    add(await t.issue(lifetimeCoupon.id, customer), CreditState.CREDIT_STATE_ACTIVE);
    const partly = await t.issue(threeCoupon.id, customer);
    await redeem(partly);
    add(partly, CreditState.CREDIT_STATE_ACTIVE);
    const redeemedSingle = await t.issue(onceCoupon.id, customer);
    await redeem(redeemedSingle);
    add(redeemedSingle, CreditState.CREDIT_STATE_REDEEMED);
    const redeemedMulti = await t.issue(twoCoupon.id, customer);
    await redeem(redeemedMulti);
    await redeem(redeemedMulti);
    add(redeemedMulti, CreditState.CREDIT_STATE_REDEEMED);
    const revokedSingle = await t.issue(onceCoupon.id, customer);
    await revoke(revokedSingle);
    add(revokedSingle, CreditState.CREDIT_STATE_REVOKED);
    const revokedMulti = await t.issue(lifetimeCoupon.id, customer);
    await revoke(revokedMulti);
    add(revokedMulti, CreditState.CREDIT_STATE_REVOKED);
    // Another customer's credits never show.
    await t.issue(onceCoupon.id, 'someone-else');
    await t.issue(lifetimeCoupon.id, 'someone-else');

    expect(made.map((m) => m.multiUse)).to.deep.equal([false, true, false, true, true, false, true, false, true]);
    await sleep(Math.max(0, expiringMulti.expireTime!.getTime() - Date.now()) + 50);

    const newestFirst = [...made].reverse();
    let combinations = 0;
    for (const includeRedeemed of [false, true]) {
      for (const includeExpired of [false, true]) {
        for (const includeRevoked of [false, true]) {
          for (const multiUse of [undefined, true, false]) {
            const flags: Flags = { includeRedeemed, includeExpired, includeRevoked, multiUse };
            const states = new Set([CreditState.CREDIT_STATE_ACTIVE]);
            if (includeRedeemed) states.add(CreditState.CREDIT_STATE_REDEEMED);
            if (includeExpired) states.add(CreditState.CREDIT_STATE_EXPIRED);
            if (includeRevoked) states.add(CreditState.CREDIT_STATE_REVOKED);
            const expected = newestFirst.filter((m) => states.has(m.state) && (multiUse === undefined || m.multiUse === multiUse));
            const page = await t.credits.listCustomerCredits(listRequest(customer, { ...flags, pageSize: 100 }));
            expect(
              page.credits.map((c) => ({ id: c.id, state: c.state, multiUse: c.multiUse })),
              JSON.stringify(flags),
            ).to.deep.equal(expected);
            expect(page.nextPageToken).to.equal('');
            combinations++;
          }
        }
      }
    }
    expect(combinations).to.equal(24);

    // Listed credits are the same as GetCustomerCredit answers.
    const everything = await walk(t.credits, listRequest(customer, { includeRedeemed: true, includeExpired: true, includeRevoked: true, pageSize: 2 }));
    expect(everything.map((c) => c.id)).to.deep.equal(newestFirst.map((m) => m.id));
    for (const credit of everything) {
      expect((await t.credits.getCustomerCredit({ customerId: customer, creditId: credit.id })).credit).to.deep.equal(credit);
    }
  });

  it('pages newest first; a walk sees every credit that existed when it began exactly once while credits are issued', async () => {
    const coupon = await t.coupon(lifetime());
    const issued: string[] = [];
    for (let i = 0; i < 7; i++) issued.push((await t.issue(coupon.id, 'c')).id);
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await t.credits.listCustomerCredits(listRequest('c', { pageSize: 3, pageToken }));
      seen.push(...page.credits.map((c) => c.id));
      pageToken = page.nextPageToken;
      await t.issue(coupon.id, 'c'); // newer than the walk: not part of it
    } while (pageToken !== '');
    expect(seen).to.deep.equal([...issued].reverse());
    // page_size 0 means 10 (there are 7 + 3 + 1 now).
    await t.issue(coupon.id, 'c');
    const first = await t.credits.listCustomerCredits(listRequest('c'));
    expect(first.credits).to.have.length(10);
    expect(first.nextPageToken).to.not.equal('');
  });

  it('refuses a token used with other filters, another customer or another tenant, and a negative page size', async () => {
    const coupon = await t.coupon(once());
    for (let i = 0; i < 3; i++) await t.issue(coupon.id, 'c');
    const page = await t.credits.listCustomerCredits(listRequest('c', { pageSize: 1 }));
    const pageToken = page.nextPageToken;
    await t.credits.listCustomerCredits(listRequest('c', { pageSize: 1, pageToken }));
    for (const other of [
      listRequest('c', { pageSize: 1, pageToken, includeRevoked: true }),
      listRequest('c', { pageSize: 1, pageToken, multiUse: false }),
      listRequest('d', { pageSize: 1, pageToken }),
      listRequest('c', { pageSize: 1, pageToken: `${pageToken}x` }),
    ]) {
      const err = await expectError(t.credits.listCustomerCredits(other), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(err.fields).to.have.property('page_token');
    }
    const otherTenant = await newTenant(t.server.dataSource);
    const theirs = credits(t.server.address, otherTenant.readKey);
    try {
      await expectError(theirs.listCustomerCredits(listRequest('c', { pageSize: 1, pageToken })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    } finally {
      theirs.close();
    }
    const err = await expectError(t.credits.listCustomerCredits(listRequest('', { pageSize: -1 })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(err.fields).sort()).to.deep.equal(['customer_id', 'page_size']);
  });

  it('works with the read scope alone', async () => {
    const coupon = await t.coupon(once());
    const credit = await t.issue(coupon.id, 'c');
    const reader = credits(t.server.address, t.tenant.readKey);
    try {
      expect((await reader.listCustomerCredits(listRequest('c'))).credits.map((c) => c.id)).to.deep.equal([credit.id]);
      expect((await reader.getCustomerCredit({ customerId: 'c', creditId: credit.id })).credit!.id).to.equal(credit.id);
    } finally {
      reader.close();
    }
  });
});
