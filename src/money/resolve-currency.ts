import type { Violations } from '../common/domain-error';
import type { Principal } from '../tenants/principal';
import { isKnownCurrency } from './currencies';

/**
 * The currency a request names, checked against the tenant: empty means the
 * tenant's default; an unknown code, or one other than the default for a
 * tenant that is not multi-currency, is a violation of `field` (and answers
 * undefined).
 */
export function resolveCurrency(v: Violations, given: string, principal: Principal, field = 'currency_code'): string | undefined {
  if (given === '') return principal.defaultCurrency;
  if (!isKnownCurrency(given)) {
    // Echo at most 20 characters, whole ones (no half surrogate pair), with control characters escaped.
    v.add(field, `must be the ISO 4217 code of a currency with a minor unit, in upper case, such as USD (not a fund, metal or test code like XAU or XXX), got ${JSON.stringify([...given].slice(0, 20).join(''))}`);
    return undefined;
  }
  if (!principal.multiCurrency && given !== principal.defaultCurrency) {
    v.add(field, `must be ${principal.defaultCurrency}: tenant ${principal.tenantSlug} is not multi-currency`);
    return undefined;
  }
  return given;
}
