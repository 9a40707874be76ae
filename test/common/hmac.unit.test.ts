import { createHash, createHmac, randomBytes } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { HmacSha256 } from '../../src/common/hmac';
import { PageTokenCodec } from '../../src/common/page-token';

function expected(key: Buffer, parts: ReadonlyArray<Buffer | string>): Buffer {
  const hmac = createHmac('sha256', key);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

describe('HmacSha256 (unit)', () => {
  it('is createHmac: any key length (longer than a block too), any parts, messages past its first buffer', () => {
    const part = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 150 }), fc.array(fc.array(part, { maxLength: 4 }), { minLength: 1, maxLength: 5 }), (key, messages) => {
        const hmac = new HmacSha256(Buffer.from(key));
        // One instance, many messages in turn: a long one grows the buffer, a short one after it must not see its tail.
        for (const parts of messages) expect(hmac.digest(...parts).equals(expected(Buffer.from(key), parts))).to.equal(true);
      }),
    );
  });

  it('a message longer than its buffer (a long page token): the same MAC, and shorter ones after it', () => {
    const key = randomBytes(32);
    const hmac = new HmacSha256(key);
    for (const parts of [['tenant', '\0', 'p'.repeat(1000)], ['short'], [Buffer.alloc(5000, 7), 'é'.repeat(300)], ['tenant', '\0', 'q']]) {
      expect(hmac.digest(...parts).equals(expected(key, parts))).to.equal(true);
    }
  });

  it('answers a new buffer each time (a caller may keep it)', () => {
    const hmac = new HmacSha256(randomBytes(32));
    const first = hmac.digest('a');
    const copy = Buffer.from(first);
    hmac.digest('b');
    expect(first.equals(copy)).to.equal(true);
  });

  it('page tokens stay those older replicas issue and accept (createHmac over tenant, NUL, payload)', () => {
    const key = randomBytes(32);
    const tenantId = '7d1c5f8e-3a52-4d7b-9c1e-0f2a6b8c4d10';
    const filterKey = '["promotional_credits","cust_1"]';
    const filter = createHash('sha256').update(filterKey).digest().subarray(0, 12).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ p: ['42'], f: filter })).toString('base64url');
    const older = `${payload}.${createHmac('sha256', key).update(tenantId).update('\0').update(payload).digest().subarray(0, 16).toString('base64url')}`;
    const codec = new PageTokenCodec(key);
    expect(codec.encode(tenantId, filterKey, ['42'])).to.equal(older);
    expect(codec.decode(tenantId, filterKey, older)).to.deep.equal(['42']);
  });
});
