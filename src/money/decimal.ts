import { currencyExponent } from './currencies';

export const INT64_MAX = 9_223_372_036_854_775_807n;

const DECIMAL = /^(\d+)(?:\.(\d+))?$/;

export type ParseResult = { ok: true; minor: bigint } | { ok: false; problem: string };

/**
 * Parses a non-negative decimal in major units ("10.5", "10.50", "7") into
 * minor units of `currency`, exactly. No sign, exponent, spaces or separators;
 * at most as many fraction digits as the currency's minor unit has.
 */
export function parseDecimalAmount(text: string, currency: string): ParseResult {
  const exponent = currencyExponent(currency);
  if (exponent === undefined) return { ok: false, problem: `cannot be read without a known currency_code` };
  const problem = decimalSyntaxProblem(text);
  if (problem !== undefined) return { ok: false, problem };
  const match = DECIMAL.exec(text)!;
  const whole = match[1]!;
  const fraction = match[2] ?? '';
  if (fraction.length > exponent) {
    return {
      ok: false,
      problem:
        exponent === 0
          ? `must be a whole number: ${currency} has no minor unit`
          : `has ${fraction.length} decimal places but ${currency} allows at most ${exponent}`,
    };
  }
  const minor = BigInt(whole + fraction.padEnd(exponent, '0'));
  if (minor > INT64_MAX) return { ok: false, problem: 'is too large: it must fit in a signed 64-bit count of minor units' };
  return { ok: true, minor };
}

/**
 * What is wrong with `text` as a decimal whatever the currency (a sign, an
 * exponent, too long), or undefined: for a check before the currency is
 * known (a capture's, read from its hold).
 */
export function decimalSyntaxProblem(text: string): string | undefined {
  if (text.length > 40) return 'must be at most 40 characters';
  if (!DECIMAL.test(text)) return `must be a plain decimal number such as "10.50", got "${text}"`;
  return undefined;
}

/** Formats minor units as a decimal in major units with all minor digits: 1050n, USD → "10.50". */
export function formatMinorUnits(minor: bigint, currency: string): string {
  const exponent = currencyExponent(currency) ?? 0;
  const negative = minor < 0n;
  const digits = (negative ? -minor : minor).toString();
  if (exponent === 0) return (negative ? '-' : '') + digits;
  const padded = digits.padStart(exponent + 1, '0');
  const whole = padded.slice(0, padded.length - exponent);
  const fraction = padded.slice(padded.length - exponent);
  return `${negative ? '-' : ''}${whole}.${fraction}`;
}
