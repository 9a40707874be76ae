import { expect } from 'chai';
import fc from 'fast-check';
import { currencyExponent, isKnownCurrency } from '../../src/money/currencies';
import { formatMinorUnits, INT64_MAX, parseDecimalAmount } from '../../src/money/decimal';

const minor = (text: string, currency: string) => {
  const parsed = parseDecimalAmount(text, currency);
  if (!parsed.ok) throw new Error(`${text} ${currency}: ${parsed.problem}`);
  return parsed.minor;
};
const problem = (text: string, currency: string) => {
  const parsed = parseDecimalAmount(text, currency);
  expect(parsed.ok, `${JSON.stringify(text)} ${currency} must be refused`).to.equal(false);
  return (parsed as { problem: string }).problem;
};

describe('money: currencies (unit)', () => {
  it('knows the minor-unit exponent of ISO 4217 codes', () => {
    expect(currencyExponent('USD')).to.equal(2);
    expect(currencyExponent('EUR')).to.equal(2);
    expect(currencyExponent('JPY')).to.equal(0);
    expect(currencyExponent('KRW')).to.equal(0);
    expect(currencyExponent('BHD')).to.equal(3);
    expect(currencyExponent('KWD')).to.equal(3);
    expect(currencyExponent('CLF')).to.equal(4);
  });

  it('rejects unknown, lower-case and non-money codes', () => {
    for (const code of ['usd', 'XXX', 'XAU', 'XDR', '', 'US', 'USDD', 'toString', '__proto__', 'constructor']) {
      expect(isKnownCurrency(code), code).to.equal(false);
      expect(currencyExponent(code), code).to.equal(undefined);
    }
  });
});

describe('money: decimal amounts (unit)', () => {
  describe('parseDecimalAmount', () => {
    it('reads major units into minor units of two-digit currencies', () => {
      expect(minor('10.50', 'USD')).to.equal(1050n);
      expect(minor('10.5', 'USD')).to.equal(1050n);
      expect(minor('10', 'USD')).to.equal(1000n);
      expect(minor('0.01', 'USD')).to.equal(1n);
      expect(minor('0', 'USD')).to.equal(0n);
      expect(minor('0.00', 'USD')).to.equal(0n);
      expect(minor('007.50', 'USD')).to.equal(750n);
    });

    it('reads zero-digit currencies as whole numbers only', () => {
      expect(minor('1050', 'JPY')).to.equal(1050n);
      expect(minor('0', 'JPY')).to.equal(0n);
      expect(problem('10.5', 'JPY')).to.equal('must be a whole number: JPY has no minor unit');
      expect(problem('10.0', 'JPY')).to.equal('must be a whole number: JPY has no minor unit');
    });

    it('reads three- and four-digit currencies', () => {
      expect(minor('1.234', 'BHD')).to.equal(1234n);
      expect(minor('1.2', 'BHD')).to.equal(1200n);
      expect(minor('0.001', 'BHD')).to.equal(1n);
      expect(problem('1.2345', 'BHD')).to.equal('has 4 decimal places but BHD allows at most 3');
      expect(minor('1.2345', 'CLF')).to.equal(12345n);
    });

    it('refuses more fraction digits than the currency has, even zeros', () => {
      expect(problem('1.234', 'USD')).to.equal('has 3 decimal places but USD allows at most 2');
      expect(problem('1.500', 'USD')).to.equal('has 3 decimal places but USD allows at most 2');
    });

    it('refuses anything but plain digits with an optional point', () => {
      for (const text of ['', '-1', '+1', '1e3', '1E3', '1,000', '1 000', ' 1', '1 ', '.5', '5.', '1..2', '1.2.3', 'NaN', 'Infinity', '0x10', '١٢', '１', '1_000', '1.5\n']) {
        expect(problem(text, 'USD'), JSON.stringify(text)).to.match(/plain decimal number|at most 40/);
      }
    });

    it('accepts up to the int64 maximum of minor units and no more', () => {
      expect(minor('92233720368547758.07', 'USD')).to.equal(INT64_MAX);
      expect(minor('9223372036854775807', 'JPY')).to.equal(INT64_MAX);
      expect(minor('9223372036854775.807', 'BHD')).to.equal(INT64_MAX);
      expect(problem('92233720368547758.08', 'USD')).to.match(/too large/);
      expect(problem('9223372036854775808', 'JPY')).to.match(/too large/);
      expect(problem('9'.repeat(40), 'JPY')).to.match(/too large/);
      expect(problem('9'.repeat(41), 'JPY')).to.equal('must be at most 40 characters');
    });

    it('cannot read an amount without a known currency', () => {
      expect(problem('1.00', 'XXX')).to.match(/known currency_code/);
    });
  });

  describe('formatMinorUnits', () => {
    it('writes every minor digit of the currency', () => {
      expect(formatMinorUnits(1050n, 'USD')).to.equal('10.50');
      expect(formatMinorUnits(5n, 'USD')).to.equal('0.05');
      expect(formatMinorUnits(0n, 'USD')).to.equal('0.00');
      expect(formatMinorUnits(100n, 'USD')).to.equal('1.00');
      expect(formatMinorUnits(1050n, 'JPY')).to.equal('1050');
      expect(formatMinorUnits(0n, 'JPY')).to.equal('0');
      expect(formatMinorUnits(1n, 'BHD')).to.equal('0.001');
      expect(formatMinorUnits(1234n, 'BHD')).to.equal('1.234');
      expect(formatMinorUnits(12345n, 'CLF')).to.equal('1.2345');
      expect(formatMinorUnits(-5n, 'USD')).to.equal('-0.05');
      expect(formatMinorUnits(9_007_199_254_740_993n, 'USD')).to.equal('90071992547409.93');
      expect(formatMinorUnits(INT64_MAX, 'USD')).to.equal('92233720368547758.07');
    });

    it('round-trips with parseDecimalAmount for every amount and currency', () => {
      const currencies = ['USD', 'JPY', 'BHD', 'CLF', 'EUR', 'KWD', 'KRW'];
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: INT64_MAX }), fc.constantFrom(...currencies), (amount, currency) => {
          expect(minor(formatMinorUnits(amount, currency), currency)).to.equal(amount);
        }),
        { numRuns: 2000 },
      );
    });

    it('parses exactly, without floating point, where a double would not', () => {
      expect(minor('90071992547409.93', 'USD')).to.equal(9_007_199_254_740_993n);
      expect(minor('0.29', 'USD')).to.equal(29n); // 0.29 * 100 = 28.999999999999996 in floating point
      expect(minor('1.005', 'BHD')).to.equal(1005n);
    });
  });
});
