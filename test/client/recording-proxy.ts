import { Client, credentials, Metadata, Server, ServerCredentials, status, type ServerUnaryCall, type sendUnaryData, type ServiceError } from '@grpc/grpc-js';
import { SERVICE_DEFINITIONS } from '../../client/src/services';

/** What the proxy saw of one attempt. */
export interface RecordedCall {
  path: string;
  /** Request metadata as plain strings (authorization, idempotency-key, ...). */
  metadata: Record<string, string>;
  /** The deadline the client set, as epoch milliseconds (Infinity when none). */
  deadline: number;
  receivedAt: number;
  /** The status the proxy answered with (0 = OK). */
  code: status;
}

/**
 * A raw grpc-js server in front of the real one: it forwards every credits RPC
 * as opaque bytes (request metadata, response, error trailers), records what
 * each attempt carried, and can fail the next calls with a scripted code. No
 * interceptor inside the service under test is needed to see the attempts.
 */
export interface RecordingProxy {
  address: string;
  calls: RecordedCall[];
  /** The next `count` calls fail with `code` without reaching the upstream. */
  failNext(count: number, code: status): void;
  close(): Promise<void>;
}

const identity = (value: Buffer) => value;
const NOT_FORWARDED = new Set(['user-agent', 'content-type', 'te', 'host', 'grpc-accept-encoding', 'grpc-encoding', 'accept-encoding']);

export async function startRecordingProxy(upstreamAddress: string): Promise<RecordingProxy> {
  const upstream = new Client(upstreamAddress, credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 300,
  });
  const calls: RecordedCall[] = [];
  const scripted: status[] = [];
  const server = new Server();
  for (const definition of Object.values(SERVICE_DEFINITIONS)) {
    for (const method of Object.values(definition)) {
      server.register(
        method.path,
        (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
          const deadline = call.getDeadline();
          const record: RecordedCall = {
            path: method.path,
            metadata: Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, v.toString()])),
            deadline: deadline instanceof Date ? deadline.getTime() : deadline,
            receivedAt: Date.now(),
            code: status.OK,
          };
          calls.push(record);
          const failure = scripted.shift();
          if (failure !== undefined) {
            record.code = failure;
            callback({ code: failure, details: `scripted ${status[failure]} from the test proxy` });
            return;
          }
          const forwarded = new Metadata();
          for (const [key, value] of Object.entries(call.metadata.getMap())) if (!NOT_FORWARDED.has(key)) forwarded.set(key, value as string);
          upstream.makeUnaryRequest(method.path, identity, identity, call.request, forwarded, { deadline }, (err: ServiceError | null, response?: Buffer) => {
            if (err) {
              record.code = err.code;
              callback({ code: err.code, details: err.details, metadata: err.metadata });
            } else callback(null, response);
          });
        },
        identity,
        identity,
        'unary',
      );
    }
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    failNext: (count, code) => scripted.push(...Array.from({ length: count }, () => code)),
    close: () =>
      new Promise<void>((resolve) => {
        upstream.close();
        server.tryShutdown(() => resolve());
      }),
  };
}
