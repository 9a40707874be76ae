import type { DataSource } from 'typeorm';
import type { PostgresDriver } from 'typeorm/driver/postgres/PostgresDriver';
import type { Metrics, PoolCounters } from './metrics';

/**
 * The figures of the service's database that are read on a scrape, never
 * per call: the pg Pool's own counters (TypeORM's driver keeps the pool as
 * `master`), and the active holds by one aggregate query over the holds'
 * partial index.
 */
export function observeService(metrics: Metrics, dataSource: DataSource, lent: () => number): void {
  const driver = dataSource.driver as PostgresDriver;
  metrics.observeDatabasePool(() => driver.master as PoolCounters | undefined, Number(dataSource.options.poolSize ?? 10), lent);
  metrics.observeHolds(async () => {
    const rows: Array<{ currency_code: string; holds: number; held: string }> = await dataSource.query(
      `SELECT currency_code, count(*)::int AS holds, sum(amount - captured_amount)::text AS held
         FROM promotional_credit_holds
        WHERE status = 'ACTIVE' AND expire_time > now()
        GROUP BY currency_code`,
    );
    return rows.map((r) => ({ currency: r.currency_code, holds: r.holds, held: BigInt(r.held) }));
  });
}
