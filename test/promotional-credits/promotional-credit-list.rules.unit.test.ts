import { expect } from 'chai';
import type { DomainError } from '../../src/common/domain-error';
import { validateListInput, type ListInput } from '../../src/promotional-credits/promotional-credit-list.rules';

const UUID = '0B6D1F0E-2C4A-4F5E-9A7B-3C2D1E0F9A8B';
const input = (over: Partial<ListInput> = {}): ListInput => ({ pageSize: 0, pageToken: '', ...over });
type TypeInput = NonNullable<ListInput['type']>;
const types = (t: Partial<TypeInput>): TypeInput => ({ in: [], notIn: [], ...t });

function fieldsOf(over: Partial<ListInput>): string[] {
  try {
    validateListInput(input(over));
  } catch (err) {
    return (err as DomainError).violations.map((v) => v.field).sort();
  }
  return [];
}

describe('promotional credit list rules (unit)', () => {
  it('accepts no filters', () => {
    const { filter } = validateListInput(input());
    expect(filter).to.deep.equal({ id: undefined, customerId: undefined, types: undefined, origins: undefined, metadata: undefined, createTime: {} });
  });

  it('normalises id filters to lower case', () => {
    const { filter } = validateListInput(input({ id: { is: UUID, isNot: UUID, startsWith: '0B6D' } }));
    expect(filter.id).to.deep.equal({ is: UUID.toLowerCase(), isNot: UUID.toLowerCase(), startsWith: '0b6d' });
  });

  it('checks each operator value', () => {
    expect(fieldsOf({ pageSize: -1 })).to.deep.equal(['page_size']);
    expect(fieldsOf({ pageSize: 1.5 })).to.deep.equal(['page_size']);
    expect(fieldsOf({ id: { is: '0b6d1f0e' } })).to.deep.equal(['id.is']);
    expect(fieldsOf({ id: { isNot: 'zz' } })).to.include('id.is_not');
    expect(fieldsOf({ id: { startsWith: 'g' } })).to.deep.equal(['id.starts_with']);
    expect(fieldsOf({ id: { startsWith: `${UUID}0` } })).to.deep.equal(['id.starts_with']);
    expect(fieldsOf({ id: { startsWith: UUID } })).to.deep.equal([]);
    expect(fieldsOf({ customerId: { is: 'a b', isNot: '', startsWith: 'x'.repeat(51) } })).to.deep.equal([
      'customer_id.is',
      'customer_id.is_not',
      'customer_id.starts_with',
    ]);
    expect(fieldsOf({ createTime: { between: { start: new Date(2), end: new Date(1) } } })).to.deep.equal(['create_time.between.end']);
  });

  describe('type operators fold into one set of types', () => {
    const fold = (t: TypeInput) => validateListInput(input({ type: t })).filter.types;

    it('each operator alone', () => {
      expect(fold(types({}))).to.equal(undefined);
      expect(fold(types({ is: 'INCREMENT' }))).to.deep.equal(['INCREMENT']);
      expect(fold(types({ isNot: 'INCREMENT' }))).to.deep.equal(['DECREMENT']);
      expect(fold(types({ in: ['DECREMENT'] }))).to.deep.equal(['DECREMENT']);
      expect(fold(types({ in: ['DECREMENT', 'INCREMENT', 'DECREMENT'] }))).to.equal(undefined);
      expect(fold(types({ notIn: ['DECREMENT'] }))).to.deep.equal(['INCREMENT']);
    });

    it('combined with AND; nothing satisfiable is an empty set (matches no entry)', () => {
      expect(fold(types({ in: ['INCREMENT', 'DECREMENT'], isNot: 'DECREMENT' }))).to.deep.equal(['INCREMENT']);
      expect(fold(types({ is: 'INCREMENT', in: ['INCREMENT'] }))).to.deep.equal(['INCREMENT']);
      expect(fold(types({ is: 'INCREMENT', isNot: 'INCREMENT' }))).to.deep.equal([]);
      expect(fold(types({ is: 'INCREMENT', in: ['DECREMENT'] }))).to.deep.equal([]);
      expect(fold(types({ notIn: ['INCREMENT', 'DECREMENT'] }))).to.deep.equal([]);
    });

    it('refuses values the contract does not define, and more than 10 values', () => {
      expect(fieldsOf({ type: types({ is: 'UNRECOGNIZED' }) })).to.deep.equal(['type.is']);
      expect(fieldsOf({ type: types({ isNot: 'UNRECOGNIZED' }) })).to.deep.equal(['type.is_not']);
      expect(fieldsOf({ type: types({ in: ['INCREMENT', 'UNRECOGNIZED'] }) })).to.deep.equal(['type.in']);
      expect(fieldsOf({ type: types({ notIn: ['UNRECOGNIZED'] }) })).to.deep.equal(['type.not_in']);
      expect(fieldsOf({ type: types({ in: Array(11).fill('INCREMENT') }) })).to.deep.equal(['type.in']);
      expect(fieldsOf({ type: types({ notIn: Array(11).fill('DECREMENT') }) })).to.deep.equal(['type.not_in']);
      expect(fieldsOf({ type: types({ in: Array(10).fill('INCREMENT') }) })).to.deep.equal([]);
    });
  });

  describe('filterKey binds page tokens to the filters', () => {
    const key = (over: Partial<ListInput>) => validateListInput(input(over)).filterKey;

    it('differs for different filters', () => {
      const keys = [
        key({}),
        key({ customerId: { is: 'a' } }),
        key({ customerId: { isNot: 'a' } }),
        key({ customerId: { startsWith: 'a' } }),
        key({ customerId: { is: 'b' } }),
        key({ id: { startsWith: 'a' } }),
        key({ type: types({ is: 'INCREMENT' }) }),
        key({ type: types({ is: 'DECREMENT' }) }),
        key({ createTime: { after: new Date(0) } }),
        key({ createTime: { before: new Date(0) } }),
        key({ createTime: { on: new Date(0) } }),
      ];
      expect(new Set(keys).size).to.equal(keys.length);
    });

    it('is the same for filters that mean the same, whatever the page', () => {
      expect(key({ id: { startsWith: 'AB' } })).to.equal(key({ id: { startsWith: 'ab' } }));
      expect(key({ type: types({ is: 'INCREMENT' }) })).to.equal(key({ type: types({ notIn: ['DECREMENT'] }) }));
      expect(key({ type: types({ in: ['INCREMENT', 'DECREMENT'] }) })).to.equal(key({}));
      expect(key({ pageSize: 5, pageToken: 'x' })).to.equal(key({ pageSize: 50 }));
      expect(key({ createTime: { on: new Date('2025-03-01T10:00:00Z') } })).to.equal(
        key({ createTime: { between: { start: new Date('2025-03-01T00:00:00Z'), end: new Date('2025-03-02T00:00:00Z') } } }),
      );
    });
  });
});
