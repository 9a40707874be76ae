/** How the client retries UNAVAILABLE (every call) and ABORTED (mutating calls). */
export interface RetryOptions {
  /** Attempts in all, the first one included (default 5; 1 turns retries off). */
  maxAttempts?: number;
  /** Backoff before the first retry, in milliseconds (default 100). */
  initialBackoffMs?: number;
  /** Upper bound of one backoff, in milliseconds (default 2000). */
  maxBackoffMs?: number;
  /** Growth of the backoff per attempt (default 2). */
  multiplier?: number;
}

export type RetryPolicy = Required<RetryOptions>;

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, initialBackoffMs: 100, maxBackoffMs: 2000, multiplier: 2 };

export function retryPolicyOf(options: RetryOptions | false | undefined): RetryPolicy {
  if (options === false) return { ...DEFAULT_RETRY, maxAttempts: 1 };
  const policy = { ...DEFAULT_RETRY, ...withoutUndefined(options ?? {}) };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) throw new TypeError('retry.maxAttempts must be an integer >= 1');
  if (!(policy.initialBackoffMs >= 0) || !(policy.maxBackoffMs >= policy.initialBackoffMs)) {
    throw new TypeError('retry.initialBackoffMs must be >= 0 and retry.maxBackoffMs >= retry.initialBackoffMs');
  }
  if (!(policy.multiplier >= 1)) throw new TypeError('retry.multiplier must be >= 1');
  return policy;
}

/**
 * The wait before retry number `retry` (1 for the first retry): exponential,
 * capped, with "equal jitter" (half fixed, half random) so that clients that
 * failed together do not come back together, while the wait still grows.
 */
export function backoffMs(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * policy.multiplier ** (retry - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Resolves after `ms`, or rejects with `onAbort()` as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined, onAbort: () => unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(onAbort());
    const aborted = () => {
      clearTimeout(timer);
      reject(onAbort());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
