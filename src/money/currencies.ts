/**
 * ISO 4217 currencies in circulation with their minor-unit exponent (the
 * number of decimal digits of the minor unit). Funds and precious-metal codes
 * without a minor unit (XAU, XDR, ...) are not accepted for money.
 */
const EXPONENTS: Readonly<Record<string, number>> = (() => {
  const table: Record<string, number> = {};
  const two =
    'AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD ' +
    'CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL ' +
    'GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR ' +
    'LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD ' +
    'PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC ' +
    'SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UZS VED VES WST XCD XCG YER ZAR ZMW ZWG';
  const zero = 'BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF';
  const three = 'BHD IQD JOD KWD LYD OMR TND';
  const four = 'CLF UYW';
  for (const [codes, exponent] of [
    [two, 2],
    [zero, 0],
    [three, 3],
    [four, 4],
  ] as const) {
    for (const code of codes.split(' ')) table[code] = exponent;
  }
  return Object.freeze(table);
})();

/** The minor-unit exponent of an ISO 4217 code, or undefined if unknown. */
export function currencyExponent(code: string): number | undefined {
  return Object.prototype.hasOwnProperty.call(EXPONENTS, code) ? EXPONENTS[code] : undefined;
}

export function isKnownCurrency(code: string): boolean {
  return currencyExponent(code) !== undefined;
}
