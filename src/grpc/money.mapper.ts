import type { Money } from '../../gen/credits/v1/money';
import type { MoneyInput } from '../money/money';

/** A row's nullable amount and currency as a Money message: absent when either is null. */
export function moneyToProto(amount: bigint | null, currencyCode: string | null): Money | undefined {
  return amount === null || currencyCode === null ? undefined : { amount, currencyCode };
}

/** A request's Money as the use cases take it, before validation; absent stays absent. */
export function moneyFromProto(money: Money | undefined): MoneyInput | undefined {
  return money === undefined ? undefined : { amount: money.amount, currencyCode: money.currencyCode };
}
