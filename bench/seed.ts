import type { DataSource } from 'typeorm';
import { createApiKey, createTenant } from '../src/tenants/tenants.service';
import { CUSTOMERS, HISTORY_CUSTOMERS, HISTORY_ENTRIES, HOT_CUSTOMER, type BenchContext } from './scenarios';

/** The hot customer's balance: far more than every deduct of a run can take (1 minor unit each). */
const HOT_BALANCE = 1_000_000_000_000_000n;

/** Items per promotional_credit_apply statement while seeding. */
const SEED_BATCH = 1_000;

/**
 * Makes the benchmark's tenant, a read+write key and its customers, writing
 * the ledger through the service's one write path (promotional_credit_apply:
 * entries, closing balances, lots and hash chains exactly as a call would),
 * so `credits verify` holds before any load:
 * - c0..c9999 with 1000 USD minor units each (one entry);
 * - `hot` with HOT_BALANCE (one entry), for the contended deduct;
 * - h0..h99 with HISTORY_ENTRIES entries each, for the list page.
 * The seed writes no events (credits.events = off): streams measured later
 * start after it.
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
    metadata: {},
    validate_only: false,
    with_others: false,
  });
  const items = [
    ...Array.from({ length: CUSTOMERS }, (_, n) => add(`c${n}`, 1000n, 'bench seed')),
    add(HOT_CUSTOMER, HOT_BALANCE, 'bench seed'),
    // Entry k of a history customer closes at 100 * k.
    ...Array.from({ length: HISTORY_CUSTOMERS * HISTORY_ENTRIES }, (_, i) =>
      add(`h${Math.floor(i / HISTORY_ENTRIES)}`, 100n, `bench history ${(i % HISTORY_ENTRIES) + 1}`),
    ),
  ];
  await dataSource.transaction(async (m) => {
    await m.query(`SET LOCAL credits.events = off`);
    for (let start = 0; start < items.length; start += SEED_BATCH) {
      const refused: Array<{ n: string }> = await m.query(`SELECT count(*) AS n FROM promotional_credit_apply($1::jsonb) WHERE outcome <> 'written'`, [
        JSON.stringify(items.slice(start, start + SEED_BATCH)),
      ]);
      if (refused[0]!.n !== '0') throw new Error(`seeding: ${refused[0]!.n} writes were not applied`);
    }
  });
  await dataSource.query('ANALYZE promotional_credit_balances, promotional_credits, promotional_credit_lots');
  return { apiKey: secret, tenantId: tenant.id, tenantSlug: slug, keyName: key.name, ids: {}, lists: {} };
}
