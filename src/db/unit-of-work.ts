import type { DataSource, EntityManager } from 'typeorm';
import { GroupCommit, type GroupCommitOptions, type MemberResult } from './group-commit';
import { inTransaction, retryConflicts } from './transaction';

/**
 * Work that many calls can share in ONE statement: `runAll` does every item
 * at once and answers their outcomes in the order of `items`; each item
 * succeeds or is refused on its own (a refused item writes nothing). `wrote`
 * tells whether an outcome changed anything.
 */
export interface SharedWork<I, O> {
  runAll(manager: EntityManager, items: I[]): Promise<O[]>;
  wrote(outcome: O): boolean;
}

/**
 * How a use case runs its database work. The use case says what the work is
 * and its shape; the runner decides where it runs: on its own, or inside the
 * call's transaction (the one its idempotency record commits in), which
 * other calls may share.
 */
export interface WorkRunner {
  /** Several statements that must be atomic: a transaction, or the call's. */
  transaction<T>(work: (manager: EntityManager) => Promise<T>): Promise<T>;
  /** One statement, atomic by itself: on its own it needs no BEGIN/COMMIT round trips holding its locks. */
  statement<T>(work: (manager: EntityManager) => Promise<T>): Promise<T>;
  /**
   * One item of shared work: in ONE statement with the items other calls
   * submit meanwhile (group commit). On its own, the statement commits at
   * once; in a call's transaction, with it.
   */
  submit<I, O>(work: SharedWork<I, O>, item: I): Promise<O>;
  /**
   * True when the work is not part of a caller's transaction: it takes
   * pooled connections of its own (and may wait for them).
   */
  readonly standalone: boolean;
}

const ok = <R>(value: R): MemberResult<R> => ({ ok: true, value });

/**
 * The runner of calls without a transaction of their own (no idempotency
 * key): one statement runs on its own (PostgreSQL makes it atomic); more than
 * one run in a transaction; submitted items are group-committed across calls,
 * one GroupCommit per kind of shared work. All retry deadlocks and
 * serialization failures.
 */
export class PlainRunner implements WorkRunner {
  readonly standalone = true;
  private readonly groups = new Map<SharedWork<unknown, unknown>, GroupCommit<unknown, unknown>>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly groupCommit: Partial<GroupCommitOptions> = {},
  ) {}

  transaction<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    return inTransaction(this.dataSource, work);
  }

  statement<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    return retryConflicts(() => work(this.dataSource.manager));
  }

  submit<I, O>(work: SharedWork<I, O>, item: I): Promise<O> {
    let group = this.groups.get(work as SharedWork<unknown, unknown>) as GroupCommit<I, O> | undefined;
    if (!group) {
      group = new GroupCommit<I, O>(
        {
          runGroup: async (items) => (await retryConflicts(() => work.runAll(this.dataSource.manager, items))).map(ok),
          // A statement that fails for one item (bad text, a value PostgreSQL
          // refuses) fails the others with it: each runs again alone.
          onGroupFailure: 'split',
        },
        this.groupCommit,
      );
      this.groups.set(work as SharedWork<unknown, unknown>, group as GroupCommit<unknown, unknown>);
    }
    return group.submit(item);
  }
}

/** The runner of a call that has a transaction to itself (its idempotency record's). */
export class TransactionRunner implements WorkRunner {
  readonly standalone = false;

  constructor(private readonly manager: EntityManager) {}

  transaction<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    return work(this.manager);
  }

  statement<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    return work(this.manager);
  }

  async submit<I, O>(work: SharedWork<I, O>, item: I): Promise<O> {
    const [outcome] = await work.runAll(this.manager, [item]);
    return outcome!;
  }
}

interface Submitted {
  work: SharedWork<unknown, unknown>;
  item: unknown;
}

/**
 * ONE transaction shared by several calls: items they submit in the same
 * turn of the event loop run as one statement per kind of work (a group
 * commit inside the transaction; one statement at a time, since they share
 * its connection). Each call gets its own runner, which records whether that
 * call's work may have written anything (an item that wrote, or any work of
 * its own), so that the owner of the transaction knows whether a call that
 * failed left something behind.
 */
export class SharedTransaction {
  private readonly statements: GroupCommit<Submitted, unknown>;

  constructor(private readonly manager: EntityManager) {
    this.statements = new GroupCommit<Submitted, unknown>(
      {
        runGroup: async (submitted) => {
          const results = new Array<MemberResult<unknown>>(submitted.length);
          for (const work of new Set(submitted.map((s) => s.work))) {
            const indexes = submitted.flatMap((s, i) => (s.work === work ? [i] : []));
            const outcomes = await work.runAll(this.manager, indexes.map((i) => submitted[i]!.item));
            indexes.forEach((index, n) => (results[index] = ok(outcomes[n])));
          }
          return results;
        },
        // A failed statement aborts the transaction: nothing of it can be kept.
        onGroupFailure: 'share-error',
      },
      { maxGroups: 1, maxGroupSize: Number.MAX_SAFE_INTEGER, name: 'shared_transaction_items' },
    );
  }

  /** A runner for one call; `wrote()` answers whether its work may have written. */
  runnerForCall(): { run: WorkRunner; wrote(): boolean } {
    const manager = this.manager;
    const statements = this.statements;
    let wroteAny = false;
    let inFlight = 0;
    const own = <T>(work: (manager: EntityManager) => Promise<T>) => {
      wroteAny = true;
      return work(manager);
    };
    const run: WorkRunner = {
      standalone: false,
      transaction: own,
      statement: own,
      async submit<I, O>(work: SharedWork<I, O>, item: I): Promise<O> {
        inFlight++;
        let outcome: O;
        try {
          outcome = (await statements.submit({ work: work as SharedWork<unknown, unknown>, item })) as O;
        } catch (err) {
          // The statement may have written before it failed.
          wroteAny = true;
          throw err;
        } finally {
          inFlight--;
        }
        if (work.wrote(outcome)) wroteAny = true;
        return outcome;
      },
    };
    return { run, wrote: () => wroteAny || inFlight > 0 };
  }
}
