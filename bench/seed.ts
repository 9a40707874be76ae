import type { DataSource } from 'typeorm';
import { createApiKey, createTenant } from '../src/tenants/tenants.service';
import { CUSTOMERS, HISTORY_CUSTOMERS, HISTORY_ENTRIES, HOT_CUSTOMER, type BenchContext } from './scenarios';

/** The hot customer's balance: far more than every deduct of a run can take (1 minor unit each). */
const HOT_BALANCE = 1_000_000_000_000_000n;

/**
 * Makes the benchmark's tenant, a read+write key and its customers, writing
 * the ledger as the service would (every balance has entries whose closing
 * balances chain), so `credits verify` holds before any load:
 * - c0..c9999 with 1000 USD minor units each (one entry);
 * - `hot` with HOT_BALANCE (one entry), for the contended deduct;
 * - h0..h99 with HISTORY_ENTRIES entries each, for the list page.
 */
export async function seed(dataSource: DataSource, slug: string): Promise<BenchContext> {
  const tenant = await createTenant(dataSource, { slug, currency: 'USD', multiCurrency: false });
  const { key, secret } = await createApiKey(dataSource, { tenantSlug: slug, name: 'bench', scopes: ['read', 'write'] });
  const entryColumns = `(tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)`;
  await dataSource.transaction(async (m) => {
    await m.query(
      `INSERT INTO promotional_credit_balances (tenant_id, customer_id, currency_code, amount)
       SELECT $1::uuid, 'c' || g, 'USD', 1000 FROM generate_series(0, $2::int - 1) g
       UNION ALL SELECT $1::uuid, $3::text, 'USD', $4::bigint
       UNION ALL SELECT $1::uuid, 'h' || g, 'USD', 100 * $6::int FROM generate_series(0, $5::int - 1) g`,
      [tenant.id, CUSTOMERS, HOT_CUSTOMER, HOT_BALANCE.toString(), HISTORY_CUSTOMERS, HISTORY_ENTRIES],
    );
    await m.query(
      `INSERT INTO promotional_credits ${entryColumns}
       SELECT $1::uuid, 'c' || g, 'USD', 'INCREMENT', 1000, 'bench seed', 'GENERAL', '', 1000, 'bench-seed'
         FROM generate_series(0, $2::int - 1) g ORDER BY g`,
      [tenant.id, CUSTOMERS],
    );
    await m.query(
      `INSERT INTO promotional_credits ${entryColumns}
       VALUES ($1, $2, 'USD', 'INCREMENT', $3::bigint, 'bench seed', 'GENERAL', '', $3::bigint, 'bench-seed')`,
      [tenant.id, HOT_CUSTOMER, HOT_BALANCE.toString()],
    );
    // Entry k of a history customer closes at 100 * k: seq follows insertion order.
    await m.query(
      `INSERT INTO promotional_credits ${entryColumns}
       SELECT $1::uuid, 'h' || h, 'USD', 'INCREMENT', 100, 'bench history ' || k, 'GENERAL', '', 100 * k, 'bench-seed'
         FROM generate_series(0, $2::int - 1) h, generate_series(1, $3::int) k ORDER BY h, k`,
      [tenant.id, HISTORY_CUSTOMERS, HISTORY_ENTRIES],
    );
  });
  await dataSource.query('ANALYZE promotional_credit_balances, promotional_credits');
  return { apiKey: secret, tenantId: tenant.id, tenantSlug: slug, keyName: key.name, ids: {}, lists: {} };
}
