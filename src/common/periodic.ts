/** Background work running now and then; see runPeriodically. */
export interface Periodic {
  /**
   * No run starts any more; a run in progress is told to stop (its signal
   * aborts: batched work ends after its current batch) and is waited for.
   */
  stop(): Promise<void>;
}

/**
 * Runs `run` every `intervalMs`, as every replica does its housekeeping
 * (the expiry sweep, pruning idempotency keys and events): the first run
 * after a random part of the interval, so that replicas started together
 * spread out and a process that lives less than an interval still runs it
 * with that chance (with a fixed first delay of a whole interval, a fleet
 * restarted more often than that never pruned), later runs an interval
 * after the previous one ended, so runs never overlap. `run` handles its own
 * errors: one that escapes is given to `onError` and the schedule goes on.
 */
export function runPeriodically(
  intervalMs: number,
  run: (signal: AbortSignal) => Promise<void>,
  onError: (err: unknown) => void,
  random: () => number = Math.random,
): Periodic {
  const stopping = new AbortController();
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const schedule = (delayMs: number) => {
    timer = setTimeout(() => {
      running = run(stopping.signal)
        .catch(onError)
        .finally(() => {
          running = undefined;
          if (!stopping.signal.aborted) schedule(intervalMs);
        });
    }, delayMs);
    timer.unref();
  };
  schedule(random() * intervalMs);
  return {
    stop: async () => {
      stopping.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
