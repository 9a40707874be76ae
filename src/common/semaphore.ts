/**
 * A counting semaphore with first-come-first-served waiters: at most
 * `permits` holders at once. `use(weight, work)` waits until `weight` permits
 * are free (a weight above the total is capped at the total, so it runs alone
 * rather than never), runs `work`, and gives them back however it ends.
 */
export class Semaphore {
  private free: number;
  private readonly waiters: Array<{ weight: number; wake(): void }> = [];

  constructor(private readonly permits: number) {
    if (!Number.isInteger(permits) || permits < 1) throw new RangeError(`permits must be a positive integer, got ${permits}`);
    this.free = permits;
  }

  async use<T>(weight: number, work: () => Promise<T>): Promise<T> {
    const taken = Math.min(Math.max(1, Math.ceil(weight)), this.permits);
    // FIFO: a light caller does not overtake a heavy one already waiting.
    if (this.waiters.length > 0 || this.free < taken) {
      await new Promise<void>((wake) => this.waiters.push({ weight: taken, wake }));
    } else {
      this.free -= taken;
    }
    try {
      return await work();
    } finally {
      this.free += taken;
      this.wakeWaiters();
    }
  }

  /** Permits not held right now (for tests and metrics). */
  get available(): number {
    return this.free;
  }

  private wakeWaiters(): void {
    while (this.waiters.length > 0 && this.waiters[0]!.weight <= this.free) {
      const next = this.waiters.shift()!;
      this.free -= next.weight;
      next.wake();
    }
  }
}
