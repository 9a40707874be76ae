import {
  CreditType as CreditTypeProto,
  HoldStatus as HoldStatusProto,
  Origin as OriginProto,
  PromotionalCreditType,
  type CreditLot,
  type CustomerBalance,
  type Hold,
  type ListPromotionalCreditsRequest,
  type PromotionalCredit,
} from '../../gen/credits/v1/promotional_credit_service';
import type { StringFilter as StringFilterProto, TimeFilter as TimeFilterProto } from '../../gen/credits/v1/filters';
import type { StringFilter, TimeFilter } from '../common/list-filters';
import { formatMinorUnits } from '../money/decimal';
import type { ListInput } from '../promotional-credits/promotional-credit-list.rules';
import type { CreditType, EntryType, Origin, PromotionalCreditEntity } from '../promotional-credits/promotional-credit.entity';
import type { Balance, HoldStatus, LotRecord } from '../promotional-credits/promotional-credit.repository';
import type { HoldView } from '../promotional-credits/promotional-credits.service';
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

const ORIGIN_TO_PROTO: Record<Origin, OriginProto> = {
  ADD: OriginProto.ORIGIN_ADD,
  DEDUCT: OriginProto.ORIGIN_DEDUCT,
  SET: OriginProto.ORIGIN_SET,
  EXPIRATION: OriginProto.ORIGIN_EXPIRATION,
  REVERSAL: OriginProto.ORIGIN_REVERSAL,
  HOLD_CAPTURE: OriginProto.ORIGIN_HOLD_CAPTURE,
};

const HOLD_STATUS_TO_PROTO: Record<HoldStatus, HoldStatusProto> = {
  ACTIVE: HoldStatusProto.HOLD_STATUS_ACTIVE,
  CAPTURED: HoldStatusProto.HOLD_STATUS_CAPTURED,
  RELEASED: HoldStatusProto.HOLD_STATUS_RELEASED,
  EXPIRED: HoldStatusProto.HOLD_STATUS_EXPIRED,
};

export const creditTypeFromProto = enumFromProto(CREDIT_TYPE_TO_PROTO);
export const holdStatusFromProto = enumFromProto(HOLD_STATUS_TO_PROTO);
const originOrUnset = enumFromProto(ORIGIN_TO_PROTO);

/** Origins appear in requests only in filters, where unset is as wrong as unknown. */
function originFromProto(value: OriginProto): Origin | 'UNRECOGNIZED' {
  return originOrUnset(value) ?? 'UNRECOGNIZED';
}
const entryTypeOrUnset = enumFromProto(ENTRY_TYPE_TO_PROTO);

/** Entry types appear only in filters, where unset is as wrong as unknown. */
function entryTypeFromProto(value: PromotionalCreditType): EntryType | 'UNRECOGNIZED' {
  return entryTypeOrUnset(value) ?? 'UNRECOGNIZED';
}

/** The fields Add, Deduct and Set share (Deduct has no expire_time). */
export function balanceChangeFromProto(request: {
  customerId: string;
  amount?: bigint | undefined;
  amountDecimal?: string | undefined;
  currencyCode: string;
  description: string;
  creditType: CreditTypeProto;
  reference: string;
  expireTime?: Date | undefined;
  metadata: Record<string, string>;
  validateOnly: boolean;
}): BalanceChangeInput {
  return {
    customerId: request.customerId,
    amount: request.amount,
    amountDecimal: request.amountDecimal,
    currencyCode: request.currencyCode,
    description: request.description,
    creditType: creditTypeFromProto(request.creditType),
    reference: request.reference,
    expireTime: request.expireTime,
    metadata: request.metadata,
    validateOnly: request.validateOnly,
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
    origin: entry.origin === null ? OriginProto.ORIGIN_UNSPECIFIED : ORIGIN_TO_PROTO[entry.origin],
    expireTime: entry.expireTime ?? undefined,
    allocations: entry.allocations.map((a) => ({ lotId: a.lotId, amount: a.amount, amountDecimal: formatMinorUnits(a.amount, entry.currencyCode) })),
    reversesId: entry.reversesId ?? '',
    metadata: { ...entry.metadata },
    hash: entry.hash ?? '',
  };
}

/** Messages of entries, by entry: see promotionalCreditMessage. */
const ENTRY_MESSAGES = new WeakMap<PromotionalCreditEntity, PromotionalCredit>();

/**
 * An entry's message, frozen, made once per entry object: an entry never
 * changes, and the repository answers the same object for an entry it read
 * lately (READ_ENTRIES), so a page read again and again maps each of its
 * entries once, and encodes each once (a frozen message cannot change: see
 * encodeListPromotionalCreditsResponse).
 */
export function promotionalCreditMessage(entry: PromotionalCreditEntity): PromotionalCredit {
  let message = ENTRY_MESSAGES.get(entry);
  if (message === undefined) {
    message = promotionalCreditToProto(entry);
    Object.freeze(message.metadata);
    for (const allocation of message.allocations) Object.freeze(allocation);
    Object.freeze(message.allocations);
    Object.freeze(message);
    ENTRY_MESSAGES.set(entry, message);
  }
  return message;
}

export function customerBalanceToProto(customerId: string, balances: Balance[]): CustomerBalance {
  return {
    customerId,
    balances: balances.map((b) => {
      const available = b.amount - b.held;
      return {
        currencyCode: b.currencyCode,
        amount: b.amount,
        amountDecimal: formatMinorUnits(b.amount, b.currencyCode),
        held: b.held,
        heldDecimal: formatMinorUnits(b.held, b.currencyCode),
        available,
        availableDecimal: formatMinorUnits(available, b.currencyCode),
      };
    }),
  };
}

export function lotToProto(lot: LotRecord): CreditLot {
  return {
    id: lot.id,
    customerId: lot.customerId,
    currencyCode: lot.currencyCode,
    amount: lot.amount,
    amountDecimal: formatMinorUnits(lot.amount, lot.currencyCode),
    remaining: lot.remaining,
    remainingDecimal: formatMinorUnits(lot.remaining, lot.currencyCode),
    expireTime: lot.expireTime ?? undefined,
    creditType: CREDIT_TYPE_TO_PROTO[lot.creditType],
    createTime: lot.createTime,
  };
}

export function holdToProto({ hold, status }: HoldView): Hold {
  return {
    id: hold.id,
    customerId: hold.customerId,
    currencyCode: hold.currencyCode,
    amount: hold.amount,
    amountDecimal: formatMinorUnits(hold.amount, hold.currencyCode),
    capturedAmount: hold.capturedAmount,
    capturedAmountDecimal: formatMinorUnits(hold.capturedAmount, hold.currencyCode),
    status: HOLD_STATUS_TO_PROTO[status],
    description: hold.description,
    reference: hold.reference,
    metadata: { ...hold.metadata },
    expireTime: hold.expireTime,
    createTime: hold.createTime,
    // An ACTIVE hold read as EXPIRED changed status at its expire_time.
    updateTime: status === 'EXPIRED' && hold.status === 'ACTIVE' ? hold.expireTime : hold.updateTime,
    doneBy: hold.doneBy,
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
    origin: request.origin
      ? {
          is: request.origin.is === undefined ? undefined : originFromProto(request.origin.is),
          isNot: request.origin.isNot === undefined ? undefined : originFromProto(request.origin.isNot),
          in: request.origin.in.map(originFromProto),
          notIn: request.origin.notIn.map(originFromProto),
        }
      : undefined,
    metadata: request.metadata,
  };
}
