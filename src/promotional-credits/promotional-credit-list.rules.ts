import { Violations } from '../common/domain-error';
import { checkStringFilter, checkTimeFilter, type StringFilter, type TimeFilter } from '../common/list-filters';
import { checkPageSize, type PageInput } from '../common/pager';
import type { EntryType } from './promotional-credit.entity';
import type { LedgerFilter } from './promotional-credit.repository';

type TypeValue = EntryType | 'UNRECOGNIZED';

export interface ListInput extends PageInput {
  id?: StringFilter;
  customerId?: StringFilter;
  type?: { is?: TypeValue; isNot?: TypeValue; in: TypeValue[]; notIn: TypeValue[] };
  createTime?: TimeFilter;
}

const ALL_TYPES: readonly EntryType[] = ['INCREMENT', 'DECREMENT'];
const TYPE_NAMES = 'PROMOTIONAL_CREDIT_TYPE_INCREMENT or PROMOTIONAL_CREDIT_TYPE_DECREMENT';

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

  // Fold the type operators into the one set of types that satisfies all of them.
  let types: EntryType[] | undefined;
  const t = input.type;
  if (t) {
    const known = (field: string, values: TypeValue[]): EntryType[] => {
      if (values.some((value) => value === 'UNRECOGNIZED')) v.add(field, `must contain only ${TYPE_NAMES}`);
      return values.filter((value): value is EntryType => value !== 'UNRECOGNIZED');
    };
    if (t.in.length > 10) v.add('type.in', 'must have at most 10 values');
    if (t.notIn.length > 10) v.add('type.not_in', 'must have at most 10 values');
    let allowed = new Set<EntryType>(ALL_TYPES);
    if (t.is !== undefined) allowed = intersect(allowed, known('type.is', [t.is]));
    if (t.in.length > 0) allowed = intersect(allowed, known('type.in', t.in));
    if (t.isNot !== undefined) for (const x of known('type.is_not', [t.isNot])) allowed.delete(x);
    for (const x of known('type.not_in', t.notIn)) allowed.delete(x);
    if (allowed.size < ALL_TYPES.length) types = [...allowed].sort();
  }
  v.throwIfAny();

  const filter: LedgerFilter = {
    id: normaliseId(input.id),
    customerId: input.customerId,
    types,
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

function intersect<T>(set: Set<T>, values: readonly T[]): Set<T> {
  return new Set(values.filter((value) => set.has(value)));
}
