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
import { responseSerializers } from './message-encoding';
import { REPLAYED_HEADER } from './middleware';
import { MalformedRequest, type Call, type Middleware, type Outcome } from './pipeline';

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

  constructor(private readonly pipeline: Middleware) {}

  /**
   * Registers a service; its method definitions serve idempotent replays (they
   * encode responses). A request that is not a decodable protobuf message
   * reaches the pipeline as a MalformedRequest (see refuseMalformed).
   * Responses are encoded with one reused writer (see encodeMessage). A
   * server stream may send a message already encoded (a Buffer): one message
   * sent on many streams is then encoded once.
   */
  addService<S extends ServiceDefinition>(server: Server, definition: S, implementation: UntypedServiceImplementation): void {
    const lenient: Record<string, MethodDefinition<unknown, unknown>> = {};
    for (const [name, method] of Object.entries(definition)) {
      this.methods.set(method.path, method as MethodDefinition<unknown, unknown>);
      const serialize = this.serializers.get(method.path) ?? method.responseSerialize;
      lenient[name] = {
        ...(method as MethodDefinition<unknown, unknown>),
        requestDeserialize: (bytes: Buffer) => {
          try {
            return method.requestDeserialize(bytes);
          } catch {
            return new MalformedRequest(method.path);
          }
        },
        responseSerialize: method.responseStream ? (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) : serialize,
      };
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
          sendAll,
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
 * Sends a stream's messages past grpc-js's ServerWritableStream, straight to
 * the call under it, when that call is there (undefined otherwise: the
 * caller writes to the stream). The stream is an objectMode Writable that
 * hands the call one message at a time, each once the previous one's HTTP/2
 * write has completed: a turn of the event loop per message, about 12 µs of
 * server CPU where the call itself takes 2 (a grpc-js server streaming
 * 200,000 messages of 300 bytes; `npm run bench`'s add-streams pays it per
 * event per stream). Here a batch goes to the call at once and is awaited as
 * a whole, so a stream still has at most one batch in flight (flow control:
 * the call's callbacks wait for the HTTP/2 writes). The call sends the
 * headers first if need be, frames each message as the stream would, and
 * drops messages once the call is cancelled (never calling back): the
 * signal, aborted then, ends the wait. `call` is not public on the stream
 * object: test/grpc/rpc-stream.test.ts fails if a grpc-js upgrade moves it.
 */
export function directSender(
  grpcCall: ServerWritableStream<unknown, unknown>,
): ((messages: ReadonlyArray<unknown>, signal: AbortSignal) => Promise<void>) | undefined {
  const call = (grpcCall as unknown as { call?: Partial<MessageSink> }).call;
  if (typeof call?.sendMessage !== 'function') return undefined;
  const sink = call as MessageSink;
  return (messages, signal) => {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (messages.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let left = messages.length;
      const ended = () => reject(signal.reason);
      signal.addEventListener('abort', ended, { once: true });
      const sent = () => {
        if (--left > 0) return;
        signal.removeEventListener('abort', ended);
        resolve();
      };
      for (const message of messages) sink.sendMessage(message, sent);
    });
  };
}
