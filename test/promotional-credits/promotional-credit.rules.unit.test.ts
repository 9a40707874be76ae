import { expect } from 'chai';
import type { DomainError } from '../../src/common/domain-error';
import { validateBalanceChange, type BalanceChangeInput, type ChangeKind } from '../../src/promotional-credits/promotional-credit.rules';
import type { Principal } from '../../src/tenants/principal';

const multi: Principal = {
  tenantId: '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b',
  tenantSlug: 'acme',
  defaultCurrency: 'USD',
  multiCurrency: true,
  keyName: 'k',
  keyId: '00000000-0000-4000-8000-000000000001',
  scopes: new Set(['read', 'write']),
};
const single: Principal = { ...multi, tenantSlug: 'yen-only', defaultCurrency: 'JPY', multiCurrency: false };

const change = (over: Partial<BalanceChangeInput> = {}): BalanceChangeInput => ({
  customerId: 'c1',
  amount: undefined,
  amountDecimal: undefined,
  currencyCode: '',
  description: 'why',
  creditType: undefined,
  reference: '',
  ...over,
});

function violations(kind: ChangeKind, over: Partial<BalanceChangeInput>, principal = multi): Record<string, string> {
  try {
    validateBalanceChange(kind, change(over), principal);
  } catch (err) {
    return Object.fromEntries((err as DomainError).violations.map((v) => [v.field, v.description]));
  }
  return {};
}

describe('balance change rules (unit)', () => {
  it('answers the validated change with defaults filled in', () => {
    expect(validateBalanceChange('add', change({ amount: 5n }), multi)).to.deep.equal({
      customerId: 'c1',
      amount: 5n,
      currencyCode: 'USD',
      description: 'why',
      creditType: 'GENERAL',
      reference: '',
      expireTime: undefined,
      metadata: {},
      validateOnly: false,
    });
    expect(validateBalanceChange('add', change({ amountDecimal: '1.5', currencyCode: 'BHD', creditType: 'LOYALTY_CREDITS' }), multi)).to.deep.include({
      amount: 1500n,
      currencyCode: 'BHD',
      creditType: 'LOYALTY_CREDITS',
    });
    expect(validateBalanceChange('add', change({ amountDecimal: '15' }), single)).to.deep.include({ amount: 15n, currencyCode: 'JPY' });
  });

  it('amount: Add > 0, Deduct > 0 or none (everything), Set >= 0', () => {
    expect(violations('add', { amount: 0n })).to.deep.equal({ amount: 'must be greater than zero' });
    expect(violations('add', {})).to.have.keys('amount');
    expect(violations('deduct', { amount: 0n })).to.deep.equal({ amount: 'must be greater than zero' });
    expect(validateBalanceChange('deduct', change(), multi).amount).to.equal(undefined);
    expect(validateBalanceChange('set', change({ amount: 0n }), multi).amount).to.equal(0n);
    expect(validateBalanceChange('set', change({ amountDecimal: '0' }), multi).amount).to.equal(0n);
    expect(violations('set', {})).to.have.keys('amount');
    for (const kind of ['add', 'deduct', 'set'] as const) {
      expect(violations(kind, { amount: -1n }), kind).to.deep.equal({ amount: 'must not be negative' });
      expect(violations(kind, { amount: 1n, amountDecimal: '1' }), kind).to.have.keys('amount', 'amount_decimal');
    }
    expect(violations('add', { amountDecimal: '0.00' })).to.deep.equal({ amount_decimal: 'must be greater than zero' });
  });

  it('amount_decimal is read with the resolved currency', () => {
    expect(violations('add', { amountDecimal: '1.5' }, single)).to.deep.equal({ amount_decimal: 'must be a whole number: JPY has no minor unit' });
    expect(violations('add', { amountDecimal: '1.001', currencyCode: 'USD' })).to.have.keys('amount_decimal');
    // No currency to read it with: only the currency is reported.
    expect(violations('add', { amountDecimal: '1.001', currencyCode: 'ZZZ' })).to.have.keys('currency_code');
  });

  it('currency_code: empty is the default; unknown codes and, for single-currency tenants, other codes are refused', () => {
    expect(violations('add', { amount: 1n, currencyCode: 'usd' })).to.have.keys('currency_code');
    expect(violations('add', { amount: 1n, currencyCode: 'USD' }, single)).to.deep.equal({
      currency_code: 'must be JPY: tenant yen-only is not multi-currency',
    });
    expect(violations('add', { amount: 1n, currencyCode: 'JPY' }, single)).to.deep.equal({});
  });

  it('text fields and enums', () => {
    expect(violations('add', { amount: 1n, customerId: '' })).to.deep.equal({ customer_id: 'is required' });
    expect(violations('add', { amount: 1n, customerId: 'a'.repeat(51) })).to.have.keys('customer_id');
    expect(violations('add', { amount: 1n, description: '' })).to.deep.equal({ description: 'is required' });
    expect(violations('add', { amount: 1n, description: 'd'.repeat(251) })).to.deep.equal({ description: 'must be 1 to 250 characters long, got 251' });
    expect(violations('add', { amount: 1n, description: '€'.repeat(250) })).to.deep.equal({});
    expect(violations('add', { amount: 1n, description: 'a\u0000' })).to.deep.equal({ description: 'must not contain control characters' });
    expect(violations('add', { amount: 1n, reference: 'r'.repeat(501) })).to.have.keys('reference');
    expect(violations('add', { amount: 1n, creditType: 'UNRECOGNIZED' })).to.have.keys('credit_type');
  });

  it('expire_time: at most 10 calendar years ahead, not 3,653 days (a day too many when the ten years hold two 29 Februaries)', () => {
    const refused = (now: string, expire: string) => {
      try {
        validateBalanceChange('add', change({ amount: 1n, expireTime: new Date(expire) }), multi, new Date(now));
      } catch (err) {
        return Object.fromEntries((err as DomainError).violations.map((v) => [v.field, v.description]));
      }
      return {};
    };
    expect(refused('2029-03-01T00:00:00Z', '2039-03-01T00:00:00Z')).to.deep.equal({});
    expect(refused('2029-03-01T00:00:00Z', '2039-03-01T00:00:00.001Z')).to.deep.equal({ expire_time: 'must be at most 10 years ahead' });
    expect(refused('2029-03-01T00:00:00Z', '2039-03-01T12:00:00Z'), 'within 3,653 days').to.deep.equal({ expire_time: 'must be at most 10 years ahead' });
    expect(refused('2028-02-29T06:00:00Z', '2038-02-28T06:00:00Z'), 'from a 29 February').to.deep.equal({});
    expect(refused('2028-02-29T06:00:00Z', '2038-03-01T00:00:00Z')).to.have.keys('expire_time');
  });

  it('reports every bad field at once', () => {
    expect(
      violations('set', { customerId: '!', currencyCode: 'xx', description: '', reference: '\u0007', creditType: 'UNRECOGNIZED', amount: -1n }),
    ).to.have.keys('customer_id', 'currency_code', 'description', 'reference', 'credit_type', 'amount');
  });
});
