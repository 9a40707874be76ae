import { expect } from 'chai';
import type { DataSource, EntityManager } from 'typeorm';
import { PromotionalCreditType } from '../../gen/credits/v1/promotional_credit_service';
import { ledgerProblems } from '../../src/promotional-credits/ledger-audit';
import type { PromotionalCredit } from '../../gen/credits/v1/promotional_credit_service';
import type { EntryType } from '../../src/promotional-credits/promotional-credit.entity';
import type { EntryDraft, LedgerWrite } from '../../src/promotional-credits/promotional-credit.repository';
import { walkPages } from './pages';
import type { PromotionalCreditClient } from './server';

/**
 * A USD Add (INCREMENT) or Deduct (DECREMENT) for tests that drive the ledger
 * below the gRPC layer; `extra` replaces draft fields.
 */
export function ledgerWrite(
  tenantId: string,
  customerId: string,
  type: EntryType,
  amount: bigint,
  options: { extra?: Partial<EntryDraft>; doneBy: string; withOtherCurrencies: boolean },
): LedgerWrite {
  const draft: EntryDraft = {
    tenantId,
    customerId,
    currencyCode: 'USD',
    description: `${type} ${amount}`,
    creditType: 'GENERAL',
    reference: '',
    doneBy: options.doneBy,
    metadata: {},
    ...options.extra,
  } as EntryDraft;
  return { op: type === 'INCREMENT' ? 'ADD' : 'DEDUCT', amount, draft, withOtherCurrencies: options.withOtherCurrencies };
}

/** Every entry of one customer (all currencies), oldest first, read through ListPromotionalCredits. */
export async function ledgerOf(client: PromotionalCreditClient, customerId: string): Promise<PromotionalCredit[]> {
  const newestFirst = await walkPages(
    (pageToken) => client.listPromotionalCredits({ pageSize: 100, pageToken, customerId: { is: customerId } }),
    (page) => page.promotionalCredits,
  );
  return newestFirst.reverse();
}

/** A CurrencyBalance as the API answers it for a balance with no active holds. */
export function currencyBalance(currencyCode: string, amount: bigint, amountDecimal: string) {
  const point = amountDecimal.indexOf('.');
  const zeroDecimal = point < 0 ? '0' : `0.${'0'.repeat(amountDecimal.length - point - 1)}`;
  return { currencyCode, amount, amountDecimal, held: 0n, heldDecimal: zeroDecimal, available: amount, availableDecimal: amountDecimal };
}

/** `credits verify` on one tenant: balances, closing-balance chains, lots, holds and hash chains; answers the problem messages (empty: clean). */
export async function ledgerProblemsOf(manager: EntityManager, tenantId: string): Promise<string[]> {
  return (await ledgerProblems(manager, { tenantId })).map((p) => `${p.kind}: ${p.message}`);
}

/** Checks that entries of one balance, oldest first, chain from zero (each closing balance the previous ± its amount); answers the last. */
export function expectChained(entries: readonly PromotionalCredit[], what = 'ledger'): bigint {
  let running = 0n;
  for (const entry of entries) {
    running += entry.type === PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_INCREMENT ? entry.amount : -entry.amount;
    expect(running >= 0n, `${what}: never below zero`).to.equal(true);
    expect(entry.closingBalance, `${what}: entry ${entry.id} chains`).to.equal(running);
  }
  return running;
}

/**
 * Runs `during` with a customer's balance rows locked (FOR SHARE in a
 * transaction rolled back after): no sweep settles them meanwhile (it skips
 * locked rows), so a read can fall between an expiry and any write. A lock
 * that writes nothing: writes wait for it (FOR UPDATE), reads as of an
 * instant do not (they wait for writers with FOR SHARE, which shares it).
 */
export async function withBalanceLocked<T>(dataSource: DataSource, tenantId: string, customerId: string, during: () => Promise<T>): Promise<T> {
  const runner = dataSource.createQueryRunner();
  await runner.startTransaction();
  try {
    await runner.query(`SELECT 1 FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 FOR SHARE`, [tenantId, customerId]);
    return await during();
  } finally {
    await runner.rollbackTransaction();
    await runner.release();
  }
}

/** A field of one `promotional_credit_apply` item (its JSON, as the repository sends it; see the SQL's header). */
/**
 * Customers' balances as stored (every currency), each with whether its row
 * carries no lock of a transaction id other than the one that wrote it
 * (xmax is 0 or xmin). A row that one transaction id locks and another
 * updates (a subtransaction and its parent are two) has its old version's
 * xmax made a MultiXact of both, and its new version keeps the lock of the
 * id that took it.
 */
export async function balanceLockOwners(
  dataSource: DataSource,
  tenantId: string,
  customerIds: readonly string[],
): Promise<Array<{ customerId: string; amount: string; lockedByWriter: boolean }>> {
  const rows: Array<{ customer_id: string; amount: string; xmin: string; xmax: string }> = await dataSource.query(
    `SELECT customer_id, amount::text AS amount, xmin::text AS xmin, xmax::text AS xmax FROM promotional_credit_balances
      WHERE tenant_id = $1 AND customer_id = ANY ($2) ORDER BY customer_id, currency_code`,
    [tenantId, customerIds],
  );
  return rows.map((r) => ({ customerId: r.customer_id, amount: r.amount, lockedByWriter: r.xmax === '0' || r.xmax === r.xmin }));
}

export interface ApplyItem {
  op: string;
  customer_id: string;
  amount?: string;
  tenant_id?: string;
  currency_code?: string;
  description?: string;
  credit_type?: string;
  reference?: string;
  done_by?: string;
  metadata?: unknown;
  expire_time?: string;
  target_id?: string;
  validate_only?: boolean;
  with_others?: boolean;
  /** An ADD's entry id and its event's, as the repository makes them. */
  id?: string;
  event_id?: string;
}

/** An item for `promotional_credit_apply` called straight in SQL: the tenant's, in USD, by "test", with the defaults the repository sends; a field given as undefined is left out. */
export function applyItem(tenantId: string, item: ApplyItem): ApplyItem {
  return Object.assign(
    { tenant_id: tenantId, currency_code: 'USD', description: 'test', credit_type: 'GENERAL', reference: '', done_by: 'test', metadata: {}, validate_only: false, with_others: false },
    item,
  );
}
