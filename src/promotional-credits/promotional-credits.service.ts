import type { DataSource } from 'typeorm';
import { inBatches } from '../common/batches';
import { systemClock, type Clock } from '../common/clock';
import { DomainError, ErrorReason, Violations } from '../common/domain-error';
import { checkTime } from '../common/list-filters';
import type { PageTokenCodec } from '../common/page-token';
import { checkPageSize, Pager, type Page, type PageInput } from '../common/pager';
import { Semaphore } from '../common/semaphore';
import { checkCustomerId, checkUuid } from '../common/text';
import { GroupCommit } from '../db/group-commit';
import { retryConflicts } from '../db/transaction';
import type { SharedWork, WorkRunner } from '../db/unit-of-work';
import { formatMinorUnits } from '../money/decimal';
import { resolveCurrency } from '../money/resolve-currency';
import type { Principal } from '../tenants/principal';
import { validateListInput, type ListInput } from './promotional-credit-list.rules';
import type { PromotionalCreditEntity } from './promotional-credit.entity';
import {
  PromotionalCreditRepository,
  type Balance,
  type BalanceRead,
  type EntryDraft,
  type HoldRead,
  type HoldRecord,
  type HoldStatus,
  type LedgerRefusal,
  type LedgerWrite,
  type LedgerWriteOutcome,
  type LotRecord,
  type PageRead,
} from './promotional-credit.repository';
import {
  readCaptureAmount,
  validateBalanceChange,
  validateCapture,
  validateHold,
  validateHoldId,
  validateReversal,
  type BalanceChange,
  type BalanceChangeInput,
  type CaptureInput,
  type HoldInput,
  type ReversalInput,
} from './promotional-credit.rules';

/** The outcome of a balance change: the entry (if one was written) and the balances after it. */
export interface BalanceChangeResult {
  entry: PromotionalCreditEntity | undefined;
  balances: Balance[];
}

/** The outcome of a hold operation: the hold, the capture entry if any, and the balances after it. */
export interface HoldResult {
  hold: HoldView;
  entry: PromotionalCreditEntity | undefined;
  balances: Balance[];
}

/** A hold with its status as read at one instant (ACTIVE past expire_time reads EXPIRED). */
export interface HoldView {
  hold: HoldRecord;
  status: HoldStatus;
}

/** Guarded balance changes, many in one statement (a refused change writes nothing). */
export const LEDGER_WRITES: SharedWork<LedgerWrite, LedgerWriteOutcome> = {
  runAll: (manager, writes) => new PromotionalCreditRepository(manager).apply(writes),
  wrote: (outcome) => outcome.written !== undefined || (outcome.hold !== undefined && !('refused' in outcome)),
};

/**
 * How far ahead of now (by DatabaseClock's estimate of the database's clock)
 * an as_of_time may be and still not count as in the future: the estimate
 * may be off by half a measure's round trip (at most 25 ms) and drifts until
 * the next, so an instant a write has just answered, dated by the database,
 * could read as a few milliseconds ahead. Such a read stays exact: the
 * database waits until the instant has passed by its own clock
 * (promotional_credit_balances_as_of_final) before it reads.
 */
export const AS_OF_TIME_SLACK_MS = 50;

/** The status a hold reads as at `now`: an ACTIVE one past its expire_time is EXPIRED at once, swept or not. */
export function holdStatusAt(hold: HoldRecord, now: Date): HoldStatus {
  return hold.status === 'ACTIVE' && hold.expireTime.getTime() <= now.getTime() ? 'EXPIRED' : hold.status;
}

/** Use cases of the promotional credit ledger. */
export class PromotionalCreditsService {
  private readonly pager = new Pager(this.pageTokens);
  /**
   * Balance reads of concurrent calls, many in one statement: under load a
   * GetCustomerBalance was mostly its own round trip (the query's write to
   * the socket alone was a third of the server's CPU); alone, a read still
   * goes out at once, after the current turn of the event loop.
   */
  private readonly balanceReads = new GroupCommit<BalanceRead, Balance[]>(
    {
      runGroup: async (reads) => (await new PromotionalCreditRepository(this.dataSource.manager).balancesOfMany(reads)).map((value) => ({ ok: true, value })),
      onGroupFailure: 'split',
    },
    { name: 'balance_reads', observeGroupSize: this.groupSizes?.('balance_reads') },
  );

  /** Pages of concurrent ListPromotionalCredits calls, in one statement per filter shape (see listMany). */
  private readonly pageReads = new GroupCommit<PageRead, PromotionalCreditEntity[]>(
    {
      runGroup: async (reads) => (await new PromotionalCreditRepository(this.dataSource.manager).listMany(reads)).map((value) => ({ ok: true, value })),
      onGroupFailure: 'split',
    },
    { name: 'page_reads', observeGroupSize: this.groupSizes?.('page_reads') },
  );

  /** Reads as of an instant running at once, and each customer's last one (see balancesAsOf). */
  private readonly asOfReadsByCustomer = new Map<string, Promise<void>>();
  private readonly asOfReads = new Semaphore(Math.max(1, Math.min(4, Math.floor(((this.dataSource.options as { poolSize?: number }).poolSize ?? 10) / 4))));

  /** Hold lookups of concurrent captures, releases and GetPromotionalCreditHold calls, in one statement (see holdsOfMany). */
  private readonly holdReads = new GroupCommit<HoldRead, HoldRecord | undefined>(
    {
      runGroup: async (reads) => (await new PromotionalCreditRepository(this.dataSource.manager).holdsOfMany(reads)).map((value) => ({ ok: true, value })),
      onGroupFailure: 'split',
    },
    { name: 'hold_reads', observeGroupSize: this.groupSizes?.('hold_reads') },
  );

  constructor(
    private readonly dataSource: DataSource,
    private readonly pageTokens: PageTokenCodec,
    private readonly clock: Clock = systemClock,
    /** Observers of the read group commits' sizes by name (Metrics.groupCommit). */
    private readonly groupSizes?: (name: string) => (size: number) => void,
  ) {}

  async add(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('add', input, principal, this.clock());
    return this.change(principal, change, { op: 'ADD', amount: change.amount!, expireTime: change.expireTime }, run);
  }

  /** Deducts the amount, or, without one, all of the available amount. */
  async deduct(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('deduct', input, principal, this.clock());
    const op = change.amount === undefined ? { op: 'DEDUCT_ALL' as const } : { op: 'DEDUCT' as const, amount: change.amount };
    return this.change(principal, change, op, run);
  }

  /** Brings the balance to the amount with one entry for the difference; writes nothing when it already has that value. */
  async set(principal: Principal, input: BalanceChangeInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const change = validateBalanceChange('set', input, principal, this.clock());
    return this.change(principal, change, { op: 'SET', amount: change.amount!, expireTime: change.expireTime }, run);
  }

  private async change(
    principal: Principal,
    change: BalanceChange,
    op: Pick<LedgerWrite, 'op' | 'amount' | 'expireTime'>,
    run: WorkRunner,
  ): Promise<BalanceChangeResult> {
    const draft = draftOf(principal, change);
    // Spelled out: `{ ...op, draft, … }` cost ~3 µs a call on Node 20.
    const write: LedgerWrite = {
      op: op.op,
      amount: op.amount,
      expireTime: op.expireTime,
      draft,
      validateOnly: change.validateOnly,
      withOtherCurrencies: principal.multiCurrency,
    };
    const outcome = await this.write(write, run);
    // A Set is refused only below what holds keep: its amount is a target, not an amount taken.
    if ('refused' in outcome) throw refusalError(outcome, op.op === 'SET' ? undefined : op.amount);
    return resultOf(outcome);
  }

  /** Writes the opposite of an entry (see ReversePromotionalCredit). */
  async reverse(principal: Principal, input: ReversalInput, run: WorkRunner): Promise<BalanceChangeResult> {
    const reversal = validateReversal(input);
    const draft: EntryDraft = {
      tenantId: principal.tenantId,
      // The entry's balance, which the write path reads with the write.
      customerId: '',
      currencyCode: '',
      description: reversal.description,
      creditType: 'GENERAL',
      reference: reversal.reference,
      doneBy: principal.keyName,
      metadata: reversal.metadata,
    };
    const outcome = await this.write(
      {
        op: 'REVERSE',
        targetId: reversal.id,
        draft,
        validateOnly: reversal.validateOnly,
        withOtherCurrencies: principal.multiCurrency,
        balanceOfTarget: true,
      },
      run,
    );
    if ('refused' in outcome) throw refusalError(outcome, undefined, reversal.id);
    return resultOf(outcome);
  }

  async hold(principal: Principal, input: HoldInput, run: WorkRunner): Promise<HoldResult> {
    const request = validateHold(input, principal, this.clock());
    const draft: EntryDraft = {
      tenantId: principal.tenantId,
      customerId: request.customerId,
      currencyCode: request.currencyCode,
      description: request.description,
      creditType: 'GENERAL',
      reference: request.reference,
      doneBy: principal.keyName,
      metadata: request.metadata,
    };
    const outcome = await this.write(
      {
        op: 'HOLD',
        amount: request.amount,
        expireTime: request.expireTime,
        draft,
        validateOnly: request.validateOnly,
        withOtherCurrencies: principal.multiCurrency,
      },
      run,
    );
    if ('refused' in outcome) throw refusalError(outcome, request.amount);
    const hold = outcome.hold!;
    return { hold: { hold: request.validateOnly ? Object.assign({}, hold, { id: '' }) : hold, status: 'ACTIVE' }, entry: undefined, balances: balancesOf(outcome) };
  }

  async capture(principal: Principal, input: CaptureInput, run: WorkRunner): Promise<HoldResult> {
    const request = validateCapture(input);
    const { holdId, description, validateOnly } = request;
    if (input.amountDecimal === undefined) {
      // amount (minor units, checked above) or none: all of the hold.
      return this.settleHold(principal, holdId, undefined, { op: 'CAPTURE', amount: input.amount, amountField: 'amount', description, validateOnly }, run);
    }
    // Its decimal places are the hold's currency's: the hold is read first.
    const found = await this.findHold(principal, holdId);
    const amount = readCaptureAmount(input, found.currencyCode);
    return this.settleHold(principal, holdId, found, { op: 'CAPTURE', amount, amountField: 'amount_decimal', description, validateOnly }, run);
  }

  async release(principal: Principal, input: { holdId: string; validateOnly: boolean }, run: WorkRunner): Promise<HoldResult> {
    const holdId = validateHoldId(input.holdId);
    return this.settleHold(principal, holdId, undefined, { op: 'RELEASE', amount: undefined, description: undefined, validateOnly: input.validateOnly }, run);
  }

  /**
   * Captures or releases a hold in one statement with its write. `found`:
   * the hold as read before (its balance then goes with the write); without
   * it the write path reads the hold's balance itself.
   */
  private async settleHold(
    principal: Principal,
    holdId: string,
    found: HoldRecord | undefined,
    request: {
      op: 'CAPTURE' | 'RELEASE';
      amount: bigint | undefined;
      /** The field the caller gave the amount in, as a refusal names it. */
      amountField?: 'amount' | 'amount_decimal';
      description: string | undefined;
      validateOnly: boolean;
    },
    run: WorkRunner,
  ): Promise<HoldResult> {
    // The entry's description (when none is given), reference and metadata are the hold's, which the write path reads.
    const draft: EntryDraft = {
      tenantId: principal.tenantId,
      customerId: found?.customerId ?? '',
      currencyCode: found?.currencyCode ?? '',
      description: request.description ?? '',
      creditType: 'GENERAL',
      reference: '',
      doneBy: principal.keyName,
      metadata: {},
    };
    const outcome = await this.write(
      {
        op: request.op,
        amount: request.amount,
        targetId: holdId,
        draft,
        validateOnly: request.validateOnly,
        withOtherCurrencies: principal.multiCurrency,
        balanceOfTarget: found === undefined,
      },
      run,
    );
    if ('refused' in outcome) throw refusalError(outcome, request.amount, holdId, 'hold', request.amountField);
    const hold = outcome.hold!;
    return { hold: { hold, status: hold.status }, entry: outcome.written?.entry, balances: balancesOf(outcome) };
  }

  async getHold(principal: Principal, holdId: string): Promise<HoldView> {
    const hold = await this.findHold(principal, validateHoldId(holdId));
    return { hold, status: holdStatusAt(hold, this.clock()) };
  }

  async listHolds(principal: Principal, input: PageInput & { customerId: string; status: HoldStatus | 'UNRECOGNIZED' | undefined }): Promise<Page<HoldView>> {
    const v = new Violations();
    checkPageSize(v, input.pageSize);
    if (input.customerId !== '') checkCustomerId(v, 'customer_id', input.customerId);
    if (input.status === 'UNRECOGNIZED') v.add('status', 'must be one of HOLD_STATUS_ACTIVE, HOLD_STATUS_CAPTURED, HOLD_STATUS_RELEASED, HOLD_STATUS_EXPIRED');
    v.throwIfAny();
    const status = input.status as HoldStatus | undefined;
    const filterKey = JSON.stringify(['holds', input.customerId, status ?? null]);
    const now = this.clock();
    const repo = new PromotionalCreditRepository(this.dataSource.manager);
    const page = await this.pager.page(principal.tenantId, filterKey, input, (beforeSeq, limit) =>
      repo.listHolds(principal.tenantId, { customerId: input.customerId === '' ? undefined : input.customerId, status, at: now }, beforeSeq, limit),
    );
    return { items: page.items.map((hold) => ({ hold, status: holdStatusAt(hold, now) })), nextPageToken: page.nextPageToken };
  }

  private async findHold(principal: Principal, holdId: string): Promise<HoldRecord> {
    const hold = await this.holdReads.submit({ tenantId: principal.tenantId, id: holdId });
    if (!hold) throw holdNotFound(holdId);
    return hold;
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
    if (!entry) throw entryNotFound(canonical);
    return entry;
  }

  async list(principal: Principal, input: ListInput): Promise<Page<PromotionalCreditEntity>> {
    const { filter, filterKey } = validateListInput(input);
    return this.pager.page(principal.tenantId, filterKey, input, (beforeSeq, limit) => this.pageReads.submit({ tenantId: principal.tenantId, filter, beforeSeq, limit }));
  }

  /** A customer's lots in one currency, in consumption order. */
  async listLots(principal: Principal, input: PageInput & { customerId: string; currencyCode: string; includeEmpty: boolean }): Promise<Page<LotRecord>> {
    const v = new Violations();
    checkPageSize(v, input.pageSize);
    checkCustomerId(v, 'customer_id', input.customerId);
    const currencyCode = resolveCurrency(v, input.currencyCode, principal);
    v.throwIfAny();
    const filterKey = JSON.stringify(['lots', input.customerId, currencyCode, input.includeEmpty]);
    const repo = new PromotionalCreditRepository(this.dataSource.manager);
    const at = this.clock();
    return this.pager.pageAfter<LotRecord>(
      principal.tenantId,
      filterKey,
      input,
      (lot) => [lot.expireTime === null ? '' : lot.expireTime.toISOString(), lot.seq.toString()],
      (after, limit) =>
        repo.listLots(principal.tenantId, input.customerId, currencyCode!, {
          includeEmpty: input.includeEmpty,
          at,
          after: after && { expireTime: after[0] === '' ? null : new Date(after[0]!), seq: BigInt(after[1]!) },
          limit,
        }),
    );
  }

  /** A customer's balances now, or as they were at `asOf` (not in the future, give or take AS_OF_TIME_SLACK_MS). */
  async balances(principal: Principal, customerId: string, asOf?: Date): Promise<Balance[]> {
    const v = new Violations();
    checkCustomerId(v, 'customer_id', customerId);
    const now = this.clock();
    // In Timestamp's range first (review: an instant before PostgreSQL's earliest answered INTERNAL).
    if (asOf !== undefined && checkTime(v, 'as_of_time', asOf) && asOf.getTime() > now.getTime() + AS_OF_TIME_SLACK_MS) v.add('as_of_time', 'must not be in the future');
    v.throwIfAny();
    if (asOf === undefined) return this.balanceReads.submit({ tenantId: principal.tenantId, customerId });
    // An instant still ahead is waited for here, on no connection: in the
    // database the wait would hold a connection and one of the few slots of
    // as-of reads (review: 8 reads of now + 49 ms kept another customer's
    // read of the past waiting 60-90 ms). The database waits for the rest.
    const ahead = asOf.getTime() - now.getTime();
    if (ahead > 0) await new Promise((resolve) => setTimeout(resolve, ahead));
    return this.balancesAsOf(principal.tenantId, customerId, asOf);
  }

  /**
   * Balances as of `asOf` (see PromotionalCreditRepository.balancesAsOf).
   * Each waits on its pooled connection for the changes in flight dated
   * before `asOf`, and a change in flight may need another connection to
   * commit (a keyed call's transaction reads a hold through the pool). So
   * they take few connections: one customer's run one after another, and
   * at most a quarter of the pool (4 at most) run at once; the others wait
   * here, on no connection (review: 40 readers of one customer held all 20
   * connections and stalled every call until the pool's checkout timeout).
   * A customer whose change is stuck delays its own reads, not others'.
   */
  private balancesAsOf(tenantId: string, customerId: string, asOf: Date): Promise<Balance[]> {
    const key = JSON.stringify([tenantId, customerId]);
    const before = this.asOfReadsByCustomer.get(key) ?? Promise.resolve();
    const read = before.then(() =>
      this.asOfReads.use(1, () => retryConflicts(() => new PromotionalCreditRepository(this.dataSource.manager).balancesAsOf(tenantId, customerId, asOf))),
    );
    const done = read.then(
      () => undefined,
      () => undefined,
    );
    this.asOfReadsByCustomer.set(key, done);
    void done.then(() => {
      if (this.asOfReadsByCustomer.get(key) === done) this.asOfReadsByCustomer.delete(key);
    });
    return read;
  }

  /** Settles balances with expirations due (the background sweep; until `signal` aborts); answers how many it settled. */
  sweepExpired(maxBalancesPerStatement = 500, signal?: AbortSignal): Promise<number> {
    const repo = new PromotionalCreditRepository(this.dataSource.manager);
    return inBatches(maxBalancesPerStatement, (n) => repo.sweepExpired(n), signal);
  }
}

function resultOf(outcome: Exclude<LedgerWriteOutcome, { refused: LedgerRefusal }>): BalanceChangeResult {
  return outcome.written ? outcome.written : { entry: undefined, balances: outcome.unchanged };
}

function balancesOf(outcome: Exclude<LedgerWriteOutcome, { refused: LedgerRefusal }>): Balance[] {
  return outcome.written ? outcome.written.balances : outcome.unchanged;
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
    metadata: change.metadata,
  };
}

function entryNotFound(id: string): DomainError {
  return new DomainError(ErrorReason.PromotionalCreditNotFound, `Promotional credit ${id} does not exist.`, [], { id });
}

function holdNotFound(holdId: string): DomainError {
  return new DomainError(ErrorReason.HoldNotFound, `Hold ${holdId} does not exist.`, [], { hold_id: holdId });
}

/** The error a refusal of the write path answers, with a sentence that says why. */
function refusalError(
  outcome: Extract<LedgerWriteOutcome, { refused: LedgerRefusal }>,
  amount: bigint | undefined,
  targetId?: string,
  kind: 'entry' | 'hold' = 'entry',
  amountField: 'amount' | 'amount_decimal' = 'amount',
): DomainError {
  const { currencyCode, customerId } = outcome;
  const fmt = (value: bigint) => `${formatMinorUnits(value, currencyCode)} ${currencyCode}`;
  const available = outcome.balance - outcome.held;
  switch (outcome.refused) {
    case 'INSUFFICIENT_BALANCE':
      return new DomainError(
        ErrorReason.InsufficientBalance,
        amount === undefined
          ? `Cannot set the balance of customer ${customerId} below what active holds keep (${fmt(outcome.held)}).`
          : `Cannot take ${fmt(amount)} from customer ${customerId}: ${fmt(available)} is available (balance ${fmt(outcome.balance)}, held ${fmt(outcome.held)}).`,
        [],
        amount === undefined
          ? { balance: outcome.balance.toString(), held: outcome.held.toString(), available: available.toString(), currency_code: currencyCode }
          : {
              balance: outcome.balance.toString(),
              held: outcome.held.toString(),
              available: available.toString(),
              requested: amount.toString(),
              currency_code: currencyCode,
            },
      );
    case 'BALANCE_LIMIT_EXCEEDED':
      return new DomainError(
        ErrorReason.BalanceLimitExceeded,
        `This change would take the balance of customer ${customerId} in ${currencyCode} past the largest amount a balance can hold.`,
      );
    case 'NOT_FOUND':
      // No such entry or hold of this tenant (read with the write, or before it for a decimal capture).
      return kind === 'hold' ? holdNotFound(targetId!) : entryNotFound(targetId!);
    case 'NOT_REVERSIBLE':
      return new DomainError(ErrorReason.NotReversible, `Promotional credit ${targetId} is an expiration or a reversal, which cannot be reversed.`, [], {
        id: targetId!,
      });
    case 'ALREADY_REVERSED':
      return new DomainError(ErrorReason.AlreadyReversed, `Promotional credit ${targetId} has already been reversed.`, [], { id: targetId! });
    case 'NOTHING_TO_REVERSE':
      return new DomainError(
        ErrorReason.NothingToReverse,
        `Nothing is left of promotional credit ${targetId} to reverse: its lot is spent, expired, or held, or (a deduction) what it took came from credits reversed since.`,
        [],
        { id: targetId! },
      );
    case 'HOLD_NOT_ACTIVE': {
      const status = outcome.hold!.status;
      return new DomainError(ErrorReason.HoldNotActive, `Hold ${targetId} is ${status.toLowerCase()}, not active.`, [], { hold_id: targetId!, status });
    }
    case 'EXPIRE_TIME_PASSED':
      // The API checked expire_time against its own clock; the write's instant came after it.
      return new DomainError(ErrorReason.ValidationFailed, `Invalid request: expire_time must be in the future (it had passed when the change was written).`, [
        { field: 'expire_time', description: 'must be in the future' },
      ]);
    case 'CAPTURE_EXCEEDS_HOLD':
      return new DomainError(
        ErrorReason.ValidationFailed,
        `Invalid request: ${amountField} ${fmt(amount!)} is more than hold ${targetId} holds.`,
        [{ field: amountField, description: 'must be at most the held amount' }],
      );
  }
}
