import { Metadata } from '@grpc/grpc-js';
import type { Coupon, CreateCouponRequest } from '../../gen/credits/v1/coupon_service';
import { Frequency } from '../../gen/credits/v1/coupon_service';
import type {
  CreateCustomerCreditRequest,
  CustomerCredit,
  ListCustomerCreditsRequest,
  RedeemCustomerCreditRequest,
} from '../../gen/credits/v1/credit_service';
import { percentageCoupon, type CouponClient } from '../coupons/fixtures';
import { coupons, credits, sharedServer, type TestServer } from '../support/server';
import { newTenant, type TestTenant } from '../support/tenant';

export type CreditClient = ReturnType<typeof credits>;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A CreateCustomerCreditRequest with no membership, expiry or revenue; `overrides` replace fields. */
export function issueRequest(couponId: string, customerId: string, overrides: Partial<CreateCustomerCreditRequest> = {}): CreateCustomerCreditRequest {
  return { customerId, couponId, membershipId: '', ...overrides };
}

/** A RedeemCustomerCreditRequest with no plan, product or amount. */
export function redeemCreditRequest(customerId: string, creditId: string, overrides: Partial<RedeemCustomerCreditRequest> = {}): RedeemCustomerCreditRequest {
  return { customerId, creditId, planId: '', productId: '', ...overrides };
}

/** A ListCustomerCreditsRequest with the defaults (active credits only, first page). */
export function listRequest(customerId: string, overrides: Partial<ListCustomerCreditsRequest> = {}): ListCustomerCreditsRequest {
  return { customerId, pageSize: 0, pageToken: '', includeRedeemed: false, includeExpired: false, includeRevoked: false, ...overrides };
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

/** Per-test context: a fresh tenant with a coupon client and a credit client on the shared server. */
export interface CreditContext {
  server: TestServer;
  tenant: TestTenant;
  coupons: CouponClient;
  credits: CreditClient;
  /** Creates a coupon and answers it. */
  coupon(request: CreateCouponRequest): Promise<Coupon>;
  /** Issues a credit and answers it. */
  issue(couponId: string, customerId: string, overrides?: Partial<CreateCustomerCreditRequest>): Promise<CustomerCredit>;
}

/** Registers mocha hooks that give each test a fresh CreditContext. */
export function creditContext(): CreditContext {
  const ctx = {} as CreditContext;
  before(async () => {
    ctx.server = await sharedServer();
  });
  beforeEach(async () => {
    ctx.tenant = await newTenant(ctx.server.dataSource);
    ctx.coupons = coupons(ctx.server.address, ctx.tenant.rwKey);
    ctx.credits = credits(ctx.server.address, ctx.tenant.rwKey);
    ctx.coupon = async (request) => (await ctx.coupons.createCoupon(request)).coupon!;
    ctx.issue = async (couponId, customerId, overrides = {}) =>
      (await ctx.credits.createCustomerCredit(issueRequest(couponId, customerId, overrides))).credit!;
  });
  afterEach(() => {
    ctx.coupons.close();
    ctx.credits.close();
  });
  return ctx;
}
