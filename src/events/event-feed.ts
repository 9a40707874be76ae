import { DomainError, ErrorReason } from '../common/domain-error';
import { isDatabaseUnavailable } from '../db/db-errors';
import { comparePositions, type Position } from './event-cursor';
import type { EventHub, Subscriber } from './event-hub';
import type { EventBatch, EventFilter, EventRecord, EventRepository } from './event.repository';

/** Events read at once. */
export const FEED_BATCH = 100;
/** A reader that is caught up reads again after this long even with no wake-up: belt and braces for a lost notification. */
export const SAFETY_READ_MS = 30_000;
/** While the process cannot listen, readers poll this often: with the read gap and the read itself, delivery stays within 1 s. */
export const DEGRADED_READ_MS = 500;
/** After a read failed because the database is unreachable (the listener reconnecting wakes readers sooner). */
export const OUTAGE_RETRY_MS = 5_000;
/**
 * A caught-up reader reads again at most this often, however many commits
 * wake it: under load one read picks up the events of many commits.
 */
export const MIN_READ_GAP_MS = 50;

/** A reader's position is behind events retention deleted: it may have missed some. */
export function cursorExpired(): DomainError {
  return new DomainError(
    ErrorReason.CursorExpired,
    'The cursor is older than the event retention: events after it have been deleted. Rebuild from the List RPCs, then read from an empty cursor.',
  );
}

export interface FeedOptions {
  repository: Pick<EventRepository, 'readAfter'>;
  hub: Pick<EventHub, 'subscribe' | 'isListening' | 'watchHorizon' | 'read'>;
  tenantId: string;
  filter: EventFilter;
  /** Read the events strictly after this position. */
  after: Position;
  /** `after` came from a reader (a cursor): retention may have passed it. False for the beginning. */
  afterCursor: boolean;
  /** Ends the feed: its reason is thrown from the iterator (client gone, server shutting down). */
  signal: AbortSignal;
}

/**
 * One reader following a tenant's events: every event after a position, in
 * order, then each new one as it commits, until its signal aborts. It reads
 * the outbox through a pooled connection only while it reads; in between it
 * waits for the hub to wake it (a notification of its tenant, the horizon
 * passing what it waits for, the listener back after a loss), holding
 * nothing. While the database is unreachable it waits and goes on once it is
 * back; it throws only for its first read (the caller's answer), a position
 * behind retention (CURSOR_EXPIRED) or a bug.
 */
export class EventFeed {
  private readonly subscriber: Subscriber;
  private readonly unsubscribe: () => void;
  private pending = false;
  private waiter: (() => void) | undefined;
  private after: Position;
  private afterCursor: boolean;
  private first: EventBatch | undefined;
  private lastReadStart = 0;

  private constructor(private readonly options: FeedOptions) {
    this.after = options.after;
    this.afterCursor = options.afterCursor;
    this.subscriber = { wake: () => this.wake() };
    // Subscribed before the first read: a commit after it cannot go unnoticed.
    this.unsubscribe = options.hub.subscribe(options.tenantId, this.subscriber);
  }

  /** Subscribes and reads the first batch: a bad position or an unreachable database fails here, before anything is sent. */
  static async open(options: FeedOptions): Promise<EventFeed> {
    const feed = new EventFeed(options);
    try {
      feed.first = await feed.read();
    } catch (err) {
      feed.close();
      throw err;
    }
    return feed;
  }

  /** Unsubscribes; the iterator does it by itself when it ends. */
  close(): void {
    this.unsubscribe();
  }

  async *events(): AsyncGenerator<EventRecord, void, undefined> {
    for await (const events of this.batches()) yield* events;
  }

  /**
   * The events as they are read, a batch (never empty) at a time: a stream
   * sends a batch with one await instead of one per event.
   */
  async *batches(): AsyncGenerator<readonly EventRecord[], void, undefined> {
    const { signal } = this.options;
    try {
      let batch = this.first;
      this.first = undefined;
      for (;;) {
        let more = false;
        if (batch) {
          const last = batch.events[batch.events.length - 1];
          if (last) {
            this.after = last.at;
            this.afterCursor = true;
            yield batch.events;
          }
          more = batch.events.length === FEED_BATCH;
          if (!more) this.caughtUp(batch);
          else this.subscriber.waitingXid = undefined;
        }
        if (!more) {
          await this.sleep(!batch ? OUTAGE_RETRY_MS : this.options.hub.isListening() ? SAFETY_READ_MS : DEGRADED_READ_MS);
          signal.throwIfAborted();
          await this.sleep(this.lastReadStart + MIN_READ_GAP_MS - Date.now(), true);
          signal.throwIfAborted();
        }
        try {
          batch = await this.read();
        } catch (err) {
          if (!isDatabaseUnavailable(err)) throw err;
          batch = undefined; // wait for the database (see OUTAGE_RETRY_MS)
        }
      }
    } finally {
      this.close();
    }
  }

  private async read(): Promise<EventBatch> {
    this.pending = false; // a wake-up from now on means another read
    this.lastReadStart = Date.now();
    const { repository, hub, tenantId, filter } = this.options;
    const { after, afterCursor } = this;
    const key = `${tenantId}/${after.xid}/${after.position}/${afterCursor}/${filter.customerId ?? ''}/${[...(filter.types ?? [])].sort().join(',')}`;
    const { batch, stale } = await hub.read(key, () => repository.readAfter(tenantId, after, filter, FEED_BATCH, afterCursor));
    if (stale) this.pending = true; // joined a read that began before a wake-up: read again
    if (batch.expired) throw cursorExpired();
    return batch;
  }

  /**
   * Everything below the horizon has been read: go on from there (events of
   * other types or customers are not read again), and have the hub wake us
   * when the horizon passes the events that wait for it.
   */
  private caughtUp(batch: EventBatch): void {
    const horizon: Position = { xid: batch.horizon, position: 0n };
    if (comparePositions(horizon, this.after) > 0) this.after = horizon;
    this.subscriber.waitingXid = batch.waitingXid;
    if (batch.waitingXid !== undefined) this.options.hub.watchHorizon();
  }

  private wake(): void {
    this.pending = true;
    this.waiter?.();
  }

  /** Until woken (unless `ignoreWakes`), aborted, or `ms` passed. */
  private sleep(ms: number, ignoreWakes = false): Promise<void> {
    const { signal } = this.options;
    if (ms <= 0 || signal.aborted || (this.pending && !ignoreWakes)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (this.waiter === done) this.waiter = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      if (!ignoreWakes) this.waiter = done;
    });
  }
}
