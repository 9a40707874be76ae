/**
 * Reads until `check` holds of what was read, every 100 ms, for at most `ms`;
 * answers the last value read (the caller asserts on it). Expiry is tested
 * with expirations a second or two ahead, never minutes.
 */
export async function eventually<T>(ms: number, read: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (check(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
