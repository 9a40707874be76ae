import { expect } from 'chai';
import { BatchCreateCustomerCreditsRequest } from '../../gen/credits/v1/credit_service';
import { AddPromotionalCreditsRequest } from '../../gen/credits/v1/promotional_credit_service';
import { reservedMapKeyChecks } from '../../src/grpc/reserved-map-keys';

describe('reserved map keys (unit)', () => {
  const checks = reservedMapKeyChecks();
  const reserved = () => JSON.parse('{"ok": "1", "__proto__": "x"}') as Record<string, string>; // an own key, as other languages send it

  it('names the map entry keyed __proto__ by its path, an element of a repeated field by its index', () => {
    const batch = BatchCreateCustomerCreditsRequest.fromPartial({ couponId: 'c', credits: [{ customerId: 'a' }, { customerId: 'b' }] });
    batch.credits[1]!.metadata = reserved();
    const bytes = Buffer.from(BatchCreateCustomerCreditsRequest.encode(batch).finish());
    expect(checks.get('/credits.v1.CreditService/BatchCreateCustomerCredits')!(bytes)).to.deep.equal({
      field: 'credits[1].metadata["__proto__"]',
      description: 'key "__proto__" is reserved: JavaScript decoders drop it',
      hint: 'use another key',
    });
    const add = { ...AddPromotionalCreditsRequest.fromPartial({ customerId: 'a' }), metadata: reserved() };
    expect(checks.get('/credits.v1.PromotionalCreditService/AddPromotionalCredits')!(Buffer.from(AddPromotionalCreditsRequest.encode(add).finish()))?.field).to.equal(
      'metadata["__proto__"]',
    );
  });

  it('takes the text anywhere else: a value, a description, a customer id', () => {
    const add = AddPromotionalCreditsRequest.fromPartial({ customerId: '__proto__', description: '__proto__', metadata: { note: '__proto__' } });
    expect(checks.get('/credits.v1.PromotionalCreditService/AddPromotionalCredits')!(Buffer.from(AddPromotionalCreditsRequest.encode(add).finish()))).to.equal(undefined);
  });
});
