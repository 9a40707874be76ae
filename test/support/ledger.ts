import type { EntryType } from '../../src/promotional-credits/promotional-credit.entity';
import type { EntryDraft, LedgerWrite } from '../../src/promotional-credits/promotional-credit.repository';

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
    ...options.extra,
  };
  return { op: type === 'INCREMENT' ? 'ADD' : 'DEDUCT', amount, draft, withOtherCurrencies: options.withOtherCurrencies };
}
