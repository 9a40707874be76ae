import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { DomainError, ErrorReason } from '../../src/common/domain-error';
import { PageTokenCodec } from '../../src/common/page-token';
import { DEFAULT_PAGE_SIZE, effectivePageSize, MAX_PAGE_SIZE } from '../../src/common/pager';

const TENANT = '7d1c5f8e-3a52-4d7b-9c1e-0f2a6b8c4d10';
const OTHER_TENANT = '0b6d1f0e-2c4a-4f5e-9a7b-3c2d1e0f9a8b';
const FILTER = '["promotional_credits",null]';

function expectInvalid(decode: () => unknown, why: RegExp): void {
  let caught: unknown;
  try {
    decode();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'the token must be refused').to.be.instanceOf(DomainError);
  const err = caught as DomainError;
  expect(err.reason).to.equal(ErrorReason.ValidationFailed);
  expect(err.violations.map((v) => v.field)).to.deep.equal(['page_token']);
  expect(err.violations[0]!.description).to.match(why);
}

describe('page tokens (unit)', () => {
  const codec = new PageTokenCodec(randomBytes(32));

  it('page_size: 0 means 10, at most 100', () => {
    expect(effectivePageSize(0)).to.equal(DEFAULT_PAGE_SIZE);
    expect(DEFAULT_PAGE_SIZE).to.equal(10);
    expect(effectivePageSize(1)).to.equal(1);
    expect(effectivePageSize(100)).to.equal(100);
    expect(effectivePageSize(101)).to.equal(MAX_PAGE_SIZE);
    expect(effectivePageSize(2 ** 31 - 1)).to.equal(100);
  });

  it('round-trips the position for the same tenant and filters', () => {
    const token = codec.encode(TENANT, FILTER, ['12345']);
    expect(token).to.match(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(codec.decode(TENANT, FILTER, token)).to.deep.equal(['12345']);
    fc.assert(
      fc.property(fc.array(fc.string(), { minLength: 1, maxLength: 3 }), fc.string(), (position, filterKey) => {
        expect(codec.decode(TENANT, filterKey, codec.encode(TENANT, filterKey, position))).to.deep.equal(position);
      }),
    );
  });

  it('answers undefined for an empty token (the first page)', () => {
    expect(codec.decode(TENANT, FILTER, '')).to.equal(undefined);
  });

  it("refuses another tenant's token", () => {
    expectInvalid(() => codec.decode(OTHER_TENANT, FILTER, codec.encode(TENANT, FILTER, ['1'])), /not a token this service issued/);
  });

  it('refuses a token of another key (another deployment)', () => {
    const other = new PageTokenCodec(randomBytes(32));
    expectInvalid(() => codec.decode(TENANT, FILTER, other.encode(TENANT, FILTER, ['1'])), /not a token this service issued/);
  });

  it('refuses a token sent with different filters', () => {
    const token = codec.encode(TENANT, FILTER, ['1']);
    expectInvalid(() => codec.decode(TENANT, '["promotional_credits","x"]', token), /different filters/);
  });

  it('refuses every single-character change of a token', () => {
    const token = codec.encode(TENANT, FILTER, ['987654321']);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!= ';
    for (let i = 0; i < token.length; i++) {
      for (const c of alphabet) {
        if (c === token[i]) continue;
        const changed = token.slice(0, i) + c + token.slice(i + 1);
        expectInvalid(() => codec.decode(TENANT, FILTER, changed), /not a token this service issued/);
      }
    }
  });

  it('refuses additions, truncations and malformed tokens', () => {
    const token = codec.encode(TENANT, FILTER, ['42']);
    const [payload, mac] = token.split('.') as [string, string];
    for (const bad of [
      `${token}!`,
      `${token}=`,
      `${token}A`,
      `${token}.`,
      token.slice(0, -1),
      `${payload}.`,
      `.${mac}`,
      payload,
      mac,
      'garbage',
      '.',
      `${payload}.${mac}.${mac}`,
      'x'.repeat(1025),
      `${'A'.repeat(1024)}.${mac}`,
    ]) {
      expectInvalid(() => codec.decode(TENANT, FILTER, bad), /not a token this service issued/);
    }
  });

  it('refuses a payload forged to point elsewhere', () => {
    const token = codec.encode(TENANT, FILTER, ['42']);
    const mac = token.split('.')[1]!;
    const forged = Buffer.from(JSON.stringify({ p: ['1'], f: JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).f })).toString('base64url');
    expectInvalid(() => codec.decode(TENANT, FILTER, `${forged}.${mac}`), /not a token this service issued/);
  });
});
