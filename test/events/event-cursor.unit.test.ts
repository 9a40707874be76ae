import { createHmac, randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { EventCursorCodec, type Position } from '../../src/events/event-cursor';

/** A cursor as HMAC-SHA256 with createHmac makes it: the format consumers have stored. */
function cursorByHmac(key: Buffer, at: Position): string {
  const payload = Buffer.alloc(17);
  payload.writeUInt8(1, 0);
  payload.writeBigUInt64BE(at.xid, 1);
  payload.writeBigInt64BE(at.position, 9);
  const mac = createHmac('sha256', key).update('event-cursor\0').update(payload).digest().subarray(0, 8);
  return Buffer.concat([payload, mac]).toString('base64url');
}

describe('event cursors', () => {
  const positions: Position[] = [
    { xid: 0n, position: 1n },
    { xid: 741n, position: 12_345n },
    { xid: 2n ** 64n - 1n, position: 2n ** 63n - 1n },
    ...Array.from({ length: 200 }, () => ({ xid: randomBytes(8).readBigUInt64BE(), position: randomBytes(8).readBigInt64BE() & (2n ** 63n - 1n) })),
  ];

  for (const [label, key] of [
    ['a 32-byte key', randomBytes(32)],
    ['a key longer than the hash block (hashed first)', randomBytes(100)],
    ['a key of exactly one block', randomBytes(64)],
  ] as const) {
    it(`are HMAC-SHA256 as before, so stored cursors stay valid, and decode to what they encode: ${label}`, () => {
      const codec = new EventCursorCodec(key);
      for (const at of positions) {
        const cursor = codec.encode(at);
        expect(cursor).to.equal(cursorByHmac(key, at));
        expect(codec.decode(cursor)).to.deep.equal(at);
      }
    });
  }

  it('refuses a cursor of another key, or with one character changed', () => {
    const codec = new EventCursorCodec(randomBytes(32));
    const at = { xid: 99n, position: 7n };
    expect(codec.decode(cursorByHmac(randomBytes(32), at))).to.equal('malformed');
    const cursor = codec.encode(at);
    for (let i = 0; i < cursor.length; i++) {
      const changed = cursor.slice(0, i) + (cursor[i] === 'A' ? 'B' : 'A') + cursor.slice(i + 1);
      expect(codec.decode(changed), `character ${i}`).to.equal('malformed');
    }
  });
});
