import { expect } from 'chai';
import { createDataSource, runMigrations } from '../../src/db/data-source';
import { createTenant } from '../../src/tenants/tenants.service';
import { withScratchDatabase } from '../support/scratch-database';

const BALANCES = 12;
const LOTS_PER_BALANCE = 40;

/**
 * promotional_credit_sweep dates each balance's expirations when it has
 * locked that balance, as every other change is dated: its rows are locked
 * one fetch at a time, after the rows before them were settled, and a
 * balance dated at the sweep's start could get entries dated before an
 * instant whose as-of read was answered while the sweep was still on the
 * balances before it. On a database of its own, so that no server's
 * background sweep takes a balance first.
 */
describe('expiry sweep: entries dated when their balance is locked', function () {
  this.timeout(60_000);

  it('dates a balance it reached later later: not every balance at the instant it began', async function () {
    await withScratchDatabase(this, 'sweep_dating', '', async (url) => {
      const dataSource = createDataSource({ url, poolSize: 2, connectTimeoutMs: 5_000 });
      await dataSource.initialize();
      try {
        await runMigrations(dataSource);
        const tenant = await createTenant(dataSource, { slug: 'sweep-dating', currency: 'USD', multiCurrency: false });
        const expireTime = new Date(Date.now() + 1_500);
        // Balances b00..b11, each of 40 lots expiring at once: the sweep takes
        // milliseconds per balance, and fetches its rows ten at a time.
        const items = [];
        for (let b = 0; b < BALANCES; b++) {
          for (let l = 0; l < LOTS_PER_BALANCE; l++) {
            items.push({
              op: 'ADD',
              tenant_id: tenant.id,
              customer_id: `b${String(b).padStart(2, '0')}`,
              currency_code: 'USD',
              amount: '10',
              description: 'sweep dating',
              credit_type: 'GENERAL',
              reference: '',
              done_by: 'test',
              metadata: {},
              expire_time: expireTime.toISOString(),
              validate_only: false,
              with_others: false,
            });
          }
        }
        const added: Array<{ outcome: string }> = await dataSource.query(`SELECT outcome FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify(items)]);
        expect(added.filter((r) => r.outcome === 'written')).to.have.length(BALANCES * LOTS_PER_BALANCE);
        while (Date.now() <= expireTime.getTime() + 50) await new Promise((resolve) => setTimeout(resolve, 50));

        const [{ began }] = (await dataSource.query(`SELECT date_trunc('milliseconds', clock_timestamp()) AS began`)) as Array<{ began: Date }>;
        const [{ settled }] = (await dataSource.query(`SELECT promotional_credit_sweep(100) AS settled`)) as Array<{ settled: number }>;
        expect(settled).to.equal(BALANCES);
        const dated: Array<{ customer_id: string; first: Date; last: Date; n: number }> = await dataSource.query(
          `SELECT customer_id, min(create_time) AS first, max(create_time) AS last, count(*)::int AS n
             FROM promotional_credits WHERE tenant_id = $1 AND origin = 'EXPIRATION' GROUP BY customer_id ORDER BY customer_id`,
          [tenant.id],
        );
        expect(dated.map((d) => d.n), 'one EXPIRATION entry per lot').to.deep.equal(Array(BALANCES).fill(LOTS_PER_BALANCE));
        for (const d of dated) {
          expect(d.first.getTime(), `${d.customer_id}: one instant for a balance's expirations`).to.equal(d.last.getTime());
          expect(d.first.getTime(), `${d.customer_id}: not before the sweep began`).to.be.at.least(began.getTime());
        }
        // The sweep reaches them in next_expire_time order (all equal here), whatever it is: by date, each later one is dated no earlier.
        const instants = dated.map((d) => d.first.getTime()).sort((a, b) => a - b);
        const spread = instants.at(-1)! - instants[0]!;
        expect(spread, `the last balance reached was dated ${spread} ms after the first (each dated at the sweep's start: 0)`).to.be.at.least(BALANCES - 2);
        expect(new Set(instants).size, 'balances dated apart').to.be.at.least(BALANCES / 2);
      } finally {
        await dataSource.destroy();
      }
    });
  });
});
