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
import { enumFromProto } from './enum.mapper';

const CREDIT_TYPE_TO_PROTO: Record<CreditType, CreditTypeProto> = {
  GENERAL: CreditTypeProto.CREDIT_TYPE_GENERAL,
  LOYALTY_CREDITS: CreditTypeProto.CREDIT_TYPE_LOYALTY_CREDITS,
  REFERRAL_REWARDS: CreditTypeProto.CREDIT_TYPE_REFERRAL_REWARDS,
};

const ENTRY_TYPE_TO_PROTO: Record<EntryType, PromotionalCreditType> = {
  INCREMENT: PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_INCREMENT,
  DECREMENT: PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_DECREMENT,
};

export const creditTypeFromProto = enumFromProto(CREDIT_TYPE_TO_PROTO);
const entryTypeOrUnset = enumFromProto(ENTRY_TYPE_TO_PROTO);

/** Entry types appear only in filters, where unset is as wrong as unknown. */
function entryTypeFromProto(value: PromotionalCreditType): EntryType | 'UNRECOGNIZED' {
  return entryTypeOrUnset(value) ?? 'UNRECOGNIZED';
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
    type: ENTRY_TYPE_TO_PROTO[entry.type],
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
