import { credentials, Metadata, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import type { DataSource } from 'typeorm';
import * as eventService from '../../gen/credits/v1/event_service';
import type { Event, StreamEventsRequest } from '../../gen/credits/v1/event_service';
import { apiKeyInterceptor, promisify, type PartialRequest } from './server';

/** A promise client of EventService (ListEvents) plus its stream, with the key's tenant. */
export function eventsClient(address: string, apiKey: string | undefined) {
  const client = new eventService.EventServiceClient(address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(apiKey)] });
  const unary = promisify(client, eventService);
  return {
    listEvents: unary.listEvents,
    /** Opens StreamEvents and follows it (see EventStream). */
    stream: (request: PartialRequest<StreamEventsRequest> = {}) => new EventStream(client.streamEvents(eventService.StreamEventsRequest.fromPartial(request), new Metadata())),
    close: () => client.close(),
  };
}

export type EventsClient = ReturnType<typeof eventsClient>;

/** Every event a stream sent, as it arrives; its end (error or OK) and its headers. */
export class EventStream {
  readonly events: Event[] = [];
  error: ServiceError | undefined;
  ended = false;
  readonly headers: Promise<Metadata>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly call: ClientReadableStream<Event>) {
    this.headers = new Promise((resolve) => call.once('metadata', resolve));
    call.on('data', (event: Event) => {
      this.events.push(event);
      this.notify();
    });
    call.on('error', (err: ServiceError) => {
      this.error = err;
      this.ended = true;
      this.notify();
    });
    call.on('end', () => {
      this.ended = true;
      this.notify();
    });
  }

  /** Resolves once `done()` holds (checked on every event and at the end), or rejects after `timeoutMs`. */
  until(done: (events: Event[]) => boolean, timeoutMs: number, what = 'the stream'): Promise<Event[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (done(this.events)) {
          finish();
          resolve(this.events);
        } else if (this.ended) {
          finish();
          reject(new Error(`${what} ended (${this.error?.message ?? 'OK'}) after ${this.events.length} events`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${what}: not done after ${timeoutMs} ms (${this.events.length} events)`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves with the error the stream ends with (undefined: OK), once it has ended. */
  async finished(timeoutMs: number): Promise<ServiceError | undefined> {
    await this.until(() => false, timeoutMs).catch(() => {});
    if (!this.ended) throw new Error(`the stream did not end in ${timeoutMs} ms`);
    return this.error;
  }

  cancel(): void {
    this.call.cancel();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** The ids of a tenant's events in the outbox's order, straight from the table. */
export async function storedEventIds(dataSource: DataSource, tenantId: string): Promise<string[]> {
  const rows: Array<{ id: string }> = await dataSource.query(`SELECT id FROM events WHERE tenant_id = $1 ORDER BY xid, position`, [tenantId]);
  return rows.map((r) => r.id);
}

/** Every event ListEvents answers after `afterCursor`, page after page until a short page. */
export async function listAll(client: EventsClient, request: PartialRequest<eventService.ListEventsRequest> = {}): Promise<{ events: Event[]; nextCursor: string }> {
  const events: Event[] = [];
  let cursor = request.afterCursor ?? '';
  for (let pages = 0; pages < 10_000; pages++) {
    const page = await client.listEvents({ pageSize: 100, ...request, afterCursor: cursor });
    events.push(...page.events);
    cursor = page.nextCursor;
    if (page.events.length < (request.pageSize || 100)) return { events, nextCursor: cursor };
  }
  throw new Error('ListEvents walk did not end');
}
