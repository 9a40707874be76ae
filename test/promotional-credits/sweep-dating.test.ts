import { expect } from 'chai';
import { createTenant } from '../../src/tenants/tenants.service';
import { applyItem } from '../support/ledger';
import { withMigratedScratchDatabase } from '../support/scratch-database';

const BALANCES = 12;
const LOTS_PER_BALANCE = 10;
/** What this suite's database sleeps after each EXPIRATION entry it writes (a trigger), so that settling a balance takes a known time. */
const SLEEP_PER_ENTRY_MS = 5;

/**
 * promotional_credit_sweep dates each balance's expirations after it has
 * locked that balance, as every other change is dated: its query locks rows
 * as the loop fetches them (10, then 50 at a time), each before its turn,
 * and a balance dated at the sweep's start could get entries dated before
 * an instant whose as-of read was answered while the sweep was still on the
 * balances before it. On a database of its own, so that no server's
 * background sweep takes a balance first.
 */
describe('expiry sweep: entries dated when their balance is locked', function () {
  this.timeout(60_000);

  it('dates a balance it reached later later: not every balance at the instant it began', async function () {
    await withMigratedScratchDatabase(this, 'sweep_dating', async (dataSource) => {
      await dataSource.query(
        `CREATE FUNCTION slow_expiration() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(${SLEEP_PER_ENTRY_MS / 1000}); RETURN NULL; END $$`,
      );
      await dataSource.query(
        `CREATE TRIGGER slow_expiration AFTER INSERT ON promotional_credits FOR EACH ROW WHEN (NEW.origin = 'EXPIRATION') EXECUTE FUNCTION slow_expiration()`,
      );
      const tenant = await createTenant(dataSource, { slug: 'sweep-dating', currency: 'USD', multiCurrency: false });
      const [{ expireTime }] = (await dataSource.query(`SELECT clock_timestamp() + interval '1 second' AS "expireTime"`)) as Array<{ expireTime: Date }>;
      // Balances b00..b11 of 10 lots each, all expiring at once.
      const items = [];
      for (let b = 0; b < BALANCES; b++) {
        for (let l = 0; l < LOTS_PER_BALANCE; l++) {
          items.push(
            applyItem(tenant.id, { op: 'ADD', customer_id: `b${String(b).padStart(2, '0')}`, amount: '10', description: 'sweep dating', expire_time: expireTime.toISOString() }),
          );
        }
      }
      const added: Array<{ outcome: string }> = await dataSource.query(`SELECT outcome FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify(items)]);
      expect(added.filter((r) => r.outcome === 'written')).to.have.length(BALANCES * LOTS_PER_BALANCE);
      // Due by the database's clock, which decides.
      while (!((await dataSource.query(`SELECT clock_timestamp() > $1 AS due`, [expireTime])) as Array<{ due: boolean }>)[0]!.due) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }

      const [{ began }] = (await dataSource.query(`SELECT date_trunc('milliseconds', clock_timestamp()) AS began`)) as Array<{ began: Date }>;
      const [{ settled }] = (await dataSource.query(`SELECT promotional_credit_sweep(100) AS settled`)) as Array<{ settled: number }>;
      expect(settled).to.equal(BALANCES);
      const dated: Array<{ customer_id: string; first: Date; last: Date; n: number }> = await dataSource.query(
        `SELECT customer_id, min(create_time) AS first, max(create_time) AS last, count(*)::int AS n
           FROM promotional_credits WHERE tenant_id = $1 AND origin = 'EXPIRATION'
          GROUP BY customer_id ORDER BY min(seq)`,
        [tenant.id],
      );
      expect(dated.map((d) => d.n), 'one EXPIRATION entry per lot').to.deep.equal(Array(BALANCES).fill(LOTS_PER_BALANCE));
      for (const d of dated) {
        expect(d.first.getTime(), `${d.customer_id}: one instant for a balance's expirations`).to.equal(d.last.getTime());
        expect(d.first.getTime(), `${d.customer_id}: not before the sweep began`).to.be.at.least(began.getTime());
      }
      // In the order the sweep wrote them: each balance took at least LOTS_PER_BALANCE × SLEEP_PER_ENTRY_MS (50 ms), so the next one is dated that much later (less a millisecond of truncation).
      for (let i = 1; i < dated.length; i++) {
        const gap = dated[i]!.first.getTime() - dated[i - 1]!.first.getTime();
        expect(gap, `${dated[i]!.customer_id} dated ${gap} ms after ${dated[i - 1]!.customer_id} (each dated at the sweep's start: 0)`).to.be.at.least(
          LOTS_PER_BALANCE * SLEEP_PER_ENTRY_MS - 1,
        );
      }
    });
  });
});
