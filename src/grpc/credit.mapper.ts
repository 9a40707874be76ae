import {
  CreditState as CreditStateProto,
  CustomerCredit,
  type BatchCreateCustomerCreditsEntry,
  type CreateCustomerCreditRequest,
  type ListCustomerCreditsRequest,
  type RedeemCustomerCreditRequest,
} from '../../gen/credits/v1/credit_service';
import type { CreditListInput } from '../credits/credit-list.rules';
import { usesRemaining, type CreditDraftInput, type CreditState, type RedeemCreditInput } from '../credits/credit.rules';
import type { CreditEventSnapshots, CreditView } from '../credits/credits.service';
import { couponEventSnapshots } from './coupon.mapper';
import { moneyFromProto, moneyToProto } from './money.mapper';

const CREDIT_STATE_TO_PROTO: Record<CreditState, CreditStateProto> = {
  ACTIVE: CreditStateProto.CREDIT_STATE_ACTIVE,
  REDEEMED: CreditStateProto.CREDIT_STATE_REDEEMED,
  EXPIRED: CreditStateProto.CREDIT_STATE_EXPIRED,
  REVOKED: CreditStateProto.CREDIT_STATE_REVOKED,
};

export function creditToProto({ credit, state }: CreditView): CustomerCredit {
  return {
    id: credit.id,
    customerId: credit.customerId,
    couponId: credit.couponId,
    membershipId: credit.membershipId ?? undefined,
    state: CREDIT_STATE_TO_PROTO[state],
    multiUse: credit.multiUse,
    usesRemaining: usesRemaining(credit) ?? undefined,
    redemptionCount: credit.redemptionCount,
    expireTime: credit.expireTime ?? undefined,
    revenue: moneyToProto(credit.revenueAmount, credit.revenueCurrencyCode),
    createTime: credit.createTime,
    revokeTime: credit.revokeTime ?? undefined,
    lastRedeemTime: credit.lastRedeemTime ?? undefined,
    metadata: credit.metadata,
  };
}

/** Credits, coupons and redemptions as their events carry them: the proto messages' JSON. */
export const creditEventSnapshots: CreditEventSnapshots = Object.assign({}, couponEventSnapshots, {
  customerCredit: (view: Parameters<CreditEventSnapshots['customerCredit']>[0]) => CustomerCredit.toJSON(creditToProto(view)),
});

/** One credit to issue: CreateCustomerCreditRequest (without its coupon) or a batch entry. */
export function creditDraftFromProto(entry: CreateCustomerCreditRequest | BatchCreateCustomerCreditsEntry): CreditDraftInput {
  return {
    customerId: entry.customerId,
    membershipId: entry.membershipId,
    expireTime: entry.expireTime,
    revenue: moneyFromProto(entry.revenue),
    metadata: entry.metadata,
  };
}

export function redeemCreditInputFromProto(request: RedeemCustomerCreditRequest): RedeemCreditInput & { validateOnly: boolean } {
  return {
    customerId: request.customerId,
    creditId: request.creditId,
    planId: request.planId,
    productId: request.productId,
    amount: moneyFromProto(request.amount),
    holdUntil: request.holdUntil,
    metadata: request.metadata,
    validateOnly: request.validateOnly,
  };
}

export function creditListInputFromProto(request: ListCustomerCreditsRequest): CreditListInput {
  return {
    customerId: request.customerId,
    pageSize: request.pageSize,
    pageToken: request.pageToken,
    includeRedeemed: request.includeRedeemed,
    includeExpired: request.includeExpired,
    includeRevoked: request.includeRevoked,
    multiUse: request.multiUse,
    metadata: request.metadata,
  };
}
