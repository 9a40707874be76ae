import type { DataSource } from 'typeorm';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import type { PageTokenCodec } from '../common/page-token';
import { Pager, type Page } from '../common/pager';
import { checkCustomerId, checkUuid } from '../common/text';
import type { SharedWork, WorkRunner } from '../db/unit-of-work';
import { formatMinorUnits } from '../money/decimal';
import type { Principal } from '../tenants/principal';
import { validateListInput, type ListInput } from './promotional-credit-list.rules';
import type { PromotionalCreditEntity } from './promotional-credit.entity';
import { PromotionalCreditRepository, type Balance, type EntryDraft, type LedgerWrite, type LedgerWriteOutcome } from './promotional-credit.repository';
import { validateBalanceChange, type BalanceChange, type BalanceChangeInput } from './promotional-credit.rules';

/** The outcome of a balance change: the entry (if one was written) and the balances after it. */
export interface BalanceChangeResult {
  entry: PromotionalCreditEntity | undefined;
  balances: Balance[];
}

/** Guarded balance changes, many in one statement (a refused change writes nothing). */
export const LEDGER_WRITES: SharedWork<LedgerWrite, LedgerWriteOutcome> = {
  runAll: (manager, writes) => new PromotionalCreditRepository(manager).apply(writes),
  wrote: (outcome) => outcome.written !== undefined,
};

/** Use cases of the promotional credit ledger. */
export class PromotionalCreditsService {
  private readonly pager = new Pager(this.pageTokens);

  constructor(
    private readonly dataSource: DataSource,
    private readonly pageTokens: PageTokenCodec,
  ) {}

  async add(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('add', input, principal);
    const draft = draftOf(principal, change);
    const amount = change.amount!;
    const outcome = await this.write({ op: 'ADD', amount, draft, withOtherCurrencies: principal.multiCurrency }, run);
    if ('balance' in outcome) {
      throw new DomainError(
        ErrorReason.BalanceLimitExceeded,
        `Adding ${formatMinorUnits(amount, draft.currencyCode)} ${draft.currencyCode} would take the balance of customer ${draft.customerId} past the largest amount a balance can hold.`,
      );
    }
    return resultOf(outcome);
  }

  /** Deducts the amount, or, without one, the whole balance. */
  async deduct(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('deduct', input, principal);
    const draft = draftOf(principal, change);
    const write: LedgerWrite =
      change.amount === undefined
        ? { op: 'DEDUCT_ALL', amount: 0n, draft, withOtherCurrencies: principal.multiCurrency }
        : { op: 'DEDUCT', amount: change.amount, draft, withOtherCurrencies: principal.multiCurrency };
    const outcome = await this.write(write, run);
    if ('balance' in outcome) {
      const fmt = (amount: bigint) => `${formatMinorUnits(amount, draft.currencyCode)} ${draft.currencyCode}`;
      throw new DomainError(
        ErrorReason.InsufficientBalance,
        `Cannot deduct ${fmt(write.amount)} from customer ${draft.customerId}: the balance is ${fmt(outcome.balance)}.`,
        [],
        { balance: outcome.balance.toString(), requested: write.amount.toString(), currency_code: draft.currencyCode },
      );
    }
    return resultOf(outcome);
  }

  /** Brings the balance to the amount with one entry for the difference; writes nothing when it already has that value. */
  async set(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('set', input, principal);
    const outcome = await this.write({ op: 'SET', amount: change.amount!, draft: draftOf(principal, change), withOtherCurrencies: principal.multiCurrency }, run);
    // A target is at most the largest amount, so SET is never refused.
    if ('balance' in outcome) throw new Error('promotional_credit_apply refused a SET');
    return resultOf(outcome);
  }

  /**
   * The one way a balance changes (see sql/promotional-credit-apply.sql), in
   * one statement with the changes other calls submit meanwhile.
   */
  private write(write: LedgerWrite, run: WorkRunner): Promise<LedgerWriteOutcome> {
    return run.submit(LEDGER_WRITES, write);
  }

  async get(principal: Principal, id: string): Promise<PromotionalCreditEntity> {
    const v = new Violations();
    const canonical = checkUuid(v, 'id', id);
    v.throwIfAny();
    const entry = await new PromotionalCreditRepository(this.dataSource.manager).findById(principal.tenantId, canonical);
    if (!entry) throw new DomainError(ErrorReason.PromotionalCreditNotFound, `Promotional credit ${canonical} does not exist.`, [], { id: canonical });
    return entry;
  }

  async list(principal: Principal, input: ListInput): Promise<Page<PromotionalCreditEntity>> {
    const { filter, filterKey } = validateListInput(input);
    const repo = new PromotionalCreditRepository(this.dataSource.manager);
    return this.pager.page(principal.tenantId, filterKey, input, (beforeSeq, limit) => repo.list(principal.tenantId, filter, beforeSeq, limit));
  }

  async balances(principal: Principal, customerId: string): Promise<Balance[]> {
    const v = new Violations();
    checkCustomerId(v, 'customer_id', customerId);
    v.throwIfAny();
    return new PromotionalCreditRepository(this.dataSource.manager).balances(principal.tenantId, customerId);
  }
}

function resultOf(outcome: Exclude<LedgerWriteOutcome, { balance: bigint }>): BalanceChangeResult {
  return outcome.written ? outcome.written : { entry: undefined, balances: outcome.unchanged };
}

function draftOf(principal: Principal, change: BalanceChange): EntryDraft {
  return {
    tenantId: principal.tenantId,
    customerId: change.customerId,
    currencyCode: change.currencyCode,
    description: change.description,
    creditType: change.creditType,
    reference: change.reference,
    doneBy: principal.keyName,
  };
}
