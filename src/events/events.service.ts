import type { DataSource } from 'typeorm';
import { effectivePageSize } from '../common/pager';
import { runPeriodically, type Periodic } from '../common/periodic';
import type { Logger } from '../logger';
import type { Principal } from '../tenants/principal';
import { BEGINNING, EventCursorCodec, type CursorVersion, type Position } from './event-cursor';
import { cursorExpired, EventFeed } from './event-feed';
import { EventHub } from './event-hub';
import { checkListEvents, checkStreamEvents, type EventQueryInput } from './event-query.rules';
import { pruneEvents } from './event-retention';
import { EventRepository, type EventRecord } from './event.repository';

/** How often each replica deletes events past the retention. */
const PRUNE_INTERVAL_MS = 10 * 60 * 1000;

export interface EventsOptions {
  /** CREDITS_EVENT_RETENTION_HOURS; absent: this process does not prune (the CLI). */
  retentionHours?: number;
  /** CREDITS_EVENT_CURSOR_VERSION: the cursors it hands out (default 1; it reads both). */
  cursorVersion?: CursorVersion;
}

/** A stream's start: where it starts after, as a cursor ('' for the beginning), and its feed. */
export interface EventStream {
  startCursor: string;
  feed: EventFeed;
}

/**
 * ListEvents and StreamEvents: the tenant's events in the outbox's one
 * order, after a cursor. Owns the process's EventHub (one listening
 * connection for every stream) and its retention pruning.
 */
export class EventsService {
  private readonly repository: EventRepository;
  private pruning: Periodic | undefined;

  private constructor(
    private readonly dataSource: DataSource,
    private readonly cursors: EventCursorCodec,
    private readonly hub: EventHub,
    private readonly options: EventsOptions,
  ) {
    this.repository = new EventRepository(dataSource.manager);
  }

  /** Starts listening for new events and pruning old ones (every replica does; see pruneEvents). */
  static async start(dataSource: DataSource, logger: Logger, options: EventsOptions): Promise<EventsService> {
    const cursors = await loadCursorCodec(dataSource, options.cursorVersion);
    const hub = new EventHub(dataSource, logger);
    await hub.start();
    const service = new EventsService(dataSource, cursors, hub, options);
    if (options.retentionHours !== undefined) service.startPruning(logger);
    return service;
  }

  /** Prunes about every PRUNE_INTERVAL_MS (see runPeriodically). */
  private startPruning(logger: Logger): void {
    this.pruning = runPeriodically(
      PRUNE_INTERVAL_MS,
      async (signal) => {
        const deleted = await this.prune(signal);
        if (deleted > 0) logger.info({ deleted, retention_hours: this.options.retentionHours }, 'pruned events past the retention');
      },
      (err) => logger.warn({ err }, 'pruning events failed'),
    );
  }

  /** Stops pruning: a prune in progress ends after its current batch (the server's drain waits for it within the grace). */
  stopPruning(): Promise<void> {
    return this.pruning?.stop() ?? Promise.resolve();
  }

  /** Stops pruning and listening (streams are ended by the server's drain before). */
  async close(): Promise<void> {
    await this.stopPruning();
    await this.hub.close();
  }

  /** Deletes the events past the retention now (until `signal` aborts); answers how many. */
  prune(signal?: AbortSignal): Promise<number> {
    if (this.options.retentionHours === undefined) throw new Error('this EventsService has no retention to prune by');
    return pruneEvents(this.dataSource, this.options.retentionHours, undefined, signal);
  }

  async list(principal: Pick<Principal, 'tenantId'>, input: EventQueryInput & { pageSize: number }): Promise<{ events: EventRecord[]; nextCursor: string }> {
    const { after, filter } = checkListEvents(this.cursors, principal.tenantId, input);
    const batch = await this.repository.readAfter(principal.tenantId, after ?? BEGINNING, filter, effectivePageSize(input.pageSize), after !== undefined);
    if (batch.expired) throw cursorExpired();
    const last = batch.events[batch.events.length - 1];
    return { events: batch.events, nextCursor: last ? this.cursorOf(principal.tenantId, last) : input.afterCursor };
  }

  /**
   * Opens a stream: checks the request and reads the first batch (so a bad
   * cursor or an unreachable database fail the call before anything is
   * sent). `live_only` starts at the horizon: every event that commits
   * later is after it, and none is missed (a few that committed just before
   * may come too).
   */
  async stream(principal: Pick<Principal, 'tenantId'>, input: EventQueryInput & { liveOnly: boolean }, signal: AbortSignal): Promise<EventStream> {
    const { after, filter } = checkStreamEvents(this.cursors, principal.tenantId, input);
    const start: Position | undefined = input.liveOnly ? { xid: await this.repository.horizon(), position: 0n } : after;
    const feed = await EventFeed.open({
      repository: this.repository,
      hub: this.hub,
      tenantId: principal.tenantId,
      filter,
      after: start ?? BEGINNING,
      afterCursor: start !== undefined,
      signal,
    });
    return { startCursor: start ? this.cursors.encode(principal.tenantId, start) : '', feed };
  }

  /** The cursor of the tenant `tenantId`'s event. */
  cursorOf(tenantId: string, event: EventRecord): string {
    return this.cursors.encode(tenantId, event.at);
  }
}

/** The cursor MAC's key: the service key page tokens use, kept in the database and shared by every replica. */
export async function loadCursorCodec(dataSource: DataSource, issues?: CursorVersion): Promise<EventCursorCodec> {
  const rows: Array<{ value: Buffer }> = await dataSource.query(`SELECT value FROM service_secrets WHERE name = 'page_token'`);
  if (!rows[0]) throw new Error('service_secrets has no page_token key; run `credits migrate`');
  return new EventCursorCodec(rows[0].value, issues);
}
