import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { Client } from 'pg';
import { Metrics } from '../../src/observability/metrics';
import { issueRequest, once } from '../credits/fixtures';
import { eventsClient } from '../support/events';
import { withScratchServer } from '../support/scratch-server';
import { coupons, credits, promotionalCredits } from '../support/server';
import { expectError } from '../support/status';

const HOUR_MS = 3_600_000;

/**
 * The services tell the time by the database's clock (DatabaseClock), as
 * startGrpcServer hands it to them: what a caller's times are checked
 * against. On this host the database's clock is the server's, so this
 * suite's database gets a clock an hour ahead: a schema ahead of
 * pg_catalog in its search_path has a clock_timestamp() that adds the hour
 * (every table default, write path and id reads it there, as a database on
 * a host whose clock is an hour ahead would). A service handed the host's
 * clock instead would take a time half an hour from now as the future (each
 * of the four services' checks below fails so, the event stream's lag
 * metric with a negative hour).
 */
describe('server: times checked by the database clock it measured', function () {
  this.timeout(60_000);

  it('refuses a time 30 minutes ahead of this host as past, and reads a balance as of it, when the database is an hour ahead', async function () {
    const prepare = async (admin: Client, name: string) => {
      await admin.query(`CREATE SCHEMA ahead`);
      await admin.query(`CREATE FUNCTION ahead.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE AS $$ SELECT pg_catalog.clock_timestamp() + interval '1 hour' $$`);
      // public first: it stays where tables are made.
      await admin.query(`ALTER DATABASE ${name} SET search_path = public, ahead, pg_catalog`);
    };
    const metrics = new Metrics();
    await withScratchServer(
      this,
      'clock_ahead',
      async ({ dataSource, address, tenant }) => {
        const [{ ahead }] = (await dataSource.query(`SELECT extract(epoch FROM clock_timestamp() - pg_catalog.clock_timestamp()) AS ahead`)) as Array<{ ahead: string }>;
        expect(Math.round(Number(ahead))).to.equal(3_600, "the scratch database's clock");
        const promo = promotionalCredits(address, tenant.rwKey);
        const coupon = coupons(address, tenant.rwKey);
        const credit = credits(address, tenant.rwKey);
        const events = eventsClient(address, tenant.readKey);
        try {
          const halfHourAhead = () => new Date(Date.now() + HOUR_MS / 2);
          const past = (fields: Record<string, string>, field: string) => expect(fields[field], field).to.contain('must be in the future');

          // PromotionalCreditService: an expiry (the write path refuses it too, by the database's
          // own clock), and a balance as of an instant, which only the service's clock judges.
          const add = { customerId: 'c1', currencyCode: 'USD', amount: 100n, description: 'clock' };
          past((await expectError(promo.addPromotionalCredits({ ...add, expireTime: halfHourAhead() }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED')).fields, 'expire_time');
          const written = (await promo.addPromotionalCredits(add)).promotionalCredit!;
          expect(written.createTime!.getTime() - Date.now(), "an entry's create_time: the database's clock").to.be.closeTo(HOUR_MS, 60_000);
          // Read, not refused as in the future: the database has passed it, before it dated the Add.
          const asOf = await promo.getCustomerBalance({ customerId: 'c1', asOfTime: halfHourAhead() });
          expect(asOf.balance!.balances, 'as of an instant before the Add').to.deep.equal([]);
          const later = await promo.getCustomerBalance({ customerId: 'c1', asOfTime: written.createTime! });
          expect(later.balance!.balances.map((b) => [b.currencyCode, b.amount]), "as of the Add's create_time").to.deep.equal([['USD', 100n]]);

          // EventService: a stream's lag, from the event's create_time (the database's clock) to
          // when the stream sent it; by the host's clock it read an hour early, a negative lag.
          const stream = events.stream({ liveOnly: true });
          try {
            await stream.headers;
            await promo.addPromotionalCredits({ ...add, customerId: 'c2' });
            await stream.until((got) => got.length === 1, 10_000, 'the Add event');
          } finally {
            stream.cancel();
          }
          const lag = /^credits_event_stream_lag_seconds_sum (\S+)$/m.exec(await metrics.registry.getSingleMetricAsString('credits_event_stream_lag_seconds'));
          expect(Number(lag?.[1]), 'the event stream lag (s)').to.be.within(0, 60);

          // CouponService and CreditService: a coupon's and a credit's expiry.
          past((await expectError(coupon.createCoupon(once({ code: 'AHEAD-1', expireTime: halfHourAhead() })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED')).fields, 'expire_time');
          const made = (await coupon.createCoupon(once({ code: 'AHEAD-2' }))).coupon!;
          past((await expectError(credit.createCustomerCredit(issueRequest(made.id, 'c1', { expireTime: halfHourAhead() })), status.INVALID_ARGUMENT, 'VALIDATION_FAILED')).fields, 'expire_time');
        } finally {
          promo.close();
          coupon.close();
          credit.close();
          events.close();
        }
      },
      { prepare, metrics },
    );
  });
});
