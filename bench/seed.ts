import type { DataSource } from 'typeorm';
import { createApiKey, createTenant } from '../src/tenants/tenants.service';
import { CUSTOMERS, HISTORY_CUSTOMERS, HISTORY_ENTRIES, HOT_CUSTOMER, type BenchContext } from './scenarios';

/** The hot customer's balance: far more than every deduct of a run can take (1 minor unit each). */
const HOT_BALANCE = 1_000_000_000_000_000n;

/**
 * Makes the benchmark's tenant, a read+write key and its customers, writing
 * the ledger through the service's own write path (promotional_credit_apply:
 * lots, hash chains, events), so `credits verify` holds before any load:
 * - c0..c9999 with 1000 USD minor units each (one entry);
 * - `hot` with HOT_BALANCE (one entry), for the contended deduct;
 * - h0..h99 with HISTORY_ENTRIES entries each, for the list page.
 *
 * The canonical pgbench scripts (an application's own read-compute-write,
 * which keeps no lots nor hashes) write to a tenant of their own with the same
 * customers (`ids.pgbenchTenantId`), so that they cannot break the service
 * tenant's ledger; `credits verify --tenant` checks the service's.
 */
export async function seed(dataSource: DataSource, slug: string): Promise<BenchContext> {
  const tenant = await createTenant(dataSource, { slug, currency: 'USD', multiCurrency: false });
  const { key, secret } = await createApiKey(dataSource, { tenantSlug: slug, name: 'bench', scopes: ['read', 'write'] });
  const add = (customerId: string, amount: bigint, description: string) => ({
    op: 'ADD',
    tenant_id: tenant.id,
    customer_id: customerId,
    currency_code: 'USD',
    amount: amount.toString(),
    description,
    credit_type: 'GENERAL',
    reference: '',
    done_by: 'bench-seed',
    with_others: false,
  });
  const writes = [
    ...Array.from({ length: CUSTOMERS }, (_, g) => add(`c${g}`, 1000n, 'bench seed')),
    add(HOT_CUSTOMER, HOT_BALANCE, 'bench seed'),
    // Entry k of a history customer closes at 100 * k.
    ...Array.from({ length: HISTORY_CUSTOMERS * HISTORY_ENTRIES }, (_, i) => add(`h${Math.floor(i / HISTORY_ENTRIES)}`, 100n, `bench history ${(i % HISTORY_ENTRIES) + 1}`)),
  ];
  for (let start = 0; start < writes.length; start += 2000) {
    await dataSource.query(`SELECT count(*) FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify(writes.slice(start, start + 2000))]);
  }
  const pgbenchTenant = await createTenant(dataSource, { slug: `${slug}-pgbench`, currency: 'USD', multiCurrency: false });
  const entryColumns = `(tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)`;
  await dataSource.transaction(async (m) => {
    await m.query(
      `INSERT INTO promotional_credit_balances (tenant_id, customer_id, currency_code, amount)
       SELECT $1::uuid, 'c' || g, 'USD', 1000 FROM generate_series(0, $2::int - 1) g
       UNION ALL SELECT $1::uuid, $3::text, 'USD', $4::bigint`,
      [pgbenchTenant.id, CUSTOMERS, HOT_CUSTOMER, HOT_BALANCE.toString()],
    );
    await m.query(
      `INSERT INTO promotional_credits ${entryColumns}
       SELECT $1::uuid, 'c' || g, 'USD', 'INCREMENT', 1000, 'bench seed', 'GENERAL', '', 1000, 'bench-seed' FROM generate_series(0, $2::int - 1) g
       UNION ALL SELECT $1::uuid, $3::text, 'USD', 'INCREMENT', $4::bigint, 'bench seed', 'GENERAL', '', $4::bigint, 'bench-seed'`,
      [pgbenchTenant.id, CUSTOMERS, HOT_CUSTOMER, HOT_BALANCE.toString()],
    );
  });
  await dataSource.query('ANALYZE promotional_credit_balances, promotional_credits, promotional_credit_lots');
  return { apiKey: secret, tenantId: tenant.id, tenantSlug: slug, keyName: key.name, ids: { pgbenchTenantId: pgbenchTenant.id }, lists: {} };
}
