import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { expect } from 'chai';
import { BatchCreateCustomerCreditsRequest } from '../../gen/credits/v1/credit_service';
import { AddPromotionalCreditsRequest, GetCustomerBalanceRequest } from '../../gen/credits/v1/promotional_credit_service';
import { creditsMethods } from '../../src/grpc/reflection';
import { timestampChecks } from '../../src/grpc/timestamp-checks';

const ADD = '/credits.v1.PromotionalCreditService/AddPromotionalCredits';
const BALANCE = '/credits.v1.PromotionalCreditService/GetCustomerBalance';
const BATCH = '/credits.v1.CreditService/BatchCreateCustomerCredits';

/** A Timestamp's bytes as any protobuf library would write its fields, in range or not. */
function timestamp(seconds: bigint, nanos: number): Uint8Array {
  return new BinaryWriter().tag(1, WireType.Varint).int64(seconds).tag(2, WireType.Varint).int32(nanos).finish();
}

/** `bytes` with field `number` (length-delimited) appended: a later occurrence of a message field merges into it, as protobuf decodes. */
function withField(bytes: Uint8Array, number: number, value: Uint8Array): Buffer {
  return Buffer.concat([bytes, new BinaryWriter().tag(number, WireType.LengthDelimited).bytes(value).finish()]);
}

function fieldNumber(path: string, name: string): number {
  const field = creditsMethods()
    .find((m) => m.path === path)!
    .input.fields.find((f) => f.name === name);
  return field!.number;
}

describe('Timestamp checks (unit)', () => {
  const checks = timestampChecks();
  const add = AddPromotionalCreditsRequest.encode(AddPromotionalCreditsRequest.fromPartial({ customerId: 'a', amount: 1n, description: 'd' })).finish();
  const expireTime = fieldNumber(ADD, 'expire_time');

  it('takes every Timestamp in range, at both ends of it, and requests without one', () => {
    for (const [seconds, nanos] of [
      [1_700_000_000n, 0],
      [1_700_000_000n, 999_999_999],
      [-62_135_596_800n, 0],
      [253_402_300_799n, 999_999_999],
    ] as const) {
      expect(checks.get(ADD)!(withField(add, expireTime, timestamp(seconds, nanos))), `${seconds}, ${nanos}`).to.equal(undefined);
    }
    expect(checks.get(ADD)!(add)).to.equal(undefined);
  });

  it('names a Timestamp whose nanos are outside the type (ts-proto would shift it by seconds)', () => {
    expect(checks.get(ADD)!(withField(add, expireTime, timestamp(1_700_000_000n, 2_000_000_000)))).to.deep.equal({
      field: 'expire_time',
      description: 'is not a valid google.protobuf.Timestamp: nanos must be 0 to 999999999, not 2000000000',
      hint: 'send one normalized as the type says (whole seconds in `seconds`, nanos 0 to 999999999)',
    });
    expect(checks.get(ADD)!(withField(add, expireTime, timestamp(1_700_000_000n, -1)))?.description).to.include('not -1');
    // Seconds past the type's years show in the Date: the use cases' checks answer them with the other violations.
    expect(checks.get(ADD)!(withField(add, expireTime, timestamp(253_402_300_800n, 0)))).to.equal(undefined);
    const balance = GetCustomerBalanceRequest.encode(GetCustomerBalanceRequest.fromPartial({ customerId: 'a' })).finish();
    expect(checks.get(BALANCE)!(withField(balance, fieldNumber(BALANCE, 'as_of_time'), timestamp(0n, 1_000_000_000)))?.field).to.equal('as_of_time');
  });

  it('finds one in an element of a repeated message, by its index', () => {
    const batch = BatchCreateCustomerCreditsRequest.encode(BatchCreateCustomerCreditsRequest.fromPartial({ couponId: 'c' })).finish();
    const credits = fieldNumber(BATCH, 'credits');
    const element = creditsMethods()
      .find((m) => m.path === BATCH)!
      .input.fields.find((f) => f.name === 'credits')!;
    const inner = element.message!.fields.find((f) => f.message?.typeName === 'google.protobuf.Timestamp');
    expect(inner, 'a credit of a batch has a Timestamp').to.not.equal(undefined);
    const good = new BinaryWriter().tag(1, WireType.LengthDelimited).string('cust').finish();
    const bad = Buffer.concat([good, new BinaryWriter().tag(inner!.number, WireType.LengthDelimited).bytes(timestamp(1n, -5)).finish()]);
    const bytes = withField(withField(batch, credits, good), credits, bad);
    expect(checks.get(BATCH)!(bytes)?.field).to.equal(`credits[1].${inner!.name}`);
  });

  it('checks only methods whose requests can hold a Timestamp', () => {
    expect(checks.has('/credits.v1.PromotionalCreditService/GetPromotionalCredit')).to.equal(false);
    expect(checks.has(ADD)).to.equal(true);
  });
});
