import fs from 'node:fs';
import path from 'node:path';
import { createFileRegistry, fromBinary, type DescMessage } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { Server } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';

/** The descriptor set `npm run generate` writes with buf: proto/ as written, comments included. */
export const DESCRIPTOR_SET = path.join(__dirname, '..', '..', '..', 'gen', 'credits.binpb');

/** A credits.v1 method as the descriptor set has it. */
export interface CreditsMethod {
  /** `/credits.v1.EventService/StreamEvents` */
  path: string;
  input: DescMessage;
  /** Its fully qualified response type, `.credits.v1.StreamEventsResponse`. */
  outputType: string;
}

let creditsMethodsRead: readonly CreditsMethod[] | undefined;

/** Every credits.v1 method of buf's descriptor set (read once per process). */
export function creditsMethods(): readonly CreditsMethod[] {
  if (creditsMethodsRead) return creditsMethodsRead;
  const set = fromBinary(FileDescriptorSetSchema, fs.readFileSync(DESCRIPTOR_SET));
  const registry = createFileRegistry(set);
  const methods: CreditsMethod[] = [];
  for (const file of set.file) {
    if (file.package !== 'credits.v1') continue;
    for (const service of file.service) {
      for (const method of service.method) {
        const input = registry.getMessage(method.inputType.slice(1));
        if (!input) throw new Error(`${service.name}.${method.name}: no message ${method.inputType} in the descriptor set`);
        methods.push({ path: `/${file.package}.${service.name}/${method.name}`, input, outputType: method.outputType });
      }
    }
  }
  return (creditsMethodsRead = methods);
}

/**
 * Serves gRPC server reflection (v1 and v1alpha) from buf's descriptor set,
 * so grpcurl sees the files exactly as written in proto/: snake_case field
 * names and the comments. (proto-loader's own descriptors would camelCase
 * field names and drop comments.) gRPC's health.proto is in the set too
 * (proto/grpc/health/v1, a copy of the grpc-health-check package's): the
 * file proto-loader made of it named its map entry `Statuses` and its types
 * without their package, which grpcurl refuses ("incorrect implicit map
 * entry name").
 */
export function addReflection(server: Server, services: string[]): void {
  const fileDescriptorProtos = splitFileDescriptorSet(fs.readFileSync(DESCRIPTOR_SET));
  // ReflectionService reads only `fileDescriptorProtos` of each package definition entry.
  const packageDefinition = { descriptors: { fileDescriptorProtos } } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  new ReflectionService(packageDefinition, { services }).addToServer(server);
}

/** FileDescriptorSet is `repeated FileDescriptorProto file = 1`: return each file's bytes untouched. */
function splitFileDescriptorSet(bytes: Uint8Array): Buffer[] {
  const reader = new BinaryReader(bytes);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === 2) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}
