import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { EventCursorCodec, type Position } from '../../src/events/event-cursor';

/**
 * A cursor as HMAC-SHA256 with createHmac makes it: version 2 over the
 * tenant's id, version 1 (the format consumers stored before) without.
 */
function cursorByHmac(key: Buffer, at: Position, tenantId?: string): string {
  const payload = Buffer.alloc(17);
  payload.writeUInt8(tenantId === undefined ? 1 : 2, 0);
  payload.writeBigUInt64BE(at.xid, 1);
  payload.writeBigInt64BE(at.position, 9);
  const hmac = createHmac('sha256', key).update('event-cursor\0');
  if (tenantId !== undefined) hmac.update(Buffer.from(tenantId.replaceAll('-', ''), 'hex'));
  const mac = hmac.update(payload).digest().subarray(0, 8);
  return Buffer.concat([payload, mac]).toString('base64url');
}

describe('event cursors', () => {
  const positions: Position[] = [
    { xid: 0n, position: 1n },
    { xid: 741n, position: 12_345n },
    { xid: 2n ** 64n - 1n, position: 2n ** 63n - 1n },
    ...Array.from({ length: 200 }, () => ({ xid: randomBytes(8).readBigUInt64BE(), position: randomBytes(8).readBigInt64BE() & (2n ** 63n - 1n) })),
  ];

  const tenant = randomUUID();
  const other = randomUUID();

  for (const [label, key] of [
    ['a 32-byte key', randomBytes(32)],
    ['a key longer than the hash block (hashed first)', randomBytes(100)],
    ['a key of exactly one block', randomBytes(64)],
  ] as const) {
    it(`version 2: HMAC-SHA256 over the tenant and the position, read for that tenant alone; version 1 read for any: ${label}`, () => {
      const codec = new EventCursorCodec(key, 2);
      for (const at of positions) {
        const cursor = codec.encode(tenant, at);
        expect(cursor).to.equal(cursorByHmac(key, at, tenant));
        expect(codec.decode(tenant, cursor)).to.deep.equal(at);
        expect(codec.decode(other, cursor)).to.equal('malformed');
        expect(codec.decode(other, cursorByHmac(key, at)), 'version 1: any tenant').to.deep.equal(at);
      }
    });

    it(`version 1 (the default, what older servers read): HMAC-SHA256 over the position as before; version 2 read too: ${label}`, () => {
      const codec = new EventCursorCodec(key);
      for (const at of positions.slice(0, 20)) {
        const cursor = codec.encode(tenant, at);
        expect(cursor).to.equal(cursorByHmac(key, at));
        expect(codec.decode(other, cursor)).to.deep.equal(at);
        expect(codec.decode(tenant, cursorByHmac(key, at, tenant))).to.deep.equal(at);
        expect(codec.decode(other, cursorByHmac(key, at, tenant))).to.equal('malformed');
      }
    });
  }

  it('refuses a cursor of another key, of another tenant, or with one character changed', () => {
    const key = randomBytes(32);
    const codec = new EventCursorCodec(key, 2);
    const at = { xid: 99n, position: 7n };
    expect(codec.decode(tenant, cursorByHmac(randomBytes(32), at, tenant))).to.equal('malformed');
    expect(codec.decode(tenant, cursorByHmac(randomBytes(32), at))).to.equal('malformed');
    expect(codec.decode(tenant, cursorByHmac(key, at, other))).to.equal('malformed');
    for (const cursor of [codec.encode(tenant, at), cursorByHmac(key, at)]) {
      for (let i = 0; i < cursor.length; i++) {
        const changed = cursor.slice(0, i) + (cursor[i] === 'A' ? 'B' : 'A') + cursor.slice(i + 1);
        expect(codec.decode(tenant, changed), `character ${i} of ${cursor}`).to.equal('malformed');
      }
    }
  });
});
