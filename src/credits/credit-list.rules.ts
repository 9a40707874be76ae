import { Violations } from '../common/domain-error';
import { checkPageSize, type PageInput } from '../common/pager';
import { checkCustomerId } from '../common/text';
import type { Metadata } from '../common/metadata';
import { metadataFilter, metadataKey } from '../coupons/coupon-list.rules';
import type { CreditState } from './credit.rules';

export interface CreditListInput extends PageInput {
  customerId: string;
  includeRedeemed: boolean;
  includeExpired: boolean;
  includeRevoked: boolean;
  /** undefined: both. */
  multiUse: boolean | undefined;
  /** Pairs a credit's metadata must all have; empty: no filter. */
  metadata: Record<string, string>;
}

export interface CreditListFilter {
  customerId: string;
  /** The states to list, never empty (ACTIVE is always among them), in a fixed order. */
  states: CreditState[];
  multiUse?: boolean;
  metadata?: Metadata;
}

/** Validates ListCustomerCredits input; `filterKey` binds page tokens to the customer and the filter. */
export function validateCreditListInput(input: CreditListInput): { filter: CreditListFilter; filterKey: string } {
  const v = new Violations();
  checkCustomerId(v, 'customer_id', input.customerId);
  checkPageSize(v, input.pageSize);
  const metadata = metadataFilter(v, input.metadata);
  v.throwIfAny();
  const states: CreditState[] = ['ACTIVE'];
  if (input.includeRedeemed) states.push('REDEEMED');
  if (input.includeExpired) states.push('EXPIRED');
  if (input.includeRevoked) states.push('REVOKED');
  const filter: CreditListFilter = { customerId: input.customerId, states, multiUse: input.multiUse, metadata };
  return {
    filter,
    filterKey: JSON.stringify(['customer_credits', filter.customerId, states, filter.multiUse ?? null, metadataKey(metadata)]),
  };
}
