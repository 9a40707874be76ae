import { Violations } from '../common/domain-error';
import { checkStringFilter, checkTimeFilter, type StringFilter, type TimeFilter } from '../common/list-filters';
import { checkPageSize, type PageInput } from '../common/pager';
import { checkMetadata } from '../common/metadata';
import { ORIGINS, type EntryType, type Origin } from './promotional-credit.entity';
import type { LedgerFilter } from './promotional-credit.repository';

/** An enum filter's operators as the transport hands them over; 'UNRECOGNIZED' for values the contract does not define. */
interface EnumFilterInput<T> {
  is?: T | 'UNRECOGNIZED';
  isNot?: T | 'UNRECOGNIZED';
  in: Array<T | 'UNRECOGNIZED'>;
  notIn: Array<T | 'UNRECOGNIZED'>;
}

export interface ListInput extends PageInput {
  id?: StringFilter;
  customerId?: StringFilter;
  type?: EnumFilterInput<EntryType>;
  origin?: EnumFilterInput<Origin>;
  createTime?: TimeFilter;
  metadata?: Record<string, string>;
}

const ALL_TYPES: readonly EntryType[] = ['INCREMENT', 'DECREMENT'];
const TYPE_NAMES = 'PROMOTIONAL_CREDIT_TYPE_INCREMENT or PROMOTIONAL_CREDIT_TYPE_DECREMENT';
const ORIGIN_NAMES = ORIGINS.map((o) => `ORIGIN_${o}`).join(', ');

/**
 * Validates ListPromotionalCredits filters and reduces them to a LedgerFilter.
 * `filterKey` is a canonical text of the filter that binds
 * page tokens to it.
 */
export function validateListInput(input: ListInput): { filter: LedgerFilter; filterKey: string } {
  const v = new Violations();
  checkPageSize(v, input.pageSize);
  checkStringFilter(v, 'id', input.id, /^[0-9A-Fa-f-]+$/, 'hexadecimal digits and -', 36);
  for (const op of ['is', 'isNot'] as const) {
    const value = input.id?.[op];
    if (value !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) {
      v.add(op === 'is' ? 'id.is' : 'id.is_not', 'must be a whole UUID (use starts_with for a prefix)');
    }
  }
  checkStringFilter(v, 'customer_id', input.customerId, /^[A-Za-z0-9_.@:-]+$/, 'A-Z, a-z, 0-9 and _ . @ : -', 50);
  const createTime = checkTimeFilter(v, 'create_time', input.createTime);

  const types = foldEnumFilter(v, 'type', input.type, ALL_TYPES, TYPE_NAMES);
  // Entries written before origins were recorded have none (null): is_not and not_in keep them.
  const origins = foldEnumFilter<Origin | null>(v, 'origin', input.origin, [...ORIGINS, null], ORIGIN_NAMES);
  const metadata = checkMetadata(v, 'metadata', input.metadata);
  v.throwIfAny();

  const filter: LedgerFilter = {
    id: normaliseId(input.id),
    customerId: input.customerId,
    types,
    origins,
    metadata: Object.keys(metadata).length > 0 ? metadata : undefined,
    createTime,
  };
  const filterKey = JSON.stringify([
    'promotional_credits',
    filter.id?.is ?? null,
    filter.id?.isNot ?? null,
    filter.id?.startsWith ?? null,
    filter.customerId?.is ?? null,
    filter.customerId?.isNot ?? null,
    filter.customerId?.startsWith ?? null,
    filter.types ?? null,
    filter.origins ?? null,
    filter.metadata ? Object.entries(filter.metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : null,
    createTime.afterExclusive?.toISOString() ?? null,
    createTime.from?.toISOString() ?? null,
    createTime.until?.toISOString() ?? null,
  ]);
  return { filter, filterKey };
}

function normaliseId(filter: StringFilter | undefined): StringFilter | undefined {
  if (!filter) return undefined;
  return {
    is: filter.is?.toLowerCase(),
    isNot: filter.isNot?.toLowerCase(),
    startsWith: filter.startsWith?.toLowerCase(),
  };
}

/**
 * Folds an enum filter's operators (combined with AND) into the one set of
 * values that satisfies all of them: undefined when that is every value (no
 * filter), empty when nothing can match.
 */
function foldEnumFilter<T extends string | null>(
  v: Violations,
  field: string,
  filter: EnumFilterInput<Exclude<T, null>> | undefined,
  all: readonly T[],
  names: string,
): T[] | undefined {
  if (!filter) return undefined;
  const known = (name: string, values: Array<Exclude<T, null> | 'UNRECOGNIZED'>): T[] => {
    if (values.some((value) => value === 'UNRECOGNIZED')) v.add(`${field}.${name}`, `must contain only ${names}`);
    return values.filter((value) => value !== 'UNRECOGNIZED') as T[];
  };
  if (filter.in.length > 10) v.add(`${field}.in`, 'must have at most 10 values');
  if (filter.notIn.length > 10) v.add(`${field}.not_in`, 'must have at most 10 values');
  let allowed = new Set<T>(all);
  if (filter.is !== undefined) allowed = intersect(allowed, known('is', [filter.is]));
  if (filter.in.length > 0) allowed = intersect(allowed, known('in', filter.in));
  if (filter.isNot !== undefined) for (const x of known('is_not', [filter.isNot])) allowed.delete(x);
  for (const x of known('not_in', filter.notIn)) allowed.delete(x);
  if (allowed.size === all.length) return undefined;
  return [...allowed].sort((a, b) => (a === null ? 1 : b === null ? -1 : a < b ? -1 : a > b ? 1 : 0));
}

function intersect<T>(set: Set<T>, values: readonly T[]): Set<T> {
  return new Set(values.filter((value) => set.has(value)));
}
