import { Violations } from '../common/domain-error';
import { checkMetadata, type Metadata } from '../common/metadata';
import { checkCustomerId, checkText, checkUuid } from '../common/text';
import { checkFutureTime, DAYS, yearsAfter } from '../common/time-rules';
import { decimalSyntaxProblem, parseDecimalAmount } from '../money/decimal';
import { resolveCurrency } from '../money/resolve-currency';
import type { Principal } from '../tenants/principal';
import type { CreditType } from './promotional-credit.entity';

/** A balance change as the transport hands it over, before validation. */
export interface BalanceChangeInput {
  customerId: string;
  amount: bigint | undefined;
  amountDecimal: string | undefined;
  currencyCode: string;
  description: string;
  /** undefined: unset (GENERAL); 'UNRECOGNIZED': a number the contract does not define. */
  creditType: CreditType | 'UNRECOGNIZED' | undefined;
  reference: string;
  /** Add and Set only. */
  expireTime?: Date | undefined;
  metadata?: Record<string, string> | undefined;
  validateOnly?: boolean | undefined;
}

/** A validated balance change. `amount` is undefined only for "deduct everything". */
export interface BalanceChange {
  customerId: string;
  amount: bigint | undefined;
  currencyCode: string;
  description: string;
  creditType: CreditType;
  reference: string;
  expireTime: Date | undefined;
  metadata: Metadata;
  validateOnly: boolean;
}

/** How far ahead credits may be set to expire, in calendar years (UTC): not a count of days, which is a day too many after some dates. */
export const MAX_CREDIT_LIFETIME_YEARS = 10;
/** How far ahead a hold may be set to expire, and how long it lasts when not told. */
export const MAX_HOLD_MS = DAYS(7);
export const DEFAULT_HOLD_MS = 15 * 60 * 1000;

export type ChangeKind = 'add' | 'deduct' | 'set';

/**
 * Validates Add/Deduct/Set input, listing every bad field at once:
 * Add needs an amount > 0, Deduct an optional amount > 0 (none = all),
 * Set an amount >= 0; exactly one of `amount` and `amount_decimal`.
 */
export function validateBalanceChange(kind: ChangeKind, input: BalanceChangeInput, principal: Principal, now: Date = new Date()): BalanceChange {
  const v = new Violations();
  checkCustomerId(v, 'customer_id', input.customerId);
  const currencyCode = resolveCurrency(v, input.currencyCode, principal);
  checkText(v, 'description', input.description, 1, 250);
  checkText(v, 'reference', input.reference, 0, 500);
  if (input.creditType === 'UNRECOGNIZED') v.add('credit_type', 'must be one of CREDIT_TYPE_GENERAL, CREDIT_TYPE_LOYALTY_CREDITS, CREDIT_TYPE_REFERRAL_REWARDS');
  if (input.expireTime !== undefined) checkFutureTime(v, 'expire_time', input.expireTime, now, yearsAfter(now, MAX_CREDIT_LIFETIME_YEARS).getTime() - now.getTime(), '10 years');
  const metadata = checkMetadata(v, 'metadata', input.metadata);
  const amount = checkAmountInput(v, input, currencyCode, kind);
  v.throwIfAny();
  return {
    customerId: input.customerId,
    amount,
    currencyCode: currencyCode!,
    description: input.description,
    creditType: input.creditType === undefined ? 'GENERAL' : (input.creditType as CreditType),
    reference: input.reference,
    expireTime: input.expireTime,
    metadata,
    validateOnly: input.validateOnly === true,
  };
}

/** `amount` or `amount_decimal` (exactly one; for Deduct and Capture at most one), read in the currency. */
function checkAmountInput(
  v: Violations,
  input: { amount?: bigint | undefined; amountDecimal?: string | undefined },
  currencyCode: string | undefined,
  kind: ChangeKind | 'hold' | 'capture',
): bigint | undefined {
  let amount: bigint | undefined;
  if (input.amount !== undefined && input.amountDecimal !== undefined) {
    v.add('amount', 'and amount_decimal are both set; give exactly one');
    v.add('amount_decimal', 'and amount are both set; give exactly one');
  } else if (input.amount !== undefined) {
    amount = input.amount;
    checkAmount(v, 'amount', amount, kind);
  } else if (input.amountDecimal !== undefined) {
    if (currencyCode !== undefined) {
      const parsed = parseDecimalAmount(input.amountDecimal, currencyCode);
      if (!parsed.ok) v.add('amount_decimal', parsed.problem);
      else {
        amount = parsed.minor;
        checkAmount(v, 'amount_decimal', amount, kind);
      }
    }
  } else if (kind !== 'deduct' && kind !== 'capture') {
    v.add('amount', 'is required: give amount (minor units) or amount_decimal');
  }
  return amount;
}

function checkAmount(v: Violations, field: string, amount: bigint, kind: ChangeKind | 'hold' | 'capture'): void {
  if (amount < 0n) v.add(field, 'must not be negative');
  else if (amount === 0n && kind !== 'set') v.add(field, 'must be greater than zero');
}

/** ReversePromotionalCredit as the transport hands it over. */
export interface ReversalInput {
  id: string;
  description: string;
  reference: string;
  metadata: Record<string, string> | undefined;
  validateOnly: boolean;
}

export interface Reversal {
  id: string;
  description: string;
  reference: string;
  metadata: Metadata;
  validateOnly: boolean;
}

export function validateReversal(input: ReversalInput): Reversal {
  const v = new Violations();
  const id = checkUuid(v, 'id', input.id);
  checkText(v, 'description', input.description, 1, 250);
  checkText(v, 'reference', input.reference, 0, 500);
  const metadata = checkMetadata(v, 'metadata', input.metadata);
  v.throwIfAny();
  return { id, description: input.description, reference: input.reference, metadata, validateOnly: input.validateOnly };
}

/** HoldPromotionalCredits as the transport hands it over. */
export interface HoldInput {
  customerId: string;
  amount?: bigint | undefined;
  amountDecimal?: string | undefined;
  currencyCode: string;
  description: string;
  reference: string;
  expireTime?: Date | undefined;
  metadata: Record<string, string> | undefined;
  validateOnly: boolean;
}

export interface HoldRequest {
  customerId: string;
  amount: bigint;
  currencyCode: string;
  description: string;
  reference: string;
  expireTime: Date;
  metadata: Metadata;
  validateOnly: boolean;
}

export function validateHold(input: HoldInput, principal: Principal, now: Date): HoldRequest {
  const v = new Violations();
  checkCustomerId(v, 'customer_id', input.customerId);
  const currencyCode = resolveCurrency(v, input.currencyCode, principal);
  checkText(v, 'description', input.description, 1, 250);
  checkText(v, 'reference', input.reference, 0, 500);
  if (input.expireTime !== undefined) checkFutureTime(v, 'expire_time', input.expireTime, now, MAX_HOLD_MS, '7 days');
  const metadata = checkMetadata(v, 'metadata', input.metadata);
  const amount = checkAmountInput(v, input, currencyCode, 'hold');
  v.throwIfAny();
  return {
    customerId: input.customerId,
    amount: amount!,
    currencyCode: currencyCode!,
    description: input.description,
    reference: input.reference,
    expireTime: input.expireTime ?? new Date(now.getTime() + DEFAULT_HOLD_MS),
    metadata,
    validateOnly: input.validateOnly,
  };
}

/** CapturePromotionalCreditHold as the transport hands it over. */
export interface CaptureInput {
  holdId: string;
  amount?: bigint | undefined;
  amountDecimal?: string | undefined;
  description: string;
  validateOnly: boolean;
}

/** Checks what can be checked before the hold is read; the decimal amount is read in the hold's currency (see readCaptureAmount). */
export function validateCapture(input: CaptureInput): { holdId: string; description: string | undefined; validateOnly: boolean } {
  const v = new Violations();
  const holdId = checkUuid(v, 'hold_id', input.holdId);
  checkText(v, 'description', input.description, 0, 250);
  if (input.amount !== undefined && input.amountDecimal !== undefined) {
    v.add('amount', 'and amount_decimal are both set; give at most one');
    v.add('amount_decimal', 'and amount are both set; give at most one');
  } else if (input.amount !== undefined) {
    checkAmount(v, 'amount', input.amount, 'capture'); // listed with the other bad fields, whatever the hold
  } else if (input.amountDecimal !== undefined) {
    // Its decimal places need the hold's currency (readCaptureAmount); its form does not.
    const problem = decimalSyntaxProblem(input.amountDecimal);
    if (problem !== undefined) v.add('amount_decimal', problem);
  }
  v.throwIfAny();
  return { holdId, description: input.description === '' ? undefined : input.description, validateOnly: input.validateOnly };
}

/** The capture's amount in the hold's currency; undefined: all of the hold. */
export function readCaptureAmount(input: CaptureInput, currencyCode: string): bigint | undefined {
  const v = new Violations();
  const amount = checkAmountInput(v, input, currencyCode, 'capture');
  v.throwIfAny();
  return amount;
}

export function validateHoldId(holdId: string): string {
  const v = new Violations();
  const id = checkUuid(v, 'hold_id', holdId);
  v.throwIfAny();
  return id;
}
