import pino from 'pino';
import type { DataSource } from 'typeorm';
import { Event, EventType as EventTypeProto } from '../../gen/credits/v1/event_service';
import { EventsService } from '../events/events.service';
import type { EventType } from '../events/outbox';
import { eventToProto, eventTypeFromProto } from '../grpc/event.mapper';
import { findTenant } from '../tenants/tenants.service';

export interface TailOptions {
  tenantSlug: string;
  afterCursor: string;
  types: EventType[];
  customerId: string;
  /** The cursors printed (CREDITS_EVENT_CURSOR_VERSION, as the servers hand out). */
  cursorVersion?: 1 | 2;
}

/**
 * An event type as a person types it: `HOLD_CREATED`, `event_type_hold_created`,
 * ...; undefined when it names none.
 */
export function eventTypeOfName(name: string): EventType | undefined {
  const proto = EventTypeProto[`EVENT_TYPE_${name.trim().toUpperCase().replace(/^EVENT_TYPE_/, '')}` as keyof typeof EventTypeProto];
  const type = typeof proto === 'number' ? eventTypeFromProto(proto) : undefined;
  return type === 'UNRECOGNIZED' ? undefined : type;
}

/**
 * `credits events tail`: the tenant's events after a cursor (from the oldest
 * retained without one), one line of proto JSON each (what StreamEvents
 * sends, as grpcurl prints it), then every new one as it commits, until
 * SIGINT or SIGTERM (exit 0). It reads the database directly, as the server
 * does: one listening connection and the same gap-free reader.
 */
export async function tailEvents(dataSource: DataSource, options: TailOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const tenant = await findTenant(dataSource.manager, options.tenantSlug);
  // Logs go to stderr, and only problems (a lost connection): stdout is one event per line.
  const logger = pino({ level: 'warn', base: undefined }, pino.destination({ dest: 2, sync: true }));
  const service = await EventsService.start(dataSource, logger, { cursorVersion: options.cursorVersion });
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  out.once('error', onSignal); // a closed pipe (`| head`): stop quietly
  try {
    const { feed } = await service.stream(
      { tenantId: tenant.id },
      { afterCursor: options.afterCursor, types: options.types, customerId: options.customerId, liveOnly: false },
      stop.signal,
    );
    try {
      for await (const event of feed.events()) {
        const line = `${JSON.stringify(Event.toJSON(eventToProto(event, service.cursorOf(tenant.id, event))))}\n`;
        if (!out.write(line)) await drained(out, stop.signal);
        if (stop.signal.aborted) break; // a signal, or the reader went away
      }
    } catch (err) {
      if (!stop.signal.aborted) throw err;
    } finally {
      feed.close();
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await service.close();
  }
}

/** Resolves once `out` drains, fails or `signal` aborts, leaving no listener behind (one per wait piled up). */
function drained(out: NodeJS.WritableStream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('error', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    out.once('drain', done);
    out.once('error', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
