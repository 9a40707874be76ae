import { timingSafeEqual } from 'node:crypto';
import { HmacSha256 } from '../common/hmac';

/**
 * A place in the outbox's one order: (xid, position) of table `events` (see
 * migration 1764500000000). Every event is strictly after the cursor
 * { xid: 0n, position: 0n }, the beginning.
 */
export interface Position {
  /** The writing transaction's id (xid8: epoch and xid, 64 bits unsigned). */
  xid: bigint;
  /** The identity the row took when it was written (>= 1). */
  position: bigint;
}

export const BEGINNING: Position = { xid: 0n, position: 0n };

/** Cursors any tenant may read from (all cursors before version 2). */
const UNBOUND = 1;
/** Cursors whose MAC covers the tenant's id as well. */
const BOUND = 2;

/** Which cursors a codec hands out (CREDITS_EVENT_CURSOR_VERSION); it reads both. */
export type CursorVersion = typeof UNBOUND | typeof BOUND;
const MAC_BYTES = 8;
const PAYLOAD_BYTES = 1 + 8 + 8;
const TENANT_BYTES = 16;
const MAC_CONTEXT = Buffer.from('event-cursor\0');

/**
 * Cursors as callers see them: base64url of a version byte, the xid and the
 * position (big-endian), and 8 bytes of HMAC-SHA256 with the service key
 * (the one page tokens use, shared by every replica) over the tenant's id
 * and those, 34 characters. The MAC makes any change to a cursor (a
 * truncated copy, a hand edit, another service's token) INVALID_ARGUMENT
 * instead of a silent jump that skips or repeats events, and so does a
 * cursor of another tenant: a position in the one order means the same for
 * every tenant, so a consumer that mixed up its tenants' cursors skipped,
 * without a word, what its tenant wrote before the other's. That is
 * version 2. Version 1, the MAC over the position alone, is what servers
 * before it issue and read: a codec reads both and issues the version it is
 * given, 1 until every replica reads 2 (an older replica would refuse a
 * version-2 cursor: a stream that resumed there would end, and so would a
 * rollback's), then 2.
 */
export class EventCursorCodec {
  private readonly hmac: HmacSha256;
  /** The tenant of the last call and its id's bytes (a stream encodes one tenant's cursors in a row). */
  private lastTenant = { id: '', bytes: Buffer.alloc(TENANT_BYTES) };

  constructor(
    key: Buffer,
    private readonly issues: CursorVersion = UNBOUND,
  ) {
    this.hmac = new HmacSha256(key);
  }

  /** The cursor of `at` for the tenant `tenantId` (a UUID), of the version this codec issues. */
  encode(tenantId: string, at: Position): string {
    const bytes = Buffer.allocUnsafe(PAYLOAD_BYTES + MAC_BYTES);
    bytes.writeUInt8(this.issues, 0);
    bytes.writeBigUInt64BE(at.xid, 1);
    bytes.writeBigInt64BE(at.position, 9);
    this.mac(this.issues === BOUND ? this.tenantBytes(tenantId) : undefined, bytes.subarray(0, PAYLOAD_BYTES)).copy(bytes, PAYLOAD_BYTES);
    return bytes.toString('base64url');
  }

  /**
   * The position a cursor names; undefined for an empty one, 'malformed' for
   * one this service did not issue (version 2: to the tenant `tenantId`).
   */
  decode(tenantId: string, cursor: string): Position | undefined | 'malformed' {
    if (cursor === '') return undefined;
    const bytes = /^[A-Za-z0-9_-]{34}$/.test(cursor) ? Buffer.from(cursor, 'base64url') : Buffer.alloc(0);
    const payload = bytes.subarray(0, PAYLOAD_BYTES);
    const mac = bytes.subarray(PAYLOAD_BYTES);
    // Re-encoding must give the text back: base64url ignores the unused low bits of the last character.
    if (bytes.length !== PAYLOAD_BYTES + MAC_BYTES || bytes.toString('base64url') !== cursor || (payload[0] !== BOUND && payload[0] !== UNBOUND)) {
      return 'malformed';
    }
    const expected = this.mac(payload[0] === BOUND ? this.tenantBytes(tenantId) : undefined, payload);
    if (!timingSafeEqual(mac, expected)) return 'malformed';
    return { xid: payload.readBigUInt64BE(1), position: payload.readBigInt64BE(9) };
  }

  private tenantBytes(tenantId: string): Buffer {
    if (tenantId !== this.lastTenant.id) {
      const bytes = Buffer.from(tenantId.replaceAll('-', ''), 'hex');
      if (bytes.length !== TENANT_BYTES) throw new Error(`not a tenant id: ${tenantId}`);
      this.lastTenant = { id: tenantId, bytes };
    }
    return this.lastTenant.bytes;
  }

  /**
   * HMAC-SHA256(key, "event-cursor\0" || tenant || payload) (version 1:
   * without the tenant), its first MAC_BYTES (every event's cursor is made
   * as it is sent: see HmacSha256).
   */
  private mac(tenant: Buffer | undefined, payload: Buffer): Buffer {
    return (tenant ? this.hmac.digest(MAC_CONTEXT, tenant, payload) : this.hmac.digest(MAC_CONTEXT, payload)).subarray(0, MAC_BYTES);
  }
}

/** Orders positions as the outbox does: by xid, then position. */
export function comparePositions(a: Position, b: Position): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  return a.position === b.position ? 0 : a.position < b.position ? -1 : 1;
}
