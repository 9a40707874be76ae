import { context, trace, type Context, type Link } from '@opentelemetry/api';
import { inSpan } from '../observability/trace-context';
import { isDatabaseUnavailable } from './db-errors';

/** One member's result within a group: its own value or its own error. */
export type MemberResult<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /** Groups running at once (each holds one pooled connection while it runs). */
  maxGroups: number;
  /** Members in one group at most. */
  maxGroupSize: number;
  /** What this group commit is called in metrics and traces (e.g. `keyed_calls`). */
  name?: string;
  /** Told the size of every group as it starts (a metrics histogram). */
  observeGroupSize?: (size: number) => void;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitOptions = { maxGroups: 4, maxGroupSize: 32 };

export interface GroupWork<M, R> {
  /**
   * Runs the members as one unit (one statement, or one transaction) and
   * answers each member's result in order. Throwing fails the whole group.
   */
  runGroup(members: M[]): Promise<Array<MemberResult<R>>>;
  /**
   * What the members of a failed group do, so that one bad member cannot fail
   * the members that happened to share its group:
   * - 'split': each runs again as a group of its own (when there were others);
   * - a function: each runs on its own that way (a path that can do what a
   *   group cannot, e.g. take back one member's writes);
   * - 'share-error': each gets the group's error (work that cannot be taken
   *   apart, such as statements of one transaction).
   */
  onGroupFailure: 'split' | 'share-error' | ((member: M) => Promise<R>);
}

/**
 * Group commit, the one mechanism behind every "many calls, one statement,
 * one commit" path (keyless ledger writes, keyed calls sharing a transaction,
 * items coalesced within a shared transaction). Members submitted while
 * `maxGroups` groups run wait, and the next group takes all of them (up to
 * `maxGroupSize`). A member first waits for the rest of the current turn of
 * the event loop, so that calls that arrived in one read from the socket go
 * out together. Under light load a member runs at once, alone; under heavy
 * load round trips, commits and row-lock waits are shared.
 *
 * A group that fails is taken apart (onGroupFailure), unless the database
 * is unreachable: then running members alone would only fail again, slower,
 * and every member gets that error. Members taken apart by a function run
 * one after another, never more at once than the group was.
 *
 * Traced calls: a group runs in the trace context of its first sampled
 * member, under a span `group commit <name>` that links to every member's
 * span, so its statements show in that member's trace and the others point to it
 * (OpenTelemetry's way to show batching). Without tracing this costs a
 * context lookup per member.
 */
export class GroupCommit<M, R> {
  private readonly options: GroupCommitOptions;
  private readonly queue: Array<{ member: M; context: Context; resolve(value: R): void; reject(err: unknown): void }> = [];
  private running = 0;
  private scheduled = false;

  constructor(
    private readonly work: GroupWork<M, R>,
    options: Partial<GroupCommitOptions> = {},
  ) {
    this.options = Object.assign({}, DEFAULT_GROUP_COMMIT, options);
  }

  submit(member: M): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ member, context: context.active(), resolve, reject });
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
    while (this.running < this.options.maxGroups && this.queue.length > 0) {
      const group = this.queue.splice(0, this.options.maxGroupSize);
      this.running++;
      void this.run(group).finally(() => {
        this.running--;
        this.dispatch();
      });
    }
  }

  private async run(group: GroupCommit<M, R>['queue']): Promise<void> {
    this.options.observeGroupSize?.(group.length);
    let results: Array<MemberResult<R>>;
    try {
      results = await this.traced(group, () => this.work.runGroup(group.map((g) => g.member)));
    } catch (err) {
      const onFailure = this.work.onGroupFailure;
      if (onFailure === 'share-error' || (onFailure === 'split' && group.length === 1) || isDatabaseUnavailable(err)) {
        for (const g of group) g.reject(err);
        return;
      }
      if (onFailure === 'split') {
        await Promise.all(group.map((g) => this.run([g])));
        return;
      }
      // One at a time: each runs as a call of its own (a transaction that
      // may read through the pool meanwhile), and a group's members all at
      // once could hold every pooled connection while each waits for another.
      for (const g of group) await context.with(g.context, () => onFailure(g.member)).then(g.resolve, g.reject);
      return;
    }
    group.forEach((g, i) => {
      const result = results[i]!;
      if (result.ok) g.resolve(result.value);
      else g.reject(result.error);
    });
  }

  /**
   * Runs a group's work in the trace context of its first sampled member (its
   * first member when none is), under a span linked to every member's. Under
   * an unsampled first member, the group's span and statements were dropped
   * from the trace of a sampled one sharing the group.
   */
  private async traced<T>(group: GroupCommit<M, R>['queue'], work: () => Promise<T>): Promise<T> {
    const parent = (group.find((g) => trace.getSpan(g.context)?.isRecording()) ?? group[0]!).context;
    if (trace.getSpan(parent) === undefined) return context.with(parent, work);
    const links: Link[] = [];
    for (const g of group) {
      const member = trace.getSpan(g.context);
      if (member) links.push({ context: member.spanContext() });
    }
    const name = this.options.name ?? 'unnamed';
    return inSpan(`group commit ${name}`, { links, attributes: { 'credits.group_commit.name': name, 'credits.group_commit.size': group.length } }, parent, work);
  }
}
