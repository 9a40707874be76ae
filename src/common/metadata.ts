import type { Violations } from './domain-error';
import { checkText } from './text';

/** The caller's key/value pairs on what it creates (entries, holds, coupons, credits, redemptions). */
export type Metadata = Readonly<Record<string, string>>;

export const MAX_METADATA_PAIRS = 20;
const KEY = /^[A-Za-z0-9_.-]{1,40}$/;

/**
 * Checks metadata against the contract: at most 20 pairs, keys of 1..40
 * characters of [A-Za-z0-9_.-], values of 0..500 characters without control
 * characters. Answers it as given (an empty map for none).
 */
export function checkMetadata(v: Violations, field: string, metadata: Record<string, string> | undefined): Metadata {
  const pairs = Object.entries(metadata ?? {});
  if (pairs.length > MAX_METADATA_PAIRS) v.add(field, `must have at most ${MAX_METADATA_PAIRS} pairs, got ${pairs.length}`);
  for (const [key, value] of pairs) {
    if (!KEY.test(key)) v.add(`${field}[${JSON.stringify(key)}]`, 'key must be 1 to 40 characters of A-Z, a-z, 0-9 and _ . -');
    else checkText(v, `${field}[${JSON.stringify(key)}]`, value, 0, 500);
  }
  return metadata ?? {};
}
