/** RFC 9562's layout of a version 7 id: version nibble 7, variant bits 10. */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A random (version 4) id, as gen_random_uuid() and randomUUID() make: an event's. */
export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix milliseconds of a UUIDv7 (its first 48 bits). */
export const msOfUuidV7 = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

/** How many of `ids` have each of the 62 random bits (after the variant) set, lowest bit first. */
export function randomBitCounts(ids: string[]): number[] {
  const counts = new Array<number>(62).fill(0);
  for (const id of ids) {
    let bits = BigInt(`0x${id.replace(/-/g, '').slice(16)}`) & ((1n << 62n) - 1n);
    for (let i = 0; i < 62; i++, bits >>= 1n) counts[i]! += Number(bits & 1n);
  }
  return counts;
}

/**
 * The range a fair bit's count over `n` ids falls in but for one time in
 * about two million (5 standard deviations); all 62 bits of a good maker
 * pass together but for one time in some 30,000.
 */
export const fairBitRange = (n: number): [number, number] => [n / 2 - 2.5 * Math.sqrt(n), n / 2 + 2.5 * Math.sqrt(n)];
