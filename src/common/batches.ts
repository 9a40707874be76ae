/**
 * Runs `step` (which handles up to `batch` rows and answers how many it did)
 * until a step does fewer than a full batch, or `signal` aborts (then after
 * the step in progress): work on a large set in short statements. Answers
 * the total.
 */
export async function inBatches(batch: number, step: (batch: number) => Promise<number>, signal?: AbortSignal): Promise<number> {
  let total = 0;
  for (;;) {
    const done = await step(batch);
    total += done;
    if (done < batch || signal?.aborted) return total;
  }
}
