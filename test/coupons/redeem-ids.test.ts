import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { uuidV7 } from '../../src/common/uuid-v7';
import { type RedeemRow } from '../../src/coupons/coupon.repository';
import { creditContext, lifetime } from '../credits/fixtures';
import { UUID_V4, UUID_V7 } from '../support/uuid-v7';
import { percentageCoupon, redeemRequestJson as request } from './fixtures';

/*
 * The service makes a redemption's id and its REDEMPTION_CREATED event's
 * (redeem-coupon.ts); coupon_redeem records an accepted request under
 * them, leaves a refused or validate_only one's unused, and makes its own
 * when a request has none (a replica of a rolling deploy that predates
 * them). Checked on the rows and events the statement writes.
 */
describe('coupon_redeem: ids made by the service', () => {
  const t = creditContext();

  const eventIdsOf = async (redemptionIds: string[]) => {
    const rows: Array<{ id: string; redemption_id: string }> = await t.server.dataSource.query(
      `SELECT e.id, e.redemption_id FROM events e
        WHERE e.tenant_id = $1 AND e.type = 'REDEMPTION_CREATED' AND e.redemption_id = ANY ($2::uuid[])`,
      [t.tenant.id, redemptionIds],
    );
    return new Map(rows.map((row) => [row.redemption_id, row.id]));
  };

  it('records accepted requests under the ids given, uses none of a refused one, and makes them when absent', async () => {
    const coupon = await t.coupon(percentageCoupon({ name: 'Once each', maxRedemptionsPerCustomer: 1 }));
    const credits = await t.coupon(lifetime({ name: 'Credits' }));
    const credit = await t.issue(credits.id, 'cust-ids-2');
    const given = Array.from({ length: 4 }, () => ({ id: uuidV7(), event_id: randomUUID() }));
    const group = [
      request({ code: coupon.code }, 'cust-ids-1', given[0]),
      request({ code: coupon.code }, 'cust-ids-1', given[1]), // COUPON_CUSTOMER_LIMIT_REACHED
      request({ credit_id: credit.id }, 'cust-ids-2', given[2]),
      request({ code: coupon.code }, 'cust-ids-3', { validate_only: true, id: given[3]!.id, event_id: given[3]!.event_id }),
      request({ code: coupon.code }, 'cust-ids-4'), // no ids: the statement's
      request({ code: coupon.code }, 'cust-ids-5', { id: null, event_id: null }),
    ];
    const rows = (await t.server.dataSource.query(`SELECT * FROM coupon_redeem($1::uuid, $2::jsonb, false)`, [
      t.tenant.id,
      JSON.stringify(group),
    ])) as RedeemRow[];

    expect(rows.map((row) => row.reason)).to.deep.equal([null, 'COUPON_CUSTOMER_LIMIT_REACHED', null, null, null, null]);
    expect(rows[0]!.redemption_id).to.equal(given[0]!.id);
    expect(rows[1]!.redemption_id, 'refused: no id').to.equal(null);
    expect(rows[2]!.redemption_id).to.equal(given[2]!.id);
    expect(rows[3]!.redemption_id, 'validate_only: no id').to.equal(null);
    const made = [rows[4]!.redemption_id!, rows[5]!.redemption_id!];
    for (const id of made) {
      expect(id, 'made by the statement: a UUIDv7').to.match(UUID_V7);
      expect(given.map((g) => g.id)).to.not.include(id);
    }

    const recorded: Array<{ id: string }> = await t.server.dataSource.query(
      `SELECT id FROM coupon_redemptions WHERE tenant_id = $1 AND coupon_id = ANY ($2::uuid[]) ORDER BY seq`,
      [t.tenant.id, [coupon.id, credits.id]],
    );
    expect(recorded.map((row) => row.id)).to.deep.equal([given[0]!.id, given[2]!.id, ...made]);

    const events = await eventIdsOf([given[0]!.id, given[1]!.id, given[2]!.id, given[3]!.id, ...made]);
    expect(events.get(given[0]!.id)).to.equal(given[0]!.event_id);
    expect(events.get(given[2]!.id)).to.equal(given[2]!.event_id);
    expect(events.has(given[1]!.id) || events.has(given[3]!.id), 'no event for a refused or validate_only request').to.equal(false);
    const madeEvents = made.map((id) => events.get(id));
    for (const id of madeEvents) expect(id, 'an event id made by the statement').to.match(UUID_V4);
    expect(new Set(madeEvents).size).to.equal(2);
  });
});
