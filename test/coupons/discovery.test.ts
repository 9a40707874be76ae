import { expect } from 'chai';
import { checkHealth } from '../support/health-status';
import { descriptorFiles, useReflection } from '../support/reflection';

describe('CouponService discovery (reflection and health)', () => {
  const discovery = useReflection();

  it('lists CouponService and serves its descriptor with snake_case fields and comments', async () => {
    const list = await discovery.ask({ list_services: '' });
    expect(list.list_services_response!.service.map((s) => s.name)).to.include('credits.v1.CouponService');

    const response = await discovery.ask({ file_containing_symbol: 'credits.v1.CouponService' });
    const files = descriptorFiles(response);
    const file = files.find((f) => f.name === 'credits/v1/coupon_service.proto')!;
    expect(files.map((f) => f.name)).to.include('credits/v1/money.proto');
    expect(file.service[0]!.method.map((m) => m.name)).to.deep.equal([
      'CreateCoupon',
      'GetCoupon',
      'ListCoupons',
      'UpdateCoupon',
      'DeleteCoupon',
      'ValidateCoupon',
      'RedeemCoupon',
      'ConfirmCouponRedemption',
      'CancelCouponRedemption',
      'ListCouponRedemptions',
    ]);
    const fields = (message: string) => file.messageType.find((m) => m.name === message)!.field.map((f) => f.name);
    expect(fields('RedeemCouponRequest')).to.deep.equal(['code', 'customer_id', 'plan_id', 'product_id', 'amount', 'hold_until', 'metadata', 'validate_only']);
    expect(fields('ConfirmCouponRedemptionRequest')).to.deep.equal(['redemption_id', 'validate_only']);
    expect(fields('CancelCouponRedemptionRequest')).to.deep.equal(['redemption_id', 'validate_only']);
    expect(fields('CouponRedemption')).to.include.members(['status', 'hold_until', 'customer_credit_id', 'metadata', 'update_time']);
    expect(fields('ValidateCouponResponse')).to.include.members(['valid', 'reason', 'discount']);
    expect(fields('ListCouponsRequest')).to.deep.equal(['page_size', 'page_token', 'enabled', 'code_prefix']);
    expect(fields('ListCouponRedemptionsRequest')).to.deep.equal(['page_size', 'page_token', 'coupon_id', 'customer_id', 'metadata']);
    const comments = file.sourceCodeInfo!.location.map((l) => l.leadingComments).join('\n');
    for (const reason of ['COUPON_NOT_FOUND', 'COUPON_CODE_ALREADY_EXISTS', 'COUPON_REDEEMED', 'COUPON_DISABLED', 'COUPON_EXPIRED', 'COUPON_NOT_APPLICABLE', 'COUPON_MAX_REDEMPTIONS_REACHED', 'COUPON_CUSTOMER_LIMIT_REACHED']) {
      expect(comments).to.contain(reason);
    }
  });

  it('reports CouponService SERVING in the health service', async () => {
    const answer = await checkHealth(discovery.server.address, 'credits.v1.CouponService');
    expect(answer).to.equal('SERVING');
  });
});
