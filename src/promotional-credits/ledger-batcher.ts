import type { DataSource } from 'typeorm';
import { isDatabaseUnavailable } from '../db/db-errors';
import { retryConflicts } from '../db/transaction';
import { PromotionalCreditRepository, type LedgerWrite, type LedgerWriteOutcome } from './promotional-credit.repository';

export interface LedgerBatcherOptions {
  /** Batches in flight at once (each holds one pooled connection while it runs). */
  maxBatches: number;
  /** Writes per batch at most. */
  maxBatchSize: number;
}

const DEFAULTS: LedgerBatcherOptions = { maxBatches: 4, maxBatchSize: 32 };

interface Pending {
  write: LedgerWrite;
  resolve(outcome: LedgerWriteOutcome): void;
  reject(err: unknown): void;
}

/**
 * Group commit for balance changes that are not part of a caller's
 * transaction (calls without an idempotency key). Writes arriving while
 * `maxBatches` batches are running wait, and the next batch takes all of
 * them (up to `maxBatchSize`) in ONE statement and ONE commit
 * (PromotionalCreditRepository.apply). Under light load a write runs at once,
 * alone; under heavy load the commits, round trips and, on a hot balance, the
 * row lock waits are shared by many calls. Each write still gets its own
 * guard, entry and outcome: a deduct the balance does not cover fails alone.
 *
 * A batch that fails for a reason other than a lost connection is run again
 * one write at a time, so that one bad write cannot fail the writes that
 * happened to share its batch.
 */
export class LedgerBatcher {
  private readonly options: LedgerBatcherOptions;
  private readonly queue: Pending[] = [];
  private running = 0;
  private scheduled = false;

  constructor(
    private readonly dataSource: DataSource,
    options: Partial<LedgerBatcherOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  apply(write: LedgerWrite): Promise<LedgerWriteOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      // Wait for the rest of this turn of the event loop: calls that arrived
      // in the same read from the socket go out together.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.dispatch();
        });
      }
    });
  }

  private dispatch(): void {
    while (this.running < this.options.maxBatches && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatchSize);
      this.running++;
      this.run(batch).finally(() => {
        this.running--;
        this.dispatch();
      });
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    try {
      const outcomes = await this.applyNow(batch.map((p) => p.write));
      batch.forEach((p, i) => p.resolve(outcomes[i]!));
    } catch (err) {
      if (batch.length === 1 || isDatabaseUnavailable(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      await Promise.all(batch.map((p) => this.run([p])));
    }
  }

  private applyNow(writes: LedgerWrite[]): Promise<LedgerWriteOutcome[]> {
    return retryConflicts(() => new PromotionalCreditRepository(this.dataSource.manager).apply(writes));
  }
}
