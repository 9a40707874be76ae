import type { EntityManager } from 'typeorm';

/**
 * The database's clock now. Whether a redemption's hold has lapsed is judged
 * by it everywhere (coupon_redeem and the lapse sweep read clock_timestamp()
 * in SQL; Confirm, Cancel and Revoke call this once their locks are held),
 * so that a server whose clock is off cannot count a hold the database
 * already counts as lapsed, or the other way round.
 */
export async function databaseNow(manager: EntityManager): Promise<Date> {
  const [row] = (await manager.query(`SELECT clock_timestamp() AS now`)) as Array<{ now: Date }>;
  return row!.now;
}
