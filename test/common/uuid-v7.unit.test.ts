import { expect } from 'chai';
import { uuidV7, uuidV7Maker } from '../../src/common/uuid-v7';
import { fairBitRange, msOfUuidV7 as msOf, randomBitCounts, UUID_V7 } from '../support/uuid-v7';

describe('uuidV7: time-ordered ids made in the service', () => {
  it('is a version 7, variant 10 UUID whose first 48 bits are the milliseconds it was made at', () => {
    const before = Date.now();
    const id = uuidV7();
    expect(id).to.match(UUID_V7);
    expect(msOf(id)).to.be.within(before, Date.now());
    expect(msOf(uuidV7Maker()(Date.UTC(2030, 0, 1) + 7))).to.equal(Date.UTC(2030, 0, 1) + 7);
  });

  it('makes ids in order within one millisecond, past 4,096 of them, and when the clock steps back', () => {
    const at = Date.UTC(2031, 5, 1);
    const make = uuidV7Maker();
    const ids = Array.from({ length: 5_000 }, () => make(at));
    ids.push(make(at - 60_000), make(at + 1), make(at + 2));
    for (const id of ids) expect(id).to.match(UUID_V7);
    expect(ids.slice().sort(), 'sorted as text = made').to.deep.equal(ids);
    expect(new Set(ids).size).to.equal(ids.length);
    expect(msOf(ids[4_095]!)).to.equal(at);
    expect(msOf(ids[4_096]!), 'the 4,097th borrows the next millisecond').to.equal(at + 1);
  });

  it('draws the other 62 bits at random: each set in about half of the ids, none repeated', () => {
    const ids = Array.from({ length: 4_000 }, () => uuidV7());
    expect(new Set(ids.map((id) => id.slice(19))).size).to.equal(ids.length);
    const [low, high] = fairBitRange(ids.length);
    randomBitCounts(ids).forEach((count, bit) => expect(count, `bit ${bit}`).to.be.within(low, high));
  });
});
