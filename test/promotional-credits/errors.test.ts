import { randomUUID } from 'node:crypto';
import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { currencyBalance } from '../support/ledger';
import { CreditType, PromotionalCreditType } from '../../gen/credits/v1/promotional_credit_service';
import { revokeApiKey } from '../../src/tenants/tenants.service';
import { promotionalCredits } from '../support/server';
import { expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: '', description: 'goodwill', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
const INT64_MAX = 9_223_372_036_854_775_807n;

describe('PromotionalCreditService errors', () => {
  const t = useTenantClients();

  /** One call of every RPC, valid apart from what the test changes. */
  const everyRpc = (c: ReturnType<typeof promotionalCredits>, metadata?: Metadata) => ({
    add: () => c.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n }, metadata),
    deduct: () => c.deductPromotionalCredits({ ...base, customerId: 'c', amount: 1n }, metadata),
    set: () => c.setPromotionalCredits({ ...base, customerId: 'c', amount: 1n }, metadata),
    get: () => c.getPromotionalCredit({ id: randomUUID() }, metadata),
    list: () => c.listPromotionalCredits({ pageSize: 0, pageToken: '' }, metadata),
    balance: () => c.getCustomerBalance({ customerId: 'c' }, metadata),
  });

  describe('UNAUTHENTICATED', () => {
    it('API_KEY_MISSING without authorization metadata, on every RPC', async () => {
      const anonymous = promotionalCredits(t.server.address, undefined);
      try {
        for (const [name, call] of Object.entries(everyRpc(anonymous))) {
          const err = await expectError(call(), status.UNAUTHENTICATED, 'API_KEY_MISSING');
          expect(err.message, name).to.match(/authorization/);
        }
      } finally {
        anonymous.close();
      }
    });

    it('API_KEY_MISSING for authorization that is not a Bearer token', async () => {
      const anonymous = promotionalCredits(t.server.address, undefined);
      try {
        for (const header of ['Basic dXNlcjpwYXNz', t.tenant.rwKey, 'Bearer', 'Bearer a b']) {
          const metadata = new Metadata();
          metadata.set('authorization', header);
          await expectError(anonymous.getCustomerBalance({ customerId: 'c' }, metadata), status.UNAUTHENTICATED, 'API_KEY_MISSING');
        }
      } finally {
        anonymous.close();
      }
    });

    it('API_KEY_INVALID for an unknown, malformed or altered key', async () => {
      const altered = t.tenant.rwKey.slice(0, -1) + (t.tenant.rwKey.endsWith('A') ? 'B' : 'A');
      const unknown = `ck_${'0'.repeat(32)}_${'A'.repeat(43)}`;
      for (const key of ['nonsense', unknown, altered, t.tenant.rwKey + 'x']) {
        const c = promotionalCredits(t.server.address, key);
        try {
          for (const call of Object.values(everyRpc(c))) {
            const err = await expectError(call(), status.UNAUTHENTICATED, 'API_KEY_INVALID');
            expect(err.message).to.not.include(key);
          }
        } finally {
          c.close();
        }
      }
    });

    it('API_KEY_INVALID for a revoked key, while other keys of the tenant keep working', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n });
      await revokeApiKey(t.server.dataSource, { tenantSlug: t.tenant.slug, name: 'rw-key' });
      for (const call of Object.values(everyRpc(t.promotionalCredits))) await expectError(call(), status.UNAUTHENTICATED, 'API_KEY_INVALID');
      const reader = promotionalCredits(t.server.address, t.tenant.readKey);
      try {
        expect((await reader.getCustomerBalance({ customerId: 'c' })).balance!.balances).to.have.length(1);
      } finally {
        reader.close();
      }
    });
  });

  describe('PERMISSION_DENIED', () => {
    it('API_KEY_SCOPE_MISSING for a read key writing, and nothing is written', async () => {
      const reader = promotionalCredits(t.server.address, t.tenant.readKey);
      try {
        const calls = everyRpc(reader);
        for (const call of [calls.add, calls.deduct, calls.set]) {
          const err = await expectError(call(), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
          expect(err.metadata).to.deep.equal({ scope: 'write' });
        }
        expect((await reader.listPromotionalCredits({ pageSize: 0, pageToken: '' })).promotionalCredits).to.deep.equal([]);
      } finally {
        reader.close();
      }
    });

    it('API_KEY_SCOPE_MISSING for a write-only key reading', async () => {
      const writer = promotionalCredits(t.server.address, t.tenant.writeKey);
      try {
        const calls = everyRpc(writer);
        for (const call of [calls.get, calls.list, calls.balance]) {
          const err = await expectError(call(), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
          expect(err.metadata).to.deep.equal({ scope: 'read' });
        }
      } finally {
        writer.close();
      }
    });

    it('checks the key before validating the request', async () => {
      const reader = promotionalCredits(t.server.address, t.tenant.readKey);
      try {
        await expectError(reader.addPromotionalCredits({ ...base, customerId: '', amount: 0n }), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
      } finally {
        reader.close();
      }
      const anonymous = promotionalCredits(t.server.address, undefined);
      try {
        await expectError(anonymous.getPromotionalCredit({ id: 'not-a-uuid' }), status.UNAUTHENTICATED, 'API_KEY_MISSING');
      } finally {
        anonymous.close();
      }
    });
  });

  describe('NOT_FOUND', () => {
    it('PROMOTIONAL_CREDIT_NOT_FOUND for an unknown id', async () => {
      const id = randomUUID();
      const err = await expectError(t.promotionalCredits.getPromotionalCredit({ id }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
      expect(err.metadata).to.deep.equal({ id });
      expect(err.message).to.include(id);
    });

    it("PROMOTIONAL_CREDIT_NOT_FOUND for another tenant's entry, indistinguishable from an unknown one", async () => {
      const other = await newTenant(t.server.dataSource);
      const otherClient = promotionalCredits(t.server.address, other.rwKey);
      try {
        const id = (await otherClient.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n })).promotionalCredit!.id;
        const theirs = await expectError(t.promotionalCredits.getPromotionalCredit({ id }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
        const unknownId = randomUUID();
        const unknown = await expectError(t.promotionalCredits.getPromotionalCredit({ id: unknownId }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
        expect(theirs.message.replace(id, 'X')).to.equal(unknown.message.replace(unknownId, 'X'));
      } finally {
        otherClient.close();
      }
    });
  });

  describe('INVALID_ARGUMENT (VALIDATION_FAILED)', () => {
    /** Calls must fail with exactly these BadRequest fields. */
    async function expectFields(call: Promise<unknown>, fields: string[]): Promise<Record<string, string>> {
      const err = await expectError(call, status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(Object.keys(err.fields).sort(), err.message).to.deep.equal([...fields].sort());
      for (const description of Object.values(err.fields)) expect(description).to.be.a('string').and.not.equal('');
      return err.fields;
    }

    it('customer_id: required, 1..50 characters of [A-Za-z0-9_.@:-]', async () => {
      for (const customerId of ['', 'has space', 'ünïcode', 'a/b', 'x'.repeat(51), 'semi;colon']) {
        await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 1n }), ['customer_id']);
        await expectFields(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId, amount: 1n }), ['customer_id']);
        await expectFields(t.promotionalCredits.setPromotionalCredits({ ...base, customerId, amount: 1n }), ['customer_id']);
        await expectFields(t.promotionalCredits.getCustomerBalance({ customerId }), ['customer_id']);
      }
      // 50 characters is the limit, not past it.
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'x'.repeat(50), amount: 1n });
    });

    it('currency_code: an ISO 4217 code in upper case', async () => {
      for (const currencyCode of ['usd', 'XXX', 'US', 'USDD', 'XAU', ' USD']) {
        const fields = await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, currencyCode }), ['currency_code']);
        expect(fields.currency_code).to.match(/ISO 4217/);
      }
      // XAU and XXX are ISO 4217 codes, of a metal and of "no currency": the refusal says which codes it takes.
      const metal = await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, currencyCode: 'XAU' }), ['currency_code']);
      expect(metal.currency_code).to.include('a currency with a minor unit').and.include('not a fund, metal or test code');
    });

    it('currency_code: a tenant that is not multi-currency refuses any currency but its default', async () => {
      const single = await newTenant(t.server.dataSource, { currency: 'EUR', multiCurrency: false });
      const c = promotionalCredits(t.server.address, single.rwKey);
      try {
        for (const call of [
          () => c.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, currencyCode: 'USD' }),
          () => c.deductPromotionalCredits({ ...base, customerId: 'c', amount: 1n, currencyCode: 'USD' }),
          () => c.setPromotionalCredits({ ...base, customerId: 'c', amount: 1n, currencyCode: 'USD' }),
        ]) {
          const fields = await expectFields(call(), ['currency_code']);
          expect(fields.currency_code).to.include('EUR').and.include('not multi-currency');
        }
        expect((await c.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n })).promotionalCredit!.currencyCode).to.equal('EUR');
      } finally {
        c.close();
      }
    });

    it('description: required, 1..250 characters, no control characters', async () => {
      for (const description of ['', 'x'.repeat(251), 'bell\u0007', 'nul\u0000']) {
        await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, description }), ['description']);
        await expectFields(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c', description }), ['description']);
        await expectFields(t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'c', amount: 0n, description }), ['description']);
      }
      // Length is counted in characters, not bytes or UTF-16 units: 250 emoji fit.
      const res = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, description: '😀'.repeat(250) });
      expect(res.promotionalCredit!.description).to.equal('😀'.repeat(250));
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, description: 'tab\tand\nnewline' });
    });

    it('reference: 0..500 characters, no control characters', async () => {
      await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, reference: 'r'.repeat(501) }), ['reference']);
      await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, reference: 'esc\u001b' }), ['reference']);
      const res = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, reference: 'r'.repeat(500) });
      expect(res.promotionalCredit!.reference).to.have.length(500);
    });

    it('credit_type: a value the contract defines', async () => {
      for (const creditType of [4, 99, -1] as CreditType[]) {
        await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, creditType }), ['credit_type']);
      }
    });

    it('amount: exactly one of amount and amount_decimal', async () => {
      await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 100n, amountDecimal: '1.00' }), ['amount', 'amount_decimal']);
      await expectFields(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c', amount: 100n, amountDecimal: '1.00' }), ['amount', 'amount_decimal']);
      await expectFields(t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'c', amount: 100n, amountDecimal: '1.00' }), ['amount', 'amount_decimal']);
      await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c' }), ['amount']);
      await expectFields(t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'c' }), ['amount']);
    });

    it('amount: Add and Deduct need more than zero, Set accepts zero; none accepts a negative', async () => {
      await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 0n }), ['amount']);
      await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amountDecimal: '0.00' }), ['amount_decimal']);
      await expectFields(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c', amount: 0n }), ['amount']);
      await expectFields(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c', amountDecimal: '0' }), ['amount_decimal']);
      for (const amount of [-1n, -INT64_MAX - 1n]) {
        await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount }), ['amount']);
        await expectFields(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c', amount }), ['amount']);
        await expectFields(t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'c', amount }), ['amount']);
      }
    });

    it('amount_decimal: a plain decimal with at most the currency minor digits', async () => {
      const bad: Array<[string, string]> = [
        ['1.234', 'USD'],
        ['1.5', 'JPY'],
        ['1.2345', 'BHD'],
        ['-1.00', 'USD'],
        ['+1', 'USD'],
        ['1e3', 'USD'],
        ['1,000.00', 'USD'],
        [' 1', 'USD'],
        ['.5', 'USD'],
        ['5.', 'USD'],
        ['', 'USD'],
        ['NaN', 'USD'],
        ['1'.repeat(41), 'USD'],
        ['92233720368547758.08', 'USD'],
        ['9223372036854775808', 'JPY'],
      ];
      for (const [amountDecimal, currencyCode] of bad) {
        const fields = await expectFields(
          t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amountDecimal, currencyCode }),
          ['amount_decimal'],
        );
        expect(fields.amount_decimal, `${amountDecimal} ${currencyCode}`).to.be.a('string');
        await expectFields(t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'c', amountDecimal, currencyCode }), ['amount_decimal']);
      }
      const fields = await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amountDecimal: '1.5', currencyCode: 'JPY' }), ['amount_decimal']);
      expect(fields.amount_decimal).to.include('JPY');
    });

    it('amount_decimal next to an unknown currency names only the currency', async () => {
      await expectFields(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amountDecimal: '1.00', currencyCode: 'ABC' }), ['currency_code']);
    });

    it('lists every bad field of one request at once', async () => {
      const fields = await expectFields(
        t.promotionalCredits.setPromotionalCredits({ customerId: '', amountDecimal: '1.001', currencyCode: '', description: '', creditType: 7 as CreditType, reference: '\u0001' }),
        ['customer_id', 'amount_decimal', 'description', 'credit_type', 'reference'],
      );
      expect(fields.customer_id).to.equal('is required');
    });

    it('id of GetPromotionalCredit: required, a UUID', async () => {
      await expectFields(t.promotionalCredits.getPromotionalCredit({ id: '' }), ['id']);
      for (const id of ['42', 'not-a-uuid', `${randomUUID()}0`, randomUUID().replace(/-/g, ''), `{${randomUUID()}}`]) {
        await expectFields(t.promotionalCredits.getPromotionalCredit({ id }), ['id']);
      }
    });

    it('ListPromotionalCredits: every filter operator value is checked', async () => {
      const list = (request: Record<string, unknown>) => t.promotionalCredits.listPromotionalCredits({ pageSize: 0, pageToken: '', ...request });
      await expectFields(list({ pageSize: -1 }), ['page_size']);
      await expectFields(list({ id: { is: 'abc' } }), ['id.is']);
      await expectFields(list({ id: { isNot: randomUUID().slice(0, 10) } }), ['id.is_not']);
      await expectFields(list({ id: { startsWith: 'xyz' } }), ['id.starts_with']);
      await expectFields(list({ id: { startsWith: '' } }), ['id.starts_with']);
      await expectFields(list({ id: { startsWith: 'a'.repeat(37) } }), ['id.starts_with']);
      await expectFields(list({ customerId: { is: '' } }), ['customer_id.is']);
      await expectFields(list({ customerId: { isNot: 'bad id' } }), ['customer_id.is_not']);
      await expectFields(list({ customerId: { startsWith: 'c%' } }), ['customer_id.starts_with']);
      await expectFields(list({ customerId: { startsWith: 'c'.repeat(51) } }), ['customer_id.starts_with']);
      const type = (t: Record<string, unknown>) => list({ type: { in: [], notIn: [], ...t } });
      const { PROMOTIONAL_CREDIT_TYPE_UNSPECIFIED: UNSPECIFIED, PROMOTIONAL_CREDIT_TYPE_INCREMENT: INCREMENT } = PromotionalCreditType;
      await expectFields(type({ is: UNSPECIFIED }), ['type.is']);
      await expectFields(type({ isNot: 9 }), ['type.is_not']);
      await expectFields(type({ in: [INCREMENT, UNSPECIFIED] }), ['type.in']);
      await expectFields(type({ notIn: [17] }), ['type.not_in']);
      await expectFields(type({ in: Array(11).fill(INCREMENT) }), ['type.in']);
      await expectFields(type({ notIn: Array(11).fill(INCREMENT) }), ['type.not_in']);
      const t1 = new Date('2025-01-01T00:00:00Z');
      const t2 = new Date('2025-01-02T00:00:00Z');
      await expectFields(list({ createTime: { between: { start: t1 } } }), ['create_time.between.end']);
      await expectFields(list({ createTime: { between: { end: t2 } } }), ['create_time.between.start']);
      await expectFields(list({ createTime: { between: {} } }), ['create_time.between.start', 'create_time.between.end']);
      await expectFields(list({ createTime: { between: { start: t2, end: t1 } } }), ['create_time.between.end']);
      await expectFields(list({ createTime: { between: { start: t1, end: t1 } } }), ['create_time.between.end']);
      // Everything at once.
      await expectFields(list({ pageSize: -5, id: { is: 'x' }, customerId: { is: '!' }, type: { in: [], notIn: [], is: UNSPECIFIED } }), [
        'page_size',
        'id.is',
        'customer_id.is',
        'type.is',
      ]);
    });
  });

  describe('FAILED_PRECONDITION', () => {
    it('INSUFFICIENT_BALANCE for a deduct past the balance, in its currency, writing nothing', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 1000n });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 5n, currencyCode: 'BHD' });
      const err = await expectError(
        t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c', amountDecimal: '0.006', currencyCode: 'BHD' }),
        status.FAILED_PRECONDITION,
        'INSUFFICIENT_BALANCE',
      );
      expect(err.metadata).to.deep.equal({ balance: '5', held: '0', available: '5', requested: '6', currency_code: 'BHD' });
      expect(err.message).to.include('0.006 BHD').and.include('0.005 BHD');
      await expectError(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'never-seen', amount: 1n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
      const page = await t.promotionalCredits.listPromotionalCredits({ pageSize: 0, pageToken: '' });
      expect(page.promotionalCredits).to.have.length(2);
      expect((await t.promotionalCredits.getCustomerBalance({ customerId: 'c' })).balance!.balances.map((b) => b.amount)).to.deep.equal([5n, 1000n]);
      expect((await t.promotionalCredits.getCustomerBalance({ customerId: 'never-seen' })).balance!.balances).to.deep.equal([]);
    });

    it('BALANCE_LIMIT_EXCEEDED when an add would pass the int64 maximum, writing nothing', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'rich', amount: INT64_MAX - 10n });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'rich', amount: 10n });
      const err = await expectError(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'rich', amount: 1n }), status.FAILED_PRECONDITION, 'BALANCE_LIMIT_EXCEEDED');
      expect(err.message).to.include('rich');
      await expectError(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'rich', amount: INT64_MAX }), status.FAILED_PRECONDITION, 'BALANCE_LIMIT_EXCEEDED');
      const balance = await t.promotionalCredits.getCustomerBalance({ customerId: 'rich' });
      expect(balance.balance!.balances).to.deep.equal([currencyBalance('USD', INT64_MAX, '92233720368547758.07')]);
      expect((await t.promotionalCredits.listPromotionalCredits({ pageSize: 0, pageToken: '' })).promotionalCredits).to.have.length(2);
      // Other currencies of the same customer are not affected.
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'rich', amount: INT64_MAX, currencyCode: 'JPY' });
    });
  });
});
