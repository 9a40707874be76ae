import { Event, type EventServiceServer } from '../../gen/credits/v1/event_service';
import { systemClock, type Clock } from '../common/clock';
import type { EventRecord } from '../events/event.repository';
import type { EventsService } from '../events/events.service';
import { eventQueryFromProto, eventToProto } from './event.mapper';
import { encodeMessage } from './message-encoding';
import type { Rpc } from './rpc';

/** Response header of StreamEvents: the position the stream started after (see the proto). */
export const START_CURSOR_HEADER = 'start-cursor';

/** EventService: translation between proto and the use cases, nothing else. */
/**
 * `observeLag`: told, for each event a stream sends that was written while
 * the stream was open, how long after its commit time it went out (the
 * event stream lag metric), by `clock` (the database's, which dated the
 * event). Events a stream replays from its cursor are not: a consumer
 * catching up an hour counted an hour of lag per event, and the alert on
 * the metric's p99 (operating.md) fired for a stream that was on time.
 */
export function eventHandlers(service: EventsService, rpc: Rpc, observeLag?: (seconds: number) => void, clock: Clock = systemClock): EventServiceServer {
  // Streams at the same place share their reads (EventHub.read, one
  // tenant's), so the records they send are the same objects: each is
  // mapped and encoded once.
  const encoded = new WeakMap<EventRecord, Buffer>();
  const bytesOf = (tenantId: string, event: EventRecord): Buffer => {
    let bytes = encoded.get(event);
    if (!bytes) {
      encoded.set(event, (bytes = encodeMessage(Event, eventToProto(event, service.cursorOf(tenantId, event)))));
    }
    return bytes;
  };
  return {
    listEvents: rpc.read(async (request, ctx) => {
      const { events, nextCursor } = await service.list(ctx.principal, Object.assign(eventQueryFromProto(request), { pageSize: request.pageSize }));
      return { events: events.map((event) => eventToProto(event, service.cursorOf(ctx.principal.tenantId, event))), nextCursor };
    }),
    streamEvents: rpc.readStream(async (request, ctx) => {
      const opened = clock().getTime();
      const { startCursor, feed } = await service.stream(ctx.principal, Object.assign(eventQueryFromProto(request), { liveOnly: request.liveOnly }), ctx.signal);
      try {
        ctx.sendHeaders(startCursor === '' ? {} : { [START_CURSOR_HEADER]: startCursor });
        for await (const events of feed.batches()) {
          await ctx.sendAll(events.map((event) => bytesOf(ctx.principal.tenantId, event)));
          if (observeLag) {
            const now = clock().getTime();
            for (const event of events) {
              const written = event.createTime.getTime();
              if (written >= opened) observeLag((now - written) / 1000);
            }
          }
        }
      } finally {
        feed.close();
      }
    }),
  };
}
