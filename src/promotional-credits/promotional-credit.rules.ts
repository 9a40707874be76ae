import { Violations } from '../common/domain-error';
import { checkCustomerId, checkText } from '../common/text';
import { parseDecimalAmount } from '../money/decimal';
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
}

/** A validated balance change. `amount` is undefined only for "deduct everything". */
export interface BalanceChange {
  customerId: string;
  amount: bigint | undefined;
  currencyCode: string;
  description: string;
  creditType: CreditType;
  reference: string;
}

export type ChangeKind = 'add' | 'deduct' | 'set';

/**
 * Validates Add/Deduct/Set input, listing every bad field at once:
 * Add needs an amount > 0, Deduct an optional amount > 0 (none = all),
 * Set an amount >= 0; exactly one of `amount` and `amount_decimal`.
 */
export function validateBalanceChange(kind: ChangeKind, input: BalanceChangeInput, principal: Principal): BalanceChange {
  const v = new Violations();
  checkCustomerId(v, 'customer_id', input.customerId);
  const currencyCode = resolveCurrency(v, input.currencyCode, principal);
  checkText(v, 'description', input.description, 1, 250);
  checkText(v, 'reference', input.reference, 0, 500);
  if (input.creditType === 'UNRECOGNIZED') v.add('credit_type', 'must be one of CREDIT_TYPE_GENERAL, CREDIT_TYPE_LOYALTY_CREDITS, CREDIT_TYPE_REFERRAL_REWARDS');

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
  } else if (kind !== 'deduct') {
    v.add('amount', 'is required: give amount (minor units) or amount_decimal');
  }
  v.throwIfAny();
  return {
    customerId: input.customerId,
    amount,
    currencyCode: currencyCode!,
    description: input.description,
    creditType: input.creditType === undefined ? 'GENERAL' : (input.creditType as CreditType),
    reference: input.reference,
  };
}

function checkAmount(v: Violations, field: string, amount: bigint, kind: ChangeKind): void {
  if (amount < 0n) v.add(field, 'must not be negative');
  else if (amount === 0n && kind !== 'set') v.add(field, 'must be greater than zero');
}
