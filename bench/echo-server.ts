import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition } from '@grpc/grpc-js';
import type { FromEchoServer, ToEchoServer } from './protocol';

/**
 * The transport baseline, forked by the orchestrator: a bare grpc-js unary
 * server that answers every call with the bytes of a representative response
 * of the scenario being measured (set over IPC before each run). The load
 * generator sends it the scenario's own encoded requests and metadata, so
 * both sides move the same bytes as with the service, and nothing else
 * happens: no auth, no database, no protobuf decoding.
 */
export const ECHO_PATH = '/bench.v1.Echo/Call';

const identity = (b: Buffer) => b;
const definition: ServiceDefinition = {
  call: {
    path: ECHO_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

const send = (message: FromEchoServer) => process.send?.(message);

if (require.main === module) {
  let response: Buffer = Buffer.alloc(0);
  const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  server.addService(definition, {
    call: (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, response),
  });
  process.on('message', (message: ToEchoServer) => {
    if (message.type !== 'respond-with') return;
    const r = message.response;
    response = Buffer.from(r.buffer, r.byteOffset, r.byteLength);
    send({ type: 'ok' });
  });
  // The orchestrator going away ends the echo server too.
  process.on('disconnect', () => server.forceShutdown());
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    send({ type: 'listening', port });
  });
}
