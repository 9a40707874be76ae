import { randomUUID } from 'node:crypto';
import { Metadata, status, type Client, type ClientReadableStream } from '@grpc/grpc-js';
import {
  EventServiceService,
  ListEventsRequest,
  StreamEventsRequest,
  type Event,
  type EventType,
  type ListEventsResponse,
} from '../../gen/credits/v1/event_service';
import type { DeepPartial, ReadCallOptions } from './client-types';
import { clientClosed, CreditsError, isServiceError, toCreditsError } from './credits-error';
import { backoffMs, sleep, type RetryPolicy } from './retry-policy';

/** What `events.stream` follows: StreamEventsRequest's fields. */
export interface EventStreamRequest {
  /** Start after this cursor (an `Event.cursor`); empty or absent: from the oldest event kept. */
  afterCursor?: string;
  /** Only these types; empty or absent: every type. */
  types?: EventType[];
  /** Only this customer's events; empty or absent: every customer's, and coupon events. */
  customerId?: string;
  /** Only events that commit from now on (with no `afterCursor`). */
  liveOnly?: boolean;
}

export interface EventStreamOptions {
  /** Aborting it ends the iteration: the loop throws a CreditsError CANCELLED. */
  signal?: AbortSignal;
  /**
   * Failed connections in a row before the iterator gives up and throws the
   * last error (default: never gives up). A connection the server answered
   * (headers or an event) is not a failed one, however it ends: with 1, a
   * stream that drops is reconnected once, and the iterator throws if that
   * attempt fails.
   */
  maxReconnectAttempts?: number;
  /** Told of every reconnection: the error that ended the stream and where it resumes. */
  onReconnect?(info: { error: CreditsError; attempt: number; afterCursor: string; waitMs: number }): void;
  /**
   * Told each time the server has answered a connection (its response
   * headers), with where the stream goes on from. If it throws, the
   * iteration ends with that error. For a `liveOnly` stream
   * the first call marks "from now on": every event that commits after it
   * comes, reconnections included. (Until then the stream has no start: if
   * the first connection fails before it, the next one starts live again.)
   */
  onConnect?(info: { afterCursor: string }): void;
}

/** `client.events`: the credits event feed. */
export interface EventsClient {
  /** One page of events after a cursor (see ListEvents in proto/credits/v1/event_service.proto). */
  listEvents(request?: DeepPartial<ListEventsRequest>, options?: ReadCallOptions): Promise<ListEventsResponse>;
  /**
   * Every event after `afterCursor`, then each new one as it commits, for as
   * long as you iterate: a server restart, a shutdown (UNAVAILABLE), a lost
   * connection or an unreachable database only pause it; it reconnects
   * with backoff and resumes after the last event it gave you, so you see
   * each event exactly once, in order. It throws a CreditsError for what a
   * retry cannot fix: CURSOR_EXPIRED, a bad request, a refused key.
   * `break` closes the stream (a `return()` while a `next()` is pending waits for it, as for any async generator: to stop a stream that is waiting for an event, abort its `signal`).
   */
  stream(request?: EventStreamRequest, options?: EventStreamOptions): AsyncGenerator<Event, void, undefined>;
}

/** Response header of StreamEvents: where the stream started, for a reader that has no cursor yet (live_only). */
const START_CURSOR_HEADER = 'start-cursor';

/**
 * Errors worth reconnecting for: UNAVAILABLE (the server is stopping or
 * restarting, the database is down, the connection was lost), and a stream
 * cut by the transport (INTERNAL, UNKNOWN or CANCELLED with no ErrorInfo
 * from the service: an RST_STREAM, a proxy giving up).
 */
function reconnectable(error: CreditsError): boolean {
  if (error.code === status.UNAVAILABLE) return true;
  return [status.INTERNAL, status.UNKNOWN, status.CANCELLED].includes(error.code) && error.reason === undefined;
}

/**
 * The events property of the client. `read` is the client's unary read
 * (deadline, retries of UNAVAILABLE, CreditsError); the request is built
 * inside it, so a bad one rejects instead of throwing.
 */
export function eventsClient(
  channel: Client,
  settings: { apiKey: string; retry: RetryPolicy; closed: AbortSignal },
  read: (method: typeof EventServiceService.listEvents, makeRequest: () => unknown, options: ReadCallOptions) => Promise<unknown>,
): EventsClient {
  return {
    listEvents: (request, options) =>
      read(EventServiceService.listEvents, () => ListEventsRequest.fromPartial(request ?? {}), options ?? {}) as Promise<ListEventsResponse>,
    stream: (request = {}, options = {}) => follow(channel, settings, request, options),
  };
}

async function* follow(
  channel: Client,
  settings: { apiKey: string; retry: RetryPolicy; closed: AbortSignal },
  request: EventStreamRequest,
  options: EventStreamOptions,
): AsyncGenerator<Event, void, undefined> {
  const { signal } = options;
  const method = EventServiceService.streamEvents;
  let afterCursor = request.afterCursor ?? '';
  let liveOnly = request.liveOnly === true;
  // One request id for the iteration, sent on every connection: the service's log line of each carries it.
  const requestId = randomUUID();
  const cancelled = (attempts: number) =>
    new CreditsError({ code: status.CANCELLED, message: 'The event stream was cancelled by its AbortSignal.', method: method.path, attempts, requestId, cause: signal?.reason });
  // `failures`: attempts since the last event or answer (backoff, onReconnect);
  // `refused`: connections in a row the server never answered (maxReconnectAttempts).
  for (let failures = 0, refused = 0; ; ) {
    if (signal?.aborted) throw cancelled(failures);
    if (settings.closed.aborted) throw clientClosed(method.path, failures, requestId);
    const metadata = new Metadata();
    let answered = false;
    let connectError: { error: unknown } | undefined;
    metadata.set('authorization', `Bearer ${settings.apiKey}`);
    metadata.set('x-request-id', requestId);
    const call: ClientReadableStream<Event> = channel.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      StreamEventsRequest.fromPartial({ afterCursor, types: request.types ?? [], customerId: request.customerId ?? '', liveOnly }),
      metadata,
      {},
    );
    call.once('metadata', (headers: Metadata) => {
      failures = 0; // connected
      answered = true;
      // A live reader with no event yet resumes from where its stream started: nothing committed meanwhile is missed.
      const [start] = headers.get(START_CURSOR_HEADER);
      if (typeof start === 'string' && start !== '' && afterCursor === '') {
        afterCursor = start;
        liveOnly = false;
      }
      try {
        options.onConnect?.({ afterCursor });
      } catch (error) {
        // Thrown inside grpc-js's event handler it would be uncaught: end the iteration with it instead.
        connectError = { error };
        call.cancel();
      }
    });
    const abort = () => call.cancel();
    signal?.addEventListener('abort', abort, { once: true });
    settings.closed.addEventListener('abort', abort, { once: true });
    let error: CreditsError;
    try {
      for await (const event of call as AsyncIterable<Event>) {
        afterCursor = event.cursor;
        liveOnly = false;
        failures = 0;
        answered = true;
        yield event;
      }
      // Streams do not end with OK; a proxy that ends one cleanly is a reason to reconnect, not to stop.
      error = new CreditsError({ code: status.UNAVAILABLE, message: 'The event stream ended; reconnecting.', method: method.path, requestId });
    } catch (err) {
      if (connectError) throw connectError.error;
      if (signal?.aborted) throw cancelled(failures + 1);
      if (settings.closed.aborted) throw clientClosed(method.path, failures + 1, requestId);
      if (!isServiceError(err)) throw err;
      error = toCreditsError(err, { method: method.path, attempts: failures + 1, requestId });
    } finally {
      signal?.removeEventListener('abort', abort);
      settings.closed.removeEventListener('abort', abort);
      call.cancel(); // the consumer broke out, or the stream failed: let go of it
    }
    failures++;
    refused = answered ? 0 : refused + 1;
    if (!reconnectable(error) || refused >= (options.maxReconnectAttempts ?? Infinity)) throw error;
    const waitMs = backoffMs(settings.retry, failures);
    options.onReconnect?.({ error, attempt: failures, afterCursor, waitMs });
    await sleep(waitMs, signal, () => cancelled(failures));
  }
}
