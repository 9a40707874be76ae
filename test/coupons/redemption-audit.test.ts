import { execFile } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import { verifyRedemptions } from '../../src/coupons/redemption-audit';
import { issueRequest, limited, redeemCreditRequest } from '../credits/fixtures';
import { testDatabaseUrl } from '../support/database';
import { useTenantClients } from '../support/tenant-clients';
import { percentageCoupon, redeemRequest } from './fixtures';
import { inMs } from './footprint';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'credits.js');

describe('redemption counts audit (credits verify)', function () {
  this.timeout(60_000);
  const t = useTenantClients();

  /** Changes a stored count behind the service's back (restored by the returned function). */
  async function tamper(table: 'coupons' | 'customer_credits', id: string, delta: number): Promise<() => Promise<void>> {
    const ds = t.server.dataSource;
    await ds.query(`UPDATE ${table} SET redemption_count = redemption_count + $2 WHERE id = $1`, [id, delta]);
    return async () => void (await ds.query(`UPDATE ${table} SET redemption_count = redemption_count - $2 WHERE id = $1`, [id, delta]));
  }

  async function scenario() {
    const coupon = (await t.coupons.createCoupon(percentageCoupon({ maxRedemptions: 10 }))).coupon!;
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'a'));
    const held = (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'b', { holdUntil: inMs(600_000) }))).redemption!;
    const canceled = (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'c'))).redemption!;
    await t.coupons.cancelCouponRedemption({ redemptionId: canceled.id });
    const creditCoupon = (await t.coupons.createCoupon(limited(3))).coupon!;
    const credit = (await t.credits.createCustomerCredit(issueRequest(creditCoupon.id, 'd'))).credit!;
    const use = (await t.credits.redeemCustomerCredit(redeemCreditRequest('d', credit.id, { holdUntil: inMs(600_000) }))).redemption!;
    await t.coupons.confirmCouponRedemption({ redemptionId: use.id });
    await t.coupons.confirmCouponRedemption({ redemptionId: held.id });
    return { coupon, credit };
  }

  it('finds nothing wrong with held, confirmed and canceled redemptions', async () => {
    await scenario();
    expect(await verifyRedemptions(t.server.dataSource.manager, { tenantId: t.tenant.id })).to.deep.equal([]);
  });

  it('names a coupon and a credit whose stored counts drifted, and credits verify exits 1 printing them', async () => {
    const { coupon, credit } = await scenario();
    const restoreCoupon = await tamper('coupons', coupon.id, 1);
    const restoreCredit = await tamper('customer_credits', credit.id, -1);
    try {
      const problems = await verifyRedemptions(t.server.dataSource.manager, { tenantId: t.tenant.id });
      expect(problems.map((p) => [p.kind, p.customerId, p.currencyCode])).to.deep.equal([
        ['COUPON_REDEMPTION_COUNT_MISMATCH', `coupon ${coupon.code}`, ''],
        ['CREDIT_REDEMPTION_COUNT_MISMATCH', `credit ${credit.id} of d`, ''],
      ]);
      expect(problems[0]!.message).to.equal(
        `tenant ${t.tenant.slug}, coupon ${coupon.code}: stored confirmed count 3 but 2 confirmed redemptions, so redemption_count shows 3 for 2 held or confirmed`,
      );

      const env = { ...process.env, DATABASE_URL: await testDatabaseUrl(), LOG_LEVEL: 'silent' };
      const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [BIN, 'verify'], { env, timeout: 30_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
        ),
      );
      expect(run.code).to.equal(1);
      expect(run.stdout).to.include(`COUPON_REDEMPTION_COUNT_MISMATCH: ${problems[0]!.message}`);
      expect(run.stdout).to.include(`CREDIT_REDEMPTION_COUNT_MISMATCH: ${problems[1]!.message}`);
      expect(run.stderr).to.match(/\b\d+ redemption count problems/);
    } finally {
      await restoreCoupon();
      await restoreCredit();
    }
    expect(await verifyRedemptions(t.server.dataSource.manager, { tenantId: t.tenant.id })).to.deep.equal([]);
  });

  // No foreign key checks these at each write any more (migration
  // 1765300000000): the audit does. The broken rows are written and audited
  // in one transaction that is rolled back (redemptions are append-only).
  it('names a redemption whose coupon does not exist, credit links whose redemption or credit does not exist, and an event of a redemption that does not exist', async () => {
    const { credit } = await scenario();
    const ds = t.server.dataSource;
    const [{ id: redemptionId }] = (await ds.query(
      `SELECT r.id FROM coupon_redemptions r JOIN customer_credit_redemptions l ON l.redemption_id = r.id WHERE r.tenant_id = $1`,
      [t.tenant.id],
    )) as Array<{ id: string }>;
    const ghostCoupon = '00000000-0000-4000-8000-00000000c0de';
    const ghostCredit = '00000000-0000-4000-8000-00000000c4ed';
    const ghostRedemption = '00000000-0000-4000-8000-0000000000ed';
    const rolledBack = new Error('rolled back');
    let problems: Awaited<ReturnType<typeof verifyRedemptions>> = [];
    await ds
      .transaction(async (manager) => {
        const [{ id: orphan }] = (await manager.query(
          `INSERT INTO coupon_redemptions (tenant_id, coupon_id, customer_id, done_by) VALUES ($1, $2, 'ghost', 'audit-test') RETURNING id`,
          [t.tenant.id, ghostCoupon],
        )) as Array<{ id: string }>;
        await manager.query(`UPDATE customer_credit_redemptions SET credit_id = $2 WHERE redemption_id = $1`, [redemptionId, ghostCredit]);
        await manager.query(`INSERT INTO customer_credit_redemptions (redemption_id, tenant_id, credit_id) VALUES ($1, $2, $3)`, [
          ghostRedemption,
          t.tenant.id,
          credit.id,
        ]);
        const [{ id: ghostEvent }] = (await manager.query(
          `INSERT INTO events (tenant_id, type, customer_id, payload_kind, redemption_id) VALUES ($1, 'REDEMPTION_CREATED', 'ghost', 'redemption', $2) RETURNING id`,
          [t.tenant.id, ghostRedemption],
        )) as Array<{ id: string }>;
        problems = await verifyRedemptions(manager, { tenantId: t.tenant.id });
        const audited = ['REDEMPTION_COUPON_MISSING', 'CREDIT_LINK_BROKEN', 'EVENT_REDEMPTION_MISSING'];
        expect(problems.map((p) => p.kind).filter((k) => audited.includes(k)).sort()).to.deep.equal([
          'CREDIT_LINK_BROKEN',
          'CREDIT_LINK_BROKEN',
          'EVENT_REDEMPTION_MISSING',
          'REDEMPTION_COUPON_MISSING',
        ]);
        const message = (kind: string, subject: string) => problems.find((p) => p.kind === kind && p.customerId === subject)?.message;
        expect(message('REDEMPTION_COUPON_MISSING', `redemption ${orphan}`)).to.equal(
          `tenant ${t.tenant.slug}, redemption ${orphan}: of coupon ${ghostCoupon}, which does not exist`,
        );
        expect(message('CREDIT_LINK_BROKEN', `redemption ${redemptionId}`)).to.equal(
          `tenant ${t.tenant.slug}, redemption ${redemptionId}: linked to credit ${ghostCredit}, which does not exist`,
        );
        expect(message('CREDIT_LINK_BROKEN', `redemption ${ghostRedemption}`)).to.equal(
          `tenant ${t.tenant.slug}, redemption ${ghostRedemption}: linked to a credit, but the redemption does not exist`,
        );
        expect(message('EVENT_REDEMPTION_MISSING', `event ${ghostEvent}`)).to.equal(
          `tenant ${t.tenant.slug}, event ${ghostEvent}: REDEMPTION_CREATED of redemption ${ghostRedemption}, which does not exist`,
        );
        throw rolledBack;
      })
      .catch((err: unknown) => {
        if (err !== rolledBack) throw err;
      });
    expect(problems).to.not.deep.equal([]);
    expect(await verifyRedemptions(ds.manager, { tenantId: t.tenant.id })).to.deep.equal([]);
  });
});
