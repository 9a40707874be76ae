import { hash, timingSafeEqual } from 'node:crypto';
import { DomainError, ErrorReason } from './domain-error';
import { HmacSha256 } from './hmac';

/**
 * Opaque keyset page tokens: `<payload>.<mac>`, both base64url. The payload
 * holds the position after the last row served and a hash of the filters;
 * the MAC (HMAC-SHA256 with a key kept in the database, shared by every
 * replica) binds it to the tenant, so an altered token, another tenant's
 * token or one sent with other filters is rejected.
 */
export class PageTokenCodec {
  private readonly hmac: HmacSha256;

  constructor(key: Buffer) {
    this.hmac = new HmacSha256(key);
  }

  encode(tenantId: string, filterKey: string, position: readonly string[]): string {
    const payload = Buffer.from(JSON.stringify({ p: position, f: filterHash(filterKey) })).toString('base64url');
    return `${payload}.${this.mac(tenantId, payload)}`;
  }

  /** The position a token points after, or undefined for an empty token. */
  decode(tenantId: string, filterKey: string, token: string): string[] | undefined {
    if (token === '') return undefined;
    const invalid = (why: string) =>
      new DomainError(ErrorReason.ValidationFailed, `Invalid request: page_token ${why}.`, [
        { field: 'page_token', description: why },
      ]);
    const dot = token.indexOf('.');
    if (token.length > 1024 || dot < 0) throw invalid('is not a token this service issued');
    const payload = token.slice(0, dot);
    // Compare the MAC text itself: decoding base64url first would ignore stray
    // characters and the unused low bits of the last one, accepting altered tokens.
    const given = Buffer.from(token.slice(dot + 1), 'utf8');
    const expected = Buffer.from(this.mac(tenantId, payload), 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw invalid('is not a token this service issued');
    }
    const parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { p: string[]; f: string };
    if (parsed.f !== filterHash(filterKey)) {
      throw invalid('was issued for different filters; send the same filters as the request that returned it');
    }
    return parsed.p;
  }

  private mac(tenantId: string, payload: string): string {
    return this.hmac.digest(tenantId, '\0', payload).subarray(0, 16).toString('base64url');
  }
}

function filterHash(filterKey: string): string {
  return hash('sha256', filterKey, 'buffer').subarray(0, 12).toString('base64url');
}

/** The seq a keyset page token points after (tokens are MAC-checked before this). */
export function seqOfPosition(position: readonly string[]): bigint {
  const [seq] = position;
  if (position.length !== 1 || seq === undefined || !/^\d{1,19}$/.test(seq)) {
    throw new DomainError(ErrorReason.ValidationFailed, 'Invalid request: page_token is not a token this service issued.', [
      { field: 'page_token', description: 'is not a token this service issued' },
    ]);
  }
  return BigInt(seq);
}
