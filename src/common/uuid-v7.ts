import { randomFillSync } from 'node:crypto';

/** Random bytes drawn 8 per id from a pool filled in one call per POOL_IDS ids. */
const POOL_IDS = 256;
const pool = Buffer.alloc(8 * POOL_IDS);
let poolOffset = pool.length;

/**
 * A maker of UUIDv7s (RFC 9562) in the service, for the rows whose ids it
 * makes itself: customer credits (a batch maps its rows back by id),
 * redemptions and grouped Adds' entries (each id made in PostgreSQL cost
 * its statement 4 µs, nearly all in OpenSSL's generator, see
 * coupon-redeem.sql); the database makes the others with
 * credits_uuid_v7() (migration 1765200000000, which says why ids are
 * time-ordered). The same layout: 48 bits of Unix milliseconds, the
 * version (7), 12 bits that keep the ids of one millisecond in order, the
 * variant (10) and 62 random bits. Those 12 bits are a counter here (RFC
 * 9562 §6.2, method 1) rather than the microseconds, which Date.now() does
 * not give: it starts at 0 each millisecond, and past 4095 ids in one the
 * next ones borrow the following millisecond, so that one maker's ids are
 * in the order it made them, even when the clock steps back.
 */
export function uuidV7Maker(): (now?: number) => string {
  let lastMs = -1;
  let counter = 0;
  return (now = Date.now()) => {
    if (now > lastMs) {
      lastMs = now;
      counter = 0;
    } else if (++counter > 0xfff) {
      lastMs++;
      counter = 0;
    }
    if (poolOffset === pool.length) {
      randomFillSync(pool);
      poolOffset = 0;
    }
    const random = pool.subarray(poolOffset, poolOffset + 8);
    poolOffset += 8;
    const ms = hex(lastMs, 12);
    const variantAndRandom = hex(0x80 | (random[0]! & 0x3f), 2) + random.toString('hex', 1, 2);
    return `${ms.slice(0, 8)}-${ms.slice(8)}-7${hex(counter, 3)}-${variantAndRandom}-${random.toString('hex', 2, 8)}`;
  };
}

const serviceMaker = uuidV7Maker();

/** A UUIDv7 made now by the service's maker (see uuidV7Maker); takes no argument, so `.map(uuidV7)` cannot pass it a time. */
export const uuidV7 = (): string => serviceMaker();

const hex = (n: number, digits: number) => n.toString(16).padStart(digits, '0');
