import type { DataSource } from 'typeorm';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import { effectivePageSize, seqOfPosition, type PageTokenCodec } from '../common/page-token';
import { checkCustomerId, checkUuid } from '../common/text';
import type { Coalescer, WorkRunner } from '../db/unit-of-work';
import { formatMinorUnits } from '../money/decimal';
import type { Principal } from '../tenants/principal';
import { validateListInput, type ListInput } from './promotional-credit-list.rules';
import type { PromotionalCreditEntity } from './promotional-credit.entity';
import { LedgerBatcher } from './ledger-batcher';
import { PromotionalCreditRepository, type Balance, type EntryDraft, type LedgerWrite, type LedgerWriteOutcome } from './promotional-credit.repository';
import { validateBalanceChange, type BalanceChange, type BalanceChangeInput } from './promotional-credit.rules';

/** The outcome of a balance change: the entry (if one was written) and the balances after it. */
export interface BalanceChangeResult {
  entry: PromotionalCreditEntity | undefined;
  balances: Balance[];
}

export interface ListResult {
  entries: PromotionalCreditEntity[];
  nextPageToken: string;
}

/** Guarded balance changes, many in one statement (a refused change writes nothing). */
const LEDGER_WRITES: Coalescer<LedgerWrite, LedgerWriteOutcome> = {
  runAll: (manager, writes) => new PromotionalCreditRepository(manager).apply(writes),
  wrote: (outcome) => outcome.written !== undefined,
};

/** Use cases of the promotional credit ledger. */
export class PromotionalCreditsService {
  private readonly ledger: LedgerBatcher;

  constructor(
    private readonly dataSource: DataSource,
    private readonly pageTokens: PageTokenCodec,
  ) {
    this.ledger = new LedgerBatcher(dataSource);
  }

  async add(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('add', input, principal);
    const draft = draftOf(principal, change, change.amount!);
    const outcome = await this.write({ type: 'INCREMENT', draft, withOtherCurrencies: principal.multiCurrency }, run);
    if (!outcome.written) {
      throw new DomainError(
        ErrorReason.BalanceLimitExceeded,
        `Adding ${formatMinorUnits(draft.amount, draft.currencyCode)} ${draft.currencyCode} would take the balance of customer ${draft.customerId} past the largest amount a balance can hold.`,
      );
    }
    return outcome.written;
  }

  async deduct(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('deduct', input, principal);
    if (change.amount === undefined) return this.setTo(principal, change, 0n, run);
    const draft = draftOf(principal, change, change.amount);
    const outcome = await this.write({ type: 'DECREMENT', draft, withOtherCurrencies: principal.multiCurrency }, run);
    if (!outcome.written) {
      const fmt = (amount: bigint) => `${formatMinorUnits(amount, draft.currencyCode)} ${draft.currencyCode}`;
      throw new DomainError(
        ErrorReason.InsufficientBalance,
        `Cannot deduct ${fmt(draft.amount)} from customer ${draft.customerId}: the balance is ${fmt(outcome.balance)}.`,
        [],
        { balance: outcome.balance.toString(), requested: draft.amount.toString(), currency_code: draft.currencyCode },
      );
    }
    return outcome.written;
  }

  /**
   * One guarded balance change: shared with concurrent calls in a batch when
   * it runs on its own; in the caller's transaction otherwise, in one
   * statement with the other calls' changes when that transaction is shared.
   */
  private async write(write: LedgerWrite, run: WorkRunner): Promise<LedgerWriteOutcome> {
    if (run.standalone) return this.ledger.apply(write);
    return run.coalesce(LEDGER_WRITES, write);
  }

  async set(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('set', input, principal);
    return this.setTo(principal, change, change.amount!, run);
  }

  /**
   * Brings a balance to `target` with one entry for the difference, under the
   * balance row's lock; writes nothing when it already has that value.
   */
  private async setTo(principal: Principal, change: BalanceChange, target: bigint, run: WorkRunner): Promise<BalanceChangeResult> {
    const { tenantId } = principal;
    const { customerId, currencyCode } = change;
    return run(
      async (manager) => {
        const repo = new PromotionalCreditRepository(manager);
        if (target > 0n) await repo.ensureBalance(tenantId, customerId, currencyCode);
        const locked = await repo.lockBalance(tenantId, customerId, currencyCode);
        const current = locked?.amount ?? 0n;
        let entry: PromotionalCreditEntity | undefined;
        if (current !== target) {
          const type = target > current ? 'INCREMENT' : 'DECREMENT';
          const amount = target > current ? target - current : current - target;
          entry = await repo.writeLocked(type, draftOf(principal, change, amount), target);
        }
        return { entry, balances: await repo.balances(tenantId, customerId) };
      },
      { singleStatement: false },
    );
  }

  async get(principal: Principal, id: string): Promise<PromotionalCreditEntity> {
    const v = new Violations();
    const canonical = checkUuid(v, 'id', id);
    v.throwIfAny();
    const entry = await new PromotionalCreditRepository(this.dataSource.manager).findById(principal.tenantId, canonical);
    if (!entry) throw new DomainError(ErrorReason.PromotionalCreditNotFound, `Promotional credit ${canonical} does not exist.`, [], { id: canonical });
    return entry;
  }

  async list(principal: Principal, input: ListInput): Promise<ListResult> {
    const { filter, filterKey } = validateListInput(input);
    const position = this.pageTokens.decode(principal.tenantId, filterKey, input.pageToken);
    const afterSeq = position ? seqOfPosition(position) : undefined;
    const pageSize = effectivePageSize(input.pageSize);
    const rows = await new PromotionalCreditRepository(this.dataSource.manager).list(principal.tenantId, filter, afterSeq, pageSize + 1);
    const entries = rows.slice(0, pageSize);
    const nextPageToken =
      rows.length > pageSize ? this.pageTokens.encode(principal.tenantId, filterKey, [entries[entries.length - 1]!.seq.toString()]) : '';
    return { entries, nextPageToken };
  }

  async balances(principal: Principal, customerId: string): Promise<Balance[]> {
    const v = new Violations();
    checkCustomerId(v, 'customer_id', customerId);
    v.throwIfAny();
    return new PromotionalCreditRepository(this.dataSource.manager).balances(principal.tenantId, customerId);
  }
}

function draftOf(principal: Principal, change: BalanceChange, amount: bigint): EntryDraft {
  return {
    tenantId: principal.tenantId,
    customerId: change.customerId,
    currencyCode: change.currencyCode,
    amount,
    description: change.description,
    creditType: change.creditType,
    reference: change.reference,
    doneBy: principal.keyName,
  };
}
