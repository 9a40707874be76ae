import { expect } from 'chai';
import fc from 'fast-check';
import { computeDiscount } from '../../src/coupons/coupon-redemption.rules';
import { INT64_MAX } from '../../src/money/decimal';

const percent = (percentage: number) => ({ type: 'PERCENTAGE' as const, percentage, fixedAmount: null });
const fixed = (fixedAmount: bigint) => ({ type: 'FIXED_AMOUNT' as const, percentage: null, fixedAmount });

describe('coupon discount maths (unit)', () => {
  it('rounds a percentage to the nearest minor unit, halves up', () => {
    expect(computeDiscount(percent(10), 1005n)).to.equal(101n); // 100.5
    expect(computeDiscount(percent(10), 1004n)).to.equal(100n); // 100.4
    expect(computeDiscount(percent(10), 1006n)).to.equal(101n); // 100.6
    expect(computeDiscount(percent(50), 1n)).to.equal(1n); // 0.5
    expect(computeDiscount(percent(50), 3n)).to.equal(2n); // 1.5
    expect(computeDiscount(percent(15), 103n)).to.equal(15n); // 15.45
    expect(computeDiscount(percent(1), 49n)).to.equal(0n); // 0.49
    expect(computeDiscount(percent(1), 50n)).to.equal(1n); // 0.5
    expect(computeDiscount(percent(33), 150n)).to.equal(50n); // 49.5
  });

  it('gives the whole amount at 100% and nothing on a zero amount', () => {
    expect(computeDiscount(percent(100), 12345n)).to.equal(12345n);
    expect(computeDiscount(percent(37), 0n)).to.equal(0n);
    expect(computeDiscount(fixed(500n), 0n)).to.equal(0n);
  });

  it('never takes the total below zero with a fixed amount', () => {
    expect(computeDiscount(fixed(500n), 300n)).to.equal(300n);
    expect(computeDiscount(fixed(500n), 500n)).to.equal(500n);
    expect(computeDiscount(fixed(500n), 501n)).to.equal(500n);
    expect(computeDiscount(fixed(INT64_MAX), 1n)).to.equal(1n);
  });

  it('is exact for amounts near the int64 maximum', () => {
    // 2^63-1 = 9223372036854775807; the intermediate product does not fit in int64, bigint keeps it exact.
    expect(computeDiscount(percent(100), INT64_MAX)).to.equal(INT64_MAX);
    expect(computeDiscount(percent(50), INT64_MAX)).to.equal(4611686018427387904n); // ...903.5 rounds up
    expect(computeDiscount(percent(99), INT64_MAX)).to.equal(9131138316486228049n); // ...048.93
    expect(computeDiscount(percent(1), 9007199254740993n)).to.equal(90071992547410n); // ...409.93
    expect(computeDiscount(fixed(9007199254740993n), INT64_MAX)).to.equal(9007199254740993n);
    expect(() => computeDiscount(percent(10), INT64_MAX + 1n)).to.throw(RangeError);
    expect(() => computeDiscount(percent(10), -1n)).to.throw(RangeError);
  });

  it('stays between zero and the amount and matches rational rounding (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: INT64_MAX }), fc.integer({ min: 1, max: 100 }), (amount, p) => {
        const discount = computeDiscount(percent(p), amount);
        expect(discount >= 0n && discount <= amount).to.equal(true);
        // discount is the integer nearest amount*p/100, halves up: |100*discount - amount*p| <= 50, and = 50 only rounding up.
        const diff = 100n * discount - amount * BigInt(p);
        expect(diff >= -49n && diff <= 50n, `amount ${amount}, ${p}%: diff ${diff}`).to.equal(true);
      }),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: INT64_MAX }), fc.bigInt({ min: 1n, max: INT64_MAX }), (amount, f) => {
        const discount = computeDiscount(fixed(f), amount);
        expect(discount).to.equal(f < amount ? f : amount);
        expect(amount - discount >= 0n).to.equal(true);
      }),
    );
  });
});
