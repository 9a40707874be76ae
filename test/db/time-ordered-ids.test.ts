import { expect } from 'chai';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { issueRequest, lifetime } from '../credits/fixtures';
import { redeemRequest } from '../coupons/fixtures';
import { useTenantClients } from '../support/tenant-clients';
import { TimeOrderedIds1765200000000 } from '../../src/db/migrations/1765200000000-time-ordered-ids';
import { fairBitRange, msOfUuidV7 as msOf, randomBitCounts, UUID_V7 } from '../support/uuid-v7';

/**
 * How far an id's time may be from its row's create_time. The database
 * reads its clock for the id after it took the row's time (or, for a
 * column default, just before: a millisecond's rounding, or a pause of the
 * backend), within one statement; the service makes the ids of customer
 * credits, redemptions and Adds (with their lots) a round trip, or a wait
 * for a lock, before the database stamps the row, on the host's clock.
 * Wide enough for a loaded machine; a wrong layout is off by years.
 */
const MADE_BY_DATABASE_MS: [number, number] = [-5, 500];
const MADE_BY_SERVICE_MS: [number, number] = [-500, 500];

describe('ids are time-ordered (UUIDv7): every row the service makes lands at the end of its primary key', function () {
  this.timeout(20_000);
  const t = useTenantClients();
  const base = { currencyCode: 'USD', description: 'ids', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };

  /** The rows of `table` of the test tenant: id and create_time in ms, in `order`. */
  const rowsOf = async (table: string, order: string, where = 'true'): Promise<Array<{ id: string; created: number }>> => {
    const rows: Array<{ id: string; created: string }> = await t.server.dataSource.query(
      `SELECT id::text AS id, floor(extract(epoch FROM create_time) * 1000)::bigint::text AS created FROM ${table} WHERE tenant_id = $1 AND ${where} ORDER BY ${order}`,
      [t.tenant.id],
    );
    return rows.map((r) => ({ id: r.id, created: Number(r.created) }));
  };

  const expectTimeOrdered = (rows: Array<{ id: string; created: number }>, what: string, [early, late] = MADE_BY_DATABASE_MS) => {
    expect(rows, what).to.not.be.empty;
    for (const row of rows) {
      expect(row.id, what).to.match(UUID_V7);
      expect(msOf(row.id) - row.created, `${what}: ${row.id} made when its row was (ms after create_time)`).to.be.within(early, late);
    }
  };

  it('credits_uuid_v7(): version 7, variant 10, never decreasing within a backend, 62 fair random bits', async () => {
    const rows: Array<{ id: string; n: string }> = await t.server.dataSource.query(
      `SELECT credits_uuid_v7()::text AS id, n::text FROM generate_series(1, 4000) WITH ORDINALITY AS g(x, n) ORDER BY n`,
    );
    const ids = rows.map((r) => r.id);
    expect(ids).to.have.length(4_000);
    for (const id of ids) expect(id).to.match(UUID_V7);
    // The first 64 bits are the time to the 1/4096 ms: made one after
    // another, they never go back (the rest is random, so equal times may
    // sort either way).
    const times = ids.map((id) => id.slice(0, 18));
    times.slice(1).forEach((time, i) => expect(time >= times[i]!, `${ids[i]} then ${ids[i + 1]}`).to.equal(true));
    expect(new Set(times).size, 'not one time for all: the microseconds move').to.be.above(1);
    const [low, high] = fairBitRange(ids.length);
    randomBitCounts(ids).forEach((count, bit) => expect(count, `bit ${bit}`).to.be.within(low, high));
  });

  it('reverting the migration puts random defaults back but keeps credits_uuid_v7(), which the installed SQL calls', async () => {
    const runner = t.server.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      await new TimeOrderedIds1765200000000().down(runner);
      const defaults: Array<{ table_name: string; column_default: string }> = await runner.query(
        `SELECT table_name, column_default FROM information_schema.columns
          WHERE column_name = 'id' AND table_name = ANY ($1) ORDER BY table_name`,
        [['coupon_redemptions', 'coupons', 'customer_credits', 'promotional_credit_holds', 'promotional_credits']],
      );
      expect(defaults.map((d) => d.column_default)).to.deep.equal(new Array(5).fill('gen_random_uuid()'));
      const [made] = await runner.query(`SELECT credits_uuid_v7()::text AS id`);
      expect(made.id).to.match(UUID_V7);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  });

  it('makes ledger entries, lots and holds with UUIDv7 ids, in the order they were written', async () => {
    const pc = t.promotionalCredits;
    // One by one (a first write, then writes of the group-of-ADDs path and of
    // the item-by-item one), then many at once, shared by a group.
    await pc.addPromotionalCredits({ ...base, customerId: 'ids-1', amount: 100n });
    await pc.addPromotionalCredits({ ...base, customerId: 'ids-1', amount: 50n, expireTime: new Date(Date.now() + 3_600_000) });
    const deducted = (await pc.deductPromotionalCredits({ ...base, customerId: 'ids-1', amount: 30n })).promotionalCredit!;
    await pc.reversePromotionalCredit({ id: deducted.id, description: 'ids refund' });
    await pc.holdPromotionalCredits({ ...base, customerId: 'ids-1', amount: 20n, expireTime: new Date(Date.now() + 3_600_000) });
    await Promise.all(Array.from({ length: 20 }, (_, i) => pc.addPromotionalCredits({ ...base, customerId: `ids-many-${i % 10}`, amount: 1n + BigInt(i) })));

    const entries = await rowsOf('promotional_credits', 'seq');
    expect(entries).to.have.length(24);
    // An Add written with others (promotional_credit_add_many) has the id the service made.
    expectTimeOrdered(await rowsOf('promotional_credits', 'seq', `origin <> 'ADD'`), 'entries but Adds');
    expectTimeOrdered(await rowsOf('promotional_credits', 'seq', `origin = 'ADD'`), 'Adds', MADE_BY_SERVICE_MS);
    const oneByOne = entries.slice(0, 4).map((e) => e.id);
    expect(oneByOne, 'written one after another: ids in the order written').to.deep.equal(oneByOne.slice().sort());
    expectTimeOrdered(await rowsOf('promotional_credit_lots', 'seq'), 'lots (their Adds’ ids)', MADE_BY_SERVICE_MS);
    expectTimeOrdered(await rowsOf('promotional_credit_holds', 'create_time'), 'holds');
  });

  it('makes coupons, redemptions and customer credits with UUIDv7 ids', async () => {
    const coupon = (await t.coupons.createCoupon(lifetime())).coupon!;
    await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'ids-redeemer'));
    await t.credits.createCustomerCredit(issueRequest(coupon.id, 'ids-credit-1'));
    const batch = await t.credits.batchCreateCustomerCredits({
      couponId: coupon.id,
      credits: Array.from({ length: 5 }, (_, i) => ({ customerId: `ids-batch-${i}`, membershipId: '', expireTime: undefined, revenue: undefined, metadata: {} })),
      validateOnly: false,
    });

    expectTimeOrdered(await rowsOf('coupons', 'create_time'), 'coupons');
    expectTimeOrdered(await rowsOf('coupon_redemptions', 'create_time'), 'redemptions', MADE_BY_SERVICE_MS);
    const credits = await rowsOf('customer_credits', 'seq');
    expect(credits).to.have.length(6);
    expectTimeOrdered(credits, 'customer credits', MADE_BY_SERVICE_MS);
    const batchIds = batch.credits.map((c) => c.id);
    expect(batchIds, 'a batch: ids in request order').to.deep.equal(batchIds.slice().sort());
  });
});
