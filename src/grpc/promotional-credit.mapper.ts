import {
  CreditType as CreditTypeProto,
  PromotionalCreditType,
  type CustomerBalance,
  type ListPromotionalCreditsRequest,
  type PromotionalCredit,
} from '../../gen/credits/v1/promotional_credit_service';
import type { StringFilter as StringFilterProto, TimeFilter as TimeFilterProto } from '../../gen/credits/v1/filters';
import type { StringFilter, TimeFilter } from '../common/list-filters';
import { formatMinorUnits } from '../money/decimal';
import type { ListInput } from '../promotional-credits/promotional-credit-list.rules';
import type { CreditType, EntryType, PromotionalCreditEntity } from '../promotional-credits/promotional-credit.entity';
import type { Balance } from '../promotional-credits/promotional-credit.repository';
import type { BalanceChangeInput } from '../promotional-credits/promotional-credit.rules';

const CREDIT_TYPE_TO_PROTO: Record<CreditType, CreditTypeProto> = {
  GENERAL: CreditTypeProto.CREDIT_TYPE_GENERAL,
  LOYALTY_CREDITS: CreditTypeProto.CREDIT_TYPE_LOYALTY_CREDITS,
  REFERRAL_REWARDS: CreditTypeProto.CREDIT_TYPE_REFERRAL_REWARDS,
};

export function creditTypeFromProto(value: CreditTypeProto): CreditType | 'UNRECOGNIZED' | undefined {
  switch (value) {
    case CreditTypeProto.CREDIT_TYPE_UNSPECIFIED:
      return undefined;
    case CreditTypeProto.CREDIT_TYPE_GENERAL:
      return 'GENERAL';
    case CreditTypeProto.CREDIT_TYPE_LOYALTY_CREDITS:
      return 'LOYALTY_CREDITS';
    case CreditTypeProto.CREDIT_TYPE_REFERRAL_REWARDS:
      return 'REFERRAL_REWARDS';
    default:
      return 'UNRECOGNIZED';
  }
}

function entryTypeFromProto(value: PromotionalCreditType): EntryType | 'UNRECOGNIZED' {
  switch (value) {
    case PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_INCREMENT:
      return 'INCREMENT';
    case PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_DECREMENT:
      return 'DECREMENT';
    default:
      return 'UNRECOGNIZED';
  }
}

/** The fields Add, Deduct and Set share. */
export function balanceChangeFromProto(request: {
  customerId: string;
  amount?: bigint | undefined;
  amountDecimal?: string | undefined;
  currencyCode: string;
  description: string;
  creditType: CreditTypeProto;
  reference: string;
}): BalanceChangeInput {
  return {
    customerId: request.customerId,
    amount: request.amount,
    amountDecimal: request.amountDecimal,
    currencyCode: request.currencyCode,
    description: request.description,
    creditType: creditTypeFromProto(request.creditType),
    reference: request.reference,
  };
}

export function promotionalCreditToProto(entry: PromotionalCreditEntity): PromotionalCredit {
  return {
    id: entry.id,
    customerId: entry.customerId,
    type:
      entry.type === 'INCREMENT'
        ? PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_INCREMENT
        : PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_DECREMENT,
    amount: entry.amount,
    amountDecimal: formatMinorUnits(entry.amount, entry.currencyCode),
    currencyCode: entry.currencyCode,
    description: entry.description,
    creditType: CREDIT_TYPE_TO_PROTO[entry.creditType],
    reference: entry.reference,
    closingBalance: entry.closingBalance,
    doneBy: entry.doneBy,
    createTime: entry.createTime,
  };
}

export function customerBalanceToProto(customerId: string, balances: Balance[]): CustomerBalance {
  return {
    customerId,
    balances: balances.map((b) => ({
      currencyCode: b.currencyCode,
      amount: b.amount,
      amountDecimal: formatMinorUnits(b.amount, b.currencyCode),
    })),
  };
}

export function stringFilterFromProto(filter: StringFilterProto | undefined): StringFilter | undefined {
  if (!filter) return undefined;
  return { is: filter.is, isNot: filter.isNot, startsWith: filter.startsWith };
}

export function timeFilterFromProto(filter: TimeFilterProto | undefined): TimeFilter | undefined {
  if (!filter) return undefined;
  return {
    after: filter.after,
    before: filter.before,
    on: filter.on,
    between: filter.between ? { start: filter.between.start, end: filter.between.end } : undefined,
  };
}

export function listInputFromProto(request: ListPromotionalCreditsRequest): ListInput {
  const type = request.type;
  return {
    pageSize: request.pageSize,
    pageToken: request.pageToken,
    id: stringFilterFromProto(request.id),
    customerId: stringFilterFromProto(request.customerId),
    type: type
      ? {
          is: type.is === undefined ? undefined : entryTypeFromProto(type.is),
          isNot: type.isNot === undefined ? undefined : entryTypeFromProto(type.isNot),
          in: type.in.map(entryTypeFromProto),
          notIn: type.notIn.map(entryTypeFromProto),
        }
      : undefined,
    createTime: timeFilterFromProto(request.createTime),
  };
}
