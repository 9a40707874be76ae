import type { DataSource } from 'typeorm';
import { connectionOf } from '../db/data-source';
import { NotificationListener } from '../db/notification-listener';
import type { Logger } from '../logger';
import { EventRepository, type EventBatch } from './event.repository';

/** The outbox's trigger notifies this channel with the tenant ids of new events, at commit. */
export const EVENTS_CHANNEL = 'credits_events';

/** How often the horizon is checked while some reader waits for it to pass an event. */
export const HORIZON_POLL_MS = 100;
/** Readers held back this long by one transaction: a warning naming it, and again as often while it lasts. */
export const HELD_WARNING_MS = 10_000;

/**
 * A read stays shared this long after it completed, for readers of the same
 * place that come late (streams of one consumer group drift apart by the
 * time it takes to send a batch), and at most this many completed reads are
 * kept.
 */
export const SHARED_READ_MS = 250;
export const SHARED_READS_KEPT = 8;

/** A read that readers of one place share (see EventHub.read): `since` counts the wake-ups before it began. */
interface SharedRead {
  since: number;
  batch: Promise<EventBatch>;
  doneAt: number | undefined;
  empty: boolean;
}

/** One reader of one tenant's events, woken when there may be something new to read. */
export interface Subscriber {
  wake(): void;
  /**
   * Set by the reader: committed events of its tenant wait for the horizon
   * to pass this xid (an older transaction is still running). The hub wakes
   * the reader once it has.
   */
  waitingXid?: bigint | undefined;
}

/**
 * Wakes the process's event readers, holding no database connection per
 * reader: ONE connection outside the pool LISTENs to credits_events and
 * wakes the readers of the tenants named; after a lost connection it wakes
 * every reader once it listens again (what was notified meanwhile is lost,
 * so they read again). Readers whose next events wait for an older
 * transaction to end (see Subscriber.waitingXid) are woken by one horizon
 * check for the whole process, every HORIZON_POLL_MS while any waits,
 * since that transaction may notify nothing they listen to.
 */
export class EventHub {
  private readonly listener: NotificationListener;
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  private readonly repository: EventRepository;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private closed = false;
  /** Counts wake-ups (of any reader, for any reason): see read(). */
  private wakes = 0;
  private readonly reads = new Map<string, SharedRead>();
  /** The horizon that holds readers back, since when, and when that was last logged. */
  private held: { horizon: bigint; since: number; warnedAt: number } | undefined;
  private readonly heldWarningMs: number;

  constructor(
    dataSource: DataSource,
    private readonly logger: Logger,
    applicationName = `credits-events-listener (pid ${process.pid})`,
    options: { heldWarningMs?: number } = {},
  ) {
    this.heldWarningMs = options.heldWarningMs ?? HELD_WARNING_MS;
    this.repository = new EventRepository(dataSource.manager);
    this.listener = new NotificationListener(
      connectionOf(dataSource),
      {
        channels: [EVENTS_CHANNEL],
        applicationName,
        logger,
        messages: {
          listening: 'listening for new events; streams are woken at each commit',
          lost: 'lost the connection listening for new events: streams read again once it is back, and every half second meanwhile',
          notYet: 'cannot listen for new events yet: streams read every half second meanwhile',
        },
      },
      {
        notification: (_channel, tenantId) => this.wakeTenant(tenantId),
        // Notifications sent while it was not listening are lost: everyone reads again.
        listening: () => this.wakeAll(),
        // Readers asleep for SAFETY_READ_MS start polling (DEGRADED_READ_MS) until it is back.
        lost: () => this.wakeAll(),
      },
    );
  }

  /** Resolves once the first attempt to listen succeeded or failed (it then keeps retrying). */
  start(): Promise<void> {
    return this.listener.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    await this.listener.close();
  }

  /** Whether notifications arrive; readers that cannot count on them poll. */
  isListening(): boolean {
    return this.listener.isListening();
  }

  /** Registers a reader of a tenant's events; answers how to unregister it. */
  subscribe(tenantId: string, subscriber: Subscriber): () => void {
    let set = this.subscribers.get(tenantId);
    if (!set) this.subscribers.set(tenantId, (set = new Set()));
    set.add(subscriber);
    return () => {
      set.delete(subscriber);
      if (set.size === 0 && this.subscribers.get(tenantId) === set) this.subscribers.delete(tenantId);
    };
  }

  /**
   * One read for the readers that want the same one (`key`: tenant,
   * position, filter, limit) at about the same time, as the streams of one
   * consumer group do: one statement, one set of records (and the handler
   * encodes each once). A read is shared while it runs and for
   * SHARED_READ_MS after (unless it found nothing and a wake-up came since).
   * Answers the batch and whether some reader may
   * have been woken after it began (`stale`): a reader that joins such a
   * read must read again, since the commit it was woken for may have come
   * after that read's snapshot. (A batch is exact for its snapshot whenever
   * it is handed out: its events, and its horizon, below which nothing can
   * commit later.)
   */
  async read(key: string, read: () => Promise<EventBatch>): Promise<{ batch: EventBatch; stale: boolean }> {
    let entry = this.reads.get(key);
    // A completed read that found nothing is no answer for a reader woken
    // since it began (it would read the same place again and again).
    if (entry?.doneAt !== undefined && (Date.now() - entry.doneAt > SHARED_READ_MS || (entry.empty && entry.since !== this.wakes))) {
      this.reads.delete(key);
      entry = undefined;
    }
    if (!entry) {
      const started: SharedRead = { since: this.wakes, batch: read(), doneAt: undefined, empty: false };
      started.batch.then(
        (batch) => {
          started.doneAt = Date.now();
          started.empty = batch.events.length === 0;
          this.forgetOldReads();
        },
        () => {
          if (this.reads.get(key) === started) this.reads.delete(key);
        },
      );
      this.reads.set(key, (entry = started));
    }
    const since = entry.since;
    const wakesNow = this.wakes;
    const batch = await entry.batch;
    return { batch, stale: since !== wakesNow };
  }

  /** Keeps at most SHARED_READS_KEPT completed reads, none older than SHARED_READ_MS (oldest first: the Map keeps insertion order). */
  private forgetOldReads(): void {
    const now = Date.now();
    let done = 0;
    for (const entry of this.reads.values()) if (entry.doneAt !== undefined) done++;
    for (const [key, entry] of this.reads) {
      if (entry.doneAt === undefined) continue;
      if (done <= SHARED_READS_KEPT && now - entry.doneAt <= SHARED_READ_MS) continue;
      this.reads.delete(key);
      done--;
    }
  }

  /** A reader set its waitingXid: make sure the horizon is being watched. */
  watchHorizon(): void {
    if (this.pollTimer === undefined && !this.polling && !this.closed) this.schedulePoll();
  }

  private wakeTenant(tenantId: string): void {
    this.wakes++;
    for (const subscriber of this.subscribers.get(tenantId) ?? []) subscriber.wake();
  }

  private wakeAll(): void {
    this.wakes++;
    for (const set of this.subscribers.values()) for (const subscriber of set) subscriber.wake();
  }

  private schedulePoll(): void {
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      void this.pollHorizon();
    }, HORIZON_POLL_MS);
    this.pollTimer.unref();
  }

  private async pollHorizon(): Promise<void> {
    this.polling = true;
    let waiting = false;
    try {
      const horizon = await this.repository.horizon().catch(() => undefined); // the database is down: readers find out themselves
      for (const set of this.subscribers.values()) {
        for (const subscriber of set) {
          if (subscriber.waitingXid === undefined) continue;
          if (horizon !== undefined && subscriber.waitingXid < horizon) {
            subscriber.waitingXid = undefined;
            this.wakes++;
            subscriber.wake();
          } else {
            waiting = true;
          }
        }
      }
      if (waiting && horizon !== undefined) await this.warnIfHeld(horizon);
      else this.held = undefined;
    } finally {
      this.polling = false;
    }
    if (waiting && this.pollTimer === undefined && !this.closed) this.schedulePoll();
  }

  /**
   * Readers wait for the transaction `horizon` to end: after heldWarningMs,
   * and as often again while it runs, a warning names it. Transaction ids
   * are the PostgreSQL server's, so it may be any writer on any database
   * of it, and it holds back every stream until it ends.
   */
  private async warnIfHeld(horizon: bigint): Promise<void> {
    const now = Date.now();
    if (this.held?.horizon !== horizon) {
      this.held = { horizon, since: now, warnedAt: now };
      return;
    }
    if (now - this.held.warnedAt < this.heldWarningMs) return;
    this.held.warnedAt = now;
    const holder = await this.repository.transactionHolder(horizon).catch(() => undefined);
    this.logger.warn(
      { xid: horizon.toString(), held_ms: now - this.held.since, holder },
      'event streams are held back by a transaction that is still open (on any database of this PostgreSQL server): events committed after it began are handed out once it ends',
    );
  }
}
