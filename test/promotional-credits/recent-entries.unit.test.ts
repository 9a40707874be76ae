import { expect } from 'chai';
import type { PromotionalCreditEntity } from '../../src/promotional-credits/promotional-credit.entity';
import { RECENT_ENTRY_MAX_WEIGHT, RecentEntries } from '../../src/promotional-credits/recent-entries';

const entry = (id: string, more: Partial<PromotionalCreditEntity> = {}) =>
  ({ id, description: 'd', reference: '', metadata: {}, allocations: null, ...more }) as PromotionalCreditEntity;

describe('RecentEntries', () => {
  it('keeps the last `capacity` entries written, the oldest leaving first, and none of validate_only (no id)', () => {
    const kept = new RecentEntries(3);
    for (const id of ['a', 'b', 'c', 'd', 'e']) kept.remember(entry(id));
    kept.remember(entry(''));
    expect(['a', 'b', 'c', 'd', 'e', ''].map((id) => kept.get(id)?.id)).to.deep.equal([undefined, undefined, 'c', 'd', 'e', undefined]);
    kept.remember(entry('f'));
    expect(['c', 'd', 'e', 'f'].map((id) => kept.get(id)?.id)).to.deep.equal([undefined, 'd', 'e', 'f']);
  });

  it('does not keep an entry whose free text and lots weigh more than RECENT_ENTRY_MAX_WEIGHT (its readers read it back)', () => {
    const kept = new RecentEntries(10);
    const value = 'x'.repeat(500);
    const metadata = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`k${i}`, value]));
    const lots = Array.from({ length: 40 }, (_, i) => ({ lotId: `lot-${i}`, amount: 1n }));
    kept.remember(entry('heavy-metadata', { metadata }));
    kept.remember(entry('many-lots', { allocations: lots }));
    kept.remember(entry('long-text', { description: 'y'.repeat(RECENT_ENTRY_MAX_WEIGHT + 1) }));
    kept.remember(entry('light', { metadata: { order: 'o-1' }, allocations: lots.slice(0, 3) }));
    expect(['heavy-metadata', 'many-lots', 'long-text', 'light'].map((id) => kept.get(id)?.id)).to.deep.equal([undefined, undefined, undefined, 'light']);
  });

  it('forgets everything on clear, then fills again from empty', () => {
    const kept = new RecentEntries(2);
    kept.remember(entry('a'));
    kept.remember(entry('b'));
    kept.clear();
    expect(kept.get('a')).to.equal(undefined);
    kept.remember(entry('c'));
    kept.remember(entry('d'));
    kept.remember(entry('e'));
    expect(['c', 'd', 'e'].map((id) => kept.get(id)?.id)).to.deep.equal([undefined, 'd', 'e']);
  });

  it('replaces an entry kept again where it is, so that it leaves with its first slot and not before the others', () => {
    const kept = new RecentEntries(3);
    kept.remember(entry('a'));
    kept.remember(entry('b'));
    kept.remember(entry('a', { description: 'again' }));
    kept.remember(entry('c'));
    expect(['a', 'b', 'c'].map((id) => kept.get(id)?.description)).to.deep.equal(['again', 'd', 'd']);
    kept.remember(entry('d'));
    expect(['a', 'b', 'c', 'd'].map((id) => kept.get(id)?.id)).to.deep.equal([undefined, 'b', 'c', 'd']);
  });
});
