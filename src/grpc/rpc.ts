import { randomUUID } from 'node:crypto';
import {
  Metadata,
  type MethodDefinition,
  type sendUnaryData,
  type Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { DomainError, ErrorReason } from '../common/domain-error';
import type { WorkRunner } from '../db/unit-of-work';
import type { Scope } from '../tenants/api-key.entity';
import type { Principal } from '../tenants/principal';
import { toCallerError, toServiceError } from './error-status';
import { InvalidUtf8, requestDecoders } from './message-decoding';
import { responseSerializers } from './message-encoding';
import { REPLAYED_HEADER } from './middleware';
import { MalformedRequest, type Call, type Middleware, type Outcome } from './pipeline';
import { reservedMapKeyChecks } from './reserved-map-keys';
import { timestampChecks } from './timestamp-checks';

/** What a handler knows about the call besides its request. */
export interface CallContext {
  principal: Principal;
  requestId: string;
  /** Runs the use case's database work (see WorkRunner). */
  run: WorkRunner;
}

export type Handler<Req, Res> = (request: Req, context: CallContext) => Promise<Res>;

/** What a server-streaming handler has besides its request: the call's context and the stream. */
export interface StreamContext<Res> extends CallContext {
  /** Aborted when the stream must end: the caller cancelled, or the server is shutting down; its reason is the DomainError to end with. */
  signal: AbortSignal;
  /** Sends the response headers now (they otherwise go with the first message). */
  sendHeaders(headers: Record<string, string>): void;
  /**
   * Sends the messages in order (each a message, or its encoding when many
   * streams send it), waiting only where the stream asks it to
   * (backpressure); rejects with `signal`'s reason once the stream ended.
   */
  sendAll(messages: ReadonlyArray<Res | Buffer>): Promise<void>;
}

/** Sends messages until done; resolving ends the stream with OK, throwing with the error's status. */
export type StreamHandler<Req, Res> = (request: Req, context: StreamContext<Res>) => Promise<void>;

/**
 * The adapter between grpc-js and the call pipeline (nice-grpc's
 * createServerAdapter, for unary and server-streaming calls): each call
 * becomes a `Call`, runs through the middleware to its handler, and its
 * outcome becomes grpc-js's callback: the response with metadata
 * `x-request-id` (and `idempotent-replayed: true` for a replay), or a status
 * with google.rpc details. A stream's outcome is its end: OK once the
 * handler is done, or the error's status, with the same trailers.
 */
export class Rpc {
  private readonly methods = new Map<string, MethodDefinition<unknown, unknown>>();
  private readonly serializers = responseSerializers();
  private readonly reservedKeyChecks = reservedMapKeyChecks();
  private readonly timestampChecks = timestampChecks();
  private readonly requestDecoders = requestDecoders();

  constructor(private readonly pipeline: Middleware) {}

  /**
   * Registers a service; its method definitions serve idempotent replays (they
   * encode responses). A request that is not a decodable protobuf message
   * reaches the pipeline as a MalformedRequest (see refuseMalformed), and so
   * does one with a map key its decoding would drop (reservedMapKeyChecks),
   * a Timestamp it would shift (timestampChecks) or a string that is not
   * UTF-8 (requestDecoders).
   * Responses are encoded with one reused writer (see encodeMessage). A
   * server stream may send a message already encoded (a Buffer): one message
   * sent on many streams is then encoded once.
   */
  addService<S extends ServiceDefinition>(server: Server, definition: S, implementation: UntypedServiceImplementation): void {
    const lenient: Record<string, MethodDefinition<unknown, unknown>> = {};
    for (const [name, method] of Object.entries(definition)) {
      this.methods.set(method.path, method as MethodDefinition<unknown, unknown>);
      const serialize = this.serializers.get(method.path) ?? method.responseSerialize;
      const reservedKey = this.reservedKeyChecks.get(method.path);
      const timestamp = this.timestampChecks.get(method.path);
      const decode = this.requestDecoders.get(method.path) ?? method.requestDeserialize;
      lenient[name] = Object.assign({}, method as MethodDefinition<unknown, unknown>, {
        requestDeserialize: (bytes: Buffer) => {
          try {
            const request = decode(bytes);
            // The checks read tags as protobuf defines them: bytes ts-proto took (it stops at a tag of 0) may still be none.
            const problem = reservedKey?.(bytes) ?? timestamp?.(bytes);
            return problem === undefined ? request : new MalformedRequest(method.path, problem);
          } catch (err) {
            return new MalformedRequest(method.path, err instanceof InvalidUtf8 ? err.problem : undefined);
          }
        },
        responseSerialize: method.responseStream ? (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) : serialize,
      });
    }
    server.addService(lenient, implementation);
  }

  read<Req, Res>(handler: Handler<Req, Res>) {
    return this.unary('read', handler, false);
  }

  /**
   * `sharedTransaction`: with an idempotency key, the call may share its
   * transaction with other such calls (see Idempotency.execute for what the
   * handler must promise).
   */
  write<Req, Res>(handler: Handler<Req, Res>, options: { sharedTransaction?: boolean } = {}) {
    return this.unary('write', handler, options.sharedTransaction ?? false);
  }

  /**
   * A server-streaming read. The handler runs after the same middleware as a
   * unary call (authentication, scope, one log line when the stream ends, ...)
   * and sends messages as it goes.
   */
  readStream<Req, Res>(handler: StreamHandler<Req, Res>) {
    return (grpcCall: ServerWritableStream<Req, Res>): void => {
      const requestId = requestIdOf(grpcCall.metadata);
      const trailer = new Metadata();
      trailer.set('x-request-id', requestId);
      const ending = new AbortController();
      grpcCall.once('cancelled', () => ending.abort(new DomainError(ErrorReason.Cancelled, 'The caller cancelled the call.')));
      /** Resolves once the stream drained, rejects once it ended. */
      const drained = () =>
        new Promise<void>((resolve, reject) => {
          const { signal } = ending;
          const settle = () => {
            grpcCall.off('drain', settle);
            signal.removeEventListener('abort', settle);
            if (signal.aborted) reject(signal.reason);
            else resolve();
          };
          grpcCall.on('drain', settle);
          signal.addEventListener('abort', settle);
        });
      const direct = directSender(grpcCall);
      const sendAll = async (messages: ReadonlyArray<Res | Buffer>) => {
        if (direct) return direct(messages, ending.signal);
        for (const message of messages) {
          if (ending.signal.aborted) throw ending.signal.reason;
          if (!grpcCall.write(message as Res)) await drained();
        }
      };
      const terminal = async (call: Call): Promise<Outcome> => {
        await handler(call.request as Req, {
          principal: call.principal!,
          requestId: call.requestId,
          run: call.run!,
          signal: ending.signal,
          sendHeaders: (headers) => {
            const metadata = new Metadata();
            for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
            grpcCall.sendMetadata(metadata);
          },
          sendAll: async (messages) => {
            await sendAll(messages);
            call.sent?.(messages.length);
          },
        });
        return { replayed: false, response: undefined };
      };
      this.dispatch(grpcCall, { scope: 'read', sharesTransaction: false, requestId, ending }, terminal, (outcome) => {
        if (grpcCall.cancelled) return; // nobody to tell
        if ('response' in outcome) grpcCall.end(trailer);
        else grpcCall.emit('error', toServiceError(outcome.error, trailer));
      });
    };
  }

  private unary<Req, Res>(scope: Scope, handler: Handler<Req, Res>, sharesTransaction: boolean) {
    const terminal = async (call: Call): Promise<Outcome> => ({
      replayed: false,
      response: await handler(call.request as Req, { principal: call.principal!, requestId: call.requestId, run: call.run! }),
    });
    return (grpcCall: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const requestId = requestIdOf(grpcCall.metadata);
      const trailer = new Metadata();
      trailer.set('x-request-id', requestId);
      this.dispatch(grpcCall, { scope, sharesTransaction, requestId }, terminal, (outcome) => {
        if (outcome.replayed) {
          const header = new Metadata();
          header.set(REPLAYED_HEADER, 'true');
          grpcCall.sendMetadata(header);
        }
        if ('response' in outcome) callback(null, outcome.response as Res, trailer);
        else callback(toServiceError(outcome.error, trailer));
      });
    };
  }

  /** Makes the grpc-js call a `Call`, runs it through the pipeline to `terminal`, and hands its outcome to `answer`. */
  private dispatch(
    grpcCall: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>,
    shape: Pick<Call, 'scope' | 'sharesTransaction' | 'requestId' | 'ending'>,
    terminal: (call: Call) => Promise<Outcome>,
    answer: (outcome: Outcome) => void,
  ): void {
    const path = grpcCall.getPath();
    const method = this.methods.get(path);
    const fail = (err: unknown) => answer({ replayed: false, error: toCallerError(err) });
    if (!method) return fail(new Error(`${path} was not registered through Rpc.addService`));
    const call: Call = {
      path,
      method,
      scope: shape.scope,
      request: grpcCall.request,
      metadata: grpcCall.metadata,
      requestId: shape.requestId,
      gone: () => grpcCall.cancelled || Number(grpcCall.getDeadline()) <= Date.now(),
      sharesTransaction: shape.sharesTransaction,
      ending: shape.ending,
    };
    this.pipeline(call, terminal).then(answer, fail);
  }
}

function requestIdOf(metadata: Metadata): string {
  const given = metadata.get('x-request-id')[0];
  return typeof given === 'string' && /^[\x21-\x7e]{1,100}$/.test(given) ? given : randomUUID();
}

/** The part of grpc-js's ServerInterceptingCallInterface (what server interceptors are given) that sends a message. */
interface MessageSink {
  sendMessage(message: unknown, callback: () => void): void;
}

/**
 * What grpc-js's BaseServerInterceptingCall (the call under a stream when
 * the server has no interceptors) has besides sendMessage, which writes
 * ONE message per HTTP/2 write: its framing, its headers, its state and its
 * HTTP/2 stream. Not public: test/grpc/rpc-stream.test.ts fails if a
 * grpc-js upgrade changes it (then batches go message by message again).
 */
interface FramingCall extends MessageSink {
  serializeMessage(message: unknown): Buffer;
  maybeSendMetadata(): void;
  checkCancelled(): boolean;
  maxSendMessageSize: number;
  stream: { write(chunk: Buffer, callback: (err?: Error | null) => void): boolean };
  callEventTracker?: { addMessageSent(): void };
}

/** A batch's framed messages are written this many bytes at a time (at least one message each). */
export const BATCH_WRITE_BYTES = 64 * 1024;

/** The call under a stream (not public; see directSender), as far as its shape is known. */
function callUnder(grpcCall: ServerWritableStream<unknown, unknown>): Partial<FramingCall> | undefined {
  return (grpcCall as unknown as { call?: Partial<FramingCall> }).call;
}

function framingCallOf(call: Partial<FramingCall> | undefined): FramingCall | undefined {
  if (
    typeof call?.sendMessage !== 'function' ||
    typeof call.serializeMessage !== 'function' ||
    typeof call.maybeSendMetadata !== 'function' ||
    typeof call.checkCancelled !== 'function' ||
    typeof call.maxSendMessageSize !== 'number' ||
    typeof call.stream?.write !== 'function'
  ) {
    return undefined;
  }
  return call as FramingCall;
}

/** Whether directSender writes a batch in one HTTP/2 write (see FramingCall). */
export function writesBatchesAtOnce(grpcCall: ServerWritableStream<unknown, unknown>): boolean {
  return framingCallOf(callUnder(grpcCall)) !== undefined;
}

/**
 * Sends a stream's messages past grpc-js's ServerWritableStream, straight to
 * the call under it, when that call is there (undefined otherwise: the
 * caller writes to the stream). The stream is an objectMode Writable that
 * hands the call one message at a time, each once the previous one's HTTP/2
 * write has completed: a turn of the event loop per message, about 12 µs of
 * server CPU where the call itself takes 2 (a grpc-js server streaming
 * 200,000 messages of 300 bytes; `npm run bench`'s add-streams pays it per
 * event per stream). Here a batch goes to the call at once and is awaited as
 * a whole, so a stream still has at most one batch in flight (flow control:
 * the callbacks wait for the HTTP/2 writes).
 *
 * Where the call is grpc-js's own (FramingCall), the batch's messages are
 * framed by it and written to its HTTP/2 stream together, up to
 * BATCH_WRITE_BYTES per write: one DATA frame for many messages instead of
 * one each, which a client reads the same (a gRPC message may span frames
 * and a frame hold many). Each HTTP/2 write costs the server a JS-to-C++
 * call, a frame and two buffers in the socket's writev: 4.8 → 3.6 µs per
 * message of 220 bytes in batches of 100 (a grpc-js server and a client in
 * two processes). Otherwise each message goes through the call's
 * sendMessage. Either way the headers go first if need be, and messages
 * are dropped once the call is cancelled (never calling back): the signal,
 * aborted then, ends the wait. A failed write rejects with the signal's
 * reason once it aborted (the caller went away: the stream closed under the
 * write), else with its error (the call then ends with INTERNAL, as after
 * sendMessage's). A batch with a message over the server's maximum
 * (grpc.max_send_message_length) is not sent: it rejects, and the call ends
 * with INTERNAL, logged (sendMessage would answer RESOURCE_EXHAUSTED and
 * never call back, leaving the stream waiting).
 */
export function directSender(
  grpcCall: ServerWritableStream<unknown, unknown>,
): ((messages: ReadonlyArray<unknown>, signal: AbortSignal) => Promise<void>) | undefined {
  const call = callUnder(grpcCall);
  if (typeof call?.sendMessage !== 'function') return undefined;
  const sink = call as MessageSink;
  const framing = framingCallOf(call);
  return (messages, signal) => {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (messages.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const ended = () => reject(signal.reason);
      signal.addEventListener('abort', ended, { once: true });
      let left = 0;
      const sent = (err?: Error | null) => {
        if (err) {
          signal.removeEventListener('abort', ended);
          reject(signal.aborted ? signal.reason : err); // a stream closed under the write: the caller went away
          return;
        }
        if (--left > 0) return;
        signal.removeEventListener('abort', ended);
        resolve();
      };
      if (!framing) {
        left = messages.length;
        for (const message of messages) sink.sendMessage(message, sent);
        return;
      }
      if (framing.checkCancelled()) return; // dropped, as sendMessage would: the signal ends the wait
      framing.maybeSendMetadata();
      const writes: Buffer[][] = [];
      let chunk: Buffer[] = [];
      let bytes = 0;
      for (const message of messages) {
        const framed = framing.serializeMessage(message);
        if (framing.maxSendMessageSize !== -1 && framed.length - 5 > framing.maxSendMessageSize) {
          signal.removeEventListener('abort', ended);
          reject(new Error(`a message of ${framed.length - 5} bytes is over the server's maximum of ${framing.maxSendMessageSize}`));
          return;
        }
        if (bytes > 0 && bytes + framed.length > BATCH_WRITE_BYTES) {
          writes.push(chunk);
          chunk = [];
          bytes = 0;
        }
        chunk.push(framed);
        bytes += framed.length;
      }
      writes.push(chunk);
      left = writes.length;
      for (const frames of writes) {
        framing.stream.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames), (err) => {
          if (!err) for (let i = 0; i < frames.length; i++) framing.callEventTracker?.addMessageSent();
          sent(err);
        });
      }
    });
  };
}
