import path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { credentials, loadPackageDefinition, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { sharedServer, type TestServer } from './server';

const REFLECTION_PROTO = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');

export interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

type ReflectionClient = Client & {
  ServerReflectionInfo(): ClientDuplexStream<Record<string, unknown>, ReflectionResponse>;
};

/** A plain grpc.reflection.v1 client, as grpcurl would be: keepCase so the wire names are used. */
export function reflectionClient(address: string): ReflectionClient {
  const definition = loadSync(REFLECTION_PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const grpcObject = loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => ReflectionClient } } };
  };
  return new grpcObject.grpc.reflection.v1.ServerReflection(address, credentials.createInsecure());
}

/** Sends one reflection request on a fresh stream (no API key) and answers the one response. */
export function askReflection(client: ReflectionClient, request: Record<string, unknown>): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo();
    stream.once('data', (response: ReflectionResponse) => {
      resolve(response);
      stream.end();
    });
    stream.once('error', reject);
    stream.write(request);
  });
}

/** The files of a file_descriptor_response, decoded. */
export function descriptorFiles(response: ReflectionResponse): FileDescriptorProto[] {
  return response.file_descriptor_response!.file_descriptor_proto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

export interface Discovery {
  /** The shared server the reflection client talks to. */
  readonly server: TestServer;
  /** One reflection request and its response. */
  ask(request: Record<string, unknown>): Promise<ReflectionResponse>;
}

/** Registers mocha hooks that open a reflection client on the shared server for the suite and close it after. */
export function useReflection(): Discovery {
  let server: TestServer | undefined;
  let client: ReflectionClient | undefined;
  before(async () => {
    server = await sharedServer();
    client = reflectionClient(server.address);
  });
  after(() => client?.close());
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useReflection: use it inside hooks and tests');
    return value;
  };
  return {
    get server() {
      return ready(server);
    },
    ask: (request) => askReflection(ready(client), request),
  };
}
