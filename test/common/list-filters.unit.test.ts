import { expect } from 'chai';
import { DomainError, Violations } from '../../src/common/domain-error';
import { checkStringFilter, checkTimeFilter, likePrefix, type TimeFilter } from '../../src/common/list-filters';

/** The violations a check adds, as field -> description. */
function violationsOf(check: (v: Violations) => void): Record<string, string> {
  const v = new Violations();
  check(v);
  try {
    v.throwIfAny();
    return {};
  } catch (err) {
    return Object.fromEntries((err as DomainError).violations.map((x) => [x.field, x.description]));
  }
}

const t = (iso: string) => new Date(iso);

describe('list filters (unit)', () => {
  describe('checkStringFilter', () => {
    const check = (filter: Parameters<typeof checkStringFilter>[2], max = 50) =>
      violationsOf((v) => checkStringFilter(v, 'customer_id', filter, /^[A-Za-z0-9_.@:-]+$/, 'A-Z, a-z, 0-9 and _ . @ : -', max));

    it('accepts an absent filter, no operator, and valid values', () => {
      expect(check(undefined)).to.deep.equal({});
      expect(check({})).to.deep.equal({});
      expect(check({ is: 'a', isNot: 'b_c', startsWith: 'x'.repeat(50) })).to.deep.equal({});
    });

    it('names each bad operator by its proto field path', () => {
      expect(check({ is: '', isNot: 'bad value', startsWith: 'x'.repeat(51) })).to.deep.equal({
        'customer_id.is': 'must be 1 to 50 characters long',
        'customer_id.is_not': 'must contain only A-Z, a-z, 0-9 and _ . @ : -',
        'customer_id.starts_with': 'must be 1 to 50 characters long',
      });
      expect(Object.keys(check({ startsWith: '%' }))).to.deep.equal(['customer_id.starts_with']);
    });
  });

  describe('likePrefix', () => {
    it('escapes LIKE wildcards and the escape character, then appends %', () => {
      expect(likePrefix('abc')).to.equal('abc%');
      expect(likePrefix('a_b')).to.equal('a\\_b%');
      expect(likePrefix('50%')).to.equal('50\\%%');
      expect(likePrefix('back\\slash')).to.equal('back\\\\slash%');
      expect(likePrefix('__%')).to.equal('\\_\\_\\%%');
    });
  });

  describe('checkTimeFilter', () => {
    const fold = (filter: TimeFilter | undefined) => {
      let window: ReturnType<typeof checkTimeFilter> | undefined;
      const violations = violationsOf((v) => (window = checkTimeFilter(v, 'create_time', filter)));
      return { window: window!, violations };
    };

    it('has no bounds without a filter', () => {
      expect(fold(undefined)).to.deep.equal({ window: {}, violations: {} });
      expect(fold({})).to.deep.equal({ window: {}, violations: {} });
    });

    it('after is exclusive, before an exclusive upper bound', () => {
      expect(fold({ after: t('2025-03-01T10:00:00Z') }).window).to.deep.equal({ afterExclusive: t('2025-03-01T10:00:00Z') });
      expect(fold({ before: t('2025-03-01T10:00:00Z') }).window).to.deep.equal({ until: t('2025-03-01T10:00:00Z') });
    });

    it('on is the whole UTC day of the instant', () => {
      expect(fold({ on: t('2025-03-01T23:59:59.999Z') }).window).to.deep.equal({ from: t('2025-03-01T00:00:00Z'), until: t('2025-03-02T00:00:00Z') });
      expect(fold({ on: t('2025-03-01T00:00:00Z') }).window).to.deep.equal({ from: t('2025-03-01T00:00:00Z'), until: t('2025-03-02T00:00:00Z') });
      expect(fold({ on: t('1969-12-31T12:00:00Z') }).window).to.deep.equal({ from: t('1969-12-31T00:00:00Z'), until: t('1970-01-01T00:00:00Z') });
    });

    it('between is [start, end)', () => {
      const start = t('2025-01-01T00:00:00Z');
      const end = t('2025-02-01T00:00:00Z');
      expect(fold({ between: { start, end } }).window).to.deep.equal({ from: start, until: end });
    });

    it('folds several operators into their intersection', () => {
      const { window } = fold({
        on: t('2025-03-01T12:00:00Z'),
        between: { start: t('2025-03-01T06:00:00Z'), end: t('2025-03-05T00:00:00Z') },
        before: t('2025-03-01T18:00:00Z'),
        after: t('2025-03-01T07:00:00Z'),
      });
      expect(window).to.deep.equal({
        from: t('2025-03-01T06:00:00Z'),
        until: t('2025-03-01T18:00:00Z'),
        afterExclusive: t('2025-03-01T07:00:00Z'),
      });
    });

    it('requires both ends of between, and end after start', () => {
      expect(fold({ between: {} }).violations).to.deep.equal({ 'create_time.between.start': 'is required', 'create_time.between.end': 'is required' });
      expect(Object.keys(fold({ between: { start: t('2025-01-01T00:00:00Z') } }).violations)).to.deep.equal(['create_time.between.end']);
      const same = t('2025-01-01T00:00:00Z');
      expect(fold({ between: { start: same, end: same } }).violations).to.deep.equal({ 'create_time.between.end': 'must be later than between.start' });
      expect(Object.keys(fold({ between: { start: t('2025-02-01T00:00:00Z'), end: same } }).violations)).to.deep.equal(['create_time.between.end']);
    });

    it('refuses instants outside the Timestamp range', () => {
      const far = new Date(Date.UTC(10000, 0, 1));
      const invalid = new Date(Number.NaN);
      expect(Object.keys(fold({ after: far, before: invalid, on: new Date(Date.UTC(-1, 0, 1)) }).violations).sort()).to.deep.equal([
        'create_time.after',
        'create_time.before',
        'create_time.on',
      ]);
      expect(fold({ after: t('0001-01-01T00:00:00Z'), before: t('9999-12-31T23:59:59.999Z') }).violations).to.deep.equal({});
    });
  });
});
