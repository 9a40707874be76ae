import { Metadata } from '@grpc/grpc-js';
import type { Coupon, CreateCouponRequest } from '../../gen/credits/v1/coupon_service';
import { Frequency } from '../../gen/credits/v1/coupon_service';
import type {
  CreateCustomerCreditRequest,
  CustomerCredit,
  ListCustomerCreditsRequest,
  RedeemCustomerCreditRequest,
} from '../../gen/credits/v1/credit_service';
import { percentageCoupon } from '../coupons/fixtures';
import type { CreditClient } from '../support/server';
import { useTenantClients, type TenantClients } from '../support/tenant-clients';

export type { CreditClient };

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A CreateCustomerCreditRequest with no membership, expiry or revenue; `overrides` replace fields. */
export function issueRequest(couponId: string, customerId: string, overrides: Partial<CreateCustomerCreditRequest> = {}): CreateCustomerCreditRequest {
  return { customerId, couponId, membershipId: '', metadata: {}, validateOnly: false, ...overrides };
}

/** A RedeemCustomerCreditRequest with no plan, product or amount. */
export function redeemCreditRequest(customerId: string, creditId: string, overrides: Partial<RedeemCustomerCreditRequest> = {}): RedeemCustomerCreditRequest {
  return { customerId, creditId, planId: '', productId: '', metadata: {}, validateOnly: false, ...overrides };
}

/** A ListCustomerCreditsRequest with the defaults (active credits only, first page). */
export function listRequest(customerId: string, overrides: Partial<ListCustomerCreditsRequest> = {}): ListCustomerCreditsRequest {
  return { customerId, pageSize: 0, pageToken: '', includeRedeemed: false, includeExpired: false, includeRevoked: false, metadata: {}, ...overrides };
}

export function withIdempotencyKey(key: string): Metadata {
  const md = new Metadata();
  md.set('idempotency-key', key);
  return md;
}

/** Coupon requests for each frequency (10% off, no limits). */
export const once = (overrides: Partial<CreateCouponRequest> = {}) => percentageCoupon({ frequency: Frequency.FREQUENCY_ONCE, ...overrides });
export const limited = (interval: number, overrides: Partial<CreateCouponRequest> = {}) =>
  percentageCoupon({ frequency: Frequency.FREQUENCY_LIMITED, frequencyInterval: interval, ...overrides });
export const lifetime = (overrides: Partial<CreateCouponRequest> = {}) => percentageCoupon({ frequency: Frequency.FREQUENCY_LIFETIME, ...overrides });

/** useTenantClients() with two shortcuts for credit tests. */
export interface CreditContext extends TenantClients {
  /** Creates a coupon and answers it. */
  coupon(request: CreateCouponRequest): Promise<Coupon>;
  /** Issues a credit and answers it. */
  issue(couponId: string, customerId: string, overrides?: Partial<CreateCustomerCreditRequest>): Promise<CustomerCredit>;
}

/** Registers mocha hooks that give each test a fresh tenant with coupon and credit clients (see useTenantClients). */
export function creditContext(): CreditContext {
  const t = useTenantClients();
  return Object.assign(t, {
    coupon: async (request: CreateCouponRequest) => (await t.coupons.createCoupon(request)).coupon!,
    issue: async (couponId: string, customerId: string, overrides: Partial<CreateCustomerCreditRequest> = {}) =>
      (await t.credits.createCustomerCredit(issueRequest(couponId, customerId, overrides))).credit!,
  });
}
