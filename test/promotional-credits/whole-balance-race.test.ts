import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreditType, PromotionalCreditType } from '../../gen/credits/v1/promotional_credit_service';
import { keyed } from '../support/idempotency-key';
import { ledgerOf, ledgerProblemsOf } from '../support/ledger';
import { decodeError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: '', description: 'race', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
const { PROMOTIONAL_CREDIT_TYPE_INCREMENT: INCREMENT } = PromotionalCreditType;

/**
 * Whole-balance Deducts and Sets compute their amount from the balance: they
 * once read it in TypeScript and wrote an absolute value, so two of them in
 * one shared (keyed) transaction, or one beside a coalesced Add, broke the
 * chain while every call answered OK. These races run over both server
 * processes, with and without idempotency keys, and check after every round
 * that the balance is the sum of the entries and the closing balances chain.
 */
describe('whole-balance Deduct and Set racing Adds (two server processes)', () => {
  const t = useTenantClients({ replica: true });
  const on = (i: number) => (i % 2 === 0 ? t.promotionalCredits : t.replica.promotionalCredits);

  /** Checks the customer's USD ledger: a chain from zero whose end is the balance; answers the balance. */
  async function expectExactLedger(customerId: string, round: number): Promise<bigint> {
    const ledger = (await ledgerOf(t.promotionalCredits, customerId)).filter((e) => e.currencyCode === 'USD');
    let running = 0n;
    for (const entry of ledger) {
      running += entry.type === INCREMENT ? entry.amount : -entry.amount;
      expect(running >= 0n, `round ${round}: the running sum never goes below zero`).to.equal(true);
      expect(entry.closingBalance, `round ${round}: entry ${entry.id} chains`).to.equal(running);
    }
    const balances = (await t.promotionalCredits.getCustomerBalance({ customerId })).balance!.balances;
    expect(balances.find((b) => b.currencyCode === 'USD')?.amount ?? 0n, `round ${round}: balance = sum of entries`).to.equal(running);
    return running;
  }

  for (const withKeys of [true, false]) {
    it(`keeps every invariant in five rounds of 30 whole Deducts, 30 Adds and 10 Sets ${withKeys ? 'each with its own idempotency key' : 'without keys'}`, async function () {
      this.timeout(180_000);
      const customerId = 'whole';
      const md = () => (withKeys ? keyed() : new Metadata());
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 1000n }, md());
      for (let round = 1; round <= 5; round++) {
        const calls = [
          ...Array.from({ length: 30 }, (_, i) => () => on(i).deductPromotionalCredits({ ...base, customerId, reference: `all-${round}-${i}` }, md())),
          ...Array.from({ length: 30 }, (_, i) => () => on(i + 1).addPromotionalCredits({ ...base, customerId, amount: 10n, reference: `add-${round}-${i}` }, md())),
          ...Array.from({ length: 10 }, (_, i) => () => on(i).setPromotionalCredits({ ...base, customerId, amount: 500n, reference: `set-${round}-${i}` }, md())),
        ];
        for (let i = calls.length - 1; i > 0; i--) {
          const j = Math.floor(Math.random() * (i + 1));
          [calls[i], calls[j]] = [calls[j]!, calls[i]!];
        }
        const results = await Promise.allSettled(calls.map((call) => call()));
        for (const result of results) {
          if (result.status === 'rejected') throw new Error(`round ${round}: a call failed: ${JSON.stringify(decodeError(result.reason as ServiceError))}`);
          const entry = result.value.promotionalCredit;
          // Each answer's own entry is consistent with the balance it reports.
          if (entry) expect(result.value.balance!.balances.find((b) => b.currencyCode === 'USD')!.amount).to.equal(entry.closingBalance);
        }
        await expectExactLedger(customerId, round);
        expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id), `round ${round}: audit`).to.deep.equal([]);
      }
    });
  }
});
