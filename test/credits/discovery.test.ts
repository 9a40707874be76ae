import type { FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { expect } from 'chai';
import { checkHealth } from '../support/health-status';
import { descriptorFiles, useReflection } from '../support/reflection';

describe('CreditService discovery (reflection and health)', () => {
  const discovery = useReflection();
  let file: FileDescriptorProto;

  before(async () => {
    const list = await discovery.ask({ list_services: '' });
    expect(list.list_services_response!.service.map((s) => s.name)).to.include('credits.v1.CreditService');
    const response = await discovery.ask({ file_containing_symbol: 'credits.v1.CreditService' });
    const files = descriptorFiles(response);
    file = files.find((f) => f.name === 'credits/v1/credit_service.proto')!;
  });

  it('serves the RPCs and the request shapes the contract pins, with snake_case fields', () => {
    expect(file.service[0]!.method.map((m) => m.name)).to.deep.equal([
      'CreateCustomerCredit',
      'BatchCreateCustomerCredits',
      'GetCustomerCredit',
      'ListCustomerCredits',
      'RevokeCustomerCredit',
      'RedeemCustomerCredit',
    ]);
    const fields = (message: string) => file.messageType.find((m) => m.name === message)!.field.map((f) => f.name);
    expect(fields('CustomerCredit')).to.deep.equal([
      'id',
      'customer_id',
      'coupon_id',
      'membership_id',
      'state',
      'multi_use',
      'uses_remaining',
      'redemption_count',
      'expire_time',
      'revenue',
      'create_time',
      'revoke_time',
      'last_redeem_time',
      'metadata',
    ]);
    expect(fields('CreateCustomerCreditRequest')).to.deep.equal(['customer_id', 'coupon_id', 'membership_id', 'expire_time', 'revenue', 'metadata', 'validate_only']);
    expect(fields('BatchCreateCustomerCreditsRequest')).to.deep.equal(['coupon_id', 'credits', 'validate_only']);
    expect(fields('BatchCreateCustomerCreditsEntry')).to.deep.equal(['customer_id', 'membership_id', 'expire_time', 'revenue', 'metadata']);
    expect(fields('GetCustomerCreditRequest')).to.deep.equal(['customer_id', 'credit_id']);
    expect(fields('RevokeCustomerCreditRequest')).to.deep.equal(['customer_id', 'credit_id', 'validate_only']);
    expect(fields('RedeemCustomerCreditRequest')).to.deep.equal(['customer_id', 'credit_id', 'plan_id', 'product_id', 'amount', 'hold_until', 'metadata', 'validate_only']);
    expect(fields('RedeemCustomerCreditResponse')).to.deep.equal(['credit', 'redemption', 'revenue']);
    expect(fields('ListCustomerCreditsRequest')).to.deep.equal([
      'customer_id',
      'page_size',
      'page_token',
      'include_redeemed',
      'include_expired',
      'include_revoked',
      'multi_use',
      'metadata',
    ]);
    expect(fields('ListCustomerCreditsResponse')).to.deep.equal(['credits', 'next_page_token']);
    expect(file.enumType.find((e) => e.name === 'CreditState')!.value.map((v) => v.name)).to.deep.equal([
      'CREDIT_STATE_UNSPECIFIED',
      'CREDIT_STATE_ACTIVE',
      'CREDIT_STATE_REDEEMED',
      'CREDIT_STATE_EXPIRED',
      'CREDIT_STATE_REVOKED',
    ]);
  });

  it('documents every message, field, enum value and RPC, and every error reason', () => {
    const commented = new Set(
      file.sourceCodeInfo!.location.filter((l) => (l.leadingComments ?? '').trim() !== '').map((l) => l.path.join('.')),
    );
    const missing: string[] = [];
    // FileDescriptorProto field numbers: message_type 4, enum_type 5, service 6; DescriptorProto.field 2;
    // EnumDescriptorProto.value 2; ServiceDescriptorProto.method 2.
    file.messageType.forEach((m, i) => {
      if (!commented.has(`4.${i}`)) missing.push(m.name);
      m.field.forEach((f, j) => (commented.has(`4.${i}.2.${j}`) ? undefined : missing.push(`${m.name}.${f.name}`)));
    });
    file.enumType.forEach((e, i) => {
      if (!commented.has(`5.${i}`)) missing.push(e.name);
      e.value.forEach((v, j) => (commented.has(`5.${i}.2.${j}`) ? undefined : missing.push(v.name)));
    });
    file.service.forEach((s, i) => {
      if (!commented.has(`6.${i}`)) missing.push(s.name);
      s.method.forEach((m, j) => (commented.has(`6.${i}.2.${j}`) ? undefined : missing.push(m.name)));
    });
    expect(missing).to.deep.equal([]);
    const comments = file.sourceCodeInfo!.location.map((l) => l.leadingComments).join('\n');
    for (const reason of [
      'CREDIT_NOT_FOUND',
      'CREDIT_ALREADY_REDEEMED',
      'CREDIT_EXPIRED',
      'CREDIT_REVOKED',
      'COUPON_NOT_FOUND',
      'COUPON_DISABLED',
      'COUPON_EXPIRED',
      'COUPON_NOT_APPLICABLE',
      'COUPON_MAX_REDEMPTIONS_REACHED',
      'COUPON_CUSTOMER_LIMIT_REACHED',
      'VALIDATION_FAILED',
    ]) {
      expect(comments).to.contain(reason);
    }
  });

  it('reports CreditService SERVING in the health service', async () => {
    const answer = await checkHealth(discovery.server.address, 'credits.v1.CreditService');
    expect(answer).to.equal('SERVING');
  });
});
