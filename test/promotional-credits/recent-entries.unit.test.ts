import { expect } from 'chai';
import type { PromotionalCreditEntity } from '../../src/promotional-credits/promotional-credit.entity';
import { RecentEntries } from '../../src/promotional-credits/recent-entries';

const entry = (id: string) => ({ id }) as PromotionalCreditEntity;

describe('RecentEntries', () => {
  it('keeps the last `capacity` entries written, the oldest leaving first, and none of validate_only (no id)', () => {
    const kept = new RecentEntries(3);
    for (const id of ['a', 'b', 'c', 'd', 'e']) kept.remember(entry(id));
    kept.remember(entry(''));
    expect(['a', 'b', 'c', 'd', 'e', ''].map((id) => kept.get(id)?.id)).to.deep.equal([undefined, undefined, 'c', 'd', 'e', undefined]);
    kept.remember(entry('f'));
    expect(['c', 'd', 'e', 'f'].map((id) => kept.get(id)?.id)).to.deep.equal([undefined, 'd', 'e', 'f']);
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
});
