/** Exact money: minor units of a known currency. */
export interface Money {
  amount: bigint;
  currencyCode: string;
}

/** An amount of money as a request gives it: minor units and a currency code (empty: the tenant's default). */
export interface MoneyInput {
  amount: bigint;
  currencyCode: string;
}
