import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { CouponServiceService } from '../../gen/credits/v1/coupon_service';
import { CreditServiceService } from '../../gen/credits/v1/credit_service';
import { Event, EventServiceService, EventType } from '../../gen/credits/v1/event_service';
import {
  ListPromotionalCreditsResponse,
  PromotionalCreditServiceService,
  PromotionalCredit,
  PromotionalCreditType,
} from '../../gen/credits/v1/promotional_credit_service';
import { encodeMessage, responseSerializers } from '../../src/grpc/message-encoding';

const entry = (i: number, description = 'test entry'): PromotionalCredit =>
  PromotionalCredit.fromPartial({
    id: randomUUID(),
    customerId: `customer-${i}`,
    type: PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_INCREMENT,
    amount: BigInt(i) * 100n,
    amountDecimal: `${i}.00`,
    currencyCode: 'USD',
    description,
    closingBalance: BigInt(i) * 1000n,
    doneBy: 'key',
    createTime: new Date(1_700_000_000_000 + i),
    metadata: { order: `o-${i}` },
    hash: 'ab'.repeat(32),
  });

const event = (i: number): Event =>
  Event.fromPartial({ cursor: 'c'.repeat(34), id: randomUUID(), type: EventType.EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED, createTime: new Date(), customerId: `customer-${i}`, promotionalCredit: entry(i, 'ü€ non-ASCII text') });

/** What ts-proto's own serializer gives. */
const generated = (type: { encode(m: never): { finish(): Uint8Array } }, message: unknown) => Buffer.from(type.encode(message as never).finish());

describe('message encoding with one reused writer', () => {
  it('has a serializer for every method of the four services', () => {
    const serializers = responseSerializers();
    const paths = [PromotionalCreditServiceService, CouponServiceService, CreditServiceService, EventServiceService].flatMap((service) =>
      Object.values(service).map((method) => method.path),
    );
    expect(paths.length).to.be.greaterThan(30);
    expect(paths.filter((path) => !serializers.has(path))).to.deep.equal([]);
  });

  it('gives the bytes the generated serializers give, whatever the writer encoded before (small, large, over the kept size)', () => {
    const serialize = responseSerializers().get(EventServiceService.streamEvents.path)!;
    const page = { promotionalCredits: Array.from({ length: 100 }, (_, i) => entry(i)), nextPageToken: 'token' };
    const huge = { promotionalCredits: Array.from({ length: 4000 }, (_, i) => entry(i, 'x'.repeat(250))), nextPageToken: '' };
    for (const round of [1, 2]) {
      const small = event(round);
      expect(serialize(small), `round ${round}: an event`).to.deep.equal(generated(Event, small));
      expect(encodeMessage(ListPromotionalCreditsResponse, page), `round ${round}: a page of 100`).to.deep.equal(generated(ListPromotionalCreditsResponse, page));
      expect(serialize(small), `round ${round}: an event after the page`).to.deep.equal(generated(Event, small));
      const encodedHuge = encodeMessage(ListPromotionalCreditsResponse, huge);
      expect(encodedHuge.byteLength, 'over the kept size').to.be.greaterThan(1 << 20);
      expect(encodedHuge).to.deep.equal(generated(ListPromotionalCreditsResponse, huge));
    }
    const first = encodeMessage(Event, event(7));
    const copy = Buffer.from(first);
    encodeMessage(Event, event(8));
    expect(first, 'an answer is not overwritten by the next message').to.deep.equal(copy);
  });

  it('encodes the next message right after one whose encoding threw half-way', () => {
    const bad = event(3);
    bad.promotionalCredit!.amount = 2n ** 70n; // past int64: ts-proto throws after writing the fields before it
    expect(() => encodeMessage(Event, bad)).to.throw(/too large/);
    const good = event(4);
    expect(encodeMessage(Event, good)).to.deep.equal(generated(Event, good));
  });
});
