import type { Violations } from './domain-error';

const DAY_MS = 24 * 60 * 60 * 1000;
export const DAYS = (n: number) => n * DAY_MS;

/** The same instant `years` calendar years after `time` (UTC); a 29 February lands on the 28th. */
export function yearsAfter(time: Date, years: number): Date {
  const later = new Date(time.getTime());
  later.setUTCFullYear(later.getUTCFullYear() + years);
  if (later.getUTCMonth() !== time.getUTCMonth()) later.setUTCDate(0); // rolled into March: the last day of February
  return later;
}

/** Checks a time that must lie after `now` and at most `maxAheadMs` later; `what` names the limit in the message. */
export function checkFutureTime(v: Violations, field: string, time: Date, now: Date, maxAheadMs: number, what: string): void {
  if (Number.isNaN(time.getTime())) v.add(field, 'must be a valid timestamp');
  else if (time.getTime() <= now.getTime()) v.add(field, 'must be in the future');
  else if (time.getTime() - now.getTime() > maxAheadMs) v.add(field, `must be at most ${what} ahead`);
}
