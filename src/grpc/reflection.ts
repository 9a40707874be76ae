import fs from 'node:fs';
import path from 'node:path';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { Server } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';

/** The descriptor set `npm run generate` writes with buf: proto/ as written, comments included. */
export const DESCRIPTOR_SET = path.join(__dirname, '..', '..', '..', 'gen', 'credits.binpb');

/**
 * Serves gRPC server reflection (v1 and v1alpha) from buf's descriptor set,
 * so grpcurl sees the files exactly as written in proto/: snake_case field
 * names and the comments. (proto-loader's own descriptors would camelCase
 * field names and drop comments.)
 */
export function addReflection(server: Server, services: string[]): void {
  const fileDescriptorProtos = splitFileDescriptorSet(fs.readFileSync(DESCRIPTOR_SET));
  // ReflectionService reads only `fileDescriptorProtos` of the package definition.
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
