import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { REDEMPTIONS, type RedemptionItem, type RedemptionResult } from '../../src/coupons/redeem-coupon';
import { withScratchServer } from '../support/scratch-server';
import { coupons, credits } from '../support/server';
import { creditContext, lifetime } from './fixtures';

const CREDITS = 2_000;
const COUPONS = 300;
const REDEMPTIONS_KEPT = 500;

/** One redemption of the footprint tests, by credit or by code. */
function redemption(tenantId: string, target: RedemptionItem['target'], customerId: string): RedemptionItem {
  return {
    tenantId,
    target,
    request: { customerId, planId: undefined, productId: undefined, amount: undefined, holdUntil: undefined, metadata: {} },
    doneBy: 'footprint-test',
    validateOnly: false,
  };
}

/**
 * Runs the items as one coupon_redeem statement and counts the rows of
 * `table` it read. pg_stat_xact_user_tables counts what this connection read
 * and has not reported yet (which may include its earlier transactions): the
 * difference across runAll is what the statement read. The plan that once
 * scanned was a generic one (coupon_redeem now plans every statement
 * generically) joining by hash, which the bench's database chose at 10,000
 * credits and this shared test database may not: both are forced here, so
 * the count shows what the statement reads whatever the planner picks.
 * Sequential scans are off: on a table of a few hundred rows (the coupons
 * of every test's tenant, about 490 in a full run) one is cheaper than a
 * few index lookups, and the planner took it now and then (486 rows read);
 * a statement whose shape walks the tenant's rows still reads them through
 * an index, which the count shows.
 */
async function redeemCountingReads(dataSource: DataSource, table: string, items: RedemptionItem[]): Promise<{ results: RedemptionResult[]; read: number }> {
  return dataSource.transaction(async (manager) => {
    await manager.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
    await manager.query(`SET LOCAL enable_nestloop = off`);
    await manager.query(`SET LOCAL enable_seqscan = off`);
    const rowsRead = async () => {
      const [row]: Array<{ seq_tup_read: string; idx_tup_fetch: string }> = await manager.query(
        `SELECT seq_tup_read, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relid = $1::regclass`,
        [table],
      );
      return Number(row!.seq_tup_read) + Number(row!.idx_tup_fetch);
    };
    const before = await rowsRead();
    const results = await REDEMPTIONS.runAll(manager, items);
    return { results, read: (await rowsRead()) - before };
  });
}

describe('coupon_redeem: what a group of redemptions reads', () => {
  const t = creditContext();

  // coupon_redeem once found a group's credits with `id IN (subquery)`,
  // which PostgreSQL ran as a scan of every credit of the tenant: each
  // group's statement grew with the tenant's credits.
  it('fetches the credits it redeems by index, not every credit of the tenant', async function () {
    this.timeout(60_000);
    const coupon = await t.coupon(lifetime());
    const ids: string[] = [];
    for (let start = 0; start < CREDITS; start += 500) {
      const credits = Array.from({ length: 500 }, (_, k) => ({ customerId: `s-${start + k}`, membershipId: '', metadata: {} }));
      ids.push(...(await t.credits.batchCreateCustomerCredits({ couponId: coupon.id, credits })).credits.map((c) => c.id));
    }
    await t.server.dataSource.query(`ANALYZE customer_credits`);
    const picked = [3, 1_500, 1_999];
    const { results, read } = await redeemCountingReads(
      t.server.dataSource,
      'customer_credits',
      picked.map((n) => redemption(t.tenant.id, { creditId: ids[n]! }, `s-${n}`)),
    );

    expect(results.map((r) => ('redemption' in r ? r.row.cr_id : r.refused))).to.deep.equal(picked.map((n) => ids[n]));
    // Each picked credit is fetched by its lock and its counter update: 6
    // rows, not 2,000 (9 while its redemption's link had a foreign key).
    expect(read, `rows of customer_credits read for ${picked.length} redemptions among ${CREDITS} credits`).to.be.at.most(picked.length * 2);
  });

  it('finds the coupons it redeems by code through the index, not every coupon of the tenant', async function () {
    this.timeout(60_000);
    const coupons: Array<{ id: string; code: string }> = [];
    for (let start = 0; start < COUPONS; start += 50) {
      coupons.push(...(await Promise.all(Array.from({ length: 50 }, () => t.coupon(lifetime())))));
    }
    await t.server.dataSource.query(`ANALYZE coupons`);
    const picked = [7, 150, 299];
    // Codes are matched without regard to case.
    const { results, read } = await redeemCountingReads(
      t.server.dataSource,
      'coupons',
      picked.map((n) => redemption(t.tenant.id, { code: coupons[n]!.code.toLowerCase() }, `f-${n}`)),
    );

    expect(results.map((r) => ('redemption' in r ? r.coupon.id : r.refused))).to.deep.equal(picked.map((n) => coupons[n]!.id));
    // Each picked coupon is fetched by its code, its lock and its counter
    // update: 9 rows, not 300 (an OR of ids and codes in the lock's
    // condition read 306; 12 while redemptions had a foreign key).
    expect(read, `rows of coupons read for ${picked.length} redemptions among ${COUPONS} coupons`).to.be.at.most(picked.length * 3);
  });

  // Before it writes, a group records the lapsed holds of the coupons it
  // redeems (coupon_record_lapses), reading each lapsed redemption for its
  // event: joined to them alone, the generic plan hashed a scan of every
  // redemption (of every tenant). On a database of its own with a server
  // that does not sweep, so that the statement, not a sweep, records the
  // lapses.
  it("reads only the lapsed redemptions of the coupon it records before redeeming, not the coupon's others", async function () {
    this.timeout(60_000);
    await withScratchServer(
      this,
      'lapse_footprint',
      async ({ dataSource, address, tenant }) => {
        const client = coupons(address, tenant.rwKey);
        try {
          const coupon = (await client.createCoupon(lifetime())).coupon!;
          const byCode = (customerId: string) => redemption(tenant.id, { code: coupon.code }, customerId);
          for (let start = 0; start < REDEMPTIONS_KEPT; start += 100) {
            await REDEMPTIONS.runAll(dataSource.manager, Array.from({ length: 100 }, (_, k) => byCode(`r-${start + k}`)));
          }
          const holdUntil = new Date(Date.now() + 500);
          const held = Array.from({ length: 3 }, (_, k) => byCode(`h-${k}`));
          for (const item of held) item.request.holdUntil = holdUntil;
          await REDEMPTIONS.runAll(dataSource.manager, held);
          await dataSource.query(`ANALYZE coupon_redemptions`);
          await new Promise((resolve) => setTimeout(resolve, holdUntil.getTime() - Date.now() + 50));

          const { results, read } = await redeemCountingReads(dataSource, 'coupon_redemptions', [byCode('after')]);
          expect(results.map((r) => ('redemption' in r ? r.coupon.id : r.refused))).to.deep.equal([coupon.id]);
          const canceled: Array<{ n: string }> = await dataSource.query(`SELECT count(*) AS n FROM events WHERE type = 'REDEMPTION_CANCELED'`);
          expect(Number(canceled[0]!.n), 'the lapses recorded, one REDEMPTION_CANCELED each').to.equal(held.length);
          expect(read, `rows of coupon_redemptions read recording ${held.length} lapses among ${REDEMPTIONS_KEPT} redemptions`).to.equal(held.length);
        } finally {
          client.close();
        }
      },
      { sweeps: false },
    );
  });

  // Credits are issued in batches, into pages as full as the table lets
  // them be; a redemption updates its credit's counts, no indexed column,
  // and with room on the page (fillfactor 80, migration 1765500000000)
  // that update is HOT: no new entry in any of the credits' six indexes.
  // On a database of its own, so that the batch fills the table's first
  // page and the credits redeemed are on it.
  it('updates the credits it redeems in place (HOT), where issuing left them on a full page', async function () {
    this.timeout(60_000);
    await withScratchServer(this, 'credits_hot', async ({ dataSource, address, tenant }) => {
      const couponsClient = coupons(address, tenant.rwKey);
      const creditsClient = credits(address, tenant.rwKey);
      try {
        const coupon = (await couponsClient.createCoupon(lifetime())).coupon!;
        await creditsClient.batchCreateCustomerCredits({ couponId: coupon.id, credits: Array.from({ length: 100 }, (_, i) => ({ customerId: `hot-${i}` })) });
        const onFirstPage: Array<{ id: string; customer_id: string }> = await dataSource.query(
          `SELECT id, customer_id FROM customer_credits WHERE tenant_id = $1 AND (ctid::text::point)[0] = 0 ORDER BY ctid LIMIT 8`,
          [tenant.id],
        );
        expect(onFirstPage).to.have.length(8);
        const { updated, hot } = await dataSource.transaction(async (manager) => {
          const counts = async () => {
            const [row]: Array<{ n_tup_upd: string; n_tup_hot_upd: string }> = await manager.query(
              `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relid = 'customer_credits'::regclass`,
            );
            return { updated: Number(row!.n_tup_upd), hot: Number(row!.n_tup_hot_upd) };
          };
          const before = await counts();
          const results = await REDEMPTIONS.runAll(
            manager,
            onFirstPage.map((c) => redemption(tenant.id, { creditId: c.id }, c.customer_id)),
          );
          expect(results.map((r) => ('refused' in r ? r.refused : 'ok'))).to.deep.equal(onFirstPage.map(() => 'ok'));
          const after = await counts();
          return { updated: after.updated - before.updated, hot: after.hot - before.hot };
        });
        expect({ updated, hot }, 'credit rows updated, and of them in place').to.deep.equal({ updated: 8, hot: 8 });
      } finally {
        couponsClient.close();
        creditsClient.close();
      }
    });
  });
});
