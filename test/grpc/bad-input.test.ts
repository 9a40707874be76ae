import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import fc from 'fast-check';
import { promotionalCredits, sharedServer, type TestServer } from '../support/server';
import { decodeError } from '../support/status';
import { newTenant, type TestTenant } from '../support/tenant';
import { auditLedger } from '../../src/promotional-credits/ledger-audit';

/** Answers a hostile caller may get: never INTERNAL, UNKNOWN or a crash. */
const ALLOWED = new Set([status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.FAILED_PRECONDITION]);

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// Strings that mix valid ids, boundaries and junk (unicode, controls, long).
const text = (max: number) =>
  fc.oneof(
    fc.string({ maxLength: max + 5 }),
    fc.string({ unit: 'grapheme', maxLength: max + 5 }),
    fc.constantFrom('', ' ', 'c1', 'a'.repeat(max), 'a'.repeat(max + 1), '\u0000', '%_\\', 'Ω≈ç√', '💳'.repeat(10), "'; DROP TABLE tenants; --"),
  );
const customerId = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_.@:-]{1,50}$/), text(50));
const int64 = fc.oneof(fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), fc.constantFrom(0n, 1n, -1n, INT64_MAX, INT64_MIN, 9007199254740993n));
const decimal = fc.oneof(
  fc.stringMatching(/^\d{1,25}(\.\d{0,5})?$/),
  fc.constantFrom('0', '0.00', '1.', '.5', '-1', '1e3', '9223372036854775807', '92233720368547758.08', ' 1', '1,000.00'),
  text(45),
);
const currency = fc.oneof(fc.constantFrom('', 'USD', 'EUR', 'JPY', 'BHD', 'usd', 'XXX', 'XAU', 'US'), text(5));
const enumValue = fc.integer({ min: -3, max: 12 });
const timestamp = fc.option(fc.date({ min: new Date(-62135596800000), max: new Date(253402300799000), noInvalidDate: true }), { nil: undefined });
const stringFilter = fc.option(
  fc.record({ is: fc.option(text(60), { nil: undefined }), isNot: fc.option(text(60), { nil: undefined }), startsWith: fc.option(text(60), { nil: undefined }) }),
  { nil: undefined },
);

const hostileChange = fc.record({
  customerId,
  amount: fc.option(int64, { nil: undefined }),
  amountDecimal: fc.option(decimal, { nil: undefined }),
  currencyCode: currency,
  description: text(250),
  creditType: enumValue,
  reference: text(500),
});

// Near-valid requests too, so the properties also exercise the write paths.
const plausibleChange = fc.record({
  customerId: fc.stringMatching(/^[A-Za-z0-9_.@:-]{1,50}$/),
  amount: fc.option(fc.bigInt({ min: -1n, max: 10_000n }), { nil: undefined }),
  amountDecimal: fc.constant(undefined),
  currencyCode: fc.constantFrom('', 'USD', 'JPY', 'BHD'),
  description: fc.string({ minLength: 1, maxLength: 20 }).filter((d) => !/[\u0000-\u001f\u007f-\u009f]/.test(d)),
  creditType: fc.integer({ min: 0, max: 3 }),
  reference: fc.constant(''),
});
const balanceChange = fc.oneof(hostileChange, plausibleChange);

const listRequest = fc.record({
  pageSize: fc.oneof(fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }), fc.integer({ min: -1, max: 101 })),
  pageToken: fc.oneof(fc.constant(''), fc.base64String({ maxLength: 80 }), text(100), fc.constantFrom('eyJwIjpbIjEiXSwiZiI6IiJ9.AAAA', '.')),
  id: stringFilter,
  customerId: stringFilter,
  type: fc.option(
    fc.record({
      is: fc.option(enumValue, { nil: undefined }),
      isNot: fc.option(enumValue, { nil: undefined }),
      in: fc.array(enumValue, { maxLength: 12 }),
      notIn: fc.array(enumValue, { maxLength: 12 }),
    }),
    { nil: undefined },
  ),
  createTime: fc.option(
    fc.record({ after: timestamp, before: timestamp, on: timestamp, between: fc.option(fc.record({ start: timestamp, end: timestamp }), { nil: undefined }) }),
    { nil: undefined },
  ),
});

describe('bad input: property-based', function () {
  this.timeout(180_000);
  let server: TestServer;
  let tenant: TestTenant;
  let client: ReturnType<typeof promotionalCredits>;
  const seen = new Map<string, number>();

  before(async () => {
    server = await sharedServer();
    tenant = await newTenant(server.dataSource, { currency: 'USD', multiCurrency: true });
    client = promotionalCredits(server.address, tenant.rwKey);
  });
  after(() => client.close());

  /** Runs one call; any answer outside ALLOWED (or without ErrorInfo) fails the property. */
  async function answer(rpc: string, call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
      seen.set(`${rpc} OK`, (seen.get(`${rpc} OK`) ?? 0) + 1);
    } catch (err) {
      const e = decodeError(err as ServiceError);
      seen.set(`${rpc} ${status[e.code]}`, (seen.get(`${rpc} ${status[e.code]}`) ?? 0) + 1);
      expect(ALLOWED.has(e.code), `${rpc}: ${status[e.code]} ${e.message}`).to.equal(true);
      expect(e.reason, `${rpc}: ErrorInfo reason on ${status[e.code]}`).to.be.a('string').and.not.equal('');
      if (e.code === status.INVALID_ARGUMENT) expect(Object.keys(e.fields), `${rpc}: BadRequest fields`).to.not.have.length(0);
    }
  }

  const runs = { numRuns: 150 };

  it('AddPromotionalCredits', () =>
    fc.assert(fc.asyncProperty(balanceChange, (req) => answer('Add', () => client.addPromotionalCredits(req))), runs));
  it('DeductPromotionalCredits', () =>
    fc.assert(fc.asyncProperty(balanceChange, (req) => answer('Deduct', () => client.deductPromotionalCredits(req))), runs));
  it('SetPromotionalCredits', () =>
    fc.assert(fc.asyncProperty(balanceChange, (req) => answer('Set', () => client.setPromotionalCredits(req))), runs));
  it('GetPromotionalCredit', () =>
    fc.assert(fc.asyncProperty(fc.oneof(fc.uuid(), text(40)), (id) => answer('Get', () => client.getPromotionalCredit({ id }))), runs));
  it('GetCustomerBalance', () =>
    fc.assert(fc.asyncProperty(customerId, (id) => answer('Balance', () => client.getCustomerBalance({ customerId: id }))), runs));
  it('ListPromotionalCredits', () =>
    fc.assert(fc.asyncProperty(listRequest, (req) => answer('List', () => client.listPromotionalCredits(req))), runs));

  it('leaves the server serving and the ledger consistent', async () => {
    await client.getCustomerBalance({ customerId: 'still-alive' });
    expect(await auditLedger(server.dataSource.manager, { tenantId: tenant.id })).to.deep.equal([]);
    expect(seen.get('Add OK') ?? 0, 'some adds were valid').to.be.greaterThan(0);
  });
});
