import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { Coupon, CreateCouponRequest, ValidateCouponRequest } from '../../gen/credits/v1/coupon_service';
import type { Money } from '../../gen/credits/v1/money';
import { decodeError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';
import { fixedCoupon, percentageCoupon, redeemRequest } from './fixtures';
import { inMs, waitUntilPast } from './footprint';

const INT64_MAX = 2n ** 63n - 1n;

/**
 * RedeemCoupon's rules live in SQL (coupon_redeem, under the coupon's lock);
 * ValidateCoupon, which takes no lock, restates them in TypeScript
 * (coupon-redemption.rules.ts). Both must answer the same reason and the
 * same discount for the same coupon, request and counts: RedeemCoupon with
 * validate_only decides exactly as a redemption would, and writes nothing.
 */
describe('ValidateCoupon (TypeScript rules) and RedeemCoupon (coupon_redeem) agree', () => {
  const t = useTenantClients();

  async function both(coupon: Coupon, request: Omit<ValidateCouponRequest, 'code'>): Promise<{ validate: unknown; redeem: unknown }> {
    const validated = await t.coupons.validateCoupon({ ...request, code: coupon.code });
    const validate = { reason: validated.valid ? 'OK' : validated.reason, discount: validated.valid ? validated.discount : undefined };
    let redeem: unknown;
    try {
      const { redemption } = await t.coupons.redeemCoupon(redeemRequest(coupon.code, request.customerId, { ...request, validateOnly: true }));
      redeem = { reason: 'OK', discount: redemption!.discount };
    } catch (err) {
      redeem = { reason: decodeError(err as ServiceError).reason, discount: undefined };
    }
    return { validate, redeem };
  }

  const usd = (amount: bigint): Money => ({ amount, currencyCode: 'USD' });
  const request = (overrides: Partial<ValidateCouponRequest> = {}): Omit<ValidateCouponRequest, 'code'> => ({
    customerId: 'cust',
    planId: '',
    productId: '',
    ...overrides,
  });

  it('on discounts: percentages round half up, fixed amounts cap at the amount, exactly up to 2^63-1', async function () {
    this.timeout(120_000);
    const amounts = [0n, 1n, 5n, 49n, 50n, 51n, 99n, 101n, 149n, 150n, 1999n, 2n ** 53n + 1n, INT64_MAX - 1n, INT64_MAX];
    const coupons: CreateCouponRequest[] = [
      ...[1, 33, 50, 67, 99, 100].map((percentage) => percentageCoupon({ percentage })),
      ...[1n, 150n, INT64_MAX].map((amount) => fixedCoupon({ fixedAmount: usd(amount) })),
    ];
    for (const terms of coupons) {
      const coupon = (await t.coupons.createCoupon(terms)).coupon!;
      for (const amount of amounts) {
        const { validate, redeem } = await both(coupon, request({ amount: usd(amount) }));
        expect(redeem, `${coupon.percentage ?? coupon.fixedAmount?.amount} on ${amount}`).to.deep.equal(validate);
        expect((validate as { reason: string }).reason).to.equal('OK');
      }
    }
  });

  it('on every refusal and the order between them', async function () {
    this.timeout(120_000);
    const cases: Array<{ terms: CreateCouponRequest; requests: Array<Omit<ValidateCouponRequest, 'code'>>; before?: (coupon: Coupon) => Promise<void> }> = [
      { terms: percentageCoupon({ enabled: false, limitedToPlans: ['gold'] }), requests: [request(), request({ planId: 'silver' })] },
      {
        terms: percentageCoupon({ limitedToPlans: ['gold'], excludedFromPlans: ['bronze'], limitedToProducts: ['p1'], excludedFromProducts: ['p2'] }),
        requests: [
          request(),
          request({ planId: 'gold' }),
          request({ planId: 'gold', productId: 'p1' }),
          request({ planId: 'bronze', productId: 'p1' }),
          request({ planId: 'gold', productId: 'p2' }),
          request({ planId: 'silver', productId: 'p1' }),
        ],
      },
      {
        terms: percentageCoupon({ excludedFromPlans: ['bronze'], excludedFromProducts: ['p2'] }),
        requests: [request(), request({ planId: 'bronze' }), request({ productId: 'p2' }), request({ planId: 'gold', productId: 'p3' })],
      },
      {
        terms: fixedCoupon({ fixedAmount: { amount: 500n, currencyCode: 'EUR' } }),
        requests: [request(), request({ amount: usd(1000n) }), request({ amount: { amount: 1000n, currencyCode: 'EUR' } })],
      },
      {
        // Total limit reached (by a hold): MAX before the per-customer limit; not applicable before both.
        terms: percentageCoupon({ maxRedemptions: 1, maxRedemptionsPerCustomer: 1, limitedToPlans: ['gold'] }),
        before: async (coupon) => void (await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'cust', { planId: 'gold', holdUntil: inMs(600_000) }))),
        requests: [request({ planId: 'gold' }), request({ planId: 'gold', customerId: 'other' }), request({ planId: 'silver' })],
      },
      {
        // Per-customer limit: this customer reached it (a confirmed and a held use), another did not; a canceled use never counts.
        terms: percentageCoupon({ maxRedemptions: 10, maxRedemptionsPerCustomer: 2 }),
        before: async (coupon) => {
          await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'cust'));
          await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'cust', { holdUntil: inMs(600_000) }));
          const { redemption } = await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'third'));
          await t.coupons.redeemCoupon(redeemRequest(coupon.code, 'third'));
          await t.coupons.cancelCouponRedemption({ redemptionId: redemption!.id });
        },
        requests: [request(), request({ customerId: 'other' }), request({ customerId: 'third' })],
      },
    ];
    const expiring = (await t.coupons.createCoupon(percentageCoupon({ expireTime: inMs(800), enabled: true, limitedToPlans: ['gold'] }))).coupon!;
    const disabledExpiring = (await t.coupons.createCoupon(percentageCoupon({ expireTime: inMs(800), enabled: false }))).coupon!;
    const seen = new Set<string>();
    for (const c of cases) {
      const coupon = (await t.coupons.createCoupon(c.terms)).coupon!;
      await c.before?.(coupon);
      for (const r of c.requests) {
        const { validate, redeem } = await both(coupon, r);
        expect(redeem, JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))).to.deep.equal(validate);
        seen.add((validate as { reason: string }).reason);
      }
    }
    await waitUntilPast(expiring.expireTime!);
    for (const [coupon, r] of [
      [expiring, request({ planId: 'silver' })],
      [disabledExpiring, request()],
    ] as const) {
      const { validate, redeem } = await both(coupon, r);
      expect(redeem).to.deep.equal(validate);
      seen.add((validate as { reason: string }).reason);
    }
    expect([...seen].sort()).to.deep.equal(
      [
        'OK',
        'COUPON_DISABLED',
        'COUPON_EXPIRED',
        'COUPON_NOT_APPLICABLE',
        'COUPON_MAX_REDEMPTIONS_REACHED',
        'COUPON_CUSTOMER_LIMIT_REACHED',
      ].sort(),
    );
  });
});
