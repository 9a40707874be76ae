import { expect } from 'chai';
import { CouponRepository, type RedeemRow } from '../../src/coupons/coupon.repository';
import { creditContext, lifetime } from '../credits/fixtures';
import { fixedCoupon, percentageCoupon, redeemRequestJson as request } from './fixtures';

/*
 * coupon_redeem sends a coupon's terms on the first row of that coupon only
 * (repeat_terms false) and CouponRepository.redeem copies them to the rest.
 * The rows it answers must be exactly the rows of the statement that repeats
 * them (the default, which replicas of a rolling deploy that predate the
 * parameter call, as checked here too): the same group is run each way on
 * the same data, each rolled back but the last.
 */
describe('coupon_redeem: a coupon\'s terms sent once per statement', () => {
  const t = creditContext();

  /** The columns that differ between two runs of one group (what each run made, and when) as whether they are set. */
  const made = (row: RedeemRow) => {
    const { redemption_id, redemption_seq, redemption_time, cr_last_redeem_time, ...rest } = row;
    return { ...rest, made: [redemption_id, redemption_seq, redemption_time, cr_last_redeem_time].map((value) => value !== null) };
  };

  it('answers every row with its coupon\'s terms, as the statement that repeats them does', async () => {
    const expires = new Date(Date.now() + 86_400_000);
    const a = await t.coupon(
      percentageCoupon({
        name: 'Plans and products',
        limitedToPlans: ['gold', 'silver'],
        excludedFromProducts: ['p-x'],
        expireTime: expires,
        maxRedemptions: 50,
        metadata: { campaign: 'spring', tier: 'a' },
      }),
    );
    const b = await t.coupon(fixedCoupon({ name: 'Fixed, per customer', maxRedemptionsPerCustomer: 1, metadata: { campaign: 'b' } }));
    const c = await t.coupon(lifetime({ name: 'Credits', metadata: { source: 'membership' } }));
    const credit1 = await t.issue(c.id, 'cust-1');
    const credit2 = await t.issue(c.id, 'cust-2');

    const group = [
      request({ code: a.code }, 'cust-1', { plan_id: 'gold' }),
      request({ code: b.code }, 'cust-1', { amount: '1000', currency_code: 'USD' }),
      request({ credit_id: credit1.id }, 'cust-1'),
      request({ code: a.code }, 'cust-2', { plan_id: 'silver', validate_only: true }),
      request({ code: a.code }, 'cust-3'), // no plan: COUPON_NOT_APPLICABLE
      request({ code: b.code }, 'cust-1', { amount: '1000', currency_code: 'USD' }), // COUPON_CUSTOMER_LIMIT_REACHED
      request({ code: 'NO-SUCH-CODE' }, 'cust-1'), // COUPON_NOT_FOUND
      request({ credit_id: credit2.id }, 'cust-2'),
      request({ code: a.code.toLowerCase() }, 'cust-4', { plan_id: 'gold', hold_until: new Date(Date.now() + 600_000).toISOString() }),
      request({ credit_id: credit1.id }, 'cust-1'),
    ];
    const json = JSON.stringify(group);

    const { repeated, once, asBefore } = await t.server.dataSource.transaction(async (manager) => {
      const rows = async (sql: string, values: unknown[]) => (await manager.query(sql, values)) as RedeemRow[];
      const way = async (sql: string, values: unknown[]) => {
        await manager.query('SAVEPOINT one_way');
        const answered = await rows(sql, values);
        await manager.query('ROLLBACK TO SAVEPOINT one_way');
        return answered;
      };
      return {
        repeated: await way(`SELECT * FROM coupon_redeem($1::uuid, $2::jsonb, true)`, [t.tenant.id, json]),
        once: await way(`SELECT * FROM coupon_redeem($1::uuid, $2::jsonb, false)`, [t.tenant.id, json]),
        // How a replica that predates the parameter calls it.
        asBefore: await way(`SELECT * FROM coupon_redeem($1::uuid, $2::jsonb)`, [t.tenant.id, json]),
      };
    });
    expect(asBefore.map(made), 'without the parameter: every row with its terms').to.deep.equal(repeated.map(made));
    expect(repeated.map((row) => row.reason)).to.deep.equal([
      null, null, null, null, 'COUPON_NOT_APPLICABLE', 'COUPON_CUSTOMER_LIMIT_REACHED', 'COUPON_NOT_FOUND', null, null, null,
    ]);
    // Sent once: the terms of a coupon's later rows are NULL, its id and counts are not.
    expect(once.map((row) => [row.c_id === null ? null : row.c_id === a.id ? 'a' : row.c_id === b.id ? 'b' : 'c', row.c_code === null ? 'no terms' : 'terms'])).to.deep.equal([
      ['a', 'terms'], ['b', 'terms'], ['c', 'terms'], ['a', 'no terms'], ['a', 'no terms'], ['b', 'no terms'], [null, 'no terms'], ['c', 'no terms'], ['a', 'no terms'], ['c', 'no terms'],
    ]);
    expect(once.filter((row) => row.c_id !== null).every((row) => row.c_confirmed !== null && row.c_live !== null), 'counts on every row').to.equal(true);

    const answered = await new CouponRepository(t.server.dataSource.manager).redeem(t.tenant.id, group);
    expect(answered.map(made)).to.deep.equal(repeated.map(made));
    expect(answered[3]!.c_metadata).to.deep.equal({ campaign: 'spring', tier: 'a' });
    expect(answered[8]!.c_limited_to_plans).to.deep.equal(['gold', 'silver']);
  });
});
