import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { EventServiceService, StreamEventsRequest, type Event } from '../gen/credits/v1/event_service';
import { Histogram } from './histogram';
import type { EventConsumersResult, FromEventConsumers, ToEventConsumers } from './protocol';

/**
 * Event stream consumers, forked by the orchestrator for the scenarios that
 * measure the server while streams are attached: `count` StreamEvents calls
 * on one channel, from a cursor the orchestrator took before the load, each
 * decoding every event as a consumer would. Records the delivery lag of the
 * events received in the measurement window (receipt − create_time, the
 * database's clock on the same machine) and counts every event per stream,
 * so the orchestrator can check each saw every event once.
 */
const send = (message: FromEventConsumers) => process.send?.(message);

const lag = new Histogram();
let measuring = false;
let streams: Array<{ received: number; inWindow: number; ids: Set<string>; duplicates: number; error?: string }> = [];
let client: Client | undefined;

process.on('message', (message: ToEventConsumers) => {
  if (message.type === 'start') start(message.address, message.apiKey, message.count, message.afterCursor);
  else if (message.type === 'window-start') {
    lag.reset();
    for (const s of streams) s.inWindow = 0;
    measuring = true;
  } else if (message.type === 'window-end') measuring = false;
  else if (message.type === 'finish') {
    finish(message.expected, message.timeoutMs).then(
      (result) => send({ type: 'result', result }),
      (err: unknown) => send({ type: 'failed', message: String(err) }),
    );
  }
});

function start(address: string, apiKey: string, count: number, afterCursor: string): void {
  client = new Client(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  const method = EventServiceService.streamEvents;
  let ready = 0;
  streams = Array.from({ length: count }, () => ({ received: 0, inWindow: 0, ids: new Set<string>(), duplicates: 0 }));
  streams.forEach((stream) => {
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${apiKey}`);
    const call = client!.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, StreamEventsRequest.fromPartial({ afterCursor }), metadata, {});
    call.once('metadata', () => {
      if (++ready === count) send({ type: 'ready' });
    });
    call.on('data', (event: Event) => {
      const now = Date.now();
      stream.received++;
      if (stream.ids.has(event.id)) stream.duplicates++;
      stream.ids.add(event.id);
      if (measuring) {
        stream.inWindow++;
        lag.record((now - event.createTime!.getTime()) * 1000);
      }
    });
    call.on('error', (err: ServiceError) => {
      if (err.code !== status.CANCELLED) stream.error = `${status[err.code]}: ${err.details}`;
    });
  });
}

async function finish(expected: number, timeoutMs: number): Promise<EventConsumersResult> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end && streams.some((s) => s.received < expected && !s.error)) await new Promise((r) => setTimeout(r, 50));
  // Anything more (a duplicate, an event too many) would come right after.
  const quiet = Date.now() + 500;
  while (Date.now() < quiet) await new Promise((r) => setTimeout(r, 50));
  client?.close();
  return {
    streams: streams.length,
    lag: lag.toJSON(),
    inWindow: streams.map((s) => s.inWindow),
    received: streams.map((s) => s.received),
    duplicates: streams.map((s) => s.duplicates),
    errors: streams.flatMap((s) => (s.error ? [s.error] : [])),
  };
}
