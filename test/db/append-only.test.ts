import { expect } from 'chai';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { coupons, promotionalCredits, sharedServer, type TestServer } from '../support/server';
import { newTenant } from '../support/tenant';
import { percentageCoupon, redeemRequest } from '../coupons/fixtures';

/** SQLSTATE restrict_violation, which the append-only trigger raises. */
const REFUSED = '23001';

async function sqlStateOf(work: Promise<unknown>): Promise<string | undefined> {
  try {
    await work;
    return undefined;
  } catch (err) {
    return (err as { driverError?: { code?: string }; code?: string }).driverError?.code ?? (err as { code?: string }).code;
  }
}

describe('ledger and redemptions are append-only in the database', () => {
  let server: TestServer;

  before(async () => {
    server = await sharedServer();
  });

  /** Runs a statement that would empty a shared table if it were not refused: rolled back whatever happens. */
  async function inRolledBackTransaction(sql: string): Promise<void> {
    const runner = server.dataSource.createQueryRunner();
    await runner.startTransaction();
    try {
      await runner.query(sql);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  }

  it('refuses UPDATE, DELETE and TRUNCATE of promotional_credits and coupon_redemptions, and leaves the rows as they were', async () => {
    const tenant = await newTenant(server.dataSource);
    const ledger = promotionalCredits(server.address, tenant.rwKey);
    const couponClient = coupons(server.address, tenant.rwKey);
    try {
      const { promotionalCredit } = await ledger.addPromotionalCredits({
        customerId: 'c1',
        amount: 100n,
        currencyCode: '',
        description: 'welcome',
        creditType: CreditType.CREDIT_TYPE_UNSPECIFIED,
        reference: '',
      });
      const coupon = await couponClient.createCoupon(percentageCoupon());
      const { redemption } = await couponClient.redeemCoupon(redeemRequest(coupon.coupon!.code, 'c1'));
      const q = (sql: string, params: unknown[] = []) => server.dataSource.query(sql, params);

      expect(await sqlStateOf(q(`UPDATE promotional_credits SET amount = 1 WHERE id = $1`, [promotionalCredit!.id]))).to.equal(REFUSED);
      expect(await sqlStateOf(q(`UPDATE promotional_credits SET description = 'edited' WHERE tenant_id = $1`, [tenant.id]))).to.equal(REFUSED);
      expect(await sqlStateOf(q(`DELETE FROM promotional_credits WHERE id = $1`, [promotionalCredit!.id]))).to.equal(REFUSED);
      expect(await sqlStateOf(inRolledBackTransaction(`TRUNCATE promotional_credits CASCADE`))).to.equal(REFUSED);
      expect(await sqlStateOf(q(`UPDATE coupon_redemptions SET customer_id = 'other' WHERE id = $1`, [redemption!.id]))).to.equal(REFUSED);
      expect(await sqlStateOf(q(`DELETE FROM coupon_redemptions WHERE id = $1`, [redemption!.id]))).to.equal(REFUSED);
      expect(await sqlStateOf(inRolledBackTransaction(`TRUNCATE coupon_redemptions CASCADE`))).to.equal(REFUSED);

      const entries: Array<{ amount: string; description: string }> = await q(`SELECT amount::text, description FROM promotional_credits WHERE tenant_id = $1`, [
        tenant.id,
      ]);
      expect(entries).to.deep.equal([{ amount: '100', description: 'welcome' }]);
      const redemptions: Array<{ customer_id: string }> = await q(`SELECT customer_id FROM coupon_redemptions WHERE tenant_id = $1`, [tenant.id]);
      expect(redemptions).to.deep.equal([{ customer_id: 'c1' }]);
      // Inserting is what the service does, and stays allowed (the API just did it).
    } finally {
      ledger.close();
      couponClient.close();
    }
  });
});
