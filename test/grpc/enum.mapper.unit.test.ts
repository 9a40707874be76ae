import { expect } from 'chai';
import { CouponType } from '../../gen/credits/v1/coupon_service';
import { enumFromProto } from '../../src/grpc/enum.mapper';

describe('proto enums to domain values (unit)', () => {
  const toProto: Record<'PERCENTAGE' | 'FIXED_AMOUNT', CouponType> = {
    PERCENTAGE: CouponType.COUPON_TYPE_PERCENTAGE,
    FIXED_AMOUNT: CouponType.COUPON_TYPE_FIXED_AMOUNT,
  };
  const couponType = enumFromProto(toProto);

  it('reads every value of the table back, the zero value as unset and any other number as UNRECOGNIZED', () => {
    expect(couponType(CouponType.COUPON_TYPE_PERCENTAGE)).to.equal('PERCENTAGE');
    expect(couponType(CouponType.COUPON_TYPE_FIXED_AMOUNT)).to.equal('FIXED_AMOUNT');
    expect(couponType(CouponType.COUPON_TYPE_UNSPECIFIED)).to.equal(undefined);
    expect(couponType(CouponType.UNRECOGNIZED)).to.equal('UNRECOGNIZED');
    expect(couponType(7 as CouponType)).to.equal('UNRECOGNIZED');
  });
});
