import type { Violations } from './domain-error';

const CUSTOMER_ID = /^[A-Za-z0-9_.@:-]{1,50}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// C0/C1 control characters other than tab, newline and carriage return.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

/** `text` with every lone UTF-16 surrogate replaced by U+FFFD, as ES2024's String.prototype.toWellFormed. */
export function toWellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** Checks the caller's opaque customer id: 1..50 of [A-Za-z0-9_.@:-]. */
export function checkCustomerId(v: Violations, field: string, value: string): void {
  if (value === '') v.add(field, 'is required');
  else if (!CUSTOMER_ID.test(value)) v.add(field, 'must be 1 to 50 characters of A-Z, a-z, 0-9 and _ . @ : -');
}

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Checks a server-made id; answers the canonical lower-case form. */
export function checkUuid(v: Violations, field: string, value: string): string {
  if (value === '') v.add(field, 'is required');
  else if (!isUuid(value)) v.add(field, 'must be a UUID such as 0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b');
  return value.toLowerCase();
}

/**
 * Checks free text: length in Unicode code points within [min, max] and no
 * control characters (tab and newlines allowed).
 */
export function checkText(v: Violations, field: string, value: string, min: number, max: number): void {
  const length = [...value].length;
  if (min > 0 && length === 0) v.add(field, 'is required');
  else if (length < min || length > max) v.add(field, `must be ${min} to ${max} characters long, got ${length}`);
  else if (CONTROL.test(value)) v.add(field, 'must not contain control characters');
}
