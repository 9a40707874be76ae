import type { EntityManager } from 'typeorm';

/**
 * The database's clock now. What decides a write is judged by it: whether a
 * redemption's hold has lapsed (coupon_redeem and the lapse sweep read
 * clock_timestamp() in SQL; Confirm, Cancel and Revoke call this once their
 * locks are held) and whether a coupon has expired when credits are issued
 * from it, so that a server whose clock is off cannot count a hold the
 * database already counts as lapsed, or the other way round. Reads (Get,
 * List, ValidateCoupon) still show states by the server's clock: with clocks
 * apart, they may disagree with a write for that long.
 */
export async function databaseNow(manager: EntityManager): Promise<Date> {
  const [row] = (await manager.query(`SELECT clock_timestamp() AS now`)) as Array<{ now: Date }>;
  return row!.now;
}
