import { expect } from 'chai';
import { CreditState } from '../../gen/credits/v1/credit_service';
import type { RedeemRequestJson } from '../../src/coupons/coupon.repository';
import { redeemRequestJson } from '../coupons/fixtures';
import { expectError } from '../support/status';
import { creditContext, limited, redeemCreditRequest } from './fixtures';
import { status } from '@grpc/grpc-js';

/*
 * coupon_redeem dates a redemption to the millisecond and once counted a
 * credit's new uses only when that moved its last_redeem_time: a statement
 * in the same millisecond as the credit's last redemption wrote its
 * redemption but not the use, and the credit was redeemed past its limit
 * (found in review: two statements back to back, or a server's group
 * commits on a machine faster than this one). Here the two statements run
 * with the database's clock held at one instant: clock_timestamp() of a
 * schema put before pg_catalog in the search_path, for that transaction
 * only (dropped before it commits; cached plans follow the search_path).
 */
describe('CreditService: redemptions of one credit in the same millisecond', () => {
  const t = creditContext();

  /** Runs coupon_redeem of `request` twice, one statement each, in one transaction whose clock stands still. */
  async function redeemTwiceInOneMillisecond(request: RedeemRequestJson): Promise<void> {
    await t.server.dataSource.transaction(async (manager) => {
      await manager.query(`CREATE SCHEMA frozen_clock`);
      const now = (await manager.query(`SELECT date_trunc('milliseconds', clock_timestamp()) AS now`)) as Array<{ now: Date }>;
      await manager.query(`CREATE FUNCTION frozen_clock.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '${now[0]!.now.toISOString()}'::timestamptz $$`);
      await manager.query(`SET LOCAL search_path = frozen_clock, pg_catalog, public`);
      for (let n = 0; n < 2; n++) {
        const rows = (await manager.query(`SELECT reason, redemption_time FROM coupon_redeem($1::uuid, $2::jsonb)`, [t.tenant.id, JSON.stringify([request])])) as Array<{
          reason: string | null;
          redemption_time: Date;
        }>;
        expect([rows[0]!.reason, rows[0]!.redemption_time], `redemption ${n + 1}`).to.deep.equal([null, now[0]!.now]);
      }
      await manager.query(`SET LOCAL search_path = public`);
      await manager.query(`DROP SCHEMA frozen_clock CASCADE`);
    });
  }

  it('counts both uses: a credit of two uses redeemed twice in one millisecond is redeemed, and a third is refused', async () => {
    const coupon = await t.coupon(limited(2));
    const customerId = 'cust-1';
    const credit = await t.issue(coupon.id, customerId);
    await redeemTwiceInOneMillisecond(redeemRequestJson({ credit_id: credit.id }, customerId));
    const got = (await t.credits.getCustomerCredit({ customerId, creditId: credit.id })).credit!;
    expect([got.redemptionCount, got.usesRemaining, got.state]).to.deep.equal([2n, 0, CreditState.CREDIT_STATE_REDEEMED]);
    await expectError(t.credits.redeemCustomerCredit(redeemCreditRequest(customerId, credit.id)), status.FAILED_PRECONDITION, 'CREDIT_ALREADY_REDEEMED');
    const rows = (await t.server.dataSource.query(`SELECT count(*)::int AS n FROM customer_credit_redemptions WHERE credit_id = $1`, [credit.id])) as Array<{ n: number }>;
    expect(rows[0]!.n, 'redemptions of the credit').to.equal(2);
  });
});
