import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { PageTokenCodec } from '../../src/common/page-token';
import { CouponsService } from '../../src/coupons/coupons.service';
import { DatabaseClock } from '../../src/db/database-clock';
import { AS_OF_TIME_SLACK_MS, PromotionalCreditsService } from '../../src/promotional-credits/promotional-credits.service';
import { once } from '../credits/fixtures';
import { inMs, waitUntilPast } from '../coupons/footprint';
import { openTestDataSource } from '../support/database';
import { rwPrincipal } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

/** How far the measure may be off on this host: a few round trips to a local database. */
const TOLERANCE_MS = 50;

describe('DatabaseClock: times by the database clock, from a server whose own clock is off', function () {
  this.timeout(20_000);
  const t = useTenantClients();
  /** The test tenant's read+write key, as a service sees its caller. */
  const principalOf = () => rwPrincipal(t.tenant);
  /** The database's clock, as seen from a server whose clock is `behindMs` behind this host's (the database's: it runs here). */
  const measured = async (behindMs: number) => {
    const clock = new DatabaseClock(t.server.dataSource, () => Date.now() - behindMs);
    await clock.synchronize();
    return clock;
  };

  it('measures how far the database is ahead of a server 5 s behind, and tells the time by it', async () => {
    const clock = await measured(5_000);
    expect(clock.offset).to.be.closeTo(5_000, TOLERANCE_MS);
    expect(clock.now().getTime()).to.be.closeTo(Date.now(), TOLERANCE_MS);
    const ahead = await measured(-3_000);
    expect(ahead.offset).to.be.closeTo(-3_000, TOLERANCE_MS);
  });

  it('takes clocks that agree within the measure as agreeing: the server clock as it is', async () => {
    const clock = await measured(0);
    expect(clock.offset).to.equal(0);
  });

  it('measures on a connection of its own: a pool with none free does not hold it up nor count as round trip', async () => {
    const dataSource = await openTestDataSource(1);
    const holder = dataSource.createQueryRunner();
    try {
      await holder.connect();
      await holder.startTransaction(); // the pool's only connection, lent out throughout
      const clock = new DatabaseClock(dataSource, () => Date.now() - 5_000);
      expect(await clock.synchronize()).to.be.closeTo(5_000, TOLERANCE_MS);
    } finally {
      await holder.rollbackTransaction();
      await holder.release();
      await dataSource.destroy();
    }
  });

  it('keeps the last offset when every round trip was too slow to tell the clocks apart', async () => {
    // A server 5 s behind whose clock readings can be made to advance 60 ms each: every round trip then looks that long.
    let stepMs = 0;
    let reads = 0;
    const clock = new DatabaseClock(t.server.dataSource, () => Date.now() - 5_000 + stepMs * reads++);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(clock.sinceMeasured, 'not measured yet: since it was made').to.be.at.least(25);
    await clock.synchronize();
    expect(clock.offset).to.be.closeTo(5_000, TOLERANCE_MS);
    expect(clock.sinceMeasured, 'just measured').to.be.below(25);
    await new Promise((resolve) => setTimeout(resolve, 30));
    stepMs = 60;
    const refused = await clock.synchronize().then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(refused?.message).to.match(/too slow to tell/);
    expect(clock.offset, 'the last measure stays').to.be.closeTo(5_000, TOLERANCE_MS);
    expect(clock.sinceMeasured, 'and it ages').to.be.at.least(25);
  });

  it('answers ValidateCoupon of a coupon expired by the database clock as expired, as RedeemCoupon does', async () => {
    const coupon = (await t.coupons.createCoupon(once({ expireTime: inMs(1_000) }))).coupon!;
    await waitUntilPast(coupon.expireTime!);
    const input = { code: coupon.code, customerId: 'clock-behind', planId: '', productId: '', amount: undefined };
    // By its own clock, 5 s behind, the coupon has not expired (what the server answered before it measured the database's).
    const own = new CouponsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), () => new Date(Date.now() - 5_000));
    expect((await own.validate(principalOf(), input)).refusal, 'by the server clock').to.equal(undefined);
    const service = new CouponsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), (await measured(5_000)).now);
    expect((await service.validate(principalOf(), input)).refusal?.reason).to.equal('COUPON_EXPIRED');
  });

  it('takes an as_of_time its own write just answered from a server 5 s behind', async () => {
    const added = await t.promotionalCredits.addPromotionalCredits({ customerId: 'clock-as-of', amount: 40n, currencyCode: 'USD', description: 'clock test' });
    const at = added.promotionalCredit!.createTime!;
    const service = new PromotionalCreditsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), (await measured(5_000)).now);
    const balances = await service.balances(principalOf(), 'clock-as-of', at);
    expect(balances.map((b) => [b.currencyCode, b.amount])).to.deep.equal([['USD', 40n]]);
    // By its own clock the instant was 5 s in the future: refused.
    const own = new PromotionalCreditsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), () => new Date(Date.now() - 5_000));
    const refusal = await own.balances(principalOf(), 'clock-as-of', at).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(refusal?.message).to.match(/as_of_time/);
  });

  it('takes an as_of_time up to AS_OF_TIME_SLACK_MS ahead of its estimate (what the estimate may be off by) and reads it once it has passed', async () => {
    const pc = t.promotionalCredits;
    await pc.addPromotionalCredits({ customerId: 'clock-slack', amount: 70n, currencyCode: 'USD', description: 'clock test' });
    // A server whose estimate is 25 ms behind the database's clock (half of the slowest round trip a measure keeps).
    const service = new PromotionalCreditsService(t.server.dataSource, new PageTokenCodec(randomBytes(32)), () => new Date(Date.now() - 25));
    const added = await pc.addPromotionalCredits({ customerId: 'clock-slack', amount: 5n, currencyCode: 'USD', description: 'clock test' });
    const written = added.promotionalCredit!.createTime!;
    expect((await service.balances(principalOf(), 'clock-slack', written)).map((b) => b.amount), 'the write it was just answered').to.deep.equal([75n]);
    // An instant still ahead of the database's clock: the read waits for it, so a write dated before it is counted.
    const ahead = new Date(Date.now() + 20);
    const reading = service.balances(principalOf(), 'clock-slack', ahead);
    const during = await pc.addPromotionalCredits({ customerId: 'clock-slack', amount: 1n, currencyCode: 'USD', description: 'clock test' });
    const expected = during.promotionalCredit!.createTime!.getTime() <= ahead.getTime() ? 76n : 75n;
    expect((await reading).map((b) => b.amount)).to.deep.equal([expected]);
    expect((await service.balances(principalOf(), 'clock-slack', ahead)).map((b) => b.amount), 'and the same afterwards').to.deep.equal([expected]);
    // Beyond the slack: in the future.
    const refusal = await service.balances(principalOf(), 'clock-slack', new Date(Date.now() - 25 + AS_OF_TIME_SLACK_MS + 1_000)).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(refusal?.message).to.match(/as_of_time must not be in the future/);
  });
});
