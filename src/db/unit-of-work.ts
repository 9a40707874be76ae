import type { DataSource, EntityManager } from 'typeorm';
import { inTransaction, retryConflicts } from './transaction';

/**
 * Work that many use cases can share in ONE statement: `runAll` does every
 * item at once and answers their outcomes in the order of `items`; each item
 * succeeds or is refused on its own (a refused item writes nothing). `wrote`
 * tells whether an outcome changed anything.
 */
export interface Coalescer<I, O> {
  runAll(manager: EntityManager, items: I[]): Promise<O[]>;
  wrote(outcome: O): boolean;
}

/**
 * How a use case runs its database work. The use case decides what the work
 * is and whether it is one statement; the runner decides how it is wrapped
 * (plain, or in a transaction together with an idempotency record).
 */
export type WorkRunner = (<T>(work: (manager: EntityManager) => Promise<T>, shape: { singleStatement: boolean }) => Promise<T>) & {
  /**
   * True when the work is not part of a caller's transaction (no idempotency
   * record to commit with it), so a use case may hand it to a shared batch
   * instead (see LedgerBatcher).
   */
  readonly standalone: boolean;
  /**
   * Runs one item of coalescable work. In a transaction shared by several
   * calls (see Idempotency) the items given in one turn of the event loop go
   * out as ONE statement; elsewhere the item runs alone.
   */
  coalesce<I, O>(coalescer: Coalescer<I, O>, item: I): Promise<O>;
};

/**
 * The plain runner: one statement runs on its own (PostgreSQL makes it
 * atomic, and no BEGIN/COMMIT round trips hold a row lock longer); more than
 * one runs in a transaction. Both retry deadlocks and serialization failures.
 */
export function plainRunner(dataSource: DataSource): WorkRunner {
  const run = <T>(work: (manager: EntityManager) => Promise<T>, shape: { singleStatement: boolean }) =>
    shape.singleStatement ? retryConflicts(() => work(dataSource.manager)) : inTransaction(dataSource, work);
  const coalesce = <I, O>(coalescer: Coalescer<I, O>, item: I) => retryConflicts(() => runOne(coalescer, dataSource.manager, item));
  return Object.assign(run, { standalone: true, coalesce });
}

/** The runner of work inside a transaction the caller owns (the idempotency record's). */
export function transactionRunner(manager: EntityManager): WorkRunner {
  const coalesce = <I, O>(coalescer: Coalescer<I, O>, item: I) => runOne(coalescer, manager, item);
  return Object.assign(<T>(work: (manager: EntityManager) => Promise<T>) => work(manager), { standalone: false, coalesce });
}

async function runOne<I, O>(coalescer: Coalescer<I, O>, manager: EntityManager, item: I): Promise<O> {
  const [outcome] = await coalescer.runAll(manager, [item]);
  return outcome!;
}

/**
 * Runners for several calls sharing ONE transaction: coalesced items given in
 * the same turn of the event loop, by any of the calls, run as one statement
 * per coalescer. Each call gets its own runner, which records whether that
 * call's work may have written anything (a coalesced item that wrote, or any
 * plain work), so that the owner of the transaction knows whether a call that
 * failed left something behind.
 */
export class SharedTransaction {
  private readonly pending = new Map<Coalescer<unknown, unknown>, Array<{ item: unknown; resolve(o: unknown): void; reject(e: unknown): void }>>();
  private scheduled = false;

  constructor(private readonly manager: EntityManager) {}

  /** A runner for one call; `wrote()` answers whether its work may have written. */
  runnerForCall(): { run: WorkRunner; wrote(): boolean } {
    const manager = this.manager;
    let wroteAny = false;
    let inFlight = 0;
    const run = <T>(work: (manager: EntityManager) => Promise<T>) => {
      wroteAny = true;
      return work(manager);
    };
    const coalesce = async <I, O>(coalescer: Coalescer<I, O>, item: I): Promise<O> => {
      inFlight++;
      let outcome: O;
      try {
        outcome = await this.enqueue(coalescer, item);
      } catch (err) {
        // The statement may have written before it failed.
        wroteAny = true;
        throw err;
      } finally {
        inFlight--;
      }
      if (coalescer.wrote(outcome)) wroteAny = true;
      return outcome;
    };
    return { run: Object.assign(run, { standalone: false, coalesce }), wrote: () => wroteAny || inFlight > 0 };
  }

  private enqueue<I, O>(coalescer: Coalescer<I, O>, item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      const key = coalescer as Coalescer<unknown, unknown>;
      let queue = this.pending.get(key);
      if (!queue) this.pending.set(key, (queue = []));
      queue.push({ item, resolve: resolve as (o: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          void this.flush();
        });
      }
    });
  }

  private async flush(): Promise<void> {
    const batches = [...this.pending];
    this.pending.clear();
    // One statement at a time: they share the transaction's connection.
    for (const [coalescer, queue] of batches) {
      try {
        const outcomes = await coalescer.runAll(this.manager, queue.map((q) => q.item));
        queue.forEach((q, i) => q.resolve(outcomes[i]));
      } catch (err) {
        for (const q of queue) q.reject(err);
      }
    }
  }
}
