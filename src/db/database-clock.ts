import { performance } from 'node:perf_hooks';
import { Client, type ClientConfig } from 'pg';
import type { DataSource, EntityManager } from 'typeorm';
import type { Clock } from '../common/clock';
import { connectionOf } from './data-source';

/**
 * The database's clock now. What decides a write is judged by it: whether a
 * redemption's hold has lapsed (coupon_redeem and the lapse sweep read
 * clock_timestamp() in SQL; Confirm, Cancel and Revoke call this once their
 * locks are held) and whether a coupon has expired when credits are issued
 * from it, so that a server whose clock is off cannot count a hold the
 * database already counts as lapsed, or the other way round. Reads and
 * input checks take DatabaseClock's estimate instead of a round trip.
 */
export async function databaseNow(manager: EntityManager): Promise<Date> {
  const [row] = (await manager.query(`SELECT clock_timestamp() AS now`)) as Array<{ now: Date }>;
  return row!.now;
}

/** Round trips per measure; the shortest one's reading is kept (the least time for the clocks to be read apart). */
const SAMPLES = 5;

/**
 * A measure whose shortest round trip took longer is not used (the last
 * offset stays): the reading is off by up to half of it, and on a busy
 * server a round trip is mostly waiting for the event loop.
 */
const MAX_ROUND_TRIP_MS = 50;

/** Offsets within this of the measure's uncertainty (half its round trip) are taken as none: the clocks agree as far as can be told. */
const AGREE_WITHIN_MS = 1;

/** How the measuring connection shows in pg_stat_activity. */
const APPLICATION_NAME = 'credits-clock';

/**
 * The database's clock as this server estimates it: its own clock plus the
 * offset last measured against clock_timestamp() (synchronize; the server
 * measures at start and then every minute). What a server shows and checks
 * by its clock (a coupon's or a hold's status, the lots still available,
 * whether an expire_time or an as_of_time is in the future) then agrees
 * with what the database decides for writes, even on a host whose clock is
 * seconds off: a server 5 s behind showed a coupon that had expired for the
 * database as ACTIVE, answered ValidateCoupon that it would apply where
 * RedeemCoupon refused it, and refused as "in the future" an as_of_time
 * its own write had just answered.
 *
 * Each measure opens a connection of its own, outside the pool (a wait for
 * a pooled connection counted as round trip, and made the database look
 * ahead by half of it), and keeps the reading of its shortest round trip.
 * The estimate is off by at most half that round trip (≤ 25 ms: slower
 * measures are not used; 1 ms more where an offset is taken as none) plus
 * the drift since the last measure; an offset
 * within that (a database on the same host) is taken as none, so the
 * server's clock is used as it is. The as_of_time check allows for the
 * error (AS_OF_TIME_SLACK_MS); the others (an expire_time in the future,
 * a coupon's or a hold's status) may be that far off at the boundary, where
 * the write that follows decides by the database's own clock.
 */
export class DatabaseClock {
  private offsetMs = 0;
  /** performance.now() of the last measure that succeeded, or of this clock's making before one did. */
  private measuredMonotonicMs = performance.now();
  private readonly connection: ClientConfig;

  constructor(
    dataSource: DataSource,
    /** This server's clock in epoch milliseconds (tests pass one that is off). */
    private readonly local: () => number = Date.now,
  ) {
    this.connection = Object.assign({}, connectionOf(dataSource), { application_name: APPLICATION_NAME });
  }

  /** Now, by the database's clock as last measured. */
  readonly now: Clock = () => new Date(this.local() + this.offsetMs);

  /** How far ahead of this server's clock the database's is, in milliseconds (negative: behind), as last measured. */
  get offset(): number {
    return this.offsetMs;
  }

  /**
   * Milliseconds since the offset was last measured, or since this clock was
   * made while no measure has succeeded (then `offset` is 0 for want of one,
   * not because the clocks agree). By a monotonic clock: the host's own may
   * be the one that is off.
   */
  get sinceMeasured(): number {
    return performance.now() - this.measuredMonotonicMs;
  }

  /**
   * Measures the offset again (SAMPLES round trips on a connection of its
   * own); answers it. Throws, keeping the last one, when the database does
   * not answer or every round trip was slower than MAX_ROUND_TRIP_MS.
   */
  async synchronize(): Promise<number> {
    const client = new Client(this.connection);
    client.on('error', () => undefined); // a connection lost between queries fails the query in progress
    let best: { roundTripMs: number; offsetMs: number } | undefined;
    try {
      await client.connect();
      for (let i = 0; i < SAMPLES; i++) {
        const sent = this.local();
        const { rows } = await client.query<{ now: number }>(`SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS now`);
        const received = this.local();
        const roundTripMs = received - sent;
        if (best === undefined || roundTripMs < best.roundTripMs) best = { roundTripMs, offsetMs: rows[0]!.now - (sent + received) / 2 };
      }
    } finally {
      await client.end().catch(() => undefined);
    }
    const { roundTripMs, offsetMs } = best!;
    if (roundTripMs > MAX_ROUND_TRIP_MS) {
      throw new Error(`every round trip to the database took over ${MAX_ROUND_TRIP_MS} ms (the shortest ${roundTripMs} ms): too slow to tell its clock from this server's`);
    }
    this.offsetMs = Math.abs(offsetMs) <= roundTripMs / 2 + AGREE_WITHIN_MS ? 0 : Math.round(offsetMs);
    this.measuredMonotonicMs = performance.now();
    return this.offsetMs;
  }
}
