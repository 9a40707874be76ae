import type { Violations } from './domain-error';

/** String operators of a list filter (all that are set must hold). */
export interface StringFilter {
  is?: string;
  isNot?: string;
  startsWith?: string;
}

/** Time operators of a list filter; `between` is [start, end). */
export interface TimeFilter {
  after?: Date;
  before?: Date;
  on?: Date;
  between?: { start?: Date; end?: Date };
}

/** A time filter reduced to one half-open interval; either bound may be open. */
export interface TimeWindow {
  from?: Date; // inclusive
  until?: Date; // exclusive
  afterExclusive?: Date;
}

const DAY_MS = 86_400_000;
// google.protobuf.Timestamp's range: 0001-01-01 to 9999-12-31.
const MIN_TIME = new Date('0001-01-01T00:00:00Z').getTime();
const MAX_TIME = new Date('9999-12-31T23:59:59.999Z').getTime();

export function checkTime(v: Violations, field: string, value: Date): boolean {
  const ms = value.getTime();
  if (Number.isNaN(ms) || ms < MIN_TIME || ms > MAX_TIME) {
    v.add(field, 'must be a timestamp between 0001-01-01 and 9999-12-31');
    return false;
  }
  return true;
}

/** Checks each string operator: 1..maxLength characters matching `allowed`. */
export function checkStringFilter(
  v: Violations,
  field: string,
  filter: StringFilter | undefined,
  allowed: RegExp,
  allowedText: string,
  maxLength = 255,
): void {
  if (!filter) return;
  for (const [op, value] of [
    ['is', filter.is],
    ['is_not', filter.isNot],
    ['starts_with', filter.startsWith],
  ] as const) {
    if (value === undefined) continue;
    if (value.length === 0 || value.length > maxLength) v.add(`${field}.${op}`, `must be 1 to ${maxLength} characters long`);
    else if (!allowed.test(value)) v.add(`${field}.${op}`, `must contain only ${allowedText}`);
  }
}

/**
 * Checks a time filter and folds its operators into lower and upper bounds:
 * after t (exclusive), before t (exclusive), on a UTC day [00:00, next 00:00),
 * between [start, end).
 */
export function checkTimeFilter(v: Violations, field: string, filter: TimeFilter | undefined): TimeWindow {
  const window: TimeWindow = {};
  if (!filter) return window;
  const lower = (d: Date) => {
    if (!window.from || d > window.from) window.from = d;
  };
  const upper = (d: Date) => {
    if (!window.until || d < window.until) window.until = d;
  };
  if (filter.after && checkTime(v, `${field}.after`, filter.after)) window.afterExclusive = filter.after;
  if (filter.before && checkTime(v, `${field}.before`, filter.before)) upper(filter.before);
  if (filter.on && checkTime(v, `${field}.on`, filter.on)) {
    const start = Math.floor(filter.on.getTime() / DAY_MS) * DAY_MS;
    lower(new Date(start));
    upper(new Date(start + DAY_MS));
  }
  if (filter.between) {
    const { start, end } = filter.between;
    if (!start) v.add(`${field}.between.start`, 'is required');
    if (!end) v.add(`${field}.between.end`, 'is required');
    if (start && end && checkTime(v, `${field}.between.start`, start) && checkTime(v, `${field}.between.end`, end)) {
      if (end <= start) v.add(`${field}.between.end`, 'must be later than between.start');
      else {
        lower(start);
        upper(end);
      }
    }
  }
  return window;
}

/** Escapes LIKE wildcards so a prefix matches literally (ESCAPE '\'). */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}
