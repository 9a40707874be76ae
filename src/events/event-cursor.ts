import { createHmac, timingSafeEqual } from 'node:crypto';

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

const VERSION = 1;
const MAC_BYTES = 8;
const PAYLOAD_BYTES = 1 + 8 + 8;

/**
 * Cursors as callers see them: base64url of a version byte, the xid and the
 * position (big-endian), and 8 bytes of HMAC-SHA256 with the service key
 * (the one page tokens use, shared by every replica), 34 characters. The
 * MAC makes any change to a cursor (a truncated copy, a hand edit, another
 * service's token) INVALID_ARGUMENT instead of a silent jump that skips or
 * repeats events. Cursors are not bound to a tenant: a position in the one
 * order means the same for every tenant, and each reads only its own rows.
 */
export class EventCursorCodec {
  constructor(private readonly key: Buffer) {}

  encode(at: Position): string {
    const payload = Buffer.alloc(PAYLOAD_BYTES);
    payload.writeUInt8(VERSION, 0);
    payload.writeBigUInt64BE(at.xid, 1);
    payload.writeBigInt64BE(at.position, 9);
    return Buffer.concat([payload, this.mac(payload)]).toString('base64url');
  }

  /** The position a cursor names; undefined for an empty one, 'malformed' for one this service did not issue. */
  decode(cursor: string): Position | undefined | 'malformed' {
    if (cursor === '') return undefined;
    const bytes = /^[A-Za-z0-9_-]{34}$/.test(cursor) ? Buffer.from(cursor, 'base64url') : Buffer.alloc(0);
    const payload = bytes.subarray(0, PAYLOAD_BYTES);
    const mac = bytes.subarray(PAYLOAD_BYTES);
    // Re-encoding must give the text back: base64url ignores the unused low bits of the last character.
    if (bytes.length !== PAYLOAD_BYTES + MAC_BYTES || bytes.toString('base64url') !== cursor || !timingSafeEqual(mac, this.mac(payload)) || payload[0] !== VERSION) {
      return 'malformed';
    }
    return { xid: payload.readBigUInt64BE(1), position: payload.readBigInt64BE(9) };
  }

  private mac(payload: Buffer): Buffer {
    return createHmac('sha256', this.key).update('event-cursor\0').update(payload).digest().subarray(0, MAC_BYTES);
  }
}

/** Orders positions as the outbox does: by xid, then position. */
export function comparePositions(a: Position, b: Position): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  return a.position === b.position ? 0 : a.position < b.position ? -1 : 1;
}
